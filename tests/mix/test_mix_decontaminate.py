"""Decontamination on real text: a benchmark built from the GPL preamble and Tang poems; training rows that
quote some items verbatim, paraphrase others, or share only common phrases with them."""

import json

import pytest
from helpers import write_jsonl

from llmprep.errors import ConfigError
from llmprep.mix.decontaminate import BenchmarkIndex, DecontConfig, item_text
from llmprep.mix.text import example_text


def test_verbatim_quotes_are_caught_paraphrases_and_common_phrases_are_not(bench, decont_rows):
    d, index = bench
    rows = decont_rows
    got = index.match([example_text("chat", {"messages": m}) for m in rows.values()])
    found = {name: (index.where[i] if i >= 0 else None) for name, i in zip(rows, got)}
    assert found == {
        "verbatim-en": f"{d / 'gpl.jsonl'}:4", "verbatim-zh": f"{d / 'tang.txt'}:2",
        "paraphrase-en": None, "paraphrase-zh": None,
        "common-en": None,  # "the GNU General Public License ... freedom to share and change": under 13 words
        "common-zh": None,  # a ten-character couplet of the poem: under 13 characters
        "short-item-whole": f"{d / 'short.parquet'}:1",  # a 10-word item is matched whole
    }
    assert index.counts(got) == {str(d / "gpl.jsonl"): 1, str(d / "tang.txt"): 1, str(d / "short.parquet"): 1}


def test_no_false_positive_on_the_whole_real_sample(bench, sample_rows):
    _, index = bench
    got = index.match([example_text("chat", r) for r in sample_rows])
    assert (got == -1).all()


def test_index_stats_and_item_text(bench):
    d, index = bench
    assert index.items() == 6 + 10 + 2
    assert index.stats[2] == {"file": str(d / "short.parquet"), "items": 2, "too_short": 1}  # "Why?"
    assert item_text({"q": "2+2?", "choices": ["3", {"text": "4"}], "answer": 1}) == "2+2?\n3\n4"


def test_first_item_in_file_order_is_reported(tmp_path, gpl_paragraphs):
    p = write_jsonl(tmp_path / "b.jsonl", [{"q": gpl_paragraphs[0]}, {"q": "again: " + gpl_paragraphs[0]}])
    index = BenchmarkIndex.build(DecontConfig((str(p),)))
    assert index.where[index.match([gpl_paragraphs[0]])[0]] == f"{p}:1"


def test_character_ngram_length_is_configurable(tmp_path, tang_poems):
    p = tmp_path / "t.txt"
    p.write_text(tang_poems[1][1] + "\n", encoding="utf-8")
    row = ["“江湖多风波，舟楫恐失坠”"]  # 10 characters of the poem
    assert BenchmarkIndex.build(DecontConfig((str(p),))).match(row).tolist() == [-1]
    assert BenchmarkIndex.build(DecontConfig((str(p),), ngram_chars=8)).match(row).tolist() == [0]


def test_unreadable_benchmark_item_stops_with_file_and_line(tmp_path):
    p = tmp_path / "b.jsonl"
    p.write_text(json.dumps({"q": "fine"}) + "\n{not json\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"--decontaminate .*b.jsonl:2: malformed JSON.*fix or remove"):
        BenchmarkIndex.build(DecontConfig((str(p),)))
    with pytest.raises(ConfigError, match=r"--decontaminate: INPUT .*nope.jsonl.*no such file"):
        BenchmarkIndex.build(DecontConfig((str(tmp_path / "nope.jsonl"),)))
    with pytest.raises(ConfigError, match="--decontaminate-ngram-words 0"):
        BenchmarkIndex.build(DecontConfig((str(p),), ngram_words=0))


def test_item_whose_scripts_alternate_is_matched_across_runs(tmp_path):
    item = "第1章 用Python写代码: 第2步 安装pip, 第3步 运行main函数 然后 看log输出 再 改config文件"
    p = tmp_path / "mixed.txt"
    p.write_text(item + "\n", encoding="utf-8")
    index = BenchmarkIndex.build(DecontConfig((str(p),)))
    assert index.whole_lengths == (13,) and index.stats[0]["too_short"] == 0
    assert index.match([f"见教程：{item}。", "第1章 用Python写代码"]).tolist() == [0, -1]


def test_row_keys_share_the_units_of_near_dedup_and_decontamination(bench, decont_rows, sample_rows):
    """A shard task computes the units once for --dedup near and --decontaminate: the same keys and matches as
    each computed on its own."""
    from llmprep.mix.dedup import DedupConfig, dedup_keys
    from llmprep.mix.keys import RowKeys

    _, index = bench
    texts = [example_text("chat", {"messages": m}) for m in decont_rows.values()]
    texts += [example_text("chat", r) for r in sample_rows[:200]]
    cols = RowKeys(DedupConfig("near"), index).columns(texts)
    alone = dedup_keys(texts, DedupConfig("near"))
    assert (cols["dedup_exact"] == alone.exact).all() and (cols["dedup_near"] == alone.near).all()
    assert cols["benchmark"].tolist() == index.match(texts).tolist() and (cols["benchmark"] >= 0).sum() == 3
    assert "benchmark" not in RowKeys(DedupConfig("near"), index).columns(texts, bench=False)

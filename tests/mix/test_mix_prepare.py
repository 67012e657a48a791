"""`llmprep prepare` with --mix, --dedup and --decontaminate: the README's recipe as written, every mode
(chats, documents, sentence pairs, bfd, wrap), the counts over input records, the test split, the cache, and
the errors."""

from __future__ import annotations

import csv
import json
import re
from collections import Counter
from pathlib import Path

import datasets
import pytest
from click.testing import CliRunner
from helpers import a, chat, u, write_jsonl

from llmprep.cli import main
from llmprep.constants import IGNORE_INDEX
from llmprep.mix.text import example_text, normalize_text
from llmprep.prepare import PrepareConfig, run

REPO = Path(__file__).resolve().parents[2]
README_COMMAND = ("llmprep prepare --mix examples/mix/recipe.yaml --out out/mix --test-size 0.1 "
                  "--decontaminate examples/mix/benchmark.jsonl")


def rejects(d: Path) -> list[dict]:
    return [json.loads(line) for line in (d / "rejected.jsonl").read_text(encoding="utf-8").splitlines()]


def add_up(report: dict) -> None:
    rec = report["records"]
    assert rec["read"] == rec["kept"] + rec["rejected"] + rec["dropped"] == \
        sum(report["kept"].values()) + rec["rejected"] + rec["dropped"]


def token_rows(d: Path, split: str) -> list[tuple]:
    return [tuple(x) for x in datasets.load_from_disk(str(d))[split]["input_ids"]]


def trained(d: Path, split: str) -> int:
    return sum(sum(lab != IGNORE_INDEX for lab in row) for row in datasets.load_from_disk(str(d))[split]["labels"])


def lines_of(path: Path) -> list[dict]:
    return [json.loads(x) for x in path.read_text(encoding="utf-8").splitlines()]


def test_the_readme_recipe_runs_as_written(tmp_path, monkeypatch):
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    assert README_COMMAND in readme
    shipped = (REPO / "examples" / "mix" / "recipe.yaml").read_text(encoding="utf-8")
    body = "".join(line for line in shipped.splitlines(keepends=True) if not line.startswith("#"))
    assert f"```yaml\n{body}```" in readme  # the README shows the recipe that ships
    monkeypatch.chdir(REPO)
    out = tmp_path / "mix"
    res = CliRunner().invoke(main, README_COMMAND.replace("out/mix", str(out)).split()[1:])
    assert res.exit_code == 0, res.output
    rep = json.loads((out / "report.json").read_text())
    add_up(rep)
    mix = rep["mix"]
    assert [list(s)[:6] for s in mix["sources"]] == [["name", "target_share", "share", "rows", "trained_tokens",
                                                      "epochs"]] * 2
    en, zh = mix["sources"]
    assert (en["name"], en["target_share"], zh["name"], zh["target_share"]) == ("english", 0.4, "chinese", 0.6)
    for s in (en, zh):
        assert abs(s["share"] - s["target_share"]) <= 0.01 * s["target_share"] and "reason" not in s
    assert en["epochs"] < 1 < zh["epochs"]  # english down-sampled, chinese repeated: both show in one run
    assert abs(mix["trained_tokens"] - 30000) <= 300
    # the output holds what the plan says: its rows (repeats included) and exactly its trained tokens
    assert len(token_rows(out, "train")) == mix["rows"] == en["rows"] + zh["rows"] == rep["rows"]["train"]
    assert trained(out, "train") == mix["trained_tokens"] == en["trained_tokens"] + zh["trained_tokens"]
    assert mix["rows"] - mix["repeated_rows"] == rep["kept"]["train"]
    # the test split: drawn before the mix from unique rows, so it holds no copy of a train row
    assert not set(token_rows(out, "test")) & set(token_rows(out, "train"))
    assert len(token_rows(out, "test")) == rep["kept"]["test"]
    # every removed record, by reason, with what it names
    got = rejects(out)
    mixed = [r for r in got if r.get("dropped")]
    assert len(mixed) == mix["dropped"] == rep["records"]["dropped"] > 0
    assert all(r["reason"].startswith("mix: not selected; source 'english'") for r in mixed)
    sources = {name: lines_of(REPO / "examples" / "mix" / f"{name}.jsonl") for name in ("en", "zh")}
    dups = [r for r in got if r.get("duplicate_of")]
    assert len(dups) == rep["dedup"]["removed"] > 0
    for r in dups:
        kept_path, kept_line = r["duplicate_of"].rsplit(":", 1)
        kept = sources[Path(kept_path).stem][int(kept_line) - 1]
        assert kept_path == r["source"] and int(kept_line) < r["line"]
        assert normalize_text(example_text("chat", kept)) == normalize_text(example_text("chat", r["record"]))
    bench = [r for r in got if r.get("benchmark")]
    assert sorted({r["benchmark"] for r in bench}) == [f"examples/mix/benchmark.jsonl:{i}" for i in (1, 2)]
    assert rep["decontamination"]["per_source"] == {"english": len(bench)}
    assert rep["decontamination"]["files"] == [{"file": "examples/mix/benchmark.jsonl", "items": 3, "too_short": 0,
                                                "rows_removed": len(bench)}]
    order = [("zh" in r["source"], r["line"]) for r in got if not r.get("dropped")]
    assert order == sorted(order)  # rejects in input order (sources in recipe order), then the drops
    # the summary prints the mix; report.html shows it; the doctor read the mixed directory back
    assert re.search(r"english +│ +40\.00% │ +40\.\d\d% │", res.output), res.output
    page = (out / "report.html").read_text(encoding="utf-8")
    mix_section = page.split('<section id="mix">')[1].split("</section>")[0]
    assert "examples/mix/recipe.yaml" in mix_section and "<td>english</td>" in mix_section
    assert 'id="decontamination"' in page and "examples/mix/benchmark.jsonl" in page
    skipped = {s["id"]: s["reason"] for s in rep["doctor"]["skipped"]}
    assert "duplicates" not in skipped and "leakage" not in skipped, skipped


@pytest.fixture(scope="module")
def two_sources(tmp_path_factory, english_chats, chinese_chats):
    """Real English chats (messages) and Chinese chats as question/answer records (renamed by the recipe)."""
    d = tmp_path_factory.mktemp("sources")
    write_jsonl(d / "en.jsonl", [{"messages": m} for m in english_chats[:80]])
    write_jsonl(d / "zh.jsonl", [{"q": m[0]["content"], "a": m[1]["content"]} for m in chinese_chats[:40]])
    return d


def recipe(d: Path, total, en_share: float, **zh) -> Path:
    doc = {"seed": 7, "total_tokens": total, "sources": [
        {"name": "en", "path": "en.jsonl", "share": en_share},
        {"name": "zh", "path": "zh.jsonl", "columns": {"question": "q", "answer": "a"}, "share": 1 - en_share}]}
    doc["sources"][1].update(zh)
    path = d / f"recipe-{total}-{en_share}.json"
    path.write_text(json.dumps(doc))
    return path


@pytest.mark.parametrize("mode", ["plain", "bfd", "padding"])
def test_mix_in_every_chat_mode(two_sources, tmp_path, mode):
    opts = {"plain": {}, "bfd": {"pack": "bfd", "max_length": 256}, "padding": {"padding": "longest"}}[mode]
    cfg = PrepareConfig(mix=str(recipe(two_sources, 5000, 0.3)), test_size=5, seed=3, progress=False, num_proc=1,
                        cache=False, **opts)
    res = run(cfg, [], out=tmp_path / mode)
    rep = res.report
    add_up(rep)
    en, zh = rep["mix"]["sources"]
    assert abs(en["share"] - 0.3) <= 0.003 and abs(zh["share"] - 0.7) <= 0.007
    assert zh["epochs"] > 1  # 40 Chinese chats cannot fill 70%: repeated
    ds = datasets.load_from_disk(str(tmp_path / mode))
    if mode == "bfd":
        assert sum(len(s) for s in ds["train"]["seq_lengths"]) == rep["mix"]["rows"]
        assert all(len(r) <= 256 for r in ds["train"]["input_ids"])
    else:
        assert len(ds["train"]) == rep["mix"]["rows"]
    labels = ds["train"]["labels"]
    assert sum(sum(x != IGNORE_INDEX for x in row) for row in labels) == rep["mix"]["trained_tokens"]
    if mode == "plain":  # repeats come after a full pass, in input order: the second pass starts over
        rows = [tuple(x) for x in ds["train"]["input_ids"]]
        distinct = rep["kept"]["train"]
        assert len(set(rows)) == len(set(rows[:distinct])) == distinct
        uses = Counter(rows)
        assert max(uses.values()) > 2  # 40 Chinese chats for 70% of 5,000 trained tokens: several passes
        passes = [r for e in range(max(uses.values())) for r in rows[:distinct] if uses[r] > e]
        assert rows == passes
        # the doctor reads the zh source with its own columns: every kept example is found again
        assert "duplicates" not in {s["id"] for s in rep["doctor"]["skipped"]}


def test_a_mix_of_gzip_sources_is_cut_and_detected_per_source(two_sources, tmp_path, monkeypatch):
    """The two sources gzipped, in shards of 16: each is decompressed and cut into tasks, its format detected
    from its first range with its own columns (the zh source is question/answer), and the mix gives the rows
    of the plain files."""
    import gzip
    import shutil

    import llmprep.prepare as prep

    monkeypatch.setattr(prep, "SHARD_SIZE", 16)
    gz = tmp_path / "gz"
    gz.mkdir()
    for name in ("en", "zh"):
        with open(two_sources / f"{name}.jsonl", "rb") as src, gzip.open(gz / f"{name}.jsonl.gz", "wb") as dst:
            shutil.copyfileobj(src, dst)
    doc = json.loads(recipe(two_sources, 5000, 0.3).read_text())
    for source in doc["sources"]:
        source["path"] += ".gz"
    (gz / "recipe.json").write_text(json.dumps(doc))
    common = {"test_size": 5, "seed": 3, "progress": False, "num_proc": 2, "cache": False}
    plain = run(PrepareConfig(mix=str(recipe(two_sources, 5000, 0.3)), **common), [], out=tmp_path / "plain")
    res = run(PrepareConfig(mix=str(gz / "recipe.json"), **common), [], out=tmp_path / "gzipped")
    assert res.run_info["executor"]["tasks"] == 8  # en: 80 lines / 16; zh: 40 / 16
    assert res.report["records"] == plain.report["records"] and res.report["mix"]["rows"] == plain.report["mix"]["rows"]
    for split in ("train", "test"):
        a = datasets.load_from_disk(str(tmp_path / "plain"))[split]
        b = datasets.load_from_disk(str(tmp_path / "gzipped"))[split]
        assert a["input_ids"] == b["input_ids"] and a["labels"] == b["labels"]


def test_mix_of_documents_packed_with_wrap_and_scarcest(tmp_path, gpl_paragraphs, fortunes):
    write_jsonl(tmp_path / "en.jsonl", [{"text": p} for p in gpl_paragraphs])
    (tmp_path / "zh.txt").write_text("\n".join(fortunes[:60]) + "\n", encoding="utf-8")
    (tmp_path / "r.yaml").write_text("total_tokens: scarcest\nsources:\n  - {name: en, path: en.jsonl, share: 0.5}\n"
                                     "  - {name: zh, path: zh.txt, share: 0.5}\n")
    plain = run(PrepareConfig(mix=str(tmp_path / "r.yaml"), progress=False, num_proc=2, cache=False), [],
                out=tmp_path / "plain")
    wrap = run(PrepareConfig(mix=str(tmp_path / "r.yaml"), pack="wrap", max_length=64, remainder="keep",
                             progress=False, num_proc=2, cache=False), [], out=tmp_path / "wrap")
    for res in (plain, wrap):
        add_up(res.report)
        epochs = [s["epochs"] for s in res.report["mix"]["sources"]]
        assert max(epochs) == 1.0 and min(epochs) < 1  # scarcest: the scarcer source used once, the other cut
    flat = [t for row in token_rows(tmp_path / "plain", "train") for t in row]
    packed = [t for row in token_rows(tmp_path / "wrap", "train") for t in row]
    assert packed == flat  # wrap concatenates the same documents in the same order (epochs, then repeats)


def test_mix_of_sentence_pairs_counts_all_tokens(tmp_path, english_chats, bert):
    """Pairs train no token (a class label): their shares are of all tokens, and the report says so."""
    for name, chats in (("a", english_chats[:30]), ("b", english_chats[30:50])):
        with open(tmp_path / f"{name}.csv", "w", newline="", encoding="utf-8") as fh:
            csv.writer(fh).writerows([("sentence1", "sentence2", "label")] +
                                     [(m[0]["content"], m[1]["content"], i % 2) for i, m in enumerate(chats)])
    (tmp_path / "r.yaml").write_text("seed: 1\ntotal_tokens: 1500\nsources:\n  - {name: a, path: a.csv, share: 0.25}\n"
                                     "  - {name: b, path: b.csv, share: 0.75}\n")
    res = run(PrepareConfig(mix=str(tmp_path / "r.yaml"), tokenizer=bert, progress=False, num_proc=1, cache=False,
                            dedup="none"), [], out=tmp_path / "out")
    add_up(res.report)
    mix = res.report["mix"]
    assert mix["measure"] == "tokens (sentence pairs train no token)"
    a_src, b_src = mix["sources"]
    assert abs(a_src["share"] - 0.25) <= 0.0025 and abs(b_src["share"] - 0.75) <= 0.0075 and b_src["epochs"] > 1
    ds = datasets.load_from_disk(str(tmp_path / "out"))["train"]
    assert len(ds) == mix["rows"] and sum(len(r) for r in ds["input_ids"]) == mix["trained_tokens"]
    assert set(ds["labels"]) == {0, 1}


def test_dedup_modes_and_switches(tmp_path, gpl_paragraphs):
    para = gpl_paragraphs[2]
    w = para.split()
    edited = " ".join(w[:40] + ["entirely"] + w[41:])
    a_rows = [{"messages": chat("What is AI?", "Artificial intelligence.")},  # 1
              {"messages": chat("WHAT IS AI?", "ARTIFICIAL INTELLIGENCE.")},  # 2: same up to case
              {"messages": chat("What  is   AI?", "Artificial   intelligence.")},  # 3: same up to whitespace
              {"messages": chat("Summarise this.", para)},  # 4
              {"messages": chat("Summarise this.", edited)}]  # 5: one word changed
    write_jsonl(tmp_path / "a.jsonl", a_rows)
    write_jsonl(tmp_path / "b.jsonl", [{"question": "what is ai?", "answer": "artificial intelligence."}])
    a_file, b_file = str(tmp_path / "a.jsonl"), str(tmp_path / "b.jsonl")

    def removed(**opts):
        res = run(PrepareConfig(progress=False, num_proc=1, cache=False, **opts), [a_file, b_file])
        add_up(res.report)
        return {(Path(r.source).name, r.line): r.duplicate_of for r in res.rejected}

    first = f"{a_file}:1"
    assert removed() == {("a.jsonl", 2): first, ("a.jsonl", 3): first, ("b.jsonl", 1): first}  # across files too
    assert removed(dedup_keep_case=True) == {("a.jsonl", 3): first}
    assert removed(dedup_keep_whitespace=True) == {("a.jsonl", 2): first, ("b.jsonl", 1): first}
    near = removed(dedup="near")
    assert near == {("a.jsonl", 2): first, ("a.jsonl", 3): first, ("b.jsonl", 1): first, ("a.jsonl", 5): f"{a_file}:4"}
    assert ("a.jsonl", 5) not in removed(dedup="near", dedup_threshold=0.99)  # Jaccard ~0.9 is below 0.99
    assert removed(dedup="none") == {}
    res = run(PrepareConfig(progress=False, num_proc=1, cache=False, dedup="near"), [a_file, b_file])
    assert res.report["dedup"] | {"per_source": None} == {
        "mode": "near", "compared": res.report["dedup"]["compared"], "removed": 4, "exact": 3, "near": 1,
        "per_source": None}
    assert res.report["dedup"]["per_source"] == {a_file: {"exact": 2, "near": 1}, b_file: {"exact": 1, "near": 0}}
    reasons = {r.line: r.reason for r in res.rejected}
    assert reasons[5].startswith("near-duplicate of an earlier row (MinHash LSH: Jaccard >= 0.8 over 5-grams")
    assert reasons[2] == "duplicate: same text (whitespace collapsed, case folded) as an earlier row"


def test_copy_of_a_row_truncation_dropped_is_a_duplicate(tmp_path):
    long = {"messages": [u("Tell me everything."), a(" ".join(["word"] * 300))]}
    rows = [long, {"messages": chat("Hi", "Hello!")}, long]
    res = run(PrepareConfig(progress=False, num_proc=1, cache=False, max_length=64, truncation="drop"),
              [str(write_jsonl(tmp_path / "t.jsonl", rows))])
    add_up(res.report)
    (dropped,), (dup,) = res.dropped, res.rejected
    assert dropped.line == 1 and dropped.reason.startswith("longer than --max-length 64")
    assert (dup.line, dup.duplicate_of) == (3, f"{tmp_path / 't.jsonl'}:1")
    assert res.report["dedup"]["removed"] == 1 and res.report["kept"] == {"train": 1}


def test_decontaminate_a_plain_run_on_real_text(tmp_path, bench, decont_rows, sample_rows):
    d, _ = bench
    src = write_jsonl(tmp_path / "chats.jsonl", [{"messages": m} for m in decont_rows.values()] + sample_rows[:300])
    res = run(PrepareConfig(progress=False, num_proc=2, cache=False,
                            decontaminate=(str(d / "gpl.jsonl"), str(d / "tang.txt"), str(d / "short.parquet"))),
              [str(src)])
    add_up(res.report)
    hits = {r.line: r.benchmark for r in res.rejected if r.benchmark}
    names = list(decont_rows)
    assert hits == {names.index("verbatim-en") + 1: f"{d / 'gpl.jsonl'}:4",
                    names.index("verbatim-zh") + 1: f"{d / 'tang.txt'}:2",
                    names.index("short-item-whole") + 1: f"{d / 'short.parquet'}:1"}  # nothing in the sample
    dec = res.report["decontamination"]
    assert dec["removed"] == 3 and dec["per_source"] == {str(src): 3}
    assert [(f["file"], f["rows_removed"]) for f in dec["files"]] == [
        (str(d / "gpl.jsonl"), 1), (str(d / "tang.txt"), 1), (str(d / "short.parquet"), 1)]
    assert all(r.reason.startswith("benchmark: shares a 13-word n-gram") for r in res.rejected if r.benchmark)


def test_cached_shards_carry_the_keys_and_their_settings_key_the_cache(tmp_path, gpl_paragraphs):
    rows = [{"messages": chat(f"Q{i % 9}", f"A{i % 9}")} for i in range(30)] + \
           [{"messages": chat("Quote it.", gpl_paragraphs[1])}]
    src = write_jsonl(tmp_path / "c.jsonl", rows)
    bench = tmp_path / "b.txt"
    bench.write_text(gpl_paragraphs[1] + "\n")

    def go(**opts):
        cfg = PrepareConfig(progress=False, num_proc=1, cache_dir=str(tmp_path / "cache"), **opts)
        return run(cfg, [str(src)], out=tmp_path / f"o{len(list(tmp_path.glob('o*')))}")

    first = go(decontaminate=(str(bench),))
    again = go(decontaminate=(str(bench),))
    assert again.cache == {"enabled": True, "hits": 1, "misses": 0}
    assert again.report["dedup"] == first.report["dedup"] and first.report["dedup"]["removed"] == 21
    assert [r.to_json() for r in again.rejected] == [r.to_json() for r in first.rejected]
    assert again.report["decontamination"]["removed"] == 1
    near = go(decontaminate=(str(bench),), dedup="near")
    assert near.run_info["cache"]["miss_reasons"] == {"option --dedup changed": 1}
    bench.write_text(gpl_paragraphs[1] + "\n" + gpl_paragraphs[0] + "\n")
    changed = go(decontaminate=(str(bench),), dedup="near")
    assert changed.run_info["cache"]["miss_reasons"] == {"option --decontaminate changed": 1}
    renamed = tmp_path / "renamed.txt"
    bench.rename(renamed)
    assert go(decontaminate=(str(renamed),), dedup="near").cache["hits"] == 1  # the items' content keys it
    opts = dict(decontaminate=(str(renamed),), dedup="near")
    for option, value in [("dedup_keep_case", True), ("dedup_keep_whitespace", True), ("dedup_threshold", 0.9),
                          ("dedup_ngram", 4), ("decontaminate_ngram_words", 12), ("decontaminate_ngram_chars", 10)]:
        opts[option] = value  # one more setting changed since the last run: it changes the keys a shard carries
        res = go(**opts)
        assert res.run_info["cache"]["miss_reasons"] == {f"option --{option.replace('_', '-')} changed": 1}


@pytest.mark.parametrize("args, message", [
    (["x.jsonl", "--mix", "r.yaml"], "--mix r.yaml: the recipe's sources are the inputs; give no INPUT"),
    (["--mix", "missing.yaml"], "--mix 'missing.yaml': cannot read the recipe"),
    (["--mix", "bad.yaml"], "field 'share': 1.5 is not valid; expected a fraction in (0, 1]"),
    (["--dedup-threshold", "1.5"], "--dedup-threshold 1.5: expected a Jaccard similarity in (0, 1)"),
    (["--decontaminate", "nope.jsonl"], "--decontaminate: INPUT 'nope.jsonl': no such file"),
    (["--decontaminate-ngram-words", "0", "--decontaminate", "bad.yaml"], "--decontaminate-ngram-words 0: expected"),
    (["--dedup", "fuzzy"], "'fuzzy' is not one of 'exact', 'near', 'none'"),
])
def test_bad_options_are_one_clean_line(tmp_path, monkeypatch, args, message):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "bad.yaml").write_text("total_tokens: 10\nsources:\n  - {name: a, path: bad.yaml, share: 1.5}\n")
    result = CliRunner().invoke(main, ["prepare", "--out", "o", *args])
    assert result.exit_code in (1, 2) and message in result.output and "Traceback" not in result.output, result.output
    assert not (tmp_path / "o").exists()


def test_counts_per_reason_add_up_over_input_records(tmp_path, english_chats):
    rows = [{"messages": m} for m in english_chats[:30]] * 2 + ["{broken", {"messages": "no"}]
    res = run(PrepareConfig(progress=False, num_proc=2, cache=False, test_size=0.2), [
        str(write_jsonl(tmp_path / "c.jsonl", rows))])
    add_up(res.report)
    rep = res.report
    assert rep["records"] == {"read": 62, "kept": 30, "rejected": 32, "dropped": 0}
    assert Counter(r.duplicate_of is not None for r in res.rejected) == {True: 30, False: 2}
    assert sum(rep["rejected_reasons"].values()) == 32

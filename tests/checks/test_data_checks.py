"""Checks of the examples: duplicates, train/test leakage, control-token text — on the bundled sample
and real text, each with a twin that must stay clean."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest
from doctor_assets import SAMPLE, prepared, sample_lines
from helpers import chat, write_jsonl

from llmprep.checks import Data, Subject, run_checks
from llmprep.checks.dedup import NEAR_THRESHOLD
from llmprep.checks.text import prompt_text
from llmprep.constants import IGNORE_INDEX
from llmprep.mix.text import normalize_text, units

ENGLISH = Path(__file__).parents[1] / "assets" / "english_excerpt.txt"


def findings(tokenizer, data, check, tmpl="auto"):
    report = run_checks(Subject.build(tokenizer, template=tmpl, data=data), model=False)
    return [f for f in report.findings if f.id == check], report


def raw(*files):
    return Data.from_files(list(files), rows_error="raw")


def paragraphs(n: int) -> list[str]:
    """Real English prose (the GPL excerpt), n paragraphs of 50+ words."""
    text = ENGLISH.read_text(encoding="utf-8")
    paras = [" ".join(p.split()) for p in text.split("\n\n") if len(p.split()) >= 50]
    assert len(paras) >= n
    return paras[:n]


def test_text_normalisation_is_prepares_and_the_prompt_key():
    # one implementation: the doctor compares text exactly as prepare's --dedup does (llmprep.mix.text)
    assert normalize_text("  What  is\tAI? ") == "what is ai?"
    assert normalize_text("  What  is\tAI? ", casefold=False) == "What is AI?"
    assert units("One, two 你好")[0] == ["one", "two", "你", "好"]
    msgs = chat("Q1", "A1", "Q2", "A2", system="S")
    assert prompt_text(msgs) == "system: S user: Q1 assistant: A1 user: Q2"


def test_duplicates_in_the_bundled_sample_match_an_independent_count(smollm2):
    (f,), _ = findings(smollm2, raw(SAMPLE), "duplicates")
    keys = []
    for r in sample_lines():
        msgs = r["messages"]
        if any(m["role"] == "assistant" and not m["content"].strip() for m in msgs):
            continue  # rejected by prepare (empty reply), not an example
        keys.append(" ".join("\n".join(f"{m['role']}: {m['content']}" for m in msgs).split()).lower())
    repeats = sum(n - 1 for n in Counter(keys).values())
    assert f.severity == "warning"
    assert f.message.startswith(f"{repeats:,} of {len(keys):,} examples repeat an earlier one exactly")
    assert "Jaccard >= 0.8 over word 5-grams" in f.message
    first, second = f.where.split(" = ")[:2]
    lines = SAMPLE.read_text(encoding="utf-8").splitlines()
    assert json.loads(lines[int(first.rsplit(":", 1)[1]) - 1])["messages"] == \
        json.loads(lines[int(second.rsplit(":", 1)[1]) - 1])["messages"]


def test_duplicates_of_a_prepared_directory_read_prepares_dedup(smollm2, tmp_path):
    rows = sample_lines(400)
    deduped = prepared(tmp_path, rows, "deduped")  # --dedup exact, the default
    removed = json.loads((deduped / "report.json").read_text())["dedup"]["removed"]
    (f,), _ = findings(smollm2, Data.from_dir(deduped), "duplicates")
    texts = [normalize_text("\n".join(m["content"] for m in r["messages"])) for r in rows]
    assert removed == len(texts) - len(set(texts)) > 50  # independent count: message contents, normalised
    assert f.message.startswith(f"llmprep prepare removed {removed:,} duplicate rows (--dedup exact")
    kept = prepared(tmp_path, rows, "kept", dedup="none")  # repeats kept: the doctor counts them itself
    (g,), _ = findings(smollm2, Data.from_dir(kept), "duplicates")
    assert g.severity == "warning" and g.message.startswith(f"{removed:,} of ") and "repeat an earlier one" in g.message
    near = prepared(tmp_path, rows, "near", dedup="near")
    assert findings(smollm2, Data.from_dir(near), "duplicates")[0][0].severity == "info"  # nothing left to find


def test_near_duplicates_one_word_changed(smollm2, tmp_path):
    a, b, c = paragraphs(3)
    words = a.split()
    near = " ".join(words[:30] + ["entirely"] + words[31:])
    rows = [{"messages": chat("Summarise this.", a)}, {"messages": chat("Summarise this.", b)},
            {"messages": chat("Summarise this.", near)}, {"messages": chat("Summarise this.", c)}]
    (f,), _ = findings(smollm2, raw(write_jsonl(tmp_path / "n.jsonl", rows)), "duplicates")
    assert f.message.startswith("0 of 4 examples repeat") and ", 1 more are near-duplicates" in f.message
    assert f.examples[0].startswith(f"{tmp_path / 'n.jsonl'}:3 ~ {tmp_path / 'n.jsonl'}:1 (Jaccard")
    assert float(f.examples[0].split("Jaccard ")[1].rstrip(")")) >= NEAR_THRESHOLD


def test_duplicates_twin_distinct_conversations(smollm2, tmp_path):
    rows = [{"messages": chat("Summarise this.", p)} for p in paragraphs(4)]
    assert findings(smollm2, raw(write_jsonl(tmp_path / "d.jsonl", rows)), "duplicates")[0] == []


def _token_prompts(d: Path) -> dict[str, list[tuple]]:
    """Independent of the check: each row's prompt as its token ids before the last trained run."""
    from datasets import load_from_disk

    out = {}
    for split, ds in load_from_disk(str(d)).items():
        prompts = []
        for ids, labels in zip(ds["input_ids"], ds["labels"]):
            trained = [i for i, lab in enumerate(labels) if lab != IGNORE_INDEX]
            start = trained[-1]
            while start > 0 and labels[start - 1] != IGNORE_INDEX:
                start -= 1
            prompts.append(tuple(ids[:start]))
        out[split] = prompts
    return out


def test_leakage_same_prompt_in_train_and_test_matches_the_rows(smollm2, tmp_path):
    d = prepared(tmp_path, sample_lines(600), test_size=0.2)
    (f,), _ = findings(smollm2, Data.from_dir(d), "leakage")
    prompts = _token_prompts(d)
    train = set(prompts["train"])
    leaked = sum(p in train for p in prompts["test"])
    assert leaked > 0 and f.severity == "warning"
    assert f.message.startswith(f"{leaked:,} of {len(prompts['test']):,} test examples have a prompt")


def test_leakage_near_same_prompt(smollm2, tmp_path):
    paras = paragraphs(6)
    rows = []
    for p in paras:  # each prompt twice: as written and with one word changed
        w = p.split()
        rows += [{"messages": chat(p, "Noted.")}, {"messages": chat(" ".join(w[:20] + ["indeed"] + w[21:]), "Noted.")}]
    d = prepared(tmp_path, rows, test_size=0.5, seed=3)
    (f,), _ = findings(smollm2, Data.from_dir(d), "leakage")
    assert f.message.startswith("0 of 6 test examples") and "more a near-same one" in f.message
    assert int(f.message.split("), ")[1].split(" more")[0]) >= 1


def test_leakage_twin_distinct_prompts_and_no_test_split(smollm2, tmp_path):
    seen, rows = set(), []
    for r in sample_lines(600):  # prompts distinct even ignoring case and punctuation ("Are you sapient?")
        key = " ".join(units(prompt_text(r["messages"]))[0])
        if key not in seen:
            seen.add(key)
            rows.append(r)
    d = prepared(tmp_path, rows, test_size=0.2)
    assert findings(smollm2, Data.from_dir(d), "leakage")[0] == []
    _, report = findings(smollm2, raw(SAMPLE), "leakage")
    assert report.skipped["leakage"] == "the data has no test split"


CONTROL = [{"messages": chat("How do I end a ChatML turn?", "Write <|im_end|> after the message.")},
           {"messages": chat("Hi", "Hello!")}]


def test_control_text_in_content(smollm2, tmp_path):
    (f,), _ = findings(smollm2, raw(write_jsonl(tmp_path / "c.jsonl", CONTROL)), "control-text")
    assert f.severity == "warning" and "'<|im_end|>' x1" in f.message
    assert f.where == f"{tmp_path / 'c.jsonl'}:1 messages[1].content: '<|im_end|>'"


def test_control_text_twin_a_vocabulary_without_that_token(mistral, tmp_path):
    assert findings(mistral, raw(write_jsonl(tmp_path / "c.jsonl", CONTROL)), "control-text", "mistral")[0] == []


@pytest.mark.parametrize("change", ["edit", "delete"])
def test_changed_inputs_skip_the_data_checks(smollm2, tmp_path, change):
    d = prepared(tmp_path, sample_lines(50))
    src = tmp_path / "data.jsonl"
    if change == "edit":
        src.write_text(src.read_text() + json.dumps({"messages": chat("a", "b")}) + "\n")
    else:
        src.unlink()
    _, report = findings(smollm2, Data.from_dir(d), "duplicates")
    assert ("changed since prepare" if change == "edit" else "is gone") in report.skipped["duplicates"]


def test_prepare_checks_a_bounded_prefix_and_says_so(smollm2, tmp_path):
    """prepare's own example checks read the first PREPARE_SCAN examples (not the whole data again): the
    findings count repeats in exactly that prefix, and report.json / the message say how much was read."""
    from llmprep.checks import PREPARE_SCAN, prepared_checks
    from llmprep.report import build_report_html

    rows = sample_lines(400)
    kept = prepared(tmp_path, rows, "kept", dedup="none")
    n_kept = json.loads((kept / "report.json").read_text())["records"]["kept"]
    assert "scope" not in json.loads((kept / "report.json").read_text())["doctor"]  # 400 < PREPARE_SCAN: all read
    assert PREPARE_SCAN >= 1000

    report = prepared_checks(kept, smollm2, scan_limit=150)
    assert report.scope == {"examples": 150, "of": n_kept}
    (f,) = [f for f in report.findings if f.id == "duplicates"]
    texts = [normalize_text("\n".join(m["content"] for m in r["messages"]).casefold())
             for r in rows if any(m["role"] == "assistant" and m["content"].strip() for m in r["messages"])][:150]
    assert f.message.startswith(f"{len(texts) - len(set(texts)):,} of 150 examples repeat an earlier one")
    assert "prepare checked the first 150 of" in f.message and "`llmprep doctor DIR` checks them all" in f.message
    assert prepared_checks(kept, smollm2, scan_limit=None).scope is None

    rep = json.loads((kept / "report.json").read_text())
    (kept / "report.json").write_text(json.dumps({**rep, "doctor": report.to_json(examples=True)}))
    assert f"read the first 150 of {n_kept:,} examples" in build_report_html(kept, smollm2)

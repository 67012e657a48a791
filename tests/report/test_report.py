"""report.html: written by prepare, rebuilt by `llmprep report`, self-contained, deterministic, and
showing what the data holds (checked against report.json, rejected.jsonl and the rows themselves)."""

from __future__ import annotations

import html
import re

import pytest
from click.testing import CliRunner
from doctor_assets import prepared, records, report_rows, sample_lines

from llmprep.cli import main
from llmprep.constants import IGNORE_INDEX


def page(d) -> str:
    return (d / "report.html").read_text(encoding="utf-8")


def test_prepare_writes_one_self_contained_page(report_dir):
    text = page(report_dir)
    for section in ("summary", "findings", "lengths", "trained", "truncation", "packing", "rejects", "duplicates",
                    "samples"):
        assert f'<section id="{section}">' in text
    assert len(re.findall(r"<svg[ >]", text)) == 2  # lengths and trained share (a panel per split), inline SVG
    assert "<script" not in text and "<img" not in text and "<link" not in text
    assert not re.findall(r"""(?:src|href)\s*=\s*["']?(?:https?:)?//""", text)  # nothing fetched
    assert len(text.encode()) < 200_000


def test_counts_and_reasons_match_the_report_and_the_rejects(report_dir):
    import json

    rep = json.loads((report_dir / "report.json").read_text())
    text = html.unescape(page(report_dir))
    assert f"records read</td><td class=\"n\">{rep['records']['read']:,}" in text
    assert rep["records"]["read"] == len(report_rows())
    rejects = records(report_dir / "rejected.jsonl")
    assert len(rejects) == rep["records"]["rejected"] + rep["records"]["dropped"] > 3
    for r in rejects:  # every reason shows, with the first record's location as an example
        assert r["reason"] in text
    first_dropped = next(r for r in rejects if r.get("dropped"))
    assert f"{first_dropped['source']}:{first_dropped['line']}" in text


def test_findings_and_duplicates_are_shown(report_dir):
    import json

    text = html.unescape(page(report_dir))
    findings = json.loads((report_dir / "report.json").read_text())["doctor"]["findings"]
    assert {f["id"] for f in findings} >= {"duplicates", "leakage"}
    for f in findings:
        assert f["message"] in text and f["fix"] in text
    dup = next(f for f in findings if f["id"] == "duplicates")
    assert text.split('<section id="duplicates">')[1].count(dup["examples"][0]) == 1


def test_sample_rows_highlight_exactly_the_trained_tokens(report_dir, smollm2):
    from datasets import load_from_disk

    row = load_from_disk(str(report_dir))["train"][0]
    runs, current, trained = [], [], None
    for i, lab in zip(row["input_ids"], row["labels"]):
        t = lab != IGNORE_INDEX
        if t != trained and current:
            runs.append((trained, current))
            current = []
        trained = t
        current.append(i)
    runs.append((trained, current))
    expected = [smollm2.decode(ids) for t, ids in runs if t]
    first = page(report_dir).split("<h3>train row 0</h3>")[1].split("</div>")[0]
    assert [html.unescape(m) for m in re.findall(r'<mark class="t">(.*?)</mark>', first, flags=re.S)] == expected


def test_rerun_and_llmprep_report_give_identical_bytes(report_dir, tmp_path):
    same_input = report_dir.parent / "data.jsonl"
    again = prepared(tmp_path, same_input, "again", test_size=0.1, max_length=256, truncation="drop")
    before = (again / "report.html").read_bytes()
    assert before == (report_dir / "report.html").read_bytes()
    (again / "report.html").unlink()
    result = CliRunner().invoke(main, ["report", str(again)])
    assert result.exit_code == 0, result.output
    assert result.output.strip() == str(again / "report.html")
    assert (again / "report.html").read_bytes() == before


def test_packed_data_shows_the_fill(tmp_path):
    import json

    d = prepared(tmp_path, sample_lines(200), pack="bfd", max_length=512)
    fill = json.loads((d / "report.json").read_text())["packing"]["train"]["fill"]
    section = page(d).split('<section id="packing">')[1].split("</section>")[0]
    assert "<svg" in section and f"{fill:.1%}" in html.unescape(section)


@pytest.mark.parametrize("make, message", [
    (lambda d: None, "no report.json; expected a directory written by `llmprep prepare`"),
    (lambda d: (d / "report.json").write_text('{"tokenizer": {"name": "no/such/tok/dir"}}'), "pass --tokenizer"),
])
def test_report_errors_are_one_clean_line(tmp_path, make, message):
    make(tmp_path)
    result = CliRunner().invoke(main, ["report", str(tmp_path)])
    assert result.exit_code == 1 and message in result.output and "Traceback" not in result.output


def test_options_line_names_the_cli_flags():
    from llmprep.report import options_line

    opts = {"max_length": 512, "strict": True, "literal_control_text": False, "columns": {"q": "question"},
            "format": None, "padding": "none", "test_size": 0.1, "train_on_prompt": False}
    assert options_line(opts) == "--max-length 512 --strict --allow-control-text --column q=question --test-size 0.1"
    assert options_line({"literal_control_text": True}) == ""
    assert options_line({"dedup": "near", "dedup_keep_case": True, "decontaminate": ["a.jsonl", "b.txt"]}) == \
        "--dedup near --dedup-keep-case --decontaminate a.jsonl --decontaminate b.txt"
    assert options_line({"decontaminate": [], "mix": None}) == ""

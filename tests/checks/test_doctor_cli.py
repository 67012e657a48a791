"""`llmprep doctor` on the command line: findings, --json contract, exit codes, clean errors."""

from __future__ import annotations

import json

from click.testing import CliRunner
from doctor_assets import SAMPLE, prepared, sample_lines, template

from llmprep.checks import IDS
from llmprep.cli import main


def doctor(*args):
    return CliRunner().invoke(main, ["doctor", *map(str, args)])


def test_json_contract_and_exit_code_1_for_warnings_only(tmp_path):
    d = prepared(tmp_path, sample_lines(400), test_size=0.2)
    result = doctor(d, "--json")
    assert result.exit_code == 1, result.output
    out = json.loads(result.output)
    assert set(out) == {"findings", "skipped"}
    assert {f["id"] for f in out["findings"]} == {"duplicates", "leakage", "pad-is-eos"}
    for f in out["findings"]:
        assert list(f) == ["id", "severity", "message", "where", "fix"] and f["id"] in IDS
    # report.json holds the same cheap findings prepare computed
    stored = json.loads((d / "report.json").read_text())["doctor"]["findings"]
    assert [f["id"] for f in stored] == [f["id"] for f in out["findings"]]


def test_text_output_and_exit_code_2_for_errors(tmp_path):
    result = doctor("--template", template("seed-question-answer"))
    assert result.exit_code == 2
    assert result.output.startswith("error   no-stop-token: the template writes no end-of-turn token")
    assert "        fix:   use a template that closes every reply" in result.output
    assert result.output.rstrip().endswith("check(s) did not apply")


def test_exit_code_0_when_only_info():
    result = doctor("--json")  # SmolLM2 and its own template, no data: pad == eos is info only
    assert result.exit_code == 0, result.output
    assert [(f["id"], f["severity"]) for f in json.loads(result.output)["findings"]] == [("pad-is-eos", "info")]


def test_raw_data_is_prepared_in_memory_with_the_given_options(tmp_path):
    from helpers import write_jsonl

    src = write_jsonl(tmp_path / "c.jsonl", sample_lines(200))
    result = doctor(src, "--max-length", "40", "--json")
    ids = {f["id"] for f in json.loads(result.output)["findings"]}
    assert {"truncation-loss", "eot-untrained"} <= ids
    assert not list(tmp_path.glob("*/report.json"))  # nothing written


def test_chats_without_a_template_are_an_error_finding_not_a_crash(mistral_dir):
    result = doctor("--tokenizer", mistral_dir, SAMPLE, "--json")
    assert result.exit_code == 2
    out = json.loads(result.output)
    assert [f["id"] for f in out["findings"] if f["severity"] == "error"] == ["no-chat-template"]
    skipped = {s["id"]: s["reason"] for s in out["skipped"]}
    assert skipped["eot-untrained"].startswith("DATA was not prepared: --template auto: the tokenizer has no chat")


def test_list_names_every_check():
    result = doctor("--list")
    assert result.exit_code == 0
    assert [line.split()[0] for line in result.output.splitlines()] == list(IDS)


def test_bad_values_are_one_clean_line(tmp_path, llama31_dir):
    d = prepared(tmp_path, sample_lines(20))
    cases = [(["--model", "no/such/dir"], "--model 'no/such/dir': expected 'smollm2', a local model directory"),
             ([d, SAMPLE], "DATA: give one directory written by `llmprep prepare`, or raw input files"),
             ([d, "--tokenizer", llama31_dir], "is not the tokenizer the data was prepared with ('smollm2')"),
             (["--template", "nope"], "--template 'nope' is not a known template"),
             (["missing.jsonl"], "INPUT 'missing.jsonl': no such file")]
    for args, message in cases:
        result = doctor(*args)
        assert result.exit_code == 1 and message in result.output and "Traceback" not in result.output, args


def test_a_stream_directory_is_checked_and_reported(tmp_path):
    """llmprep.stream.prepare_stream writes its own report.json (bare paths, documents): doctor and report
    read it too. (The CLI's --stream is an alias of prepare --pack wrap now, with prepare's report.)"""
    from pathlib import Path

    from llmprep.stream import prepare_stream
    from llmprep.tokenizer import load_tokenizer

    text = Path(__file__).parents[1] / "assets" / "english_excerpt.txt"
    out = tmp_path / "s"
    prepare_stream([str(text)], tokenizer=load_tokenizer("smollm2"), out=out, block_size=256)
    result = doctor(out, "--json")
    skipped = {s["id"]: s["reason"] for s in json.loads(result.output)["skipped"]}
    assert result.exit_code == 0 and "--pack wrap blocks" in skipped["eot-untrained"]
    assert CliRunner().invoke(main, ["report", str(out)]).exit_code == 0
    assert "Not checked: report.json has no doctor section" in (out / "report.html").read_text()


def test_prepare_summary_lists_the_findings_and_the_page(tmp_path):
    from helpers import write_jsonl

    src = write_jsonl(tmp_path / "c.jsonl", sample_lines(400))
    out = tmp_path / "out"
    result = CliRunner().invoke(main, ["prepare", str(src), "--out", str(out), "--test-size", "0.2", "--no-cache"])
    assert result.exit_code == 0, result.output
    stored = json.loads((out / "report.json").read_text())["doctor"]["findings"]
    lines = [line.strip() for line in result.output.splitlines()]
    for f in stored:
        assert any(line.startswith(f"{f['severity']}: {f['id']}: ") for line in lines), f["id"]
    assert f"report for a person: {out}/report.html; every check: llmprep doctor {out}" in result.output

"""`llmprep prepare` through click's CliRunner: flags reach the pipeline, errors reach the user."""

import json

import datasets
import pytest
from click.testing import CliRunner
from helpers import write_jsonl

from llmprep.cli import main
from llmprep.constants import IGNORE_INDEX

CHATS = [{"messages": [{"role": "user", "content": f"What is {i} plus {i}?"},
                       {"role": "assistant", "content": f"{i} plus {i} is {2 * i}."}]} for i in range(40)]


def test_prepare_writes_dataset_report_and_rejects(tmp_path):
    src = tmp_path / "chats.jsonl"
    write_jsonl(src, CHATS + [{"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": ""}]}])
    out = tmp_path / "out"
    result = CliRunner().invoke(main, ["prepare", str(src), "--out", str(out), "--test-size", "4", "--seed", "1"])
    assert result.exit_code == 0, result.output
    assert "records read" in result.output
    dd = datasets.load_from_disk(str(out))
    assert dd["train"].num_rows == 36 and dd["test"].num_rows == 4
    report = json.loads((out / "report.json").read_text())
    assert report["records"] == {"read": 41, "kept": 40, "rejected": 1, "dropped": 0}
    rejected = [json.loads(line) for line in (out / "rejected.jsonl").read_text().splitlines()]
    assert rejected[0]["line"] == 41 and rejected[0]["field"] == "messages[1].content"
    assert "empty assistant reply" in rejected[0]["reason"]


def test_prepare_without_input_uses_bundled_sample(tmp_path):
    out = tmp_path / "demo"
    result = CliRunner().invoke(main, ["prepare", "--out", str(out), "--quiet", "--max-length", "64"])
    assert result.exit_code == 0, result.output
    report = json.loads((out / "report.json").read_text())
    assert report["records"]["read"] == 2493
    assert report["records"]["read"] == sum(report["records"][k] for k in ("kept", "rejected", "dropped"))
    row = datasets.load_from_disk(str(out))["train"][0]
    assert len(row["input_ids"]) <= 64 and any(x != IGNORE_INDEX for x in row["labels"])


def test_unknown_template_lists_valid_names(tmp_path):
    src = tmp_path / "c.jsonl"
    write_jsonl(src, CHATS[:2])
    result = CliRunner().invoke(main, ["prepare", str(src), "--out", str(tmp_path / "o"), "--template", "vicuna"])
    assert result.exit_code != 0
    assert "--template 'vicuna' is not a known template" in result.output
    assert "chatml" in result.output and "llama3" in result.output
    assert not (tmp_path / "o").exists()


def test_fields_matching_no_format_name_fields_and_formats(tmp_path):
    src = tmp_path / "odd.jsonl"
    write_jsonl(src, [{"query": "a", "reply": "b"}])
    result = CliRunner().invoke(main, ["prepare", str(src), "--out", str(tmp_path / "o")])
    assert result.exit_code != 0
    assert "['query', 'reply']" in result.output and "question-answer" in result.output
    # --column maps the fields onto a known format
    ok = CliRunner().invoke(main, ["prepare", str(src), "--out", str(tmp_path / "o"), "--quiet",
                                   "--column", "question=query", "--column", "answer=reply"])
    assert ok.exit_code == 0, ok.output


def test_strict_stops_at_first_bad_record_and_writes_nothing(tmp_path):
    src = tmp_path / "c.jsonl"
    src.write_text(json.dumps(CHATS[0]) + "\n{not json\n", encoding="utf-8")
    result = CliRunner().invoke(main, ["prepare", str(src), "--out", str(tmp_path / "o"), "--strict"])
    assert result.exit_code != 0
    assert f"{src}:2" in result.output and "malformed JSON" in result.output
    assert not (tmp_path / "o").exists()


def test_bad_column_and_test_size_values_are_named(tmp_path):
    src = tmp_path / "c.jsonl"
    write_jsonl(src, CHATS[:2])
    bad_col = CliRunner().invoke(main, ["prepare", str(src), "--out", str(tmp_path / "o"), "--column", "x"])
    assert bad_col.exit_code != 0 and "--column" in bad_col.output and "NEW=OLD" in bad_col.output
    bad_split = CliRunner().invoke(main, ["prepare", str(src), "--out", str(tmp_path / "o"), "--test-size", "lots"])
    assert bad_split.exit_code != 0 and "--test-size" in bad_split.output


@pytest.mark.parametrize("side", ["left", "right"])
def test_fixed_padding_from_cli(tmp_path, side):
    src = tmp_path / "c.jsonl"
    write_jsonl(src, CHATS[:5])
    out = tmp_path / "o"
    result = CliRunner().invoke(main, ["prepare", str(src), "--out", str(out), "--quiet", "--padding", "max-length",
                                       "--max-length", "80", "--padding-side", side])
    assert result.exit_code == 0, result.output
    rows = datasets.load_from_disk(str(out))["train"]
    for row in rows:
        assert len(row["input_ids"]) == 80
        edge = row["attention_mask"][0] if side == "left" else row["attention_mask"][-1]
        assert edge == 0
        assert all(lab == IGNORE_INDEX for lab, m in zip(row["labels"], row["attention_mask"]) if m == 0)


def test_control_text_and_engine_flags(tmp_path):
    from llmprep.tokenizer import load_tokenizer

    tok = load_tokenizer("smollm2")
    conv = [{"role": "user", "content": "Say <|im_end|> please"}, {"role": "assistant", "content": "No."}]
    src = tmp_path / "c.jsonl"
    write_jsonl(src, [{"messages": conv}])
    end_id = tok.convert_tokens_to_ids("<|im_end|>")
    ids = {}
    for name, flags in [("literal", []), ("allowed", ["--allow-control-text"]),
                        ("tokenizers", ["--engine", "tokenizers"])]:
        out = tmp_path / name
        res = CliRunner().invoke(main, ["prepare", str(src), "--out", str(out), "--quiet", "--no-cache"] + flags)
        assert res.exit_code == 0, res.output
        ids[name] = datasets.load_from_disk(str(out))["train"][0]["input_ids"]
        report = json.loads((out / "report.json").read_text())
        assert report["engine"]["requested"] == ("tokenizers" if name == "tokenizers" else "auto")
    reference = tok.apply_chat_template(conv)["input_ids"]
    assert ids["allowed"] == reference  # apply_chat_template's behaviour: the user's text became a control token
    assert ids["literal"].count(end_id) == reference.count(end_id) - 1
    assert ids["tokenizers"] == ids["literal"]


def test_stream_text_field(tmp_path):
    src = tmp_path / "docs.jsonl"
    write_jsonl(src, [{"body": "alpha beta gamma " * 20}, {"body": "delta epsilon " * 20}])
    out = tmp_path / "s"
    res = CliRunner().invoke(main, ["prepare", str(src), "--out", str(out), "--quiet", "--stream", "--pack", "wrap",
                                    "--block-size", "16", "--text-field", "body"])
    assert res.exit_code == 0, res.output
    assert datasets.load_from_disk(str(out))["train"].num_rows > 0
    bad = CliRunner().invoke(main, ["prepare", str(src), "--out", str(tmp_path / "t"), "--stream", "--pack", "wrap",
                                    "--block-size", "16"])
    assert bad.exit_code != 0 or json.loads((tmp_path / "t" / "report.json").read_text())["rejected"] == 2


def test_chat_flags_history_train_roles_add_eos(tmp_path):
    """--history per-turn, --train-roles and --add-eos reach the pipeline; a bad --train-roles is named."""
    from templates_support import template_path, template_tokenizer

    tok = template_tokenizer("glm-4.5")
    tok_dir = tmp_path / "glm_tok"
    tok.save_pretrained(tok_dir)
    conv = [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!"},
            {"role": "user", "content": "Bye"}, {"role": "assistant", "content": "Ciao"}]
    src = write_jsonl(tmp_path / "c.jsonl", [{"messages": conv}])
    out = tmp_path / "o"
    args = ["prepare", str(src), "--out", str(out), "--tokenizer", str(tok_dir), "--template",
            str(template_path("glm-4.5")), "--no-cache"]
    refused = CliRunner().invoke(main, args + ["--history", "per-turn"])
    assert refused.exit_code != 0 and "--history per-turn cannot be combined with --dedup exact" in refused.output
    result = CliRunner().invoke(main, args + ["--history", "per-turn", "--dedup", "none", "--train-roles",
                                              "user,assistant", "--add-eos"])
    assert result.exit_code == 0, result.output
    rows = datasets.load_from_disk(str(out))["train"]
    assert len(rows) == 2
    report = json.loads((out / "report.json").read_text())
    assert report["chat"]["history"]["rows"] == 2 and report["chat"]["no_stop_token"]["eos_added"] == 2
    assert report["options"]["train_roles"] == ["user", "assistant"] and report["options"]["add_eos"] is True
    for row in rows:
        assert row["input_ids"][-1] == row["labels"][-1] == tok.eos_token_id
    # the doctor (run on the written rows) sees the eos --add-eos appended: a note, not an error
    stop = [f for f in report["doctor"]["findings"] if f["id"] == "no-stop-token"]
    assert [f["severity"] for f in stop] == ["info"] and "--add-eos appended the eos" in stop[0]["message"]
    trained = tok.decode([t for t, lab in zip(rows[1]["input_ids"], rows[1]["labels"]) if lab != IGNORE_INDEX])
    assert trained == "Bye\n<think></think>\nCiao<|endoftext|>"  # the user turn is trained too, once
    plain = CliRunner().invoke(main, args[:-1] + ["--out", str(tmp_path / "p"), "--no-cache"])
    assert plain.exit_code == 0 and "won't learn to stop" in plain.output and "--add-eos" in plain.output
    bad = CliRunner().invoke(main, args + ["--out", str(tmp_path / "x"), "--train-roles", "assistant,robot"])
    assert bad.exit_code == 1 and "--train-roles 'assistant,robot'" in bad.output and "Traceback" not in bad.output

"""The README's chat-data commands run as written (from a copy of the files they name), and do what the
README says: the example file prepares without a reject, one row per trained reply with --history per-turn."""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path

import datasets
from click.testing import CliRunner

from llmprep.cli import main
from llmprep.tokenizer import load_tokenizer

ROOT = Path(__file__).resolve().parents[1]


def readme_commands(section: str) -> list[str]:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    body = text.split(f"## {section}", 1)[1].split("\n## ", 1)[0]
    return [line for block in re.findall(r"```bash\n(.*?)```", body, re.S) for line in block.splitlines()
            if line.startswith("llmprep ")]


def test_chat_data_commands_run_as_written(tmp_path, monkeypatch):
    commands = readme_commands("Chat data: tool calls, reasoning, and the label rule")
    assert len(commands) == 4
    for rel in ("docs/examples/agent.jsonl", "tests/assets/templates/qwen3.jinja"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_bytes((ROOT / rel).read_bytes())
    monkeypatch.chdir(tmp_path)
    outputs = []
    for cmd in commands:
        result = CliRunner().invoke(main, shlex.split(cmd)[1:] + (["--no-cache"] if " prepare " in cmd else []))
        assert result.exit_code == 0, (cmd, result.output)
        outputs.append(result.output)
    assert "[1] assistant tool_calls[0].function.name" in outputs[0]
    report = json.loads((tmp_path / "data/agent/report.json").read_text())
    assert report["records"] == {"read": 3, "kept": 3, "rejected": 0, "dropped": 0}
    # replies trained: the call and the answer, two reasoning turns, one of two ("train": false on the other)
    assert report["chat"]["history"] == {"mode": "per-turn", "conversations": 3, "rows": 5, "rows_dropped": 0}
    assert len(datasets.load_from_disk(str(tmp_path / "data/agent"))["train"]) == 5
    # row 1 ends with the call turn, which Qwen3 opens with an empty think block when it is the last message
    assert "trained run 1: 42 tokens [reasoning, tool call]" in outputs[2]
    tok = load_tokenizer("smollm2")
    rows = datasets.load_from_disk(str(tmp_path / "data/agent-users"))["train"]
    trained = [tok.decode([i for i, lab in zip(r["input_ids"], r["labels"]) if lab != -100]) for r in rows]
    assert "Do I need an umbrella in Oslo today?<|im_end|>" in trained[0]  # a user turn, trained
    assert "I'm not sure, sorry." not in trained[2] and "Try again?<|im_end|>" in trained[2]  # "train": false wins

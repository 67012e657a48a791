"""Paths and helpers for the doctor's tests (importable: tests/checks is on pytest's pythonpath)."""

from __future__ import annotations

import json
import site
from pathlib import Path

ASSETS = Path(__file__).parent / "assets"
TEMPLATES = ASSETS / "templates"
MISTRAL_DATA = Path(site.getsitepackages()[0]) / "mistral_common" / "data"
SAMPLE = Path(__file__).parents[2] / "src" / "llmprep" / "data" / "sample.jsonl"


def template(name: str) -> str:
    """Path of a real template under tests/checks/assets/templates. Example: "Qwen-Qwen3-0.6B" -> .../...jinja"""
    return str(TEMPLATES / f"{name}.jinja")


def sample_lines(n: int | None = None, *, multi_turn: bool = False) -> list[dict]:
    """Records of the bundled sample (real chatterbot-corpus dialogues); only multi-turn ones if asked."""
    rows = [json.loads(line) for line in SAMPLE.read_text(encoding="utf-8").splitlines()]
    if multi_turn:
        rows = [r for r in rows if len(r["messages"]) > 2]
    return rows[:n] if n else rows


def prepared(tmp_path, rows_or_file, name: str = "data", **options) -> Path:
    """Write rows as JSONL (or take a file), run llmprep prepare into tmp_path/name, return the directory."""
    from helpers import write_jsonl

    from llmprep.prepare import prepare

    src = rows_or_file if isinstance(rows_or_file, (str, Path)) else write_jsonl(tmp_path / f"{name}.jsonl",
                                                                                   rows_or_file)
    out = tmp_path / name
    prepare([str(src)], out=out, num_proc=1, progress=False, cache=False, **options)
    return out


# Records for report.html: real conversations (with duplicates), bad records (rejected), a reply too long
# for --max-length 256 (dropped with --truncation drop).
BAD = ['{"messages": [{"role": "user", "content": "Hi"}]}', '{"messages": "not a list"}', "{broken json"]


def report_rows() -> list:
    long_reply = {"messages": [{"role": "user", "content": "Tell me everything."},
                               {"role": "assistant", "content": " ".join(["word"] * 400)}]}
    return sample_lines(300) + BAD + [long_reply]


def records(path) -> list[dict]:
    return [json.loads(line) for line in open(path, encoding="utf-8")]

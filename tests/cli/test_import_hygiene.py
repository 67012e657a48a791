"""Start-up: `llmprep inspect "text"` and `llmprep prepare` of a small file never import torch, transformers,
datasets (seconds of imports), matplotlib (report.html draws its own SVG) or pandas (pyarrow imports it
on its first numpy conversion; llmprep.arrowcols converts without it) once the tokenizer has a snapshot;
the CLI itself imports none of them."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from helpers import chat, write_jsonl

from llmprep.tokenizer import load_lite_tokenizer

HEAVY = ("torch", "transformers", "datasets", "matplotlib", "pandas")
PROBE = """
import json, sys
from llmprep.cli import main
try:
    main(sys.argv[1:], standalone_mode=False)
finally:
    print(json.dumps(sorted(m for m in {heavy} if m in sys.modules)), file=sys.stderr)
"""


def heavy_imports(*args: str) -> list[str]:
    """Run the CLI in a fresh interpreter; -> the heavy modules it had imported when it finished."""
    code = PROBE.format(heavy=HEAVY)
    proc = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, env=os.environ.copy(),
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stderr.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def snapshot_ready():
    load_lite_tokenizer("smollm2")  # writes the snapshot into this session's $LLMPREP_CACHE


def test_cli_group_imports_nothing_heavy():
    assert heavy_imports("--version") == []


def test_inspect_text_without_torch_or_transformers(snapshot_ready):
    assert heavy_imports("inspect", "Hello world, 你好") == []


def test_prepare_small_file_without_torch_transformers_or_datasets(snapshot_ready, tmp_path):
    data = write_jsonl(tmp_path / "c.jsonl", [{"messages": chat("Hi", "Hello!")}] * 20)
    assert heavy_imports("prepare", str(data), "--out", str(tmp_path / "out"), "--no-cache", "--quiet") == []
    cache_args = ["--cache-dir", str(tmp_path / "cache")]
    for out in ("first", "served-from-cache"):  # writing cache entries, then reading them back
        assert heavy_imports("prepare", str(data), "--out", str(tmp_path / out), "--quiet", *cache_args) == []

"""A run killed with SIGKILL after a checkpoint and resumed with the same command + --resume ends with the
same weights as an uninterrupted run (CPU, float32: max |diff| <= 1e-5); while unfinished, OUT never
loads as a model; incomplete checkpoints are never resumed from."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from safetensors.torch import load_file
from train_helpers import cli, read_jsonl

from llmprep import store
from llmprep.errors import OutputError
from llmprep.models import RUN_FILE
from llmprep.store import read_marker, write_marker
from llmprep.train.checkpoints import drop_incomplete, is_complete, newest_complete
from llmprep.train.rundir import RunDir

STEPS, SAVE = 40, 5


def _args(data, model, out) -> list[str]:
    return ["train", str(data), "--model", str(model), "--out", str(out), "--max-steps", str(STEPS), "--batch-size",
            "2", "--save-steps", str(SAVE), "--logging-steps", "1", "--lr", "5e-3", "--seed", "0", "--cpu", "--quiet"]


def _kill_after_first_checkpoint(args: list[str], out: Path) -> None:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    proc = subprocess.Popen([sys.executable, "-m", "llmprep.cli", *args], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    deadline = time.time() + 240
    try:
        while time.time() < deadline and proc.poll() is None:
            if newest_complete(out / "checkpoints") is not None:
                proc.send_signal(signal.SIGKILL)
                break
            time.sleep(0.02)
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == -signal.SIGKILL, proc.stderr.read().decode()[-2000:]


def test_sigkill_then_resume_equals_uninterrupted(tiny_dir, chat_data, tmp_path):
    data = chat_data / "plain"
    ref, out = tmp_path / "ref", tmp_path / "killed"
    cli(*_args(data, tiny_dir, ref))
    _kill_after_first_checkpoint(_args(data, tiny_dir, out), out)

    # Unfinished: no model at the top, status running, and every loader says so
    assert not (out / "config.json").exists()
    assert json.loads((out / RUN_FILE).read_text())["status"] == "running"
    res = cli("generate", "--model", out, "Hi", expect=1)
    assert "an unfinished `llmprep train` run" in res.output and "--resume" in res.output
    res = cli(*_args(data, tiny_dir, out), expect=1)  # same command without --resume
    assert "holds an unfinished run" in res.output and "add --resume" in res.output
    res = cli(*_args(data, tiny_dir, out), "--resume", "--lora", expect=1)  # not the same run
    assert "was started with other settings" in res.output and "lora: False -> True" in res.output

    cli(*_args(data, tiny_dir, out), "--resume")
    a, b = load_file(str(ref / "model.safetensors")), load_file(str(out / "model.safetensors"))
    assert a.keys() == b.keys()
    worst = max(float((a[k] - b[k]).abs().max()) for k in a)
    assert worst <= 1e-5, worst
    steps = [r["step"] for r in read_jsonl(out / "metrics.jsonl") if "loss" in r]
    assert steps == list(range(1, STEPS + 1))  # rows logged after the checkpoint by the killed run were dropped
    assert json.loads((out / RUN_FILE).read_text())["status"] == "finished"


def test_resume_skips_an_incomplete_newest_checkpoint(tmp_path):
    root = tmp_path / "checkpoints"
    for step, state in [(10, {"global_step": 10}), (20, {"global_step": 20}), (30, None)]:
        d = root / f"checkpoint-{step}"
        d.mkdir(parents=True)
        (d / "model.safetensors").write_bytes(b"x")
        if state is not None:
            (d / "trainer_state.json").write_text(json.dumps(state))
    (root / "checkpoint-20" / "trainer_state.json").write_text('{"global_step": 2')  # torn write
    assert [is_complete(root / f"checkpoint-{s}") for s in (10, 20, 30)] == [True, False, False]
    assert newest_complete(root).name == "checkpoint-10"
    assert drop_incomplete(root) == ["checkpoint-20", "checkpoint-30"]
    assert [p.name for p in root.iterdir()] == ["checkpoint-10"]


def test_resume_without_a_run_is_an_error(tiny_dir, chat_data, tmp_path):
    res = cli("train", chat_data / "plain", "--model", tiny_dir, "--out", tmp_path / "new", "--resume", expect=1)
    assert "holds no run to resume" in res.output and not (tmp_path / "new").exists()


@pytest.mark.parametrize("what", ["user-dir", "finished", "prepared", "is-data", "in-data"])
def test_out_that_is_not_ours_finished_or_an_input_is_refused(what, tiny_dir, chat_data, tmp_path):
    """llmprep.store's --out rules, applied before the model loads: nothing in OUT changes."""
    out = tmp_path / "out"
    data = chat_data / "plain"
    if what == "user-dir":
        out.mkdir()
        (out / "notes.txt").write_text("mine")
        expected = "holds files llmprep did not write (notes.txt)"
    elif what == "finished":
        out.mkdir()
        (out / RUN_FILE).write_text(json.dumps({"status": "finished"}))
        write_marker(out, "llmprep train")
        expected = "holds a finished training run"
    elif what == "prepared":  # another llmprep output: a run is never written over it
        shutil.copytree(data, out)
        expected = "holds the output of `llmprep prepare`, not a training run"
    else:
        out = data if what == "is-data" else data / "run"
        expected = "is also an input" if what == "is-data" else "lies inside an input"
    before = sorted(p.name for p in out.iterdir()) if out.exists() else None
    res = cli("train", data, "--model", tiny_dir, "--out", out, "--max-steps", "1", expect=1)
    assert expected in res.output and "Traceback" not in res.output, res.output
    assert (sorted(p.name for p in out.iterdir()) if out.exists() else None) == before


def test_failed_run_in_an_empty_folder_keeps_the_folder(tiny_dir, chats_jsonl, tmp_path):
    """A run that fails after it began (raw data prepared into OUT/data, then no test split for
    --eval-steps) and before its first checkpoint removes what it wrote, not the user's empty folder."""
    out = tmp_path / "mine"
    out.mkdir()
    res = cli("train", chats_jsonl, "--model", tiny_dir, "--tokenizer", "smollm2", "--out", out, "--max-steps", "1",
              "--eval-steps", "1", "--max-length", "64", "--quiet", expect=1)
    assert "--eval-steps: no test split to evaluate on; pass --test-size" in res.output, res.output
    assert out.is_dir() and list(out.iterdir()) == []


def test_resume_removes_what_a_kill_during_data_preparation_left(tmp_path):
    """A run killed while preparing raw DATA into OUT/data leaves prepare's temp dir in OUT: the main
    process removes it (its process is gone) before checking OUT; another rank never removes anything."""
    run = RunDir(tmp_path / "run")
    run.begin({"task": "causal-lm", "config": {}}, None)
    assert read_marker(run.out)["command"] == "llmprep train"
    stale = run.out / f".data.tmp-{store._host()}-999999999-abcd1234"  # no such pid
    stale.mkdir()
    (stale / "report.json").write_text("{}")
    with pytest.raises(OutputError, match=r"also holds files llmprep did not write \(\.data\.tmp-"):
        run.check_place(resume=True, main=False)
    assert stale.is_dir()
    assert run.check_place(resume=True)["status"] == "running" and not stale.exists()

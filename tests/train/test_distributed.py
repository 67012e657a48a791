"""Two ranks on CPU (gloo) under `accelerate launch --multi_gpu --num_processes 2` train exactly like one
process with the combined batch (same loss every step, same weights), raw input is prepared once, by the
main process, not once per rank, and only the main process writes the run directory."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file
from train_helpers import cli, read_jsonl

# Installed in every process of the launch (launcher and ranks) through PYTHONPATH: logs each write under
# LLMPREP_AUDIT_ROOT (open for writing, mkdir of a new folder, rename, remove, rmtree) to one file per process,
# named by its RANK. Python-level writes only: safetensors / torch.save write their bytes natively, but the
# folders they write into and Trainer's renames go through Python.
AUDIT_HOOK = """
import os, sys
_root, _log = os.environ.get("LLMPREP_AUDIT_ROOT"), os.environ.get("LLMPREP_AUDIT_LOG")
if _root and _log:
    _rank = os.environ.get("RANK", "launcher")
    _fh = open(f"{_log}-{_rank}-{os.getpid()}.txt", "a", buffering=1)
    _WRITE = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND

    def _hook(event, args):
        if event == "open":
            path, mode, flags = args[0], args[1], args[2]
            writes = any(c in mode for c in "wax+") if isinstance(mode, str) else bool((flags or 0) & _WRITE)
            paths = [path] if writes else []
        elif event == "os.mkdir":
            paths = [] if os.path.isdir(args[0]) else [args[0]]  # makedirs(exist_ok=True) of an existing one
        elif event in ("os.rename", "os.remove", "os.rmdir", "shutil.rmtree", "os.truncate"):
            paths = [a for a in args[:2] if isinstance(a, (str, bytes, os.PathLike))]
        else:
            return
        for p in paths:
            p = os.path.abspath(os.fsdecode(p)) if not isinstance(p, int) else ""
            if p.startswith(_root):
                _fh.write(event + " " + p + "\\n")

    sys.addaudithook(_hook)
"""


def _rank_writes(log_dir) -> dict[str, list[str]]:
    """{rank: ["open /abs/path", ...]} from the audit logs of one launch."""
    out: dict[str, list[str]] = {}
    for f in sorted(log_dir.glob("audit-*.txt")):
        rank = f.name.split("-")[1]
        out.setdefault(rank, []).extend(f.read_text().splitlines())
    return out


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


COMMON = ["--max-steps", "3", "--lr", "1e-2", "--warmup", "0", "--logging-steps", "1", "--max-length", "128",
          "--seed", "0", "--cpu", "--quiet", "--tokenizer", "smollm2"]


@pytest.fixture(scope="module")
def one_process(tiny_dir, chats_jsonl, tmp_path_factory):
    out = tmp_path_factory.mktemp("one") / "run"
    cli("train", chats_jsonl, "--model", tiny_dir, *COMMON, "--out", out, "--batch-size", "4")
    return out


@pytest.mark.parametrize("engine", ["ddp", "fsdp"])
def test_two_cpu_ranks_equal_one_process_with_the_combined_batch(engine, one_process, tiny_dir, chats_jsonl,
                                                                  tmp_path):
    launch = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
              "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
              "--main_process_port", str(_free_port()), "-m", "llmprep.cli"]
    hook, logs = tmp_path / "hook", tmp_path / "logs"
    hook.mkdir()
    logs.mkdir()
    (hook / "sitecustomize.py").write_text(AUDIT_HOOK)
    work = tmp_path / "work"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(hook), *sys.path]), "OMP_NUM_THREADS": "1",
           "LLMPREP_AUDIT_ROOT": str(work), "LLMPREP_AUDIT_LOG": str(logs / "audit")}
    two = work / "two"
    args = ["train", str(chats_jsonl), "--model", str(tiny_dir), *COMMON, "--out", str(two), "--batch-size", "2",
            "--save-steps", "2"]
    proc = subprocess.run(launch + args + (["--fsdp"] if engine == "fsdp" else []), env=env, capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert (proc.stdout + proc.stderr).count("llmprep train: preparing") == 1  # once, by the main process
    # Only the main process writes the run; the other rank's only own files are HF Trainer's per-rank RNG
    # states inside each checkpoint (torch.save, native: seen as files, not in the log).
    writes = _rank_writes(logs)
    assert any(w.endswith("/two/.llmprep.json") for w in writes["0"])  # the hook is installed and sees rank 0
    assert [w for r, ws in writes.items() if r != "0" for w in ws
            if not re.fullmatch(r"os\.mkdir .*/two/checkpoints/checkpoint-2", w)] == []
    assert sorted(p.name for p in (two / "checkpoints" / "checkpoint-2").glob("rng_state*")) == [
        "rng_state_0.pth", "rng_state_1.pth"]

    loss2, loss1 = ([r["loss"] for r in read_jsonl(d / "metrics.jsonl") if "loss" in r] for d in (two, one_process))
    assert len(loss1) == 3
    torch.testing.assert_close(torch.tensor(loss2), torch.tensor(loss1), rtol=1e-5, atol=1e-5)
    a, b = (load_file(str(d / "model.safetensors")) for d in (two, one_process))
    assert a.keys() == b.keys()
    # FSDP reduce-scatters gradients shard by shard (another summation order than DDP's all-reduce), and
    # Adam's m / sqrt(v) magnifies those last-bit differences on near-zero gradients: measured max 8e-5.
    atol = 1e-5 if engine == "ddp" else 2e-4
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=1e-4, atol=atol, msg=key)
    assert (two / "data" / "report.json").is_file()
    runs = [json.loads((d / "llmprep-run.json").read_text()) for d in (two, one_process)]
    assert [r["world_size"] for r in runs] == [2, 1]
    assert runs[0]["fused_loss"] is (engine == "ddp")  # sharded weights: the model's own loss, same normalisation

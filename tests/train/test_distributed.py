"""Two ranks on CPU (gloo) under `accelerate launch --multi_gpu --num_processes 2` train exactly like one
process with the combined batch (same loss every step, same weights), and raw input is prepared once,
by the main process, not once per rank."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys

import torch
from safetensors.torch import load_file
from train_helpers import cli, read_jsonl


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_cpu_ranks_equal_one_process_with_the_combined_batch(tiny_dir, chats_jsonl, tmp_path):
    common = ["train", str(chats_jsonl), "--model", str(tiny_dir), "--max-steps", "3", "--lr", "1e-2", "--warmup", "0",
              "--logging-steps", "1", "--max-length", "128", "--seed", "0", "--cpu", "--quiet", "--tokenizer", "smollm2"]
    launch = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
              "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
              "--main_process_port", str(_free_port()), "-m", "llmprep.cli"]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(launch + common + ["--out", str(tmp_path / "two"), "--batch-size", "2"], env=env,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    log = proc.stdout + proc.stderr
    assert log.count("llmprep train: preparing") == 1  # once, by the main process
    cli(*common, "--out", tmp_path / "one", "--batch-size", "4")

    two, one = (read_jsonl(tmp_path / d / "metrics.jsonl") for d in ("two", "one"))
    loss2, loss1 = ([r["loss"] for r in rows if "loss" in r] for rows in (two, one))
    assert len(loss1) == 3
    torch.testing.assert_close(torch.tensor(loss2), torch.tensor(loss1), rtol=1e-5, atol=1e-5)
    a, b = (load_file(str(tmp_path / d / "model.safetensors")) for d in ("two", "one"))
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=1e-4, atol=1e-5, msg=key)
    assert (tmp_path / "two" / "data" / "report.json").is_file()
    runs = [json.loads((tmp_path / d / "llmprep-run.json").read_text()) for d in ("two", "one")]
    assert [r["world_size"] for r in runs] == [2, 1]

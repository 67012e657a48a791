"""RUN_DIR/metrics.jsonl (one line per logging step and per evaluation) and the loss curve PNG.

    {"step": 10, "epoch": 0.4, "loss": 2.31, "grad_norm": 1.9, "learning_rate": 1.9e-05}
    {"step": 10, "epoch": 0.4, "eval_loss": 2.28, "eval_perplexity": 9.77}
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

from transformers import TrainerCallback

METRICS = "metrics.jsonl"
LOSS_PNG = "loss.png"


class MetricsLog(TrainerCallback):
    """Append every `on_log` record to RUN_DIR/metrics.jsonl (main process only), flushed per line."""

    def __init__(self, run_dir: Path):
        self.path = Path(run_dir) / METRICS

    def on_log(self, args, state, control, logs=None, **kwargs):
        if not state.is_world_process_zero or not logs:
            return
        row = {"step": state.global_step, "epoch": round(state.epoch or 0.0, 4)}
        row.update({k: _plain(v) for k, v in logs.items()})
        with open(self.path, "a", encoding="utf-8") as fh:
            fh.write(json.dumps(row) + "\n")


def _plain(value):
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)  # JSON has no NaN/inf
    return value


def read_metrics(run_dir: Path) -> list[dict]:
    """Rows of metrics.jsonl; a torn last line (a killed run) is skipped."""
    path = Path(run_dir) / METRICS
    rows = []
    if path.is_file():
        for line in path.read_text(encoding="utf-8").splitlines():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:
                continue
    return rows


def truncate_metrics(run_dir: Path, step: int) -> int:
    """Keep only rows up to `step` (a resume from checkpoint-`step` replays what came after). Returns rows kept."""
    rows = [r for r in read_metrics(run_dir) if r.get("step", 0) <= step]
    path = Path(run_dir) / METRICS
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")  # llmprep.store's temp-file pattern
    tmp.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    tmp.replace(path)
    return len(rows)


def plot_loss(run_dir: Path, out: Path | None = None) -> Path | None:
    """Train loss (every logging step) and eval loss (every evaluation) against the step, as a PNG.

    Returns the path, or None when there is nothing to plot. Example: runs/t -> runs/t/loss.png
    """
    rows = read_metrics(run_dir)
    train = [(r["step"], r["loss"]) for r in rows if isinstance(r.get("loss"), (int, float))]
    evals = [(r["step"], r["eval_loss"]) for r in rows if isinstance(r.get("eval_loss"), (int, float))]
    if not train and not evals:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4), dpi=100)
    if train:
        ax.plot(*zip(*train), label="train loss", color="tab:blue")
    if evals:
        ax.plot(*zip(*evals), label="eval loss", color="tab:orange", marker="o")
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("loss")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    out = Path(out) if out else Path(run_dir) / LOSS_PNG
    fig.savefig(out)
    plt.close(fig)
    return out

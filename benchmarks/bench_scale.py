"""Benchmark: time and peak memory of `llmprep prepare` against input size, local vs Ray.

    python benchmarks/bench_scale.py                          # 20k, 200k, 2M chats; local and ray
    python benchmarks/bench_scale.py --sizes 20000 200000     # smaller sets
    python benchmarks/bench_scale.py --executors local --png docs/scale.png --json out/scale.json

Inputs: benchmarks/data.py's 20,000-conversation set (real chatterbot-corpus text, ~3.4M tokens),
repeated and perturbed up to each size (copy k > 0 of a conversation gets " #k" appended to every
user message: new text, new tokens, the same shape). Each run is a whole `llmprep prepare` process
(--no-cache, --quiet, default --num-proc), started fresh; the input file is written beforehand.

Memory is the peak, over the run, of the resident set size (RSS) summed over the whole process tree
(the main process + its workers, + Ray's processes for --executor ray), sampled every 0.1 s with
psutil; shared pages are counted once per process (the conservative figure). MB = 10^6 bytes.
Targets (issue 9): flat — the largest run within 1.3x of the smallest — and under 1.5 GB (local).
Disk: the peak size of --out's temp dir during the run / the final output's size (target <= 2).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent))
from data import build_conversations  # noqa: E402

BASE = 20_000
ROOT = Path(__file__).resolve().parents[1]


def write_input(path: Path, n: int, base: list) -> Path:
    """n conversations: copy k of base conversation i is it with " #k" after every user message."""
    with open(path, "w", encoding="utf-8") as fh:
        for j in range(n):
            k, conv = divmod(j, len(base))
            conv = base[conv]
            if k:
                conv = [dict(m, content=m["content"] + f" #{k}") if m["role"] == "user" else m for m in conv]
            fh.write(json.dumps({"messages": conv}, ensure_ascii=False) + "\n")
    return path


def tree_rss(proc: psutil.Process) -> int:
    """RSS summed over the process and its descendants; one that exits meanwhile counts 0 (its exit, or a
    child's between listing and reading, must not end the sampling: the peak would be cut short)."""
    total = 0
    try:
        family = [proc] + proc.children(recursive=True)
    except psutil.Error:
        family = [proc]
    for p in family:
        try:
            total += p.memory_info().rss
        except psutil.Error:
            pass
    return total


def dir_size(path: Path) -> int:
    total = 0
    for root, _, files in os.walk(path):
        for f in files:
            try:
                total += os.path.getsize(os.path.join(root, f))
            except OSError:
                pass
    return total


def run_once(src: Path, out: Path, executor: str, extra: list[str]) -> dict:
    """One `llmprep prepare` process: wall seconds, peak tree RSS, peak temp-dir bytes, output bytes."""
    cmd = [sys.executable, "-m", "llmprep.cli", "prepare", str(src), "--out", str(out), "--quiet", "--no-cache",
           "--executor", executor] + extra
    env = dict(os.environ, PYTHONPATH=str(ROOT / "src"))
    started = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    ps = psutil.Process(proc.pid)
    peak = {"rss": 0, "disk": 0}

    def sample():
        while proc.poll() is None:
            peak["rss"] = max(peak["rss"], tree_rss(ps))
            for tmp in out.parent.glob(f".{out.name}.tmp-*"):
                peak["disk"] = max(peak["disk"], dir_size(tmp))
            time.sleep(0.1)

    t = threading.Thread(target=sample, daemon=True)
    t.start()
    _, err = proc.communicate()
    seconds = time.perf_counter() - started
    t.join()
    if proc.returncode != 0:
        raise SystemExit(f"prepare failed ({executor}): {err[-2000:]}")
    report = json.loads((out / "report.json").read_text())
    size = dir_size(out)
    return {"executor": executor, "seconds": round(seconds, 2), "peak_rss_mb": round(peak["rss"] / 1e6, 1),
            "peak_temp_mb": round(peak["disk"] / 1e6, 1), "output_mb": round(size / 1e6, 1),
            "disk_ratio": round(peak["disk"] / size, 2) if size else None, "rows": report["records"]["kept"],
            "tokens": report["tokens"]["total"]}


def plot(results: list[dict], png: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 4))
    for ex in sorted({r["executor"] for r in results}):
        rs = sorted((r for r in results if r["executor"] == ex), key=lambda r: r["chats"])
        xs = [r["chats"] for r in rs]
        ax1.plot(xs, [r["peak_rss_mb"] for r in rs], marker="o", label=ex)
        ax2.plot(xs, [r["seconds"] for r in rs], marker="o", label=ex)
    ax1.axhline(1500, color="grey", linestyle="--", linewidth=1, label="1.5 GB target")
    for ax, title, unit in ((ax1, "peak RSS, whole process tree", "MB (10^6 bytes)"), (ax2, "wall time", "seconds")):
        ax.set_xscale("log")
        ax.set_xlabel("chats")
        ax.set_ylabel(unit)
        ax.set_title(title)
        ax.grid(True, alpha=0.3)
        ax.legend()
    ax1.set_ylim(bottom=0)
    fig.suptitle("llmprep prepare: memory and time against input size")
    fig.tight_layout()
    png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(png, dpi=110)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", type=int, nargs="+", default=[20_000, 200_000, 2_000_000])
    ap.add_argument("--executors", nargs="+", default=["local", "ray"], choices=["local", "ray"])
    ap.add_argument("--extra", default="", help="more prepare flags, e.g. '--num-proc 2 --test-size 0.01'")
    ap.add_argument("--png", type=Path, default=ROOT / "docs" / "scale.png")
    ap.add_argument("--json", type=Path, default=None, help="also write the results here")
    ap.add_argument("--workdir", type=Path, default=None)
    ap.add_argument("--previous", type=Path, nargs="*", default=[],
                    help="--json files of earlier runs to include in the table and curves (run sizes apart)")
    args = ap.parse_args()
    work = Path(args.workdir or tempfile.mkdtemp(prefix="bench-scale-"))
    work.mkdir(parents=True, exist_ok=True)
    base = build_conversations(BASE, seed=0)
    results = [r for p in args.previous for r in json.loads(p.read_text())]
    for n in sorted(args.sizes):
        src = write_input(work / f"chats-{n}.jsonl", n, base)
        for ex in args.executors:
            out = work / f"out-{n}-{ex}"
            r = {"chats": n, "input_mb": round(src.stat().st_size / 1e6, 1),
                 **run_once(src, out, ex, args.extra.split())}
            results.append(r)
            print(json.dumps(r), flush=True)
            subprocess.run(["rm", "-rf", str(out)], check=False)
        src.unlink()
    print(f"\n{'chats':>10} {'executor':>8} {'seconds':>8} {'peak MB':>8} {'tokens':>12} {'disk x':>7}")
    for r in results:
        print(f"{r['chats']:>10,} {r['executor']:>8} {r['seconds']:>8.1f} {r['peak_rss_mb']:>8.0f} "
              f"{r['tokens']:>12,} {r['disk_ratio'] or 0:>7.2f}")
    results.sort(key=lambda r: (r["chats"], r["executor"]))
    for ex in sorted({r["executor"] for r in results}):
        rs = sorted((r for r in results if r["executor"] == ex), key=lambda r: r["chats"])
        if len(rs) > 1:
            ratio = rs[-1]["peak_rss_mb"] / rs[0]["peak_rss_mb"]
            print(f"{ex}: peak memory {rs[-1]['chats']:,} / {rs[0]['chats']:,} chats = {ratio:.2f}x "
                  f"(target <= 1.3x); largest {rs[-1]['peak_rss_mb']:.0f} MB (target < 1500 MB for local)")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=2))
    plot(results, args.png)
    print(f"curves: {args.png}")


if __name__ == "__main__":
    main()

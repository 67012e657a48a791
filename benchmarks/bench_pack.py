"""Benchmark packing (llmprep global BFD vs TRL pack_dataset bfd) and streaming memory.

    python benchmarks/bench_pack.py pack   [--n 20000] [--max-length 2048]
    python benchmarks/bench_pack.py stream [--corpus-mb 200] [--block-size 2048]

`pack`: 20,000 synthetic conversations whose lengths follow a long-tailed lognormal, rendered with
the SmolLM2 chat template and tokenized; both packers get the same token ids; prints time and fill.
`stream`: writes a generated corpus to disk, then streams it in a child process and reports the peak
RSS growth over the process baseline (tokenizer loaded), next to the corpus size.
"""

from __future__ import annotations

import argparse
import json
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

WORDS = ("the model data token packing attention example training batch length sequence learning "
         "rate loss gradient layer vector memory row block document corpus user assistant answer "
         "question python code function return value list dictionary string number").split()


def conversations(n: int, seed: int = 0) -> list[list[dict]]:
    """n chats; words per chat ~ lognormal(median 250, sigma 1.1), 1-4 turns. Example: n=1 -> [[user, assistant]]"""
    rng = np.random.default_rng(seed)
    words = np.clip(rng.lognormal(np.log(250), 1.1, n).astype(int), 4, 6000)
    turns = rng.integers(1, 5, n)
    rnd = random.Random(seed)
    chats = []
    for total, t in zip(words.tolist(), turns.tolist()):
        msgs = []
        for i in range(2 * t):
            k = max(1, total // (2 * t) if i % 2 else total // (6 * t))
            msgs.append({"role": "assistant" if i % 2 else "user", "content": " ".join(rnd.choices(WORDS, k=k))})
        chats.append(msgs)
    return chats


def bench_pack(n: int, max_length: int) -> dict:
    """Tokenize n chats, truncate to max_length, pack with llmprep (global BFD) and TRL (bfd)."""
    from datasets import Dataset
    from trl.data_utils import pack_dataset

    import pyarrow as pa

    from llmprep.output import list_column
    from llmprep.pack import bfd_bins, pack_bfd_arrays, pack_examples
    from llmprep.tokenizer import load_tokenizer

    tok = load_tokenizer("smollm2")
    t0 = time.perf_counter()
    texts = [tok.apply_chat_template(c, tokenize=False) for c in conversations(n)]
    ids = [x[:max_length] for x in tok(texts, add_special_tokens=False)["input_ids"]]
    lengths = np.array([len(x) for x in ids])
    print(f"tokenized {n} chats in {time.perf_counter() - t0:.1f}s: tokens median {int(np.median(lengths))}, "
          f"p90 {int(np.percentile(lengths, 90))}, p99 {int(np.percentile(lengths, 99))}, "
          f"truncated at {max_length}: {(lengths == max_length).mean():.2%}")

    t0 = time.perf_counter()
    cols, stats = pack_examples({"input_ids": ids, "labels": ids}, strategy="bfd", max_length=max_length,
                                pad_token_id=tok.pad_token_id)
    ours_s = time.perf_counter() - t0

    t0 = time.perf_counter()
    bfd_bins(lengths, max_length)
    bins_s = time.perf_counter() - t0

    # prepare's path: flat arrays in, Arrow-backed Dataset out (what `llmprep prepare --pack bfd` runs).
    flat = np.fromiter((t for x in ids for t in x), dtype=np.int64, count=int(lengths.sum()))
    offsets = np.concatenate([[0], np.cumsum(lengths)])
    t0 = time.perf_counter()
    arr_cols, arr_stats = pack_bfd_arrays(flat, flat, offsets, max_length)
    Dataset(pa.table({k: list_column(v, off) for k, (v, off) in arr_cols.items()}))
    arrays_s = time.perf_counter() - t0
    assert arr_stats == stats, "array and list packers disagree"

    ds = Dataset.from_dict({"input_ids": ids})
    t0 = time.perf_counter()
    packed = pack_dataset(ds, max_length, strategy="bfd")
    trl_s = time.perf_counter() - t0
    trl_rows = len(packed)
    trl_fill = int(lengths.sum()) / (trl_rows * max_length)

    result = {"examples": n, "tokens": int(lengths.sum()), "max_length": max_length,
              "llmprep": {"rows": stats["rows"], "fill": stats["fill"], "seconds": round(ours_s, 3),
                          "bin_assignment_seconds": round(bins_s, 3),
                          "arrays_to_dataset_seconds": round(arrays_s, 3)},
              "trl": {"rows": trl_rows, "fill": round(trl_fill, 6), "seconds": round(trl_s, 3)},
              "row_ratio_trl_over_llmprep": round(trl_rows / stats["rows"], 4),
              "time_ratio_llmprep_over_trl": round(ours_s / trl_s, 2),
              "time_ratio_llmprep_arrays_over_trl": round(arrays_s / trl_s, 2)}
    print(f"llmprep bfd (global):  {stats['rows']} rows, fill {stats['fill']:.4%}, {ours_s:.2f}s "
          f"(all 5 output columns; bin assignment alone {bins_s:.2f}s)")
    print(f"llmprep bfd, prepare's array path to a Dataset: {arrays_s:.2f}s")
    print(f"trl pack_dataset bfd:  {trl_rows} rows, fill {trl_fill:.4%}, {trl_s:.2f}s")
    print(f"rows trl/llmprep = {result['row_ratio_trl_over_llmprep']}, "
          f"time llmprep/trl = {result['time_ratio_llmprep_over_trl']} (lists), "
          f"{result['time_ratio_llmprep_arrays_over_trl']} (arrays, prepare's path)")
    return result


def write_corpus(path: Path, megabytes: int, seed: int = 0) -> int:
    """Write ~megabytes of paragraphs (lognormal lengths) without holding them in memory; return bytes."""
    rng = random.Random(seed)
    target = megabytes * 1_000_000
    written = 0
    with open(path, "w", encoding="utf-8") as fh:
        while written < target:
            k = max(3, int(rng.lognormvariate(np.log(120), 1.0)))
            para = " ".join(rng.choices(WORDS, k=k)) + ".\n\n"
            fh.write(para)
            written += len(para)
    return written


CHILD = """
import json, resource, sys, time
from llmprep.stream import prepare_stream
from llmprep.tokenizer import load_tokenizer
tok = load_tokenizer("smollm2")
tok(["warm up"] * 8)
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
t0 = time.perf_counter()
report = prepare_stream([sys.argv[1]], tokenizer=tok, out=sys.argv[2], block_size=int(sys.argv[3]))
secs = time.perf_counter() - t0
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"baseline_rss_mb": base / 1024, "peak_rss_mb": peak / 1024, "seconds": secs,
                  "rows": report["packing"]["rows"], "tokens": report["packing"]["tokens"],
                  "documents": report["documents"]}))
"""


def bench_stream(corpus_mb: int, block_size: int) -> dict:
    """Stream a generated corpus in a child process; report peak RSS growth vs corpus size."""
    with tempfile.TemporaryDirectory() as d:
        corpus = Path(d) / "corpus.txt"
        size = write_corpus(corpus, corpus_mb)
        out = subprocess.run([sys.executable, "-c", CHILD, str(corpus), str(Path(d) / "out"), str(block_size)],
                             capture_output=True, text=True, check=True)
        result = json.loads(out.stdout.strip().splitlines()[-1])
    result["corpus_mb"] = round(size / 1e6, 1)
    result["rss_growth_mb"] = round(result["peak_rss_mb"] - result["baseline_rss_mb"], 1)
    print(f"streamed {result['corpus_mb']} MB ({result['documents']} docs, {result['tokens']} tokens, "
          f"{result['rows']} rows) in {result['seconds']:.1f}s; RSS baseline {result['baseline_rss_mb']:.0f} MB, "
          f"peak {result['peak_rss_mb']:.0f} MB, growth {result['rss_growth_mb']} MB "
          f"= {result['rss_growth_mb'] / result['corpus_mb']:.2f} x corpus")
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("what", choices=["pack", "stream", "all"], nargs="?", default="all")
    parser.add_argument("--n", type=int, default=20_000)
    parser.add_argument("--max-length", type=int, default=2048)
    parser.add_argument("--corpus-mb", type=int, default=200)
    parser.add_argument("--block-size", type=int, default=2048)
    args = parser.parse_args()
    if args.what in ("pack", "all"):
        bench_pack(args.n, args.max_length)
    if args.what in ("stream", "all"):
        bench_stream(args.corpus_mb, args.block_size)


if __name__ == "__main__":
    main()

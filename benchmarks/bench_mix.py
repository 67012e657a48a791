"""Benchmark dedup and decontamination (issue 12): llmprep vs plain datasketch / pure Python, same run.

    python benchmarks/bench_mix.py                     # 20,000 and 200,000 conversations
    python benchmarks/bench_mix.py --sizes 2000        # smoke run
    python benchmarks/bench_mix.py --cjk-ngram         # the CJK n-gram length measurement (fortunes-zh)
    python benchmarks/bench_mix.py --prepare 20000     # whole `prepare` runs: --dedup none/exact/near, --decontaminate

Data: benchmarks/data.py's seeded conversations from real chatterbot-corpus text (the 20k set of
bench_prepare); the row text is what llmprep compares (message contents, one per line). Everything runs
in one process, one method after the other on the same texts:

| method | what is timed |
|---|---|
| llmprep exact | dedup_keys (normalise + xxh3-128) + Deduplicator.check, batches of 2,048 rows |
| python exact | normalise + a dict of normalised strings -> first row (the obvious way) |
| llmprep near | dedup_keys (units, 5-gram hashes, MinHash 128, 9 LSH band keys) + Deduplicator.check |
| datasketch near | per row: word 5-grams, datasketch.MinHash(128).update_batch, MinHashLSH(0.8) query + insert |
| llmprep decontaminate | BenchmarkIndex.match (13-gram hashes, binary search) against 2,000 held-out rows |
| python decontaminate | per row: set of 13-gram strings checked against a set (open-instruct / datatrove style) |

llmprep's keys are computed in the workers in `prepare`, its decisions in the main process: both rates
are printed (the decision rate bounds a many-core run). Prints rows/s and the ratio to the baseline, the
rows each method removed (and their overlap), and the bytes the decisions hold per kept row.
"""

from __future__ import annotations

import argparse
import re
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from data import build_conversations  # noqa: E402

from llmprep.mix.decontaminate import BenchmarkIndex, DecontConfig  # noqa: E402
from llmprep.mix.dedup import DedupConfig, Deduplicator, dedup_keys  # noqa: E402
from llmprep.mix.minhash import rensa_verified  # noqa: E402
from llmprep.mix.text import example_text, normalize_text  # noqa: E402

BATCH = 2048


def texts_of(n: int, seed: int = 0) -> list[str]:
    return [example_text("chat", {"messages": m}) for m in build_conversations(n, seed)]


def llmprep_dedup(texts: list[str], cfg: DedupConfig) -> tuple[set[int], float, float, int]:
    """Removed rows, seconds for keys, seconds for decisions, bytes held."""
    d, removed, t_keys, t_check = Deduplicator(cfg), set(), 0.0, 0.0
    for i in range(0, len(texts), BATCH):
        chunk = texts[i:i + BATCH]
        t0 = time.perf_counter()
        keys = dedup_keys(chunk, cfg)
        t1 = time.perf_counter()
        out = d.check(keys, ["bench"] * len(chunk), list(range(i + 1, i + 1 + len(chunk))))
        t_check += time.perf_counter() - t1
        t_keys += t1 - t0
        removed.update(i + j for j, x in enumerate(out) if x is not None)
    return removed, t_keys, t_check, d.nbytes()


def python_exact(texts: list[str]) -> tuple[set[int], float, int]:
    """Removed rows, seconds, bytes held (the dict and its strings)."""
    t0 = time.perf_counter()
    first: dict[str, int] = {}
    removed = set()
    for i, t in enumerate(texts):
        key = normalize_text(t)
        if key in first:
            removed.add(i)
        else:
            first[key] = i
    seconds = time.perf_counter() - t0
    return removed, seconds, sys.getsizeof(first) + sum(sys.getsizeof(k) + 28 for k in first)


def datasketch_near(texts: list[str]) -> tuple[set[int], float]:
    import datasketch

    t0 = time.perf_counter()
    lsh = datasketch.MinHashLSH(threshold=0.8, num_perm=128)
    removed = set()
    for i, t in enumerate(texts):
        words = re.findall(r"\w+", t.casefold())
        shingles = {" ".join(words[j:j + 5]) for j in range(max(1, len(words) - 4))}
        mh = datasketch.MinHash(num_perm=128)
        mh.update_batch([s.encode() for s in shingles])
        if lsh.query(mh):
            removed.add(i)
        else:
            lsh.insert(i, mh)
    return removed, time.perf_counter() - t0


def decontamination(texts: list[str], bench_texts: list[str], tmp: Path) -> dict:
    path = tmp / "bench.txt"
    path.write_text("\n".join(" ".join(b.split()) for b in bench_texts) + "\n", encoding="utf-8")
    t0 = time.perf_counter()
    index = BenchmarkIndex.build(DecontConfig((str(path),)))
    t_build = time.perf_counter() - t0
    t0 = time.perf_counter()
    hits = sum(int((index.match(texts[i:i + BATCH]) >= 0).sum()) for i in range(0, len(texts), BATCH))
    t_ours = time.perf_counter() - t0
    t0 = time.perf_counter()
    grams = set()
    for b in bench_texts:
        w = re.findall(r"\w+", b.casefold())
        grams.update(" ".join(w[j:j + 13]) for j in range(len(w) - 12))
    py_hits = 0
    for t in texts:
        w = re.findall(r"\w+", t.casefold())
        py_hits += any(" ".join(w[j:j + 13]) in grams for j in range(len(w) - 12))
    t_py = time.perf_counter() - t0
    return {"build_s": t_build, "ours_s": t_ours, "py_s": t_py, "hits": hits, "py_hits": py_hits}


def run(n: int, tmp: Path) -> None:
    t0 = time.perf_counter()
    texts = texts_of(n)
    print(f"\n== {n:,} conversations ({sum(map(len, texts)) / 1e6:.1f}M characters; built in "
          f"{time.perf_counter() - t0:.0f}s)")
    ours, tk, tc, nbytes = llmprep_dedup(texts, DedupConfig())
    ref, tp, py_bytes = python_exact(texts)
    assert ours == ref, "exact dedup differs from the python reference"
    kept = max(1, n - len(ours))
    print(f"exact   llmprep {n / (tk + tc):>10,.0f} rows/s (keys {n / tk:,.0f}/s, decisions {n / tc:,.0f}/s)  "
          f"python {n / tp:>10,.0f} rows/s  ratio {tp / (tk + tc):.2f}x  removed {len(ours):,} (identical)  "
          f"held {nbytes / kept:.0f} B/kept row vs python {py_bytes / kept:.0f} B")
    ours, tk, tc, nbytes = llmprep_dedup(texts, DedupConfig(mode="near"))
    ds, td = datasketch_near(texts)
    both = len(ours & ds) / max(1, len(ours | ds))
    print(f"near    llmprep {n / (tk + tc):>10,.0f} rows/s (keys {n / tk:,.0f}/s, decisions {n / tc:,.0f}/s)  "
          f"datasketch {n / td:>7,.0f} rows/s  ratio {td / (tk + tc):.1f}x  removed {len(ours):,} vs "
          f"{len(ds):,} (overlap {both:.0%})  held {nbytes / max(1, n - len(ours)):.0f} B/kept row  "
          f"rensa {'used' if rensa_verified(128, 1) else 'not used (numpy)'}")
    held_out = texts_of(2000, seed=12345)
    r = decontamination(texts, held_out, tmp)
    print(f"decont  llmprep {n / r['ours_s']:>10,.0f} rows/s  python {n / r['py_s']:>10,.0f} rows/s  "
          f"ratio {r['py_s'] / r['ours_s']:.1f}x  rows hit {r['hits']:,} vs {r['py_hits']:,} "
          f"(index of 2,000 items built in {r['build_s']:.2f}s)")


def prepare_cost(n: int, tmp: Path, repeat: int = 2) -> None:
    """What --dedup and --decontaminate cost inside `prepare` (keys in the workers, decisions in the main
    process, the doctor's hook): the same conversations prepared with --dedup none, exact (the default), near,
    and exact with --decontaminate (2,000 held-out conversations written backwards as benchmark items:
    the cost of matching, not of writing fewer rows), alternating, best of
    `repeat`; ratios to none."""
    from data import build_conversations, write_jsonl

    from llmprep.prepare import PrepareConfig, run

    path = write_jsonl(tmp / "chats.jsonl", build_conversations(n, 0))
    bench = tmp / "bench.txt"  # held-out conversations written backwards: a full index, (almost) no hits
    bench.write_text("\n".join(" ".join(b.split())[::-1] for b in texts_of(2000, seed=12345)) + "\n",
                     encoding="utf-8")
    modes = {"none": {"dedup": "none"}, "exact": {"dedup": "exact"}, "near": {"dedup": "near"},
             "exact + decontaminate": {"dedup": "exact", "decontaminate": (str(bench),)}}
    best: dict[str, float] = {}
    removed: dict[str, int] = {}
    for _ in range(repeat):
        for k, (mode, opts) in enumerate(modes.items()):
            t0 = time.perf_counter()
            res = run(PrepareConfig(**opts, progress=False, cache=False), [str(path)], out=tmp / f"out-{k}")
            best[mode] = min(best.get(mode, float("inf")), time.perf_counter() - t0)
            removed[mode] = res.report["records"]["rejected"]
    print(f"\n== prepare on {n:,} conversations (default workers; best of {repeat})")
    for mode in modes:
        print(f"--dedup {mode:<22} {best[mode]:>7.2f} s  {best[mode] / best['none']:.3f}x of none  "
              f"rejected {removed[mode]:,}")


def cjk_ngram() -> None:
    """Rows of one real Chinese source that share a CJK n-gram with another, unrelated one, per n."""
    from data import load_corpus

    from llmprep.mix.text import ngram_hashes

    path = Path("/usr/share/games/fortunes/chinese")
    if not path.exists():  # Debian fortunes-zh; the tests' excerpt otherwise
        path = Path(__file__).resolve().parents[1] / "tests" / "assets" / "zh_fortunes_excerpt.txt"
    raw = re.sub(r"\x1b\[[0-9;]*m", "", path.read_text(encoding="utf-8", errors="replace"))
    fortunes = [r.strip() for r in re.split(r"\n%\n|\n", raw) if len(r.strip()) >= 10]
    corpus = load_corpus()
    chats = ["\n".join(c) for lang in ("chinese", "traditionalchinese") for c in corpus[lang]]
    print(f"training rows: {len(fortunes):,} fortunes-zh lines; benchmark: {len(chats):,} chatterbot-corpus Chinese "
          "dialogues (unrelated text: every hit is a shared common phrase)")
    for n in (4, 5, 6, 8, 10, 13, 16):
        bf, _ = ngram_hashes(chats, 13, n, short_runs=False)
        tf, to = ngram_hashes(fortunes, 13, n, short_runs=False)
        rows = np.repeat(np.arange(len(fortunes)), np.diff(to))
        hit = np.unique(rows[np.isin(tf, np.unique(bf))])
        example = f"  e.g. {fortunes[hit[0]][:40]!r}" if len(hit) else ""
        print(f"  {n:>2} characters: {len(hit):>5,} rows hit{example}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", default="20000,200000", help="comma-separated numbers of conversations")
    ap.add_argument("--cjk-ngram", action="store_true", help="measure common-phrase hits per CJK n-gram length")
    ap.add_argument("--prepare", type=int, default=0, metavar="N",
                    help="time whole prepare runs on N conversations with --dedup none, exact and near")
    args = ap.parse_args()
    if args.cjk_ngram:
        cjk_ngram()
        return
    import tempfile

    if args.prepare:
        with tempfile.TemporaryDirectory() as tmp:
            prepare_cost(args.prepare, Path(tmp))
        return

    with tempfile.TemporaryDirectory() as tmp:
        for n in (int(x) for x in args.sizes.split(",")):
            run(n, Path(tmp))


if __name__ == "__main__":
    main()

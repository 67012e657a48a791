"""Smoke test of benchmarks/bench_prepare.py: 200 conversations through every method, ids identical."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_prepare.py"


def _load():
    spec = importlib.util.spec_from_file_location("bench_prepare", BENCH)
    mod = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("bench_prepare", mod)
    spec.loader.exec_module(mod)
    return mod


def test_data_is_deterministic():
    bench = _load()
    a, b = bench.build_conversations(50, seed=3), bench.build_conversations(50, seed=3)
    assert a == b and a != bench.build_conversations(50, seed=4)
    for conv in a:
        roles = [m["role"] for m in conv if m["role"] != "system"]
        assert 2 <= len(roles) <= 12 and roles[::2] == ["user"] * (len(roles) // 2)
        assert roles[1::2] == ["assistant"] * (len(roles) // 2)


def test_bench_ids_identical(tmp_path):
    bench = _load()
    result = bench.benchmark(200, seed=0, repeat=1, workdir=tmp_path, trl_procs=(None,), llmprep_procs=(1,), seeds_n=100,
                             llmprep_tokenizers_engine=False,
                             log=lambda *a, **k: None)
    assert result["checks"], result
    assert all(v == 0 for v in result["checks"].values()), result["checks"]
    assert result["tokens"] > 200 * 20
    assert {t.name.split(" ")[0].rstrip(":") for t in result["timings"]} == {"llmprep", "TRL", "seeds", "raw"}
    assert {"llmprep / TRL best", "llmprep / seeds", "llmprep / raw bound (tokenizers)"} <= set(bench.ratios(result))
    assert bench.report(result, _quiet_console())


def _quiet_console():
    import io

    from rich.console import Console

    return Console(file=io.StringIO(), width=120)

"""Smoke test of benchmarks/bench_mix.py: every method runs, exact dedup equals the python reference."""

import importlib.util
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[2] / "benchmarks" / "bench_mix.py"


def test_bench_mix_runs(tmp_path, capsys):
    spec = importlib.util.spec_from_file_location("bench_mix", BENCH)
    mod = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("bench_mix", mod)
    spec.loader.exec_module(mod)
    mod.run(300, tmp_path)  # asserts llmprep's exact dedup == the python reference
    out = capsys.readouterr().out
    assert "exact   llmprep" in out and "near    llmprep" in out and "decont  llmprep" in out
    mod.prepare_cost(40, tmp_path, repeat=1)
    out = capsys.readouterr().out
    assert all(f"--dedup {m}" in out for m in ("none ", "exact ", "near ", "exact + decontaminate"))

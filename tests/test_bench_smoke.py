"""Smoke test of benchmarks/bench_prepare.py --quick: 200 conversations through every method (ids and
labels identical), whole processes, start-up commands, every target measured."""

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


def test_quick_run_measures_every_target(tmp_path):
    """`bench_prepare.py --quick`: every method, a whole-process run of llmprep's CLI and of the TRL script,
    the start-up commands; exit 0 (ids and labels identical) and every target measured."""
    import json

    bench = _load()
    assert bench.main(["--quick", "--json", str(tmp_path / "r.json")]) == 0
    result = json.loads((tmp_path / "r.json").read_text())
    measures = {t["measure"]: t for t in result["targets"]}
    assert len(measures) == 5 and all(t["value"] != "-" for t in measures.values()), measures
    assert all(v == 0 for v in result["checks"].values())
    assert set(result["processes"]) == {"llmprep", "TRL"} and set(result["startup"]) == {
        'inspect "text"', "prepare 20 records"}
    assert {t["method"].split(" ")[0].rstrip(":") for t in result["timings"]} == {"llmprep", "TRL", "seeds", "raw"}
    assert {"llmprep / TRL best", "llmprep / seeds", "llmprep / raw bound (tokenizers)",
            "whole process: TRL / llmprep (median)"} <= set(result["ratios"])
    assert result["tokens"] > 200 * 20

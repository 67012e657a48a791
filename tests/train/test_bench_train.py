"""Smoke test of benchmarks/bench_train.py --quick: every method trains on CPU and the table prints."""

from __future__ import annotations

import json

from helpers import load_benchmark


def _load():
    return load_benchmark("bench_train")


def test_quick_run_prints_the_table(tmp_path, capsys):
    bench = _load()
    code = bench.main(["--quick", "--n", "24", "--rows", "2", "--warmup", "1", "--steps", "1", "--budget", "120",
                       "--out-dir", str(tmp_path)])
    out = capsys.readouterr().out
    assert code == 0, out
    result = json.loads((tmp_path / "bench_train.json").read_text())
    assert [r["method"] for r in result["results"]] == list(bench.METHODS)
    for r in result["results"]:
        assert r["status"] == "ok" and r["steps"] == 1 and r["real_tps"] > 0 and r["trained_tps"] > 0, r
        assert r["trained_tokens"] <= r["real_tokens"]
    assert result["loss_check"]["rel_diff"] < 1e-5  # packed == unpacked (float32 on CPU)
    assert "| llmprep packed bfd (varlen, fused loss) | ok |" in out and "llmprep packed / TRL best:" in out


def test_exported_data_round_trips(tmp_path):
    bench = _load()
    arrays = bench.prepare_arrays(12, 64)
    bench.export_arrays(arrays, tmp_path / "d.npz")
    back = bench.import_arrays(tmp_path / "d.npz")
    for key in ("ids", "labels", "offsets"):
        assert (back[key] == arrays[key]).all(), key
    cut = bench.subset(back, 5, 32)
    assert len(cut["offsets"]) == 6 and max(cut["offsets"][1:] - cut["offsets"][:-1]) <= 32

"""--executor ray: the same output bytes as local (one local Ray of 2 CPUs for the session), and a
worker killed mid-run either completes through Ray's retries or fails loudly, never shorter."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest
from click.testing import CliRunner
from helpers import a, u, write_jsonl

import llmprep.prepare as prep
from llmprep.cli import main
from llmprep.errors import LlmprepError
from llmprep.prepare import PrepareConfig, run

ray = pytest.importorskip("ray")


@pytest.fixture(scope="session")
def local_ray():
    """One local Ray (2 CPUs) shared by every test: starting Ray costs seconds."""
    started = not ray.is_initialized()
    if started:
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    yield ray
    if started:
        ray.shutdown()


def files_under(d):
    return {str(f.relative_to(d)): f.read_bytes() for f in sorted(d.rglob("*")) if f.is_file() and f.name != "run.json"}


@pytest.fixture
def inputs(tmp_path, english_chats, monkeypatch):
    monkeypatch.setattr(prep, "SHARD_SIZE", 6)
    rows = [{"messages": m} for m in english_chats[:40]]
    rows.insert(7, "{broken")
    d = tmp_path / "in"
    d.mkdir()
    write_jsonl(d / "a.jsonl", rows)
    (d / "b.json").write_text(json.dumps([{"messages": [u(f"Q{i}"), a(f"A{i}")]} for i in range(9)]))
    import pyarrow as pa
    import pyarrow.parquet as pq

    chats = [{"messages": m} for m in english_chats[40:52]]  # row groups of 4: tasks of 2 groups, then 1
    pq.write_table(pa.Table.from_pylist(chats), d / "c.parquet", row_group_size=4)
    write_jsonl(d / "d.jsonl.gz", [{"messages": m} for m in english_chats[52:66]], gzip.open)  # 14 lines: 3 tasks
    return d


def test_ray_output_identical_to_local_even_when_a_worker_is_killed(local_ray, inputs, tmp_path, monkeypatch):
    opts = dict(test_size=0.2, progress=False, cache=False)
    marker = tmp_path / "killed"
    monkeypatch.setenv("LLMPREP_RAY_KILL", f"3:{marker}")
    res = CliRunner().invoke(main, ["prepare", str(inputs), "--out", str(tmp_path / "ray"), "--quiet", "--no-cache",
                                    "--test-size", "0.2", "--executor", "ray", "--num-proc", "1"])
    assert res.exit_code == 0, res.output
    assert marker.exists()  # the worker process running task 3 was SIGKILLed, and Ray retried the task
    monkeypatch.delenv("LLMPREP_RAY_KILL")
    local = run(PrepareConfig(**opts, num_proc=2), [str(inputs)], out=tmp_path / "local")
    assert files_under(tmp_path / "local") == files_under(tmp_path / "ray")  # same bytes, nothing missing
    info = json.loads((tmp_path / "ray" / "run.json").read_text())
    # b.json: 2 tasks of <= 6 items; c.parquet: 2 tasks (8 rows: 2 shards of <= 6; 4 rows: 1 shard); d.jsonl.gz:
    # 3 tasks of <= 6 lines (its decompressed copy, read by Ray's workers)
    assert info["executor"] == {"name": "ray", "workers": 1, "tasks": 14, "shards": 15}
    assert local.report["records"] == {"read": 76, "kept": 75, "rejected": 1, "dropped": 0}


def test_ray_worker_killed_every_time_fails_clearly(local_ray, inputs, tmp_path, monkeypatch, capfd):
    import llmprep.executor.ray as ray_executor

    monkeypatch.setattr(ray_executor, "MAX_RETRIES", 1)
    monkeypatch.setenv("LLMPREP_RAY_KILL", "2:always")
    with pytest.raises(LlmprepError, match="shard task failed after 1 retries.*nothing was written"):
        run(PrepareConfig(progress=False, cache=False, executor="ray", num_proc=1), [str(inputs)],
            out=tmp_path / "ray")
    assert "Traceback" not in capfd.readouterr().err  # Ray logs none of its own
    assert not (tmp_path / "ray").exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".ray")] == []


def test_ray_mix_dedup_and_decontamination_match_local(local_ray, english_chats, chinese_chats, tmp_path, monkeypatch):
    """The per-row keys (uint64 dedup bands, benchmark item ids) travel back from Ray's workers as they do from
    local ones, and the benchmark index ships to each actor: same bytes, same rejects."""
    monkeypatch.setattr(prep, "SHARD_SIZE", 8)
    en = [{"messages": m} for m in english_chats[:30]]
    write_jsonl(tmp_path / "en.jsonl", en + en[:5])  # 5 copies: duplicates across shards
    write_jsonl(tmp_path / "zh.jsonl", [{"messages": m} for m in chinese_chats[:20]])
    (tmp_path / "bench.txt").write_text(english_chats[3][1]["content"] + "\n" + chinese_chats[2][1]["content"] + "\n")
    (tmp_path / "mix.yaml").write_text("total_tokens: 3000\nsources:\n  - {name: en, path: en.jsonl, share: 0.5}\n"
                                       "  - {name: zh, path: zh.jsonl, share: 0.5}\n")
    opts = dict(mix=str(tmp_path / "mix.yaml"), dedup="near", decontaminate=(str(tmp_path / "bench.txt"),),
                test_size=3, progress=False, cache=False)
    ray_run = run(PrepareConfig(**opts, executor="ray", num_proc=2), [], out=tmp_path / "ray")
    run(PrepareConfig(**opts, num_proc=2), [], out=tmp_path / "local")
    assert files_under(tmp_path / "local") == files_under(tmp_path / "ray")
    # decontamination first: en line 4 and its copy (line 34) match the benchmark; lines 31-33, 35 are duplicates
    where = [(Path(r.source).stem, r.line, r.benchmark or r.duplicate_of) for r in ray_run.rejected]
    bench, en_file = str(tmp_path / "bench.txt"), str(tmp_path / "en.jsonl")
    assert where == [("en", 4, f"{bench}:1")] + [("en", n, f"{en_file}:{n - 30}") for n in (31, 32, 33)] + \
        [("en", 34, f"{bench}:1"), ("en", 35, f"{en_file}:5"), ("zh", 3, f"{bench}:2")]
    assert ray_run.report["mix"]["sources"][1]["epochs"] > 1


def _closed_port() -> int:
    """A local port nothing listens on (bound, then released)."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("address, says", [
    (f"127.0.0.1:{_closed_port()}", "nothing answers at 127.0.0.1:"),
    (f"ray://127.0.0.1:{_closed_port()}", "nothing answers at 127.0.0.1:"),
    ("http://head:8265", "expected HOST:PORT"),
    ("head-node", "expected HOST:PORT"),
])
def test_bad_ray_address_is_one_clear_error_before_ray_is_asked(inputs, tmp_path, address, says):
    """Ray itself would retry an unreachable address for minutes, printing warnings (no local Ray is
    started here: the check comes first)."""
    out = tmp_path / "out"
    res = CliRunner().invoke(main, ["prepare", str(inputs), "--out", str(out), "--quiet", "--no-cache",
                                    "--executor", "ray", "--ray-address", address])
    assert res.exit_code != 0 and res.exception is not None and isinstance(res.exception, SystemExit)
    lines = res.output.strip().splitlines()
    assert len(lines) == 1 and says in lines[0] and f"--ray-address {address!r}" in lines[0], res.output
    assert not out.exists()

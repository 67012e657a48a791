"""Faults at scale, with real signals on real processes: kill -9, SIGTERM and Ctrl-C in the middle of a
run leave nothing at --out that loads, no cache entry that reads back wrong, no worker alive and no
worker traceback; a rerun gives byte-identical output. A full disk under --out is one clear error."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
from helpers import chat, mount_tmpfs, write_jsonl

import llmprep.prepare as prep
from llmprep.cache import CorruptEntry, read_entry
from llmprep.errors import LlmprepError
from llmprep.prepare import PrepareConfig, run

SRC = Path(__file__).resolve().parents[2] / "src"


@pytest.fixture(scope="module")
def big_input(tmp_path_factory, english_chats) -> Path:
    """1,320 real conversations: 12 shards of 120 (LLMPREP_SHARD_SIZE), a few seconds on two workers."""
    rows = [{"messages": chat(*[f"{t} ({i})" for t in (m[0]["content"], m[1]["content"])])}
            for i in range(6) for m in english_chats[:220]]
    return write_jsonl(tmp_path_factory.mktemp("big") / "chats.jsonl", rows)


def _start(src: Path, out: Path, cache: Path) -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=str(SRC), LLMPREP_CACHE=str(cache), LLMPREP_SHARD_SIZE="120")
    return subprocess.Popen([sys.executable, "-m", "llmprep.cli", "prepare", str(src), "--out", str(out),
                             "--num-proc", "2", "--quiet"], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)


def _wait_mid_run(proc: subprocess.Popen, out: Path, timeout: float = 120) -> None:
    """Until the first shard's spill file exists (workers are busy with the next ones)."""
    end = time.time() + timeout
    while time.time() < end:
        if list(out.parent.glob(f".{out.name}.tmp-*/.work/*.arrow")):
            return
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.02)
    raise AssertionError("the run never reached its first shard")


def _session(sid: int) -> list[psutil.Process]:
    out = []
    for p in psutil.process_iter(["pid"]):
        try:
            if os.getsid(p.pid) == sid and p.status() != psutil.STATUS_ZOMBIE:
                out.append(p)
        except (ProcessLookupError, psutil.Error, PermissionError):
            pass
    return out


def _no_leftovers(proc: subprocess.Popen, out: Path, cache: Path) -> str:
    """The process and its workers are gone; nothing loadable at --out; every cache entry verifies."""
    _, err = proc.communicate(timeout=60)
    deadline = time.time() + 10
    while _session(proc.pid) and time.time() < deadline:
        time.sleep(0.1)
    assert _session(proc.pid) == []  # no orphan worker
    assert not out.exists()
    for entry in cache.glob("shards-v*/*/*.arrow"):
        try:
            read_entry(entry)
        except CorruptEntry as exc:
            raise AssertionError(f"{entry} reads back wrong: {exc}") from None
    assert "Traceback" not in err and "BrokenPipeError" not in err and "KeyboardInterrupt" not in err, err
    return err


def _files(d: Path) -> dict[str, bytes]:
    return {str(f.relative_to(d)): f.read_bytes() for f in sorted(d.rglob("*")) if f.is_file() and f.name != "run.json"}


def test_kill_9_mid_run_then_rerun_is_byte_identical(tmp_path, big_input, monkeypatch):
    monkeypatch.setattr(prep, "SHARD_SIZE", 120)
    out, cache = tmp_path / "out", tmp_path / "cache"
    proc = _start(big_input, out, cache)
    _wait_mid_run(proc, out)
    os.kill(proc.pid, signal.SIGKILL)
    _no_leftovers(proc, out, cache)
    rerun = run(PrepareConfig(cache_dir=str(cache), progress=False, num_proc=2), [str(big_input)], out=out)
    assert rerun.cache["hits"] >= 1  # entries finished before the kill are served, verified
    run(PrepareConfig(cache=False, progress=False, num_proc=1), [str(big_input)], out=tmp_path / "clean")
    assert _files(out) == _files(tmp_path / "clean")


def test_sigterm_mid_run_exits_143_quietly(tmp_path, big_input):
    out, cache = tmp_path / "out", tmp_path / "cache"
    proc = _start(big_input, out, cache)
    _wait_mid_run(proc, out)
    os.kill(proc.pid, signal.SIGTERM)
    _no_leftovers(proc, out, cache)
    assert proc.returncode == 143
    assert not list(tmp_path.glob(".out.tmp-*"))  # removed on the way out


def test_ctrl_c_mid_run_prints_one_aborted_and_exits_130(tmp_path, big_input):
    out, cache = tmp_path / "out", tmp_path / "cache"
    proc = _start(big_input, out, cache)
    _wait_mid_run(proc, out)
    os.killpg(proc.pid, signal.SIGINT)  # a terminal's Ctrl-C reaches the whole process group
    err = _no_leftovers(proc, out, cache)
    assert proc.returncode == 130
    assert err.strip() == "Aborted!", err
    assert not list(tmp_path.glob(".out.tmp-*"))


def test_full_disk_under_out_is_one_error_and_leaves_nothing(tmp_path, big_input):
    disk = tmp_path / "disk"
    unmount = mount_tmpfs(disk, "300k")
    try:
        with pytest.raises(LlmprepError, match=r"cannot write the output.*No space left on device.*nothing was"):
            run(PrepareConfig(cache=False, progress=False, num_proc=2), [str(big_input)], out=disk / "out")
        left = sorted(p.name for p in disk.iterdir())
    finally:
        unmount()
    assert left == []

"""The local executor's workers: a signal that reaches a worker before its handlers are set waits for them."""

from __future__ import annotations

import os
import signal

import pytest

import llmprep.executor.local as local
from llmprep.executor.task import TaskEnv
from llmprep.shard import ShardSettings

pytestmark = pytest.mark.skipif(not hasattr(signal, "pthread_sigmask") or not hasattr(os, "fork"),
                                reason="POSIX signal masks and fork")
_AT_FORK: list[str] = []  # a file the fork hook writes the child's blocked signals to, while a test sets it


def _blocked() -> list[int]:
    return sorted(int(s) for s in signal.pthread_sigmask(signal.SIG_BLOCK, []))


def _after_fork() -> None:
    if _AT_FORK:
        with open(f"{_AT_FORK[0]}.{os.getpid()}", "w") as fh:
            fh.write(" ".join(map(str, _blocked())))


os.register_at_fork(after_in_child=_after_fork)


def _task_blocked(task) -> list:
    return [_blocked()]


def test_workers_start_with_sigterm_and_sigint_blocked_until_their_handlers_are_set(tmp_path, monkeypatch):
    # Without this, pool.terminate() reaching a worker the OS had not run yet (a busy machine) ran the main
    # process's SIGTERM handler in the child, which raised out of multiprocessing's fork code: a copy of the
    # caller (here pytest) went on running.
    monkeypatch.setattr(local, "run_task", _task_blocked)
    env = TaskEnv(ShardSettings("smollm2", None, 16, "right"), "", str(tmp_path), None, 1)
    _AT_FORK[:] = [str(tmp_path / "mask")]
    try:
        results = list(local.LocalExecutor(2).map(list(range(4)), env))
    finally:
        _AT_FORK.clear()
    at_fork = [f.read_text().split() for f in tmp_path.glob("mask.*")]
    assert len(at_fork) == 2
    assert all({str(int(signal.SIGTERM)), str(int(signal.SIGINT))} <= set(m) for m in at_fork)
    assert all(int(signal.SIGTERM) not in r[0] and int(signal.SIGINT) not in r[0] for r in results)  # after _init
    assert int(signal.SIGTERM) not in _blocked()  # the main process's mask is restored


def _task_pid(task) -> list:
    return [os.getpid()]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie (exited, not yet reaped) is not running
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().split(") ")[-1][:1] != "Z"
    except OSError:
        return True


def test_close_waits_for_the_workers_ended_in_the_background(tmp_path, monkeypatch):
    # Once every result is in, the workers are ended in a thread (terminate + join is tens of milliseconds of
    # waiting in a process holding torch): after close() none of them is still running.
    monkeypatch.setattr(local, "run_task", _task_pid)
    env = TaskEnv(ShardSettings("smollm2", None, 16, "right"), "", str(tmp_path), None, 1)
    ex = local.LocalExecutor(2)
    pids = {r[0] for r in ex.map(list(range(6)), env)}
    assert len(pids) >= 1 and os.getpid() not in pids
    ex.close()
    assert ex._teardown is None
    assert not any(_alive(p) for p in pids)
    ex.close()  # a second close is harmless

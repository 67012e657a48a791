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


def _task_blocked(task, env=None) -> list:
    return [_blocked(), os.getpid()]


def test_workers_start_with_sigterm_and_sigint_blocked_until_their_handlers_are_set(tmp_path, monkeypatch):
    # Without this, pool.terminate() reaching a worker the OS had not run yet (a busy machine) ran the main
    # process's SIGTERM handler in the child, which raised out of multiprocessing's fork code: a copy of the
    # caller (here pytest) went on running.
    monkeypatch.setattr(local, "run_task", _task_blocked)
    env = TaskEnv(ShardSettings("smollm2", None, 16, "right"), "", str(tmp_path), None, 1)
    _AT_FORK[:] = [str(tmp_path / "mask")]
    try:
        results = list(local.LocalExecutor(3).map(list(range(4)), env))  # the main process and 2 workers
    finally:
        _AT_FORK.clear()
    at_fork = [f.read_text().split() for f in tmp_path.glob("mask.*")]
    assert len(at_fork) == 2
    assert all({str(int(signal.SIGTERM)), str(int(signal.SIGINT))} <= set(m) for m in at_fork)
    assert all(int(signal.SIGTERM) not in r[0] and int(signal.SIGINT) not in r[0] for r in results)  # after _init
    assert int(signal.SIGTERM) not in _blocked()  # the main process's mask is restored


def _task_pid(task, env=None) -> list:
    import time

    if env is not None:  # the main process's tasks take a moment: its worker surely claims one
        time.sleep(0.01)
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
    pids = {r[0] for r in ex.map(list(range(6)), env)} - {os.getpid()}  # the main process works tasks too
    assert len(pids) == 1
    ex.close()
    assert ex._teardown is None
    assert not any(_alive(p) for p in pids)
    ex.close()  # a second close is harmless


def _task_slow_worker(task, env=None) -> list:
    """A task that takes a worker 50 ms and the main process 10 ms: the main process takes more of them."""
    import time

    time.sleep(0.05 if env is None else 0.01)  # a worker gets no env (the main process passes its own)
    return [task, os.getpid()]


def test_main_process_and_workers_share_the_tasks_in_order(tmp_path, monkeypatch):
    # Each task runs exactly once, results come back in task order, and the main process (which would
    # otherwise only wait) works a share: whoever is free takes the next task.
    monkeypatch.setattr(local, "run_task", _task_slow_worker)
    env = TaskEnv(ShardSettings("smollm2", None, 16, "right"), "", str(tmp_path), None, 1)
    ex = local.LocalExecutor(2)
    results = list(ex.map(list(range(12)), env))
    ex.close()
    assert [r[0] for r in results] == list(range(12))
    by_main = sum(r[1] == os.getpid() for r in results)
    assert 6 < by_main < 12  # the slower worker takes fewer, but it takes some
    assert ex.workers == 2


def _task_fails_on_3(task, env=None) -> list:
    if task == 3:
        raise ValueError(f"task {task} failed in {'a worker' if env is None else 'the main process'}")
    return [task]


def test_a_failed_task_raises_at_its_place(tmp_path, monkeypatch):
    # Tasks before it are yielded, then its exception, whichever process ran it; the pool is stopped.
    monkeypatch.setattr(local, "run_task", _task_fails_on_3)
    env = TaskEnv(ShardSettings("smollm2", None, 16, "right"), "", str(tmp_path), None, 1)
    got = []
    with pytest.raises(ValueError, match="task 3 failed"):
        for r in local.LocalExecutor(2).map(list(range(8)), env):
            got.append(r[0])
    assert got == [0, 1, 2]


def _task_killed_in_worker(task, env=None) -> list:
    import time

    if env is None:  # in a worker (the main process passes its env)
        os.kill(os.getpid(), signal.SIGKILL)  # as the out-of-memory killer would
    time.sleep(0.02)  # the main process's tasks take a moment: its worker surely claims one
    return [task]


def test_a_worker_killed_mid_run_fails_loudly_instead_of_waiting_forever(tmp_path, monkeypatch):
    monkeypatch.setattr(local, "run_task", _task_killed_in_worker)
    env = TaskEnv(ShardSettings("smollm2", None, 16, "right"), "", str(tmp_path), None, 1)
    with pytest.raises(local.LlmprepError, match=r"was killed by signal 9 .*most likely out of memory.*--num-proc"):
        list(local.LocalExecutor(2).map(list(range(4)), env))


def test_a_run_of_many_tasks_hands_freed_memory_back_before_its_tail(tmp_path, monkeypatch):
    # The main process's shards leave freed memory resident; a long run (whose tail holds much per-row metadata)
    # returns it before assembling, a short one keeps it (its tail would only fault those pages in again).
    monkeypatch.setattr(local, "run_task", _task_pid)
    calls = []
    monkeypatch.setattr(local, "_release_freed_memory", lambda: calls.append(1))
    env = TaskEnv(ShardSettings("smollm2", None, 16, "right"), "", str(tmp_path), None, 1)
    list(local.LocalExecutor(2).map(list(range(local.TRIM_AFTER_TASKS - 1)), env))
    assert calls == []
    list(local.LocalExecutor(2).map(list(range(local.TRIM_AFTER_TASKS)), env))
    assert calls == [1]


def _task_fails_in_worker(task, env=None) -> list:
    import time

    if env is None:  # a worker
        raise ValueError(f"task {task} failed in a worker")
    time.sleep(0.02)  # the main process's tasks take a moment: its worker surely claims one
    return [task]


def test_a_workers_exception_reaches_the_main_process_with_its_traceback(tmp_path, monkeypatch):
    # The worker's own traceback travels as the exception's cause (as multiprocessing.Pool did), for LLMPREP_DEBUG.
    monkeypatch.setattr(local, "run_task", _task_fails_in_worker)
    env = TaskEnv(ShardSettings("smollm2", None, 16, "right"), "", str(tmp_path), None, 1)
    with pytest.raises(ValueError, match=r"task \d+ failed in a worker") as info:
        list(local.LocalExecutor(2).map(list(range(4)), env))
    assert "_task_fails_in_worker" in str(info.value.__cause__)

"""The local executor: run_task in a pool of worker processes (or in process for a single worker).

Workers ignore SIGINT (Ctrl-C reaches the main process only, which stops the pool: one "Aborted!",
no worker tracebacks) and die with their parent (PR_SET_PDEATHSIG on Linux: a kill -9 of the main
process leaves no orphan that later prints BrokenPipeError).
"""

from __future__ import annotations

import contextlib
import ctypes
import multiprocessing as mp
import os
import signal
import sys
import threading
from collections.abc import Iterator

from llmprep.executor.task import TaskEnv, run_task, task_worker_init


def default_workers() -> int:
    return min(os.cpu_count() or 1, 4)


def _die_with_parent() -> None:
    if sys.platform.startswith("linux"):
        try:
            ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG = 1
        except OSError:
            pass


# Blocked in the main process while it forks the workers, unblocked by each worker once its own handlers are set.
_EARLY_SIGNALS = {signal.SIGTERM, signal.SIGINT}


def _init(env: TaskEnv, parent: int) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)  # not the main process's handler, inherited by fork
    if hasattr(signal, "pthread_sigmask"):
        signal.pthread_sigmask(signal.SIG_UNBLOCK, _EARLY_SIGNALS)  # one sent meanwhile is delivered now
    _die_with_parent()
    if os.getppid() != parent:  # the parent died before prctl took effect
        os._exit(1)
    task_worker_init(env)


@contextlib.contextmanager
def _signals_blocked():
    """SIGTERM and SIGINT blocked while the pool forks its workers (and in the pool's threads, which inherit
    the mask and fork any replacement worker). A worker inherits the mask, so a signal that reaches it before
    _init has set its handlers (pool.terminate() on a worker the OS had not yet run, Ctrl-C) waits instead of
    running this process's Python handler in the child: that raises out of multiprocessing's fork code and
    leaves a copy of the main process running the caller's code."""
    if not hasattr(signal, "pthread_sigmask"):
        yield
        return
    old = signal.pthread_sigmask(signal.SIG_BLOCK, _EARLY_SIGNALS)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)


class LocalExecutor:
    """run_task over the tasks on a pool of forked workers (in process for one worker or one task)."""

    name = "local"

    def __init__(self, num_proc: int | None = None):
        self.workers = num_proc or default_workers()
        self._teardown: threading.Thread | None = None

    def map(self, tasks: list, env: TaskEnv) -> Iterator[list]:
        if self.workers <= 1 or len(tasks) <= 1:
            self.workers = 1
            for task in tasks:
                yield run_task(task, env)
            return
        ctx = mp.get_context("fork" if hasattr(os, "fork") else "spawn")
        with _signals_blocked():
            pool = ctx.Pool(min(self.workers, len(tasks)), initializer=_init, initargs=(env, os.getpid()))
        done = False
        try:
            yield from pool.imap(run_task, tasks)
            done = True
        finally:
            if done:  # every result is in: the workers are ended in a thread while the caller goes on (close joins)
                self._teardown = threading.Thread(target=_end, args=(pool,), name="llmprep-pool-end", daemon=True)
                self._teardown.start()
            else:
                _end(pool)

    def close(self) -> None:
        """Wait until the pool's workers are gone."""
        if self._teardown is not None:
            self._teardown.join()
            self._teardown = None


def _end(pool) -> None:
    """terminate + join: tens of milliseconds of waiting for the workers to exit, off the main thread's path
    once the results are in."""
    pool.terminate()
    pool.join()

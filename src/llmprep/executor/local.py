"""The local executor: run_task on `num_proc` processes — the main process and num_proc - 1 forked workers —
or in process alone for one process or one task.

The main process works tasks too: it would otherwise only wait for results. That saves a whole process
(its fork, its cold caches, its memory) for the same number of busy cores, and a process that runs
prepare again keeps its warm caches for its share of the shards. Tasks are claimed in order from one
counter, a worker holding one task at a time, so whoever is free takes the next one and the run ends
evenly; results are yielded in task order, a task's exception at its place.

Each worker is a forked process with a pipe, fed by a thread of the main process. A worker that dies
mid-run (the out-of-memory killer, a kill -9) closes its pipe: the run fails at once with that worker's
exit status, instead of waiting forever for a task that will never return (multiprocessing.Pool's
behaviour, whose terminate() could then hang too) — never a shorter dataset.

Workers ignore SIGINT (Ctrl-C reaches the main process only, which stops the workers: one "Aborted!",
no worker tracebacks) and die with their parent (PR_SET_PDEATHSIG on Linux: a kill -9 of the main
process leaves no orphan that later prints BrokenPipeError).
"""

from __future__ import annotations

import contextlib
import ctypes
import multiprocessing as mp
import os
import pickle
import signal
import sys
import threading
from collections.abc import Iterator
from multiprocessing.pool import ExceptionWithTraceback
from typing import Any

from llmprep.constants import MAX_PROCESSES
from llmprep.errors import LlmprepError
from llmprep.executor.task import TaskEnv, run_task, task_worker_init


def default_workers() -> int:
    return min(os.cpu_count() or 1, MAX_PROCESSES)


# A run of this many tasks or more hands its freed shard memory back to the OS once its tasks are done (see
# _release_freed_memory); a smaller run's tail would only pay page faults to touch that memory again.
TRIM_AFTER_TASKS = 32


def _release_freed_memory() -> None:
    """Give the memory the main process's shards freed back to the OS (glibc's malloc_trim) before the run's tail
    (assembling, the report) allocates its own: kept, it stays resident under the tail's peak. Measured, 2M
    chats: the tail peaked ~50 MB higher than when only workers worked shards."""
    if sys.platform.startswith("linux"):
        try:
            ctypes.CDLL("libc.so.6").malloc_trim(0)
        except (OSError, AttributeError):  # another C library
            pass


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
    """SIGTERM and SIGINT blocked while the main process forks its workers. A worker inherits the mask, so a
    signal that reaches it before _init has set its handlers (a stop of a worker the OS had not yet run,
    Ctrl-C) waits instead of running this process's Python handler in the child: that raises out of
    multiprocessing's fork code and leaves a copy of the main process running the caller's code."""
    if not hasattr(signal, "pthread_sigmask"):
        yield
        return
    old = signal.pthread_sigmask(signal.SIG_BLOCK, _EARLY_SIGNALS)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)


class LocalExecutor:
    """run_task over the tasks on the main process and forked workers (in process for one worker or one task)."""

    name = "local"

    def __init__(self, num_proc: int | None = None):
        self.workers = num_proc or default_workers()  # processes working tasks, the main process included
        self._teardown: threading.Thread | None = None

    def map(self, tasks: list, env: TaskEnv) -> Iterator[list]:
        if self.workers <= 1 or len(tasks) <= 1:
            self.workers = 1
            for task in tasks:
                yield run_task(task, env)
            return
        board = _Board(tasks)
        ctx = mp.get_context("fork" if hasattr(os, "fork") else "spawn")
        with _signals_blocked():
            workers = [_Worker(ctx, env, board) for _ in range(min(self.workers, len(tasks)) - 1)]
        # a worker's next task is sent by its thread here, which needs the GIL while the main process works a
        # task: at the default 5 ms switch interval each hand-off could wait that long
        switch = sys.getswitchinterval()
        sys.setswitchinterval(min(switch, 0.0005))
        done = False
        try:
            for w in workers:
                w.thread.start()
            yield from board.results(env)
            done = True
            if len(tasks) >= TRIM_AFTER_TASKS:
                _release_freed_memory()
        finally:
            sys.setswitchinterval(switch)
            board.close()
            if done:  # every result is in: the workers are ended in a thread while the caller goes on (close joins)
                self._teardown = threading.Thread(target=_end, args=(workers,), name="llmprep-workers-end",
                                                  daemon=True)
                self._teardown.start()
            else:
                _end(workers)

    def close(self) -> None:
        """Wait until the workers are gone."""
        if self._teardown is not None:
            self._teardown.join()
            self._teardown = None


class _Board:
    """The tasks of one map: claimed in order by the main process and the workers, results kept by index.

    Example: 10 tasks, main + 1 worker -> the worker takes 0, the main process 1, then each the next when free.
    """

    def __init__(self, tasks: list):
        self.tasks = tasks
        self.next = 0
        self.found: dict[int, Any] = {}  # index -> result, or the exception its task raised
        self.ready = threading.Condition()
        self.closed = False

    def claim(self) -> int | None:
        """The next task's index, or None when none is left (or a task failed: the run is over; every task
        before it was claimed already, tasks being claimed in order)."""
        with self.ready:
            if self.next >= len(self.tasks) or self.closed:
                return None
            self.next += 1
            return self.next - 1

    def put(self, i: int, result) -> None:
        """Task i's result, or its exception (which ends the claiming)."""
        with self.ready:
            self.found[i] = result
            self.closed |= isinstance(result, BaseException)
            self.ready.notify_all()

    def close(self) -> None:
        with self.ready:
            self.closed = True

    def results(self, env: TaskEnv) -> Iterator[list]:
        """Each task's result in task order; the main process works the next unclaimed task whenever the
        next result is not in yet. A task's exception is raised at its place."""
        for out in range(len(self.tasks)):
            while True:
                with self.ready:
                    if out in self.found:
                        result = self.found.pop(out)
                        break
                i = self.claim()
                if i is None:
                    with self.ready:
                        self.ready.wait_for(lambda out=out: out in self.found)
                    continue
                try:
                    self.put(i, run_task(self.tasks[i], env))
                except Exception as exc:  # noqa: BLE001 - raised at its place, as a worker's is (Ctrl-C is not caught)
                    self.put(i, exc)
            if isinstance(result, BaseException):
                raise result
            yield result


class _Worker:
    """A forked worker process, and the thread of the main process that hands it the board's tasks one at a time."""

    def __init__(self, ctx, env: TaskEnv, board: _Board):
        self.board = board
        self.conn, child = ctx.Pipe()
        self.proc = ctx.Process(target=_serve, args=(child, env, os.getpid()), daemon=True)
        self.proc.start()
        child.close()
        self.thread = threading.Thread(target=self._feed, name="llmprep-worker-feed", daemon=True)

    def _feed(self) -> None:
        while (i := self.board.claim()) is not None:
            try:
                self.conn.send(self.board.tasks[i])
                result = self.conn.recv()
            except (EOFError, OSError):  # the worker is gone: its task will never return
                self.board.put(i, self._lost())
                return
            self.board.put(i, result)  # an exception comes with the worker's traceback as its __cause__

    def _lost(self) -> LlmprepError:
        self.proc.join(timeout=5)
        code = self.proc.exitcode
        how = (f"was killed by signal {-code}" if code is not None and code < 0 else
               f"exited with status {code}" if code is not None else "stopped answering")
        oom = " (most likely out of memory)" if code == -signal.SIGKILL else ""
        return LlmprepError(f"a prepare worker process (pid {self.proc.pid}) {how} before its task finished{oom}; "
                            "nothing was written. Lower --num-proc or --max-record-bytes, or split the input")


def _serve(conn, env: TaskEnv, parent: int) -> None:
    """A worker's loop: a task in, its result or its exception out; None or a closed pipe ends it."""
    _init(env, parent)
    while True:
        try:
            task = conn.recv()
        except (EOFError, OSError):
            return
        if task is None:
            return
        try:
            reply = run_task(task)
        except Exception as exc:  # noqa: BLE001 - sent to the main process, raised there at the task's place
            reply = _sendable(exc)
        conn.send(reply)


def _sendable(exc: Exception):
    """The exception with its traceback, as the main process can unpickle it (else a RuntimeError naming it)."""
    wrapped = ExceptionWithTraceback(exc, exc.__traceback__)
    try:
        pickle.loads(pickle.dumps(wrapped))
        return wrapped
    except Exception:  # noqa: BLE001 - an exception that does not survive pickling
        return ExceptionWithTraceback(RuntimeError(f"{type(exc).__name__}: {exc}"), exc.__traceback__)


def _end(workers: list[_Worker]) -> None:
    """Stop the workers (SIGTERM: they hold no state worth a clean exit) and wait for them: tens of milliseconds
    of waiting, off the main thread's path once the results are in."""
    for w in workers:
        if w.proc.is_alive():
            w.proc.terminate()
    for w in workers:
        w.proc.join()
        w.conn.close()

"""Executors run shard tasks (`llmprep.shard.run_task`) and yield their ShardMeta in task order.

    local  worker processes on this machine (multiprocessing), the default
    ray    Ray tasks on a local Ray or an existing cluster (--ray-address)

Both run the same task function, which reads its own records and writes its rows to spill files:
the driver sees only per-row metadata, whatever the executor.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Protocol

from llmprep.errors import ConfigError

EXECUTORS = ("local", "ray")


class Executor(Protocol):
    name: str
    workers: int

    def map(self, tasks: list, env) -> Iterator[list]:
        """run_task(task, env) for every task; results in task order."""
        ...

    def close(self) -> None:
        """Wait until the workers are released (prepare calls it before it returns)."""
        ...


def get_executor(name: str, *, num_proc: int | None = None, ray_address: str | None = None) -> Executor:
    """Example: get_executor("local", num_proc=2) -> LocalExecutor with 2 worker processes"""
    if name == "local":
        from llmprep.executor.local import LocalExecutor

        return LocalExecutor(num_proc)
    if name == "ray":
        from llmprep.executor.ray import RayExecutor

        return RayExecutor(ray_address, num_proc)
    raise ConfigError(f"--executor {name!r} is not valid; choose one of {', '.join(EXECUTORS)}")

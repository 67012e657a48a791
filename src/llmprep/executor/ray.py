"""The Ray executor: the same shard task (`run_task`) as Ray Data map_batches on an actor pool.

    tasks (descriptors: file, byte range) -> ray.data.from_items -> map_batches(_ShardWorker)
    -> each actor reads its records, serves/computes shards, writes spill files to the work dir
    -> only ShardMeta (JSON: counts, rejects, per-row lengths) comes back to the driver

Ray retries a task whose worker died (a restarted actor, up to MAX_RETRIES times); past that, the
run fails with one clear error and writes nothing. The driver also checks that every task came back
exactly once, so a lost task can never give a silently shorter dataset.

With a cluster (--ray-address), inputs, --out and --cache-dir must be paths every node sees
(a shared filesystem): each task opens its own inputs and writes its spill files there.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import warnings
from typing import Iterator

import numpy as np

from llmprep.errors import ConfigError, LlmprepError

MAX_RETRIES = 3
CONNECT_TIMEOUT = 5.0  # seconds to reach --ray-address before Ray is asked to (it retries for minutes)
CLIENT_PORT = 10001  # Ray Client's default port, for a ray://HOST without one


def meta_to_json(meta) -> str:
    """ShardMeta -> JSON text (no pickle crosses back to the driver)."""
    from llmprep.executor.task import array_to_json

    d = dict(vars(meta))
    d["rows"] = {k: array_to_json(v) for k, v in meta.rows.items()}  # dtypes kept (uint64 dedup keys)
    d["dropped_keys"] = {k: array_to_json(v) for k, v in meta.dropped_keys.items()}
    d["rejected"] = [r.to_json() for r in meta.rejected]
    d["dropped"] = [r.to_json() for r in meta.dropped]
    return json.dumps(d, ensure_ascii=False)


def meta_from_json(text: str):
    from llmprep.examples import Rejected
    from llmprep.executor.task import ShardMeta, array_from_json

    d = json.loads(text)
    d["rows"] = {k: array_from_json(v) for k, v in d["rows"].items()}
    d["dropped_keys"] = {k: array_from_json(v) for k, v in d["dropped_keys"].items()}
    d["rejected"] = [Rejected(**r) for r in d["rejected"]]
    d["dropped"] = [Rejected(**r) for r in d["dropped"]]
    return ShardMeta(**d)


class _ShardWorker:
    """A Ray Data actor: tokenizer and renderer built once, then one task per call."""

    def __init__(self, env):
        from llmprep.executor.task import task_worker_init

        task_worker_init(env)
        self.env = env

    def __call__(self, batch: dict) -> dict:
        from llmprep.executor.plan import ShardTask
        from llmprep.executor.task import run_task

        out = []
        for i, spec in zip(batch["task"].tolist(), batch["spec"].tolist()):
            _fault_injection(i)
            task = ShardTask(**{k: tuple(v) if k == "span" and v else v for k, v in json.loads(spec).items()})
            out.append(json.dumps([meta_to_json(m) for m in run_task(task, self.env)]))
        return {"task": batch["task"], "metas": np.asarray(out, dtype=object)}


def _fault_injection(task: int) -> None:
    """Tests kill the worker process running task N: LLMPREP_RAY_KILL="N:MARKER" kills it once (MARKER
    created, so Ray's retry succeeds), "N:always" on every attempt (Ray gives up)."""
    spec = os.environ.get("LLMPREP_RAY_KILL")
    if not spec:
        return
    n, _, marker = spec.partition(":")
    if int(n) != task:
        return
    if marker != "always":
        if os.path.exists(marker):
            return
        open(marker, "w").close()
    os.kill(os.getpid(), signal.SIGKILL)


def _fault_env() -> dict:
    spec = os.environ.get("LLMPREP_RAY_KILL")
    return {"runtime_env": {"env_vars": {"LLMPREP_RAY_KILL": spec}}} if spec else {}


class RayExecutor:
    name = "ray"

    def __init__(self, address: str | None = None, num_proc: int | None = None):
        try:
            import ray  # noqa: F401
            import ray.data  # noqa: F401
        except ImportError:
            raise ConfigError("--executor ray needs Ray Data: pip install 'llmprep[ray]'") from None
        self.address = address
        self.num_proc = num_proc
        self.workers = 0

    def _connect(self) -> bool:
        """Connect to --ray-address or start a local Ray; True if this call started it."""
        import ray

        for name in ("ray", "ray.data"):  # a failed task is our one-line error, not Ray's logged traceback
            logging.getLogger(name).setLevel(logging.CRITICAL)
        check_address(self.address)
        if ray.is_initialized():
            return False
        os.environ.setdefault("RAY_BACKEND_LOG_LEVEL", "fatal")  # C++ notices on stderr are noise for a CLI run
        try:
            ray.init(address=self.address, num_cpus=None if self.address else self.num_proc,
                     include_dashboard=False, log_to_driver=False, configure_logging=False)
        except (ConnectionError, ValueError, RuntimeError) as exc:
            raise LlmprepError(f"--ray-address {self.address!r}: cannot connect to Ray: {exc}") from None
        return True

    def map(self, tasks: list, env) -> Iterator[list]:
        import ray
        import ray.data

        started = self._connect()
        try:
            cpus = int(ray.cluster_resources().get("CPU", 1))
            self.workers = max(1, min(self.num_proc or cpus, cpus, len(tasks)))
            ctx = ray.data.DataContext.get_current()
            ctx.execution_options.preserve_order = True
            ctx.enable_progress_bars = False
            ctx.print_on_execution_start = False
            items = [{"task": t.index, "spec": json.dumps(vars(t))} for t in tasks]
            ds = ray.data.from_items(items, override_num_blocks=max(1, len(tasks)))
            with warnings.catch_warnings():  # Ray's own deprecation notices are not the user's business
                warnings.simplefilter("ignore")
                ds = ds.map_batches(_ShardWorker, fn_constructor_kwargs={"env": env}, batch_size=1,
                                    compute=ray.data.ActorPoolStrategy(size=self.workers), num_cpus=1,
                                    max_restarts=MAX_RETRIES, max_task_retries=MAX_RETRIES,
                                    **_fault_env())
            yield from _in_order(_rows(ds), len(tasks))
        finally:
            if started:
                ray.shutdown()

    def close(self) -> None:
        """Nothing to wait for: map shuts down a Ray it started itself."""


def check_address(address: str | None, timeout: float = CONNECT_TIMEOUT) -> None:
    """Fail in seconds, with one line, on a --ray-address where nothing answers: given one, ray.init keeps
    retrying for minutes while its C++ client prints warnings. "auto" (and no address) is Ray's to resolve.

    Example: check_address("10.0.0.9:6379") with nothing listening there
    -> LlmprepError("--ray-address '10.0.0.9:6379': nothing answers at 10.0.0.9:6379 (Connection refused); ...")
    """
    if not address or address in ("auto", "local"):
        return
    scheme, _, rest = address.rpartition("://")
    host, sep, port = rest.rstrip("/").rpartition(":")
    if not sep and scheme == "ray":
        host, port = rest.rstrip("/"), str(CLIENT_PORT)
    if scheme not in ("", "ray") or not host or not port.isdigit():
        raise ConfigError(f"--ray-address {address!r}: expected HOST:PORT (a cluster's GCS, e.g. 10.0.0.9:6379), "
                          "ray://HOST[:PORT] (Ray Client) or auto; leave it out to start a local Ray")
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout).close()
    except OSError as exc:
        why = exc.strerror or type(exc).__name__.replace("Error", " error").strip()
        raise LlmprepError(f"--ray-address {address!r}: nothing answers at {host}:{port} ({why}); start the "
                           "cluster there (`ray start --head`), fix the address, or leave --ray-address out to "
                           "start a local Ray") from None


def _rows(ds) -> Iterator[tuple[int, list]]:
    """(task index, its ShardMetas) as Ray yields them; a task that failed past the retries -> LlmprepError."""
    import ray.exceptions

    try:
        for batch in ds.iter_batches(batch_size=1, batch_format="numpy"):
            for i, metas in zip(batch["task"].tolist(), batch["metas"].tolist()):
                yield i, [meta_from_json(m) for m in json.loads(metas)]
    except ray.exceptions.RayError as exc:
        cause = getattr(exc, "cause", None)
        if isinstance(cause, LlmprepError):
            raise cause from None
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise LlmprepError(f"--executor ray: a shard task failed after {MAX_RETRIES} retries "
                           f"({type(exc).__name__}: {first}); nothing was written") from None


def _in_order(results: Iterator[tuple[int, list]], n: int) -> Iterator[list]:
    """Results in task order (buffering early ones); a duplicate or missing task is an error."""
    pending: dict[int, list] = {}
    nxt = 0
    for i, metas in results:
        if i < nxt or i in pending:
            raise LlmprepError(f"--executor ray: task {i} returned twice; the output would hold duplicates")
        pending[i] = metas
        while nxt in pending:
            yield pending.pop(nxt)
            nxt += 1
    if nxt != n:
        raise LlmprepError(f"--executor ray: {nxt} of {n} shard tasks returned; nothing was written")

"""Real file-system conditions for tests: a read-only mount, a full disk (a size-limited tmpfs).

The test machines (and CI) run as root, where chmod does not stop writes: only a real read-only
mount or a full file system does. Mounting needs CAP_SYS_ADMIN; where it is not permitted the tests
that need it skip, saying so.
"""

from __future__ import annotations

import contextlib
import subprocess
from pathlib import Path
from typing import Iterator

import pytest


def _run(*cmd: str) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, capture_output=True, text=True)


@contextlib.contextmanager
def tmpfs(where: Path, *, size: str = "16m", read_only: bool = False) -> Iterator[Path]:
    """Mount a tmpfs of `size` at `where` (read-only if asked) for the block; unmount after.

    Example: with tmpfs(tmp_path / "full", size="64k") as d: ... writing 1 MB under d fails with ENOSPC
    """
    where.mkdir(parents=True, exist_ok=True)
    options = f"size={size}" + (",ro" if read_only else "")
    done = _run("mount", "-t", "tmpfs", "-o", options, "tmpfs", str(where))
    if done.returncode != 0:
        pytest.skip(f"mounting a tmpfs is not permitted here ({done.stderr.strip() or done.returncode}): "
                    "the read-only / full-disk test needs root with CAP_SYS_ADMIN")
    try:
        yield where
    finally:
        if _run("umount", str(where)).returncode != 0:
            _run("umount", "-l", str(where))

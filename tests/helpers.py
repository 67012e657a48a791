"""Small helpers shared by the tests (importable: pytest's `pythonpath` includes tests/)."""

from __future__ import annotations

import json
from pathlib import Path


def u(text: str) -> dict:
    return {"role": "user", "content": text}


def a(text: str) -> dict:
    return {"role": "assistant", "content": text}


def s(text: str) -> dict:
    return {"role": "system", "content": text}


def chat(*turns: str, system: str | None = None) -> list[dict]:
    """chat("Hi", "Hello") -> [user Hi, assistant Hello] (alternating, user first)."""
    msgs = [s(system)] if system else []
    return msgs + [u(t) if i % 2 == 0 else a(t) for i, t in enumerate(turns)]


def write_jsonl(path, rows, opener=open) -> Path:
    """Write rows (dicts, or raw strings written verbatim) as JSON lines; `opener` may be gzip.open."""
    with opener(path, "wt", encoding="utf-8") as fh:
        for row in rows:
            fh.write((row if isinstance(row, str) else json.dumps(row, ensure_ascii=False)) + "\n")
    return Path(path)


def mount_tmpfs(path, size: str, *, read_only: bool = False):
    """Mount a size-limited tmpfs at `path` (read-only if asked); pytest.skip with the reason where the
    platform does not permit mounting. Returns a function that unmounts it."""
    import subprocess

    import pytest

    Path(path).mkdir(parents=True, exist_ok=True)
    res = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
                         capture_output=True, text=True)
    if res.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (needs root and mount permission): {res.stderr.strip()}")
    if read_only:
        subprocess.run(["mount", "-o", "remount,ro", str(path)], check=True)
    return lambda: subprocess.run(["umount", "-l", str(path)], check=False)

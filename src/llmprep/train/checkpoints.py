"""Checkpoints under RUN_DIR/checkpoints/: which are complete, which one a --resume continues from.

HF Trainer writes a checkpoint's files in this order: weights, optimizer + scheduler, RNG states,
then `trainer_state.json` last. A checkpoint is complete once that file is written and parses; a run
killed in the middle of a save leaves a newer, incomplete folder that must never be resumed from.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

CHECKPOINT_RE = re.compile(r"^checkpoint-(\d+)$")
TRAINER_STATE = "trainer_state.json"


def checkpoint_step(path: Path) -> int | None:
    """Global step of a checkpoint folder. Example: ".../checkpoint-40" -> 40; ".../other" -> None"""
    m = CHECKPOINT_RE.match(Path(path).name)
    return int(m.group(1)) if m else None


def is_complete(path: Path) -> bool:
    """True when the checkpoint's trainer_state.json was written in full (it parses, with a global_step)."""
    try:
        state = json.loads((Path(path) / TRAINER_STATE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(state, dict) and state.get("global_step") == checkpoint_step(path)


def checkpoints(root: Path) -> list[Path]:
    """Checkpoint folders of a run, oldest first. Example: [checkpoint-10, checkpoint-20]"""
    root = Path(root)
    if not root.is_dir():
        return []
    found = [p for p in root.iterdir() if p.is_dir() and checkpoint_step(p) is not None]
    return sorted(found, key=checkpoint_step)


def newest_complete(root: Path) -> Path | None:
    """The checkpoint a --resume continues from. Example: [10 (complete), 20 (no state)] -> checkpoint-10"""
    done = [p for p in checkpoints(root) if is_complete(p)]
    return done[-1] if done else None


def drop_incomplete(root: Path) -> list[str]:
    """Remove checkpoint folders a killed save left unfinished; returns their names."""
    removed = []
    for p in checkpoints(root):
        if not is_complete(p):
            shutil.rmtree(p, ignore_errors=True)
            removed.append(p.name)
    return removed

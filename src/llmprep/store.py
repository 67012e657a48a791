"""Write the output directory atomically: dataset splits, report.json, rejected.jsonl.

Layout of DIR (loads with `datasets.load_from_disk(DIR)` as a DatasetDict):
    DIR/dataset_dict.json, DIR/train/..., DIR/test/...   (datasets' own format)
    DIR/report.json       counts, token totals, length percentiles, options
    DIR/rejected.jsonl    one line per rejected record: source, line, field, reason, record

Everything is written into a sibling temp dir and renamed into place at the end, so an interrupted
run never leaves anything at DIR that loads as complete.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator

if TYPE_CHECKING:  # importing datasets costs ~1.4 s of start-up: only save_output needs it
    from datasets import DatasetDict

from llmprep.errors import ConfigError

REPORT = "report.json"
REJECTED = "rejected.jsonl"


@contextlib.contextmanager
def atomic_output_dir(out: str | os.PathLike, *, overwrite: bool = True) -> Iterator[Path]:
    """Yield a fresh temp dir beside `out`; on success replace `out` with it, on error remove it.

    Example: with atomic_output_dir("data/run1") as tmp: (tmp / "x").write_text("1")
    -> data/run1/x exists only after the block finished without raising.
    """
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {str(out)!r}: exists and is not a directory")
    if out.exists() and any(out.iterdir()) and not overwrite:
        raise ConfigError(f"--out {str(out)!r}: directory exists and is not empty")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    try:
        yield tmp
        old = None
        if out.exists():
            old = out.with_name(f".{out.name}.old-{os.getpid()}")
            os.replace(out, old)
        os.replace(tmp, out)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def write_json(path: Path, data: Any) -> None:
    """Write JSON with stable key order, UTF-8 kept readable."""
    path.write_text(json.dumps(data, indent=2, ensure_ascii=False, sort_keys=False) + "\n", encoding="utf-8")


def save_output(tmp: Path, splits: "DatasetDict", report: dict, rejected: list[dict]) -> None:
    """Save a DatasetDict, the report and the rejects into `tmp` (a dir from atomic_output_dir)."""
    import datasets

    quiet = not datasets.are_progress_bars_disabled()
    if quiet:  # llmprep draws its own progress bar; datasets' per-split "Saving" bars are noise here
        datasets.disable_progress_bars()
    try:
        splits.save_to_disk(str(tmp))
    finally:
        if quiet:
            datasets.enable_progress_bars()
    with open(tmp / REJECTED, "w", encoding="utf-8") as fh:
        for row in rejected:
            fh.write(json.dumps(row, ensure_ascii=False) + "\n")
    write_json(tmp / REPORT, report)

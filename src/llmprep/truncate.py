"""Fit rows into --max-length: cut the right or left end, or drop the row.

A row left with no trained token (the answer was cut away) is dropped and counted, never kept: it
would cost compute and teach nothing, and usually means --max-length is too small.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from llmprep.constants import IGNORE_INDEX
from llmprep.encode import Encoded, take

TRUNCATION = ("right", "left", "drop")
TOO_LONG = "longer than --max-length {max_length} ({length} tokens) with --truncation drop"
NO_TRAINED = "no trained token left after --truncation {side} to --max-length {max_length}"


@dataclass
class Fitted:
    encoded: Encoded
    kept: np.ndarray  # indices (into the input rows) of the rows kept, in order
    dropped: list[tuple[int, str]]  # (row index, reason)
    truncated: int
    # trained tokens truncation cut away: per kept row, and per entry of `dropped` (the doctor's
    # truncation-loss check reads their sums from report.json instead of encoding everything again)
    cut: np.ndarray | None = None
    lost: list[int] | None = None


def fit(enc: Encoded, max_length: int, side: str, *, require_trained: bool = True) -> Fitted:
    """Truncate or drop rows longer than max_length; drop rows without a trained token.

    Example: rows [1,2,3,4] (labels [-100,-100,3,4]), max_length=2, side="right"
    -> labels [-100,-100]: nothing trained is left -> dropped (lost=[2]);  side="left" -> [3,4] kept (cut=[0])
    """
    lengths = enc.lengths
    starts = enc.offsets[:-1].copy()
    ends = enc.offsets[1:].copy()
    over = lengths > max_length
    dropped: list[tuple[int, str]] = []
    keep = np.ones(len(enc), dtype=bool)
    if side == "drop":
        for r in np.flatnonzero(over):
            dropped.append((int(r), TOO_LONG.format(max_length=max_length, length=int(lengths[r]))))
        keep &= ~over
    elif side == "right":
        ends[over] = starts[over] + max_length
    else:
        starts[over] = ends[over] - max_length
    cut, lost_of = None, {}
    if require_trained:
        nz = enc.labels != IGNORE_INDEX
        csum = np.concatenate([[0], np.cumsum(nz, dtype=np.int64)])
        left = csum[ends] - csum[starts]
        full = csum[enc.offsets[1:]] - csum[enc.offsets[:-1]]
        empty = keep & (left == 0)
        for r in np.flatnonzero(empty):
            dropped.append((int(r), NO_TRAINED.format(side=side, max_length=max_length)))
        keep &= ~empty
        cut = (full - left)[keep].astype(np.int32)
        lost_of = dict(zip(np.flatnonzero(empty).tolist(), full[empty].tolist()))
    dropped.sort()
    rows = np.flatnonzero(keep)
    # nothing cut, nothing dropped (the usual batch): the rows as they are, not a copy
    out = enc if len(rows) == len(enc) and not over.any() else take(enc, rows, starts[rows], ends[rows])
    # a row dropped for its length (--truncation drop) had nothing cut: it is reported as too long instead
    lost = [lost_of.get(r, 0) for r, _ in dropped]
    return Fitted(out, rows, dropped, int((over & keep).sum()) if side != "drop" else 0, cut, lost)


__all__ = ["fit", "Fitted", "TRUNCATION", "take"]

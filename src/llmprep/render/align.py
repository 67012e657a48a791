"""Map positions between two renderings of one conversation that differ a little.

The sentinel rendering (sentinels removed) and the real one differ where the template rewrote a
field: trimmed it (Llama 3's `| trim`, GLM's `.strip()`, Qwen3's `.lstrip('\\n')`), or took another
branch. Positions of the first text are mapped into the second through an alignment of the two, so
a field is found in the real text instead of the row being rejected.

Whitespace-only differences (the usual case) are aligned in one linear pass; anything else goes
through difflib.SequenceMatcher on the part between the common prefix and suffix.
"""

from __future__ import annotations

import bisect
import difflib
from typing import Callable

Mapper = Callable[[int, bool], int]


def aligner(src: str, dst: str) -> Mapper:
    """-> map(position in src, is_start) -> position in dst. A position inside text that exists only in
    src maps to where that text would start (is_start) or end in dst.

    Example: src "<u>  Hi </u>", dst "<u>Hi</u>": map(3, True) -> 3 (before "Hi"); map(8, False) -> 5 (after "Hi")
    """
    if src == dst:
        return lambda pos, is_start: pos
    blocks = _whitespace_blocks(src, dst)
    if blocks is None:
        blocks = _difflib_blocks(src, dst)
    starts = [b[0] for b in blocks]

    def map_pos(pos: int, is_start: bool) -> int:
        k = bisect.bisect_right(starts, pos) - 1
        if k < 0:
            return 0
        i1, i2, j1, j2, equal = blocks[k]
        if equal and pos < i2:
            return j1 + pos - i1
        if pos >= i2:  # past the last block: the end of dst
            return j2
        return j1 if is_start else j2

    return map_pos


Block = tuple[int, int, int, int, bool]  # src [i1, i2) <-> dst [j1, j2), equal or not


def _whitespace_blocks(src: str, dst: str) -> list[Block] | None:
    """Blocks for two texts that differ only by inserted/deleted whitespace; None if they differ otherwise.

    Example: ("a  b", "a b") -> [(0, 2, 0, 2, True), (2, 3, 2, 2, False), (3, 4, 2, 3, True)]
    """
    blocks: list[Block] = []
    i = j = 0
    n, m = len(src), len(dst)
    while i < n or j < m:
        i0, j0 = i, j
        while i < n and j < m and src[i] == dst[j]:
            i += 1
            j += 1
        if i > i0:
            blocks.append((i0, i, j0, j, True))
        i0, j0 = i, j
        while i < n and src[i].isspace() and (j >= m or src[i] != dst[j]):
            i += 1
        while j < m and dst[j].isspace() and (i >= n or src[i] != dst[j]):
            j += 1
        if i == i0 and j == j0:
            if i < n or j < m:
                return None  # a non-whitespace difference
            break
        blocks.append((i0, i, j0, j, False))
    return blocks


def _difflib_blocks(src: str, dst: str) -> list[Block]:
    """Blocks from difflib's opcodes, on the part between the common prefix and suffix only."""
    p = 0
    limit = min(len(src), len(dst))
    while p < limit and src[p] == dst[p]:
        p += 1
    s = 0
    while s < limit - p and src[-1 - s] == dst[-1 - s]:
        s += 1
    a, b = src[p:len(src) - s], dst[p:len(dst) - s]
    blocks: list[Block] = [(0, p, 0, p, True)] if p else []
    for tag, i1, i2, j1, j2 in difflib.SequenceMatcher(None, a, b, autojunk=False).get_opcodes():
        blocks.append((i1 + p, i2 + p, j1 + p, j2 + p, tag == "equal"))
    if s:
        blocks.append((len(src) - s, len(src), len(dst) - s, len(dst), True))
    return blocks

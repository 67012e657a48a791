"""The items of a `.json` array file, found by a structural scan (no parse): a big array is cut into
tasks of whole items, each read and parsed on its own, like the line ranges of a `.jsonl` file.

Before, a `.json` file was read whole and parsed in one process: a 1 GB array held ~10 GB of Python
objects in one worker, on one core. The scan runs over blocks of bytes with numpy, carrying its state:

    a quote not escaped by an odd run of backslashes opens or closes a string;
    outside strings, [ and { raise the depth, ] and } lower it;
    a comma at depth 1 separates two items of the top-level array.

    b'[{"a": "x,]"}, {"a": 2}]'  ->  one separator, at byte 13: items start at 1 and 14

Anything that is not one plain array (an object, a stray byte after the closing bracket, unbalanced
brackets) leaves the file to the whole-file reader, which reports what is wrong with it.
"""

from __future__ import annotations

from collections import OrderedDict
from itertools import pairwise
from pathlib import Path

import numpy as np

from llmprep.records import file_key, open_input

QUOTE, BACKSLASH, COMMA = 34, 92, 44
OPENS, CLOSES = (91, 123), (93, 125)  # [ {   ] }
WHITESPACE = np.frombuffer(b" \t\r\n", np.uint8)
WHITESPACE_BYTES = frozenset(b" \t\r\n")
UTF8_BOM = b"\xef\xbb\xbf"
_QUOTE, _BACKSLASH, _OPEN, _CLOSE, _COMMA = 1, 2, 3, 4, 5  # byte kinds (structure >= _OPEN)
_KIND = np.zeros(256, np.uint8)
_KIND[QUOTE], _KIND[BACKSLASH], _KIND[COMMA] = _QUOTE, _BACKSLASH, _COMMA
_KIND[list(OPENS)], _KIND[list(CLOSES)] = _OPEN, _CLOSE


def _trailing_backslashes(part: np.ndarray) -> int:
    """How many backslashes end the block. Example: b'ab\\\\' -> 2"""
    i = len(part)
    while i > 0 and part[i - 1] == BACKSLASH:
        i -= 1
    return len(part) - i


class ArrayScan:
    """Feed a file's bytes in order; `cuts(every)` -> byte ranges of `every` items each, or None.

    Example: s = ArrayScan(); s.feed(b'[{"a": 1}, {"a": 2}, {"a": 3}]'); s.cuts(2)
             -> [(0, 20, 1), (20, 30, 3)]   # items 1-2 (with the "["), item 3 (with the "]")
    """

    def __init__(self):
        self.pos = 0  # bytes seen
        self.depth = 0
        self.in_string = False
        self.backslashes = 0  # length of the run of backslashes ending the previous block
        self.started = False  # the opening "[" was seen
        self.closed = False  # the closing "]" was seen
        self.valid = True
        self.separators: list[np.ndarray] = []  # absolute positions of the depth-1 commas, per block
        self._lead: bytes | None = b""  # the first bytes, gathered until a BOM can be told (3 bytes)

    def feed(self, block: bytes) -> None:
        if self._lead is not None:
            self._lead += block
            if len(self._lead) < len(UTF8_BOM):
                return
            block, self._lead = self._lead, None
        self._feed(block)

    def _feed(self, block: bytes) -> None:
        if not self.valid or not block:
            self.pos += len(block)
            return
        arr = np.frombuffer(block, np.uint8)
        start = 0
        if not self.started:
            start = self._opening(arr)
            if start is None:  # only whitespace so far
                self.pos += len(arr)
                return
        if self.valid:
            self._scan(arr, start)
        self.pos += len(arr)

    def _opening(self, arr: np.ndarray) -> int | None:
        """Skip a BOM and whitespace; the first other byte must be "[". -> the index after it (None: none yet)."""
        first = len(UTF8_BOM) if self.pos == 0 and arr[:3].tobytes() == UTF8_BOM else 0
        while first < len(arr) and arr[first] in WHITESPACE_BYTES:
            first += 1
        if first == len(arr):
            return None
        if arr[first] != OPENS[0]:
            self.valid = False
            return None
        self.started, self.depth = True, 1
        return first + 1

    def _scan(self, arr: np.ndarray, start: int) -> None:
        part = arr[start:]
        n = len(part)
        if n == 0:
            return
        if self.closed:  # after the closing bracket: whitespace only
            self.valid = not np.isin(part, WHITESPACE, invert=True).any()
            return
        # Only the bytes that matter (quotes, backslashes, brackets, commas: a few percent of a chat file) are
        # looked at after one table lookup; everything else works on their positions.
        kind = _KIND[part]
        pos = np.flatnonzero(kind)
        kinds = kind[pos]
        quotes = pos[kinds == _QUOTE]
        real = quotes[~self._escaped(part, quotes)]
        structure = kinds >= _OPEN
        at, what = pos[structure], kinds[structure]
        inside = (np.searchsorted(real, at) + self.in_string) % 2 == 1  # real quotes before each, + the carry
        at, what = at[~inside], what[~inside]
        depth = self.depth + np.cumsum(np.where(what == _OPEN, 1, np.where(what == _CLOSE, -1, 0)))
        zero = np.flatnonzero(depth <= 0)
        used = len(at)
        if len(zero):  # the array closed: nothing may follow but whitespace
            k = int(zero[0])
            end = int(at[k])
            if depth[k] < 0 or np.isin(part[end + 1:], WHITESPACE, invert=True).any():
                self.valid = False
                return
            self.closed, used = True, k + 1
        commas = at[:used][(what[:used] == _COMMA) & (depth[:used] == 1)]
        self.separators.append(self.pos + start + commas)
        self.depth = int(depth[used - 1]) if used else self.depth
        self.in_string = (self.in_string + len(real)) % 2 == 1
        trailing = _trailing_backslashes(part)
        self.backslashes = trailing + (self.backslashes if trailing == n else 0)

    def _escaped(self, part: np.ndarray, quotes: np.ndarray) -> np.ndarray:
        """Which quotes follow an odd run of backslashes (the run may continue from the previous block)."""
        out = np.zeros(len(quotes), bool)
        after = np.flatnonzero(part[np.maximum(quotes - 1, 0)] == BACKSLASH)  # rare: walk these back
        for j in after.tolist() + ([0] if len(quotes) and quotes[0] == 0 and self.backslashes else []):
            q = int(quotes[j])
            run = 0
            while q - 1 - run >= 0 and part[q - 1 - run] == BACKSLASH:
                run += 1
            if q - run == 0:  # the run reaches the block's start
                run += self.backslashes
            out[j] = run % 2 == 1
        return out

    def separators_found(self) -> np.ndarray | None:
        """Positions of the commas between the top-level items, once every byte was fed; None when the file is
        not one plain array."""
        if self._lead is not None:  # a file of fewer than 3 bytes
            block, self._lead = self._lead, None
            self._feed(block)
        if not (self.valid and self.started and self.closed and not self.in_string):
            return None
        return np.concatenate(self.separators) if self.separators else np.zeros(0, np.int64)

    def cuts(self, every: int) -> list[tuple[int, int, int]] | None:
        """Byte ranges of `every` items (the last may hold fewer): (start, stop, number of its first item).
        None when the file is not one plain array, or holds at most `every` items."""
        seps = self.separators_found()
        return None if seps is None else _cuts(seps, self.pos, every)


def _cuts(seps: np.ndarray, size: int, every: int) -> list[tuple[int, int, int]] | None:
    bounds = [0] + [int(p) + 1 for p in seps[every - 1::every]] + [size]
    if len(bounds) <= 2:
        return None
    return [(a, b, 1 + i * every) for i, (a, b) in enumerate(pairwise(bounds))]


# Separators of the arrays scanned in this process, by file (path, size, mtime, inode): prepare's plan scans
# each input while it hashes it, and its doctor pass reads the first items again, range by range, without a
# second scan or a parse of the whole file. None: the file is not one plain array. A few files are kept.
_KNOWN: OrderedDict[tuple, np.ndarray | None] = OrderedDict()
_KEEP = 8


def remember(path, scan: ArrayScan) -> None:
    """Keep what a finished scan of the file at `path` found (plan.scan's, fed the whole file)."""
    key = file_key(path)
    if key is not None and key[1] == scan.pos:
        _KNOWN[key] = scan.separators_found()
        _KNOWN.move_to_end(key)
        while len(_KNOWN) > _KEEP:
            _KNOWN.popitem(last=False)


def known_cuts(path, every: int) -> tuple[bool, list[tuple[int, int, int]] | None]:
    """(whether this process scanned the file as it is now, its cuts() then).
    Example: after plan scanned a 10,000-item a.json -> (True, [(0, b1, 1), (b1, b2, 4097), (b2, end, 8193)])"""
    key = file_key(path)
    if key is None or key not in _KNOWN:
        return False, None
    seps = _KNOWN[key]
    return True, None if seps is None else _cuts(seps, key[1], every)


def scan_file(path, every: int, block: int = 1 << 24) -> list[tuple[int, int, int]] | None:
    """cuts() of a file, read a block at a time (memory: one block), or of this process's earlier scan of it."""
    known, cuts = known_cuts(path, every)
    if known:
        return cuts
    s = ArrayScan()
    with open_input(Path(path)) as fh:
        while chunk := fh.read(block):
            s.feed(chunk)
    remember(path, s)
    return s.cuts(every)


def scan_bytes(data: bytes, every: int, block: int = 1 << 24) -> list[tuple[int, int, int]] | None:
    """cuts() of a whole byte string fed in blocks (tests feed small blocks to cross every boundary)."""
    s = ArrayScan()
    for i in range(0, len(data), block):
        s.feed(data[i:i + block])
    return s.cuts(every)


def span_body(text: str, first: bool) -> str:
    """The items of one range as the text of a JSON array: the opening "[" (first range), the separator
    comma ending a middle range and the closing "]" (last range) taken off.

    Example: '[{"a": 1}, {"a": 2},', first=True -> '[{"a": 1}, {"a": 2}]'
    """
    body = text.strip()
    if first:
        body = body.lstrip("\ufeff").lstrip()[1:]
    body = body.rstrip()
    body = body[:-1] if body.endswith(",") else body[:-1] if body.endswith("]") else body
    return f"[{body}]"


def item_texts(body: str) -> list[str]:
    """The text of each item of a JSON array's text (its structure already checked by the scan).
    Example: '[{"a": 1}, [2, 3]]' -> ['{"a": 1}', '[2, 3]']"""
    data = body.encode("utf-8", "surrogatepass")
    cuts = scan_bytes(data, 1)
    if cuts is None:  # one item (or none)
        inner = body.strip()[1:-1].strip()
        return [inner] if inner else []
    return [span_body(data[a:b].decode("utf-8", "surrogatepass"), i == 0)[1:-1].strip()
            for i, (a, b, _) in enumerate(cuts)]

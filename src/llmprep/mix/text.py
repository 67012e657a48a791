"""The text of an example, as dedup and decontamination see it: normalised, cut into units, hashed.

Units: a run of letters/digits is one word; a character of a script written without spaces (Han,
kana, Thai, Lao, Khmer, Myanmar) is one unit on its own, so n-grams over CJK text count characters.
Punctuation and whitespace separate units and are not units. Everything is case folded.

Example: units("Hello, 世界 2024!") -> (["hello", "世", "界", "2024"], [False, True, True, False])
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

import numpy as np
import xxhash

# Scripts written without spaces between words: one character is one unit.
NO_SPACE_SCRIPTS = ("\u0e00-\u0eff"  # Thai, Lao
                    "\u1000-\u109f"  # Myanmar
                    "\u1780-\u17ff"  # Khmer
                    "\u3040-\u30ff\u31f0-\u31ff"  # Hiragana, Katakana
                    "\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"  # Han
                    "\U00020000-\U0003134f")  # Han extensions B-G
_UNITS = re.compile(f"[{NO_SPACE_SCRIPTS}]|[^\\W{NO_SPACE_SCRIPTS}]+")
_RANGE_EDGES = np.array([e for lo, hi in re.findall("(.)-(.)", NO_SPACE_SCRIPTS) for e in (ord(lo), ord(hi) + 1)])
_PRIME = np.uint64(0x9E3779B97F4A7C15)  # odd multiplier of the polynomial n-gram hash (golden ratio)
_INV_PRIME = np.uint64(pow(0x9E3779B97F4A7C15, -1, 1 << 64))


def normalize_text(text: str, *, casefold: bool = True, collapse_whitespace: bool = True) -> str:
    """The text exact deduplication compares: whitespace runs -> one space (ends stripped), case folded.

    Example: normalize_text("  Hello\\n\\tWORLD ") -> "hello world"
    Example: normalize_text("Straße", casefold=True) -> "strasse"
    """
    if collapse_whitespace:
        text = " ".join(text.split())
    return text.casefold() if casefold else text


def example_text(kind: str, data: dict[str, Any]) -> str:
    """One string for an example: what dedup and decontamination compare.

    chat: each message's content, then its other fields (tool calls, reasoning...) as compact JSON,
    one message per line (roles are left out: they are the same words in every row), then the record's
    `tools` as JSON (the template renders them: two chats offering different tools are different rows);
    text: the document; pair: both sentences, one per line.
    Example: ("chat", {"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Yo"}]})
    -> "Hi\\nYo"
    """
    if kind == "chat":
        text = "\n".join(_message_text(m) for m in data["messages"])
        tools = data.get("tools")
        return f"{text}\n{json.dumps(tools, sort_keys=True, ensure_ascii=False)}" if tools else text
    if kind == "pair":
        return f"{data['text']}\n{data['text_pair']}"
    return data["text"]


def _message_text(message: dict[str, Any]) -> str:
    content = message.get("content")
    if len(message) == 2 and type(content) is str and "role" in message:
        return content  # {"role", "content"}: the common message, nothing else to add
    parts = [content or ""]
    for key in sorted(k for k in message if k not in ("role", "content")):
        value = message[key]
        if value not in (None, "", [], {}):
            parts.append(value if isinstance(value, str) else json.dumps(value, sort_keys=True, ensure_ascii=False))
    return "\n".join(p if isinstance(p, str) else json.dumps(p, ensure_ascii=False) for p in parts)


def units(text: str) -> tuple[list[str], list[bool]]:
    """Case-folded units of `text` and whether each is a no-space-script character.

    Example: units("Hello, 世界 2024!") -> (["hello", "世", "界", "2024"], [False, True, True, False])
    """
    found = _UNITS.findall(text.casefold())
    return found, _first_is_cjk(found).tolist()


def _first_is_cjk(tokens: list[str]) -> np.ndarray:
    """Whether each unit is a no-space-script character: exactly when its first character is one (the word
    pattern excludes those scripts). One UTF-32 buffer and a vectorised range test, no per-unit Python."""
    if not tokens:
        return np.zeros(0, dtype=bool)
    cps = np.frombuffer("\x00".join(tokens).encode("utf-32-le", "surrogatepass"), dtype=np.uint32)
    first = cps[np.r_[0, np.flatnonzero(cps == 0) + 1]]
    return (np.searchsorted(_RANGE_EDGES, first, side="right") % 2) == 1


def unit_hashes(tokens: list[str]) -> np.ndarray:
    """Stable 64-bit hash of each unit (xxh64, seed 0): the same in every process and run.

    Example: unit_hashes(["a", "a", "b"]) -> uint64 array whose first two values are equal
    """
    # units repeat: hash each distinct one once
    table = {t: xxhash.xxh64_intdigest(t.encode("utf-8", "surrogatepass")) for t in dict.fromkeys(tokens)}
    return np.fromiter(map(table.__getitem__, tokens), dtype=np.uint64, count=len(tokens))


@dataclass
class UnitBatch:
    """The units of a batch of texts, hashed: h[offsets[i]:offsets[i+1]] are text i's unit hashes and
    cjk marks the no-space-script characters among them."""

    h: np.ndarray
    cjk: np.ndarray
    offsets: np.ndarray
    _prefix: np.ndarray | None = None  # C of _span_hashes, computed once per batch

    def prefix(self) -> np.ndarray:
        if self._prefix is None:
            _, inv = _powers(len(self.h) + 1)
            self._prefix = np.zeros(len(self.h) + 1, dtype=np.uint64)
            with np.errstate(over="ignore"):
                np.cumsum(self.h * inv[:len(self.h)], out=self._prefix[1:])
        return self._prefix

    @classmethod
    def of(cls, texts: list[str]) -> "UnitBatch":
        """The units of `texts` (as `units`), hashed (as `unit_hashes`), found and hashed with whole-batch
        array steps rather than per unit in Python (about 2x faster; tests check equality on real text in
        many scripts and on random Unicode). A text holding NUL (the separator used here) takes the per-text way.

        Example: UnitBatch.of(["a b", "你好"]) -> 4 unit hashes, cjk [F, F, T, T], offsets [0, 2, 4]
        """
        joined = "\x00".join(t.casefold() for t in texts)
        cps = np.frombuffer(joined.encode("utf-32-le", "surrogatepass"), dtype=np.uint32)
        separators = np.flatnonzero(cps == 0)
        if len(separators) != len(texts) - 1:  # no text at all, or a NUL in one
            return cls._of_each(texts)
        kind = _char_kinds(cps)
        starts, ends = _unit_spans(kind)
        # UTF-8 byte offset of every character: unit_hashes hashes a unit's UTF-8 bytes. (encode._utf8_positions
        # maps a few positions of a long text by searchsorted; for a position per unit, as here, the dense
        # offsets are ~2x faster: measured, 4 against 9 ms per 2,000 chats.)
        size = 1 + (cps >= 0x80).view(np.uint8) + (cps >= 0x800).view(np.uint8) + (cps >= 0x10000).view(np.uint8)
        at = np.zeros(len(cps) + 1, dtype=np.int64)
        np.cumsum(size, out=at[1:])
        buf = np.frombuffer(joined.encode("utf-8", "surrogatepass"), dtype=np.uint8)
        h = _xxh64_spans(buf, at[starts], at[ends] - at[starts])
        offsets = np.searchsorted(starts, np.r_[0, separators + 1, len(cps)]).astype(np.int64)
        return cls(h, kind[starts] == _NO_SPACE, offsets)

    @classmethod
    def _of_each(cls, texts: list[str]) -> "UnitBatch":
        """UnitBatch.of, text by text with the _UNITS regex (the definition the array steps reproduce)."""
        tokens: list[str] = []
        lengths = []
        for text in texts:
            found = _UNITS.findall(text.casefold())
            tokens += found
            lengths.append(len(found))
        offsets = np.zeros(len(texts) + 1, dtype=np.int64)
        np.cumsum(lengths, out=offsets[1:])
        return cls(unit_hashes(tokens), _first_is_cjk(tokens), offsets)


# What each character is to _UNITS: a separator, part of a word, or a no-space-script character (a unit alone).
_SEPARATOR, _WORD, _NO_SPACE = 0, 1, 2
_WORD_CHAR = re.compile(f"[^\\W{NO_SPACE_SCRIPTS}]")
_NO_SPACE_CHAR = re.compile(f"[{NO_SPACE_SCRIPTS}]")
_BMP_KINDS: list[np.ndarray] = []


def _kinds_of(chars: str) -> np.ndarray:
    """The kind of each character of `chars`, decided by the same character classes as _UNITS (so Python's
    own Unicode \\w): a character a class's substitution changes is in that class."""
    base = np.frombuffer(chars.encode("utf-32-le", "surrogatepass"), dtype=np.uint32)
    kinds = np.full(len(base), _SEPARATOR, dtype=np.uint8)
    for kind, pattern in ((_WORD, _WORD_CHAR), (_NO_SPACE, _NO_SPACE_CHAR)):  # NUL is in neither class
        marked = np.frombuffer(pattern.sub("\x00", chars).encode("utf-32-le", "surrogatepass"), dtype=np.uint32)
        kinds[marked != base] = kind
    return kinds


def _char_kinds(cps: np.ndarray) -> np.ndarray:
    """Kind of each code point: a table of the Basic Multilingual Plane (built once per process, ~15 ms), the
    few distinct code points above it classified on the spot."""
    if not _BMP_KINDS:
        _BMP_KINDS.append(_kinds_of("".join(map(chr, range(0x10000)))))
    table = _BMP_KINDS[0]
    if not len(cps) or cps.max() < 0x10000:
        return table[cps]
    high = cps >= 0x10000
    kinds = table[np.where(high, 0, cps)]
    distinct = np.unique(cps[high])
    kinds[high] = _kinds_of("".join(map(chr, distinct.tolist())))[np.searchsorted(distinct, cps[high])]
    return kinds


def _unit_spans(kind: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(start, end) character positions of the units, in order: maximal runs of word characters, and each
    no-space-script character alone. Example: kinds of "ab 你好" -> starts [0, 3, 4], ends [2, 4, 5]"""
    edges = np.diff(np.r_[False, kind == _WORD, False].view(np.int8))
    alone = np.flatnonzero(kind == _NO_SPACE)
    starts = np.concatenate([np.flatnonzero(edges == 1), alone])
    ends = np.concatenate([np.flatnonzero(edges == -1), alone + 1])
    order = np.argsort(starts, kind="stable")
    return starts[order], ends[order]


_X1, _X2, _X3, _X4, _X5 = (np.uint64(x) for x in (0x9E3779B185EBCA87, 0xC2B2AE3D27D4EB4F, 0x165667B19E3779F9,
                                                 0x85EBCA77C2B2AE63, 0x27D4EB2F165667C5))  # xxh64's primes
_SHORT = 32  # xxh64 hashes an input of fewer bytes without its four-lane stripe loop


def _xxh64_spans(buf: np.ndarray, start: np.ndarray, length: np.ndarray) -> np.ndarray:
    """xxhash.xxh64_intdigest (seed 0) of each buf[start:start+length]. Spans under 32 bytes (nearly every
    unit) are hashed as arrays, all spans of one length together (they take the same steps: 8-byte lanes,
    a 4-byte lane, single bytes, the final mix); longer ones with xxhash itself."""
    out = np.empty(len(start), dtype=np.uint64)
    length = length.astype(np.int64)
    short = length < _SHORT
    for i in np.flatnonzero(~short).tolist():
        out[i] = xxhash.xxh64_intdigest(buf[start[i]:start[i] + length[i]].tobytes())
    order = np.flatnonzero(short)
    order = order[np.argsort(length[order].astype(np.uint8), kind="stable")]
    bounds = np.searchsorted(length[order], np.arange(_SHORT + 1))
    with np.errstate(over="ignore"):
        for n in range(1, _SHORT):
            which = order[bounds[n]:bounds[n + 1]]
            if len(which):
                out[which] = _xxh64_fixed(buf[start[which, None] + np.arange(n)], n)
    return out


def _rotl(x: np.ndarray, r: int) -> np.ndarray:
    return (x << np.uint64(r)) | (x >> np.uint64(64 - r))


def _xxh64_fixed(data: np.ndarray, n: int) -> np.ndarray:
    """xxh64 (seed 0) of each row of `data`, (rows, n) bytes with n < 32."""
    h = np.full(len(data), _X5 + np.uint64(n), dtype=np.uint64)
    p = 0
    while p + 8 <= n:
        lane = np.ascontiguousarray(data[:, p:p + 8]).view("<u8")[:, 0]
        h = _rotl(h ^ (_rotl(lane * _X2, 31) * _X1), 27) * _X1 + _X4
        p += 8
    if p + 4 <= n:
        lane = np.ascontiguousarray(data[:, p:p + 4]).view("<u4")[:, 0].astype(np.uint64)
        h = _rotl(h ^ (lane * _X1), 23) * _X2 + _X3
        p += 4
    for q in range(p, n):
        h = _rotl(h ^ (data[:, q].astype(np.uint64) * _X5), 11) * _X1
    h ^= h >> np.uint64(33)
    h *= _X2
    h ^= h >> np.uint64(29)
    h *= _X3
    return h ^ (h >> np.uint64(32))


def ngram_hashes(texts: list[str] | UnitBatch, n_words: int, n_chars: int, *,
                 short_runs: bool) -> tuple[np.ndarray, np.ndarray]:
    """64-bit hashes of the n-grams of each text, flat, with row offsets (row i: flat[off[i]:off[i+1]]).

    N-grams stay inside one script run: a maximal stretch of one text's units of one kind (words, or
    no-space-script characters); word runs give n_words-grams, character runs n_chars-grams. A run
    shorter than its n gives one n-gram of the whole run when `short_runs` (MinHash shingles of a
    short text), none otherwise (decontamination). Equal n-grams hash equal in any text, process or run.
    Example: (["a b c d e f g", "hi there"], 5, 5, short_runs=True) -> 3 + 1 hashes, offsets [0, 3, 4]
    """
    ub = texts if isinstance(texts, UnitBatch) else UnitBatch.of(texts)
    m = len(ub.h)
    boundary = np.zeros(m, dtype=bool)
    boundary[ub.offsets[:-1][ub.offsets[:-1] < m]] = True  # a text's first unit starts a run
    if m:
        boundary[1:] |= ub.cjk[1:] != ub.cjk[:-1]
    run_starts = np.flatnonzero(boundary)
    run_len = np.r_[run_starts[1:], m] - run_starts
    run_n = np.where(ub.cjk[run_starts], n_chars, n_words)
    count = np.maximum(run_len - run_n + 1, 0)
    if short_runs:
        count[count == 0] = 1  # runs are never empty
    width = np.minimum(run_n, run_len)
    run_row = np.searchsorted(ub.offsets, run_starts, side="right") - 1
    return _windows(ub, run_starts, count, width, run_row)


def window_hashes(texts: list[str] | UnitBatch, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Hashes of every n consecutive units of each text, across script runs (a whole short benchmark
    item is one such window). Equal to ngram_hashes' hash for the same units.
    Example: (["a b c"], 2) -> 2 hashes, offsets [0, 2]
    """
    ub = texts if isinstance(texts, UnitBatch) else UnitBatch.of(texts)
    starts = ub.offsets[:-1]
    count = np.maximum(np.diff(ub.offsets) - n + 1, 0)
    return _windows(ub, starts, count, np.full(len(starts), n), np.arange(len(starts)))


def _windows(ub: UnitBatch, first: np.ndarray, count: np.ndarray, width: np.ndarray,
             row: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Hash `count[j]` windows of `width[j]` units starting at first[j], first[j]+1, ...; row offsets."""
    step = np.arange(count.sum()) - np.repeat(np.cumsum(count) - count, count)
    s = np.repeat(first, count) + step
    e = s + np.repeat(width, count)
    offsets = np.zeros(len(ub.offsets), dtype=np.int64)
    np.cumsum(np.bincount(np.repeat(row, count), minlength=len(ub.offsets) - 1), out=offsets[1:])
    return _span_hashes(ub.h, s, e, ub.prefix()), offsets


def _span_hashes(h: np.ndarray, s: np.ndarray, e: np.ndarray, prefix: np.ndarray | None = None) -> np.ndarray:
    """Hash of each span h[s:e]: the polynomial sum_k h[k] * P^(e-1-k) mod 2^64, from prefix sums.

    P is odd, so it has an inverse Q mod 2^64: with C[i] = sum_{j<i} h[j] * Q^j the span's polynomial
    is P^(e-1) * (C[e] - C[s]), one vectorised step for spans of any length. The length is mixed in
    so a short run's one hash never equals a longer n-gram's by construction.
    """
    if len(s) == 0:
        return np.zeros(0, dtype=np.uint64)
    pw, inv = _powers(len(h) + 1)
    with np.errstate(over="ignore"):
        c = prefix
        if c is None:
            c = np.zeros(len(h) + 1, dtype=np.uint64)
            np.cumsum(h * inv[:len(h)], out=c[1:])
        poly = pw[e - 1] * (c[e] - c[s])
        return _mix(poly + (e - s).astype(np.uint64) * _LENGTH_SALT)


_POWERS: list[np.ndarray] = []
_LENGTH_SALT = np.uint64(0xD6E8FEB86659FD93)


def _powers(n: int) -> tuple[np.ndarray, np.ndarray]:
    """P^i and Q^i (Q = P^-1 mod 2^64) for i < n, grown as needed and kept."""
    if not _POWERS or len(_POWERS[0]) < n:
        size = max(n, 2 * len(_POWERS[0]) if _POWERS else 1 << 16)
        with np.errstate(over="ignore"):
            pw = np.cumprod(np.full(size, _PRIME, dtype=np.uint64))
            inv = np.cumprod(np.full(size, _INV_PRIME, dtype=np.uint64))
        one = np.ones(1, dtype=np.uint64)
        _POWERS[:] = [np.r_[one, pw[:-1]], np.r_[one, inv[:-1]]]
    return _POWERS[0], _POWERS[1]


def _mix(x: np.ndarray) -> np.ndarray:
    """splitmix64's finaliser: spreads the polynomial hash over all 64 bits."""
    with np.errstate(over="ignore"):
        x = x ^ (x >> np.uint64(30))
        x = x * np.uint64(0xBF58476D1CE4E5B9)
        x = x ^ (x >> np.uint64(27))
        x = x * np.uint64(0x94D049BB133111EB)
        return x ^ (x >> np.uint64(31))

"""A small reference byte-level BPE: the GPT-2 byte alphabet and merge-by-rank encoding.

Used to add merges so new words become single tokens, to find which merges a corpus uses when
pruning, and as an independent reference the HF fast tokenizer is tested against.
"""

from __future__ import annotations

import functools


@functools.lru_cache(maxsize=1)
def byte_to_unicode() -> dict[int, str]:
    """GPT-2's reversible map from bytes to printable characters. Example: 32 (" ") -> "Ġ" """
    keep = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + \
        list(range(ord("®"), ord("ÿ") + 1))
    chars = keep[:]
    extra = 0
    for b in range(256):
        if b not in keep:
            keep.append(b)
            chars.append(256 + extra)
            extra += 1
    return {b: chr(c) for b, c in zip(keep, chars)}


def to_byte_level(text: str) -> str:
    """UTF-8 bytes of `text` as byte-level characters. Example: " 中" -> "Ġä¸Ń" """
    table = byte_to_unicode()
    return "".join(table[b] for b in text.encode("utf-8"))


def merges_as_pairs(merges: list) -> list[tuple[str, str]]:
    """tokenizer.json merges in either format. Example: ["a b"] or [["a", "b"]] -> [("a", "b")]"""
    return [tuple(m.split(" ", 1)) if isinstance(m, str) else (m[0], m[1]) for m in merges]


def bpe_encode(word: str, ranks: dict[tuple[str, str], int]) -> list[str]:
    """Merge the lowest-ranked adjacent pair until none applies (HF tokenizers' BPE order).

    Example: word "abc", ranks {("b","c"): 0, ("a","bc"): 1} -> ["abc"]
    """
    return bpe_encode_trace(word, ranks)[0]


def bpe_encode_trace(word: str, ranks: dict[tuple[str, str], int]) -> tuple[list[str], list[tuple[str, str]]]:
    """Like bpe_encode, also returning the merges applied.

    Example: "abc", {("b","c"): 0} -> (["a", "bc"], [("b", "c")])
    """
    symbols, used = list(word), []
    while len(symbols) > 1:
        best, at = None, -1
        for i in range(len(symbols) - 1):
            rank = ranks.get((symbols[i], symbols[i + 1]))
            if rank is not None and (best is None or rank < best):
                best, at = rank, i
        if best is None:
            break
        used.append((symbols[at], symbols[at + 1]))
        symbols[at:at + 2] = [symbols[at] + symbols[at + 1]]
    return symbols, used

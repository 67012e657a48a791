"""Compare tokenizers on a corpus: `llmprep vocab compare`.

Each tokenizer is run through its own engine: a SentencePiece `.model` file through sentencepiece,
anything with a tokenizer.json through HF `tokenizers` (a directory holding both uses tokenizer.json,
which is what transformers loads).
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import sentencepiece as spm
from tokenizers import Tokenizer

from llmprep.errors import ConfigError
from llmprep.tokenizer import EMBEDDED, embedded_path

_BYTE_PIECE = re.compile(r"^<0x[0-9A-Fa-f]{2}>$")


@dataclass
class Engine:
    """Batch encode/decode and the ids that count as byte fallback or unknown."""

    name: str
    encode: Callable[[list[str]], list[list[int]]]
    decode: Callable[[list[int]], str]
    byte_ids: frozenset[int]
    unk_id: int | None


def load_engine(spec: str, *, flag: str = "--tokenizers") -> Engine:
    """Open a tokenizer for comparison.

    Example: "mistral/tokenizer.model" -> sentencepiece engine; "smollm2" -> tokenizers engine
    """
    p = embedded_path(spec) if spec in EMBEDDED else Path(spec)
    if p.is_dir():
        if (p / "tokenizer.json").is_file():
            p = p / "tokenizer.json"
        elif (p / "tokenizer.model").is_file():
            p = p / "tokenizer.model"
    if not p.is_file():
        raise ConfigError(f"{flag} {spec!r}: no such file, or a directory without tokenizer.json "
                          "or tokenizer.model; expected one of those or an embedded name "
                          f"({', '.join(EMBEDDED)})")
    if p.suffix == ".json":
        tok = Tokenizer.from_file(str(p))
        vocab = tok.get_vocab()
        byte_ids = frozenset(i for piece, i in vocab.items() if _BYTE_PIECE.match(piece))
        unk = tok.model.unk_token if hasattr(tok.model, "unk_token") else None
        return Engine(spec, lambda xs: [e.ids for e in tok.encode_batch(xs, add_special_tokens=False)],
                      lambda ids: tok.decode(ids, skip_special_tokens=False), byte_ids,
                      vocab.get(unk) if unk else None)
    try:
        sp = spm.SentencePieceProcessor(model_file=str(p))
    except (RuntimeError, OSError) as exc:
        raise ConfigError(f"{flag} {spec!r}: not a SentencePiece model or tokenizer.json ({exc})") from exc
    byte_ids = frozenset(i for i in range(sp.get_piece_size()) if sp.is_byte(i))
    return Engine(spec, lambda xs: sp.encode(xs), lambda ids: sp.decode(ids), byte_ids,
                  sp.unk_id() if sp.unk_id() >= 0 else None)


@dataclass
class CompareRow:
    """One tokenizer's numbers on a corpus."""

    tokenizer: str
    characters: int
    tokens: int
    byte_fallback: int
    unknown: int
    roundtrip_failures: int
    seconds: float

    @property
    def tokens_per_char(self) -> float:
        return self.tokens / max(self.characters, 1)

    @property
    def chars_per_token(self) -> float:
        return self.characters / max(self.tokens, 1)

    def as_dict(self) -> dict:
        """Row for JSON/table output, with derived ratios."""
        return {**self.__dict__, "tokens_per_char": round(self.tokens_per_char, 4),
                "chars_per_token": round(self.chars_per_token, 4),
                "byte_fallback_share": round(self.byte_fallback / max(self.tokens, 1), 4),
                "unknown_share": round(self.unknown / max(self.tokens, 1), 4),
                "chars_per_second": round(self.characters / max(self.seconds, 1e-9))}


def measure(engine: Engine, lines: Sequence[str]) -> CompareRow:
    """Encode every line, count, and check decode(encode(x)) == x.

    Example: measure(load_engine("smollm2"), ["hello world"]) -> CompareRow(tokens=2, ...)
    """
    lines = list(lines)
    start = time.perf_counter()
    encoded = engine.encode(lines)
    seconds = time.perf_counter() - start
    tokens = sum(len(ids) for ids in encoded)
    byte = sum(1 for ids in encoded for i in ids if i in engine.byte_ids)
    unk = sum(ids.count(engine.unk_id) for ids in encoded) if engine.unk_id is not None else 0
    failures = sum(1 for line, ids in zip(lines, encoded) if engine.decode(ids) != line)
    return CompareRow(engine.name, sum(map(len, lines)), tokens, byte, unk, failures,
                      round(seconds, 4))


def compare(tokenizers: Sequence[str], lines: Sequence[str]) -> list[CompareRow]:
    """measure() for each tokenizer. Example: compare(["a.model", "b/"], lines) -> [row_a, row_b]"""
    if not tokenizers:
        raise ConfigError("--tokenizers: none given; expected one or more tokenizers")
    return [measure(load_engine(spec), lines) for spec in tokenizers]


def render_table(rows: Sequence[CompareRow], *, baseline: int = 0) -> str:
    """Plain-text table; `vs first` is the token count relative to the first tokenizer.

    Example: two rows -> a header and two lines, the second saying "-31.9%".
    """
    head = ["tokenizer", "tokens", "tok/char", "char/tok", "byte-fb", "unk", "rt-fail",
            "chars/s", "vs first"]
    table = [head]
    base = rows[baseline].tokens if rows else 1
    for r in rows:
        d = r.as_dict()
        table.append([r.tokenizer, f"{r.tokens:,}", f"{d['tokens_per_char']:.3f}",
                      f"{d['chars_per_token']:.3f}", f"{d['byte_fallback_share']:.1%}",
                      f"{d['unknown_share']:.2%}", str(r.roundtrip_failures),
                      f"{d['chars_per_second']:,}", f"{r.tokens / max(base, 1) - 1:+.1%}"])
    widths = [max(len(row[i]) for row in table) for i in range(len(head))]
    return "\n".join("  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in
                               enumerate(zip(row, widths))) for row in table)

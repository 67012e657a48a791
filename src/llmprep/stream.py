"""Continued-pretraining data from text corpora larger than memory: read, tokenize, wrap, write.

The Python-API counterpart of `llmprep prepare --pack wrap` (which is itself bounded in memory now;
the CLI's `--stream` flag is an alias of it) for two things prepare does not do: paragraph documents
in .txt files (blank-line separated) and documents longer than memory (read in pieces).

Memory is bounded by one tokenization batch (`batch_size` documents or `batch_chars` characters,
whichever comes first; long documents are read in pieces of `max_doc_chars`), the carry of less than
one block, and one Arrow record batch of rows. It does not grow with the corpus (docs/packing.md).

Inputs: .txt (documents are paragraphs separated by blank lines, or lines with txt_mode="line")
and .jsonl (one JSON object per line with a `text_field` string; bad lines go to rejected.jsonl).
"""

from __future__ import annotations

import gzip
import hashlib
import json
from pathlib import Path
from typing import IO, Any, Iterator

import numpy as np

from llmprep.errors import ConfigError, LlmprepError, RecordError
from llmprep.output import PACKED_SCHEMA, SplitWriter, packed_table, write_dataset_dict
from llmprep.pack import WrapPacker, boundary_tokens, with_boundaries
from llmprep.records import (
    DEFAULT_MAX_RECORD_BYTES,
    Record,
    expand_inputs,
    file_kind,
    has_surrogate,
    parse_record,
    text_lines,
)
from llmprep.store import REJECTED, REPORT, atomic_output_dir, write_json

TXT_MODES = ("paragraph", "line")
Piece = tuple[str, bool, bool]  # (text, is the document's first piece, is its last piece)


def _read_pieces(fh: IO[str], limit: int) -> Iterator[str]:
    """Lines of a file, each cut into pieces of at most `limit` chars. Example: "abcde\\n", 2 -> ab, cd, e\\n"""
    while piece := fh.readline(limit):
        yield piece


def txt_documents(path: Path, *, mode: str = "paragraph", max_doc_chars: int = 1 << 20,
                  rejects: IO[str] | None = None) -> Iterator[Piece]:
    """Documents of a text file (.txt or .txt.gz), as pieces of at most ~max_doc_chars.

    A document holding bytes that are not UTF-8 goes to `rejects` (file, first line, reason, the text
    with U+FFFD where the bad bytes were) instead of being tokenized.
    Example (paragraph): "a\\nb\\n\\nc\\n" -> ("a\\nb", True, True), ("c", True, True)
    """
    buf: list[str] = []
    size, first, line, start_line = 0, True, 1, 1

    def emit(text: str, is_first: bool, is_last: bool) -> Iterator[Piece]:
        if not has_surrogate(text):
            yield text, is_first, is_last
        elif rejects is not None:
            shown = text.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
            rejects.write(json.dumps({"source": str(path), "line": start_line, "field": None,
                                      "reason": "not valid UTF-8", "record": shown}, ensure_ascii=False) + "\n")

    opener = gzip.open if path.name.endswith(".gz") else open
    # utf-8-sig: a byte-order mark at the start of the file is not text to train on
    with opener(path, "rt", encoding="utf-8-sig", errors="surrogateescape") as fh:
        for piece in _read_pieces(fh, max_doc_chars):
            line_end = piece.endswith("\n")
            blank = not piece.strip()
            boundary = line_end and (mode == "line" or blank)
            if not buf and not blank:
                start_line = line
            if not blank or (buf and mode == "paragraph" and not boundary):
                buf.append(piece)
                size += len(piece)
            if boundary:
                if buf or not first:
                    yield from emit("".join(buf).rstrip("\n"), first, True)
                buf, size, first = [], 0, True
            elif size >= max_doc_chars:
                yield from emit("".join(buf), first, False)
                buf, size, first = [], 0, False
            line += line_end
    if buf or not first:
        yield from emit("".join(buf).rstrip("\n"), first, True)


def _split_text(text: str, limit: int) -> list[str]:
    """Cut a long text after a newline or space near `limit`. Example: "aa bb cc", 4 -> ["aa ", "bb ", "cc"]"""
    pieces = []
    while len(text) > limit:
        cut = max(text.rfind("\n", 0, limit), text.rfind(" ", 0, limit)) + 1 or limit
        pieces.append(text[:cut])
        text = text[cut:]
    return pieces + [text]


def jsonl_documents(path: Path, *, text_field: str, rejects: IO[str],
                    max_doc_chars: int = 1 << 20, max_record_bytes: int = DEFAULT_MAX_RECORD_BYTES) -> Iterator[Piece]:
    """Documents from a .jsonl (or .jsonl.gz) file's `text_field`; unusable lines go to `rejects`
    with file, line, field, reason and the raw line.

    Example: '{"text": "hi"}' -> ("hi", True, True); '{"body": 1}' -> a rejected.jsonl line
    """
    for line_no, text in text_lines(path, max_record_bytes=max_record_bytes):
        rec = text if isinstance(text, Record) else parse_record(Record(str(path), line_no, raw=text.rstrip("\n")))
        value = rec.data.get(text_field) if rec.data is not None else None
        if rec.error is not None or not isinstance(value, str):
            err = rec.error or RecordError(f"missing or not a string (the --text-field is {text_field!r})",
                                           field=text_field)
            rejects.write(json.dumps({"source": str(path), "line": line_no, "field": err.field, "reason": err.reason,
                                      "record": rec.raw if rec.data is None else rec.data},
                                     ensure_ascii=False) + "\n")
            continue
        pieces = _split_text(value, max_doc_chars)
        for i, piece in enumerate(pieces):
            yield piece, i == 0, i == len(pieces) - 1


def _batches(pieces: Iterator[Piece], batch_size: int, batch_chars: int) -> Iterator[list[Piece]]:
    """Group pieces by count and total characters. Example: 3 pieces, batch_size 2 -> [p1, p2], [p3]"""
    batch: list[Piece] = []
    chars = 0
    for piece in pieces:
        batch.append(piece)
        chars += len(piece[0])
        if len(batch) >= batch_size or chars >= batch_chars:
            yield batch
            batch, chars = [], 0
    if batch:
        yield batch


def _check(inputs: list[str], block_size: int, remainder: str, txt_mode: str) -> list[Path]:
    """Validate options and input paths together; one ConfigError listing every problem."""
    problems = []
    paths: list[Path] = []
    if not inputs:
        problems.append("inputs: no input files given")
    for item in inputs:  # directories and globs expand as in `prepare`
        p = Path(item)
        if p.is_dir() or (not p.exists() and any(ch in item for ch in "*?[")):
            try:
                paths += expand_inputs([item])
            except ConfigError as exc:
                problems.append(str(exc))
        else:
            paths.append(p)
    for p in paths:
        if not p.is_file():
            problems.append(f"input {str(p)!r}: not a file")
        elif file_kind(p) not in (".txt", ".jsonl"):
            problems.append(f"input {str(p)!r}: --stream reads .txt or .jsonl (or .gz of them), "
                            f"got {p.suffix or 'no suffix'!r}")
    if txt_mode not in TXT_MODES:
        problems.append(f"txt_mode {txt_mode!r}: expected one of {', '.join(TXT_MODES)}")
    try:
        WrapPacker(block_size, pad_token_id=0, remainder=remainder)
    except ConfigError as exc:
        problems.append(str(exc))
    if problems:
        raise ConfigError("; ".join(problems))
    return paths


def _encode(tokenizer, batch: list[Piece], bos: int | None, eos: int | None) -> tuple[np.ndarray, np.ndarray, int]:
    """Tokenize a batch of pieces; BOS/EOS on document edges. Returns (ids, segment starts, documents)."""
    encoded = tokenizer([text for text, _, _ in batch], add_special_tokens=False)["input_ids"]
    docs = [with_boundaries(ids, bos, eos, first=first, last=last)
            for ids, (_, first, last) in zip(encoded, batch)]
    lengths = np.array([len(d) for d in docs], dtype=np.int64)
    ids = np.fromiter((t for d in docs for t in d), dtype=np.int64, count=int(lengths.sum()))
    starts = np.zeros(len(ids), dtype=bool)
    offsets = np.concatenate([[0], np.cumsum(lengths)[:-1]])
    firsts = np.array([first for _, first, _ in batch], dtype=bool) & (lengths > 0)
    starts[offsets[firsts]] = True
    return ids, starts, int(firsts.sum())


def prepare_stream(inputs: list[str], *, tokenizer, out, block_size: int, remainder: str = "drop",
                   text_field: str = "text", batch_size: int = 1000, batch_chars: int = 4_000_000,
                   txt_mode: str = "paragraph", max_doc_chars: int = 1 << 20,
                   max_record_bytes: int = DEFAULT_MAX_RECORD_BYTES) -> dict:
    """Tokenize text files into wrapped blocks of `block_size` in bounded memory; write DIR.

    DIR loads with `datasets.load_from_disk(DIR)` as a DatasetDict with "train"; DIR/report.json holds
    the returned report. Example: prepare_stream(["corpus.txt"], tokenizer=tok, out="cpt", block_size=2048)
    -> {"documents": ..., "packing": {"strategy": "wrap", "rows": ..., "fill": 1.0, ...}, ...}
    """
    paths = _check(inputs, block_size, remainder, txt_mode)
    bos, eos = boundary_tokens(tokenizer)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else eos
    packer = WrapPacker(block_size, pad_token_id=pad if pad is not None else 0, remainder=remainder)
    counts = {"rows": 0, "tokens": 0, "padding_tokens": 0, "documents": 0}
    fingerprint = hashlib.sha256(repr(([(str(p), p.stat().st_size, p.stat().st_mtime_ns) for p in paths],
                                       getattr(tokenizer, "name_or_path", None), block_size, remainder,
                                       text_field, txt_mode)).encode()).hexdigest()[:16]
    with atomic_output_dir(out) as tmp:
        writer = SplitWriter(tmp / "train", fingerprint=f"{fingerprint}-train")
        with open(tmp / REJECTED, "w", encoding="utf-8", errors="backslashreplace") as rejects:
            for path in paths:
                pieces = (jsonl_documents(path, text_field=text_field, rejects=rejects, max_doc_chars=max_doc_chars,
                                          max_record_bytes=max_record_bytes)
                          if file_kind(path) == ".jsonl"
                          else txt_documents(path, mode=txt_mode, max_doc_chars=max_doc_chars, rejects=rejects))
                for batch in _batches(pieces, batch_size, batch_chars):
                    ids, starts, docs = _encode(tokenizer, batch, bos, eos)
                    counts["documents"] += docs
                    _write(writer, packer.add_arrays(ids, ids, starts), counts)
            _write(writer, packer.finish(), counts)
        writer.close(PACKED_SCHEMA)
        write_dataset_dict(tmp, ["train"])
        rejected = sum(1 for _ in open(tmp / REJECTED, encoding="utf-8"))
        if counts["rows"] == 0:  # loud, and nothing written: an empty dataset that looks complete helps no one
            first = open(tmp / REJECTED, encoding="utf-8").readline().strip()
            raise LlmprepError(f"--stream wrote no block: {counts['documents']} documents ({packer.dropped} tokens "
                               f"dropped as a partial block), {rejected} rejected" +
                               (f"; first reject: {first}" if first else ""))
        report = _report(paths, tokenizer, block_size, remainder, bos, eos, packer, counts, rejected)
        write_json(tmp / REPORT, report)
    return report


def _write(writer: SplitWriter, rows: dict[str, list[list[int]]], counts: dict[str, int]) -> None:
    """Write one batch of rows and count them."""
    if not rows["input_ids"]:
        return
    writer.write(packed_table(rows))
    counts["rows"] += len(rows["input_ids"])
    real = sum(sum(m) for m in rows["attention_mask"])
    counts["tokens"] += real
    counts["padding_tokens"] += sum(len(m) for m in rows["attention_mask"]) - real


def _report(paths: list[Path], tokenizer, block_size: int, remainder: str, bos: int | None, eos: int | None,
            packer: WrapPacker, counts: dict[str, int], rejected: int) -> dict[str, Any]:
    """report.json: inputs, counts, and the same "packing" block as `llmprep prepare --pack wrap`."""
    rows = counts["rows"]
    return {
        "mode": "stream",
        "inputs": [str(p) for p in paths],
        "tokenizer": getattr(tokenizer, "name_or_path", None),
        "documents": counts["documents"],
        "rejected": rejected,
        "boundaries": {"bos": bos, "eos": eos},
        "splits": {"train": rows},
        "packing": {"strategy": "wrap", "max_length": block_size, "remainder": remainder, "rows": rows,
                    "examples_packed": counts["documents"], "tokens": counts["tokens"],
                    "fill": round(counts["tokens"] / (rows * block_size), 6) if rows else 0.0,
                    "remainder_tokens_dropped": packer.dropped, "padding_tokens": counts["padding_tokens"]},
    }

"""Content-addressed cache of processed shards, with checksums, a size cap (LRU) and a manifest.

A shard's key hashes the *bytes of its records* (not file names or line numbers), the llmprep version,
the tokenizer's full serialisation, the template source and every encoding option. Renaming or moving
an input, or adding a new file, leaves the other shards' keys unchanged; changing anything that
shapes tokens changes every key, so a stale entry can never be served.

Entry file (also the run's spill file, see docs/scale.md):

    <Arrow IPC stream: columns ids, labels [, token_type_ids] (+ class_labels); shard meta as JSON
     in the schema metadata> + b"LLMPREP1" + sha256(everything before)

An entry whose trailer does not match (truncated, bit-flipped, emptied) is a miss: recomputed and
overwritten. Entries are written to a temp file and renamed, so readers never see a partial entry,
and two runs sharing one cache dir both succeed. A hit touches the entry's mtime: `prune` evicts the
least recently used entries down to a size cap.

Location: --cache-dir, else $LLMPREP_CACHE, else $XDG_CACHE_HOME/llmprep, else ~/.cache/llmprep.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import re
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa

from llmprep.arrowcols import list_flat
from llmprep.encode import Encoded
from llmprep.errors import ConfigError
from llmprep.records import Record

VERSION = 4  # bump when the entry layout changes
MAGIC = b"LLMPREP1"
TRAILER = len(MAGIC) + 32
DEFAULT_MAX_SIZE = "20G"
MANIFEST = "last-run.json"


def default_cache_dir() -> Path:
    if os.environ.get("LLMPREP_CACHE"):
        return Path(os.environ["LLMPREP_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "llmprep"


def parse_size(text: str | int) -> int:
    """'20G' -> 20 * 10**9 bytes; '512M', '1.5T', '1000' (bytes) too. Decimal units, as `df -H`."""
    if isinstance(text, int):
        return text
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([KMGT]?)B?\s*", str(text), re.IGNORECASE)
    if not m:
        raise ConfigError(f"--max-size {text!r}: expected a size like 500M, 20G or 1.5T")
    return int(float(m.group(1)) * 10 ** (3 * " KMGT".index(m.group(2).upper() or " ")))


def record_bytes(rec: Record) -> bytes:
    """What a record contributes to its shard's key: its content only, never its file or line.

    Example: Record("a.jsonl", 3, raw='{"x": 1}') and Record("b.jsonl", 9, raw='{"x": 1}') -> same bytes
    """
    if rec.error is not None:
        body = f"E\x00{rec.error.field}\x00{rec.error.reason}\x00{rec.raw}"
    elif rec.data is None:
        body = f"R\x00{rec.raw}"
    else:
        body = "D\x00" + json.dumps(rec.data, ensure_ascii=False, sort_keys=True, default=str)
    return body.encode("utf-8", "surrogatepass")


def content_key(records: list[Record], fmt: str | None) -> str:
    """Hash of a shard's records (and the format they are read as). Example: same lines -> same key."""
    h = hashlib.sha256(f"{fmt}\x00{len(records)}".encode())
    for rec in records:
        body = record_bytes(rec)
        h.update(len(body).to_bytes(8, "little"))
        h.update(body)
    return h.hexdigest()[:32]


def shard_key(content: str, settings_digest: str) -> str:
    """The cache key: a shard's content key + everything that shaped its tokens."""
    return hashlib.sha256(f"{content}\x00{settings_digest}".encode()).hexdigest()[:32]


# ---------------------------------------------------------------- entry files (cache and spill)

def class_label_column(labels: list) -> pa.Array:
    """Class ids as int64, or class names as strings (sentence pairs / labelled texts); never both.

    Example: [1, 0, None] -> int64 [1, 0, null]; ["reply", None] -> string ["reply", null]
    """
    if not any(isinstance(x, str) for x in labels):
        return pa.array(labels, type=pa.int64())
    if any(x is not None and not isinstance(x, str) for x in labels):
        from llmprep.errors import ConfigError

        raise ConfigError("field 'label': the rows mix class names (strings) and class ids (integers); "
                          "use one or the other")
    return pa.array(labels, type=pa.string())


def entry_bytes(enc: Encoded, meta: dict) -> bytes:
    """Serialise one shard's rows + meta, checksum appended. Meta is JSON (never pickled)."""
    return b"".join(entry_parts(enc, meta))


def entry_parts(enc: Encoded, meta: dict, *, checksum: bool = True) -> list:
    """entry_bytes as its three pieces (Arrow body, MAGIC, sha256 of the body), for a writer that writes them
    one after the other: no copy of the body (a shard's 3 MB) into one bytes object. `checksum=False` writes 32
    zero bytes for the digest: only for a run's own spill file, which is never read with verify (a cached entry
    always has its digest).

    Example: entry_parts(enc, {"shard": 0}) -> [<pyarrow.Buffer>, b"LLMPREP1", <32-byte sha256>]
    """
    from llmprep.output import list_column

    cols = {"ids": list_column(enc.ids, enc.offsets), "labels": list_column(enc.labels, enc.offsets)}
    if enc.token_type_ids is not None:
        cols["token_type_ids"] = list_column(enc.token_type_ids, enc.offsets, pa.int8())
    if "class_labels" in enc.extra:
        cols["class_labels"] = class_label_column(enc.extra["class_labels"])
    table = pa.table(cols).replace_schema_metadata({"llmprep": json.dumps(meta, ensure_ascii=False, default=str)})
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    body = sink.getvalue()
    return [body, MAGIC, hashlib.sha256(body).digest() if checksum else bytes(32)]


class CorruptEntry(Exception):
    """An entry whose checksum does not match its bytes."""


def parse_entry(blob: bytes, *, verify: bool = True, native: bool = False) -> tuple[Encoded, dict]:
    """Entry bytes -> (rows, meta); CorruptEntry if the checksum or the Arrow data is bad. `native`: the
    rows' arrays keep the entry's own integer types (int32 ids and labels, read in place) instead of int64
    copies, for a reader that only writes them out again as int32 Arrow columns (assemble)."""
    if len(blob) < TRAILER or blob[-TRAILER:-32] != MAGIC:
        raise CorruptEntry("truncated or not an llmprep entry")
    body = memoryview(blob)[:-TRAILER]
    if verify and hashlib.sha256(body).digest() != blob[-32:]:
        raise CorruptEntry("checksum mismatch")
    try:
        table = pa.ipc.open_stream(pa.py_buffer(body)).read_all()
        meta = json.loads(table.schema.metadata[b"llmprep"])
    except (pa.ArrowInvalid, KeyError, ValueError) as exc:
        raise CorruptEntry(f"unreadable: {exc}") from None
    return _encoded(table, None if native else np.int64), meta


def _flat(col: pa.ChunkedArray, dtype) -> tuple[np.ndarray, np.ndarray]:
    values, offsets = list_flat(col)
    return (values if dtype is None else values.astype(dtype, copy=False)), offsets


def _encoded(table: pa.Table, dtype=np.int64) -> Encoded:
    ids, offsets = _flat(table["ids"], dtype)
    labels, _ = _flat(table["labels"], dtype)
    tt = _flat(table["token_type_ids"], dtype)[0] if "token_type_ids" in table.column_names else None
    enc = Encoded(ids, labels, offsets, tt)
    if "class_labels" in table.column_names:
        enc.extra["class_labels"] = table["class_labels"].to_pylist()
    return enc


def read_entry(path: str | os.PathLike, *, verify: bool = True) -> tuple[Encoded, dict]:
    with open(path, "rb") as fh:
        return parse_entry(fh.read(), verify=verify)


def write_atomic(path: Path, blob: bytes | list) -> None:
    """Write `blob` (bytes, or a list of buffers written in turn) to a temp file beside `path`, then rename:
    a reader sees the whole file or none."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            for part in blob if isinstance(blob, list) else [blob]:
                fh.write(part)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


# ---------------------------------------------------------------- the cache

UNUSABLE = (errno.EROFS, errno.EACCES, errno.EPERM, errno.ENOSPC, errno.EDQUOT)


@dataclass
class Lookup:
    """A cache read: the entry's bytes, or why there were none ('missing' or 'corrupt: ...')."""

    blob: bytes | None
    miss: str | None = None


class ShardCache:
    """Entries under ROOT/shards-v2/<2 hex>/<key>.arrow; see the module docstring."""

    def __init__(self, root: str | os.PathLike):
        self.base = Path(root)
        self.root = self.base / f"shards-v{VERSION}"
        self.write_error: str | None = None  # set after the first failed write: no more writes this process

    def path(self, key: str) -> Path:
        return self.root / key[:2] / f"{key}.arrow"

    def probe(self) -> str | None:
        """None if entries can be written here, else why not (read-only, full, not a directory...)."""
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            write_atomic(self.root / ".probe", b"ok")
            (self.root / ".probe").unlink()
        except OSError as exc:
            return f"{exc.strerror or exc} ({self.base})"
        return None

    def get(self, key: str) -> Lookup:
        """Read and verify an entry; touch it (LRU). A bad entry is a miss that says why."""
        path = self.path(key)
        try:
            with open(path, "rb") as fh:
                blob = fh.read()
        except FileNotFoundError:
            return Lookup(None, "missing")
        except OSError as exc:
            return Lookup(None, f"unreadable: {exc.strerror}")
        try:
            parse_entry(blob)
        except CorruptEntry as exc:
            return Lookup(None, f"corrupt entry ({exc})")
        try:
            os.utime(path)
        except OSError:
            pass  # a read-only cache still serves hits
        return Lookup(blob)

    def put(self, key: str, blob: bytes | list) -> None:
        """Store an entry; a read-only or full cache dir turns writing off (self.write_error) instead of failing."""
        if self.write_error is not None:
            return
        path = self.path(key)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            write_atomic(path, blob)
        except OSError as exc:
            if exc.errno not in UNUSABLE:
                raise
            self.write_error = f"{exc.strerror} ({self.base})"

    # -- maintenance (llmprep cache info|clear|prune)

    def entries(self) -> list[tuple[Path, int, float]]:
        """(path, bytes, last use) of every entry, least recently used first."""
        out = []
        for p in self.root.glob("*/*.arrow"):
            try:
                st = p.stat()
            except FileNotFoundError:  # evicted by a concurrent run
                continue
            out.append((p, st.st_size, st.st_mtime))
        return sorted(out, key=lambda e: (e[2], str(e[0])))

    def info(self) -> dict:
        entries = self.entries()
        return {"path": str(self.base), "entries": len(entries), "bytes": sum(e[1] for e in entries),
                "oldest_use": min((e[2] for e in entries), default=None),
                "newest_use": max((e[2] for e in entries), default=None), "last_run": self.manifest()}

    def prune(self, max_bytes: int) -> tuple[int, int]:
        """Evict least recently used entries until the cache holds at most max_bytes. -> (removed, freed)"""
        entries = self.entries()
        total = sum(e[1] for e in entries)
        removed = freed = 0
        for path, size, _ in entries:
            if total <= max_bytes:
                break
            path.unlink(missing_ok=True)
            total -= size
            removed += 1
            freed += size
        self._remove_stale_temps()
        return removed, freed

    def _remove_stale_temps(self, age: float = 3600) -> None:
        """Temp files of writers killed mid-write (older than an hour: never one being written now)."""
        now = time.time()
        for p in self.root.glob("*/.*.tmp"):
            try:
                if now - p.stat().st_mtime > age:
                    p.unlink()
            except FileNotFoundError:
                pass

    def clear(self) -> tuple[int, int]:
        entries = self.entries()
        if self.base.exists():
            shutil.rmtree(self.root, ignore_errors=True)
            (self.base / MANIFEST).unlink(missing_ok=True)
        return len(entries), sum(e[1] for e in entries)

    # -- manifest of the last run: why the next run's shards miss

    def manifest(self) -> dict | None:
        try:
            return json.loads((self.base / MANIFEST).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None

    def write_manifest(self, data: dict) -> None:
        if self.write_error is None:
            try:
                write_atomic(self.base / MANIFEST, json.dumps({**data, "format": VERSION}).encode())
            except OSError as exc:
                self.write_error = f"{exc.strerror} ({self.base})"


def miss_reason(content: str, lookup_miss: str, settings: dict, last: dict | None) -> str:
    """Why a computed shard was not served from the cache, in the user's words.

    `settings` names what shaped the tokens (version, tokenizer, template, options); `last` is the
    previous run's manifest. Example: same records as last run, --max-length 512 -> 1024 ->
    "option --max-length changed"; records never seen -> "new data".
    """
    if lookup_miss.startswith("corrupt") or lookup_miss.startswith("unreadable"):
        return lookup_miss
    if not last or content not in set(last.get("content", ())):
        return "new data"
    if last.get("format") != VERSION:  # entries are kept per format (shards-vN): the old ones are not read
        return "cache format changed (this llmprep stores shards differently)"
    old = last.get("settings", {})
    if old.get("version") != settings["version"]:
        return "llmprep version changed"
    if old.get("tokenizer") != settings["tokenizer"]:
        return "tokenizer changed"
    if old.get("template") != settings["template"]:
        return "template changed"
    changed = [k for k in settings["options"] if old.get("options", {}).get(k) != settings["options"][k]]
    if changed:
        return "option " + ", ".join("--" + k.replace("_", "-") for k in sorted(changed)) + " changed"
    return "entry evicted or removed"

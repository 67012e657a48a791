"""On-disk cache of processed shards, keyed by everything that shaped them.

A shard's key hashes its examples (source, line, fields), the llmprep version, the tokenizer's full
serialisation, the template source and every encoding option. Change any of them — a different
tokenizer, an edited template, another --max-length — and the key changes, so a stale cache can
never be served. Entries are written to a temp file and renamed, so a killed run leaves no partial
entry behind.

Location: --cache-dir, else $LLMPREP_CACHE, else $XDG_CACHE_HOME/llmprep, else ~/.cache/llmprep.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path

import numpy as np

from llmprep.encode import Encoded
from llmprep.examples import Rejected
from llmprep.records import Record

VERSION = 2  # bump when the entry layout changes (2: chat statistics, records read, per-turn row groups)


def default_cache_dir() -> Path:
    if os.environ.get("LLMPREP_CACHE"):
        return Path(os.environ["LLMPREP_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "llmprep"


def shard_key(records: list[Record], formats: dict[str, str], settings_digest: str) -> str:
    """Hash of a shard's records (as read: raw line or fields), their formats and the settings.

    Example: same rows + same settings -> same 32-hex key; one changed character -> another key.
    """
    h = hashlib.sha256(settings_digest.encode())
    h.update(json.dumps(sorted(formats.items())).encode())
    for rec in records:
        body = rec.raw if rec.data is None else json.dumps(rec.data, ensure_ascii=False, sort_keys=True, default=str)
        error = rec.error.describe() if rec.error is not None else ""
        h.update(f"\x00{rec.source}\x00{rec.line}\x00{error}\x00{body}".encode("utf-8", "surrogatepass"))
    return h.hexdigest()[:32]


class ShardCache:
    def __init__(self, root: Path):
        self.root = Path(root) / f"shards-v{VERSION}"
        self.hits = 0
        self.misses = 0

    def _path(self, key: str) -> Path:
        return self.root / key[:2] / f"{key}.npz"

    def load(self, key: str):
        """The cached ShardResult for key, or None."""
        from llmprep.shard import ShardResult

        path = self._path(key)
        if not path.exists():
            self.misses += 1
            return None
        try:
            with np.load(path, allow_pickle=False) as z:  # never unpickle: cache files are data
                meta = json.loads(bytes(z["meta"]).decode("utf-8"))
                tt = z["token_type_ids"] if meta["has_tt"] else None
                enc = Encoded(z["ids"], z["labels"], z["offsets"], tt)
                groups = z["groups"] if "groups" in z.files else None
        except (OSError, ValueError, KeyError):
            self.misses += 1
            return None
        if meta.get("class_labels") is not None:
            enc.extra["class_labels"] = meta["class_labels"]
        self.hits += 1
        rejected = [Rejected(**r) for r in meta["rejected"]]
        dropped = [Rejected(**r) for r in meta["dropped"]]
        return ShardResult(enc, rejected, dropped, meta["truncated"], meta["control_text_rows"], meta["fast_rows"], 0,
                           meta["kinds"], meta["chat"], meta["read"], groups)

    def save(self, key: str, result) -> None:
        """Store a ShardResult as process_shard returned it."""
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        enc = result.encoded
        meta = {"has_tt": enc.token_type_ids is not None, "class_labels": enc.extra.get("class_labels"),
                "rejected": [vars(r) for r in result.rejected], "dropped": [vars(r) for r in result.dropped],
                "truncated": result.truncated,
                "control_text_rows": result.control_text_rows, "fast_rows": result.fast_rows,
                "kinds": result.kinds, "chat": result.chat, "read": result.read}
        arrays = {"ids": enc.ids, "labels": enc.labels, "offsets": enc.offsets,
                  "meta": np.frombuffer(json.dumps(meta, ensure_ascii=False, default=str).encode(), np.uint8)}
        if enc.token_type_ids is not None:
            arrays["token_type_ids"] = enc.token_type_ids
        if result.groups is not None:
            arrays["groups"] = result.groups
        fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as fh:
                np.savez(fh, **arrays)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

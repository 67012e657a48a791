"""Inputs, spill files and --out as local paths or fsspec URIs (s3://, gs://, file://, ...).

Local paths take the plain-file path everywhere. A URI input is read by its task through fsspec: the
task fetches its byte range (or, for a gzip/.json/.csv/.parquet file, the whole file) into a local
temp file, reads it with llmprep.records, and gives every record the URI as its source. A URI
--out gets its spill files on the output filesystem (so Ray tasks on other nodes can write them)
and the finished directory is uploaded next to it, then moved into place, `dataset_dict.json` last.

Example: expand(["s3://bucket/chats/"]) -> ["s3://bucket/chats/a.jsonl", "s3://bucket/chats/b.jsonl"]
"""

from __future__ import annotations

import contextlib
import os
import re
import tempfile
from pathlib import Path
from typing import Iterator

from llmprep.errors import ConfigError
from llmprep.records import EXTENSIONS, expand_inputs, file_kind

_URI = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")


def is_uri(path: str | os.PathLike) -> bool:
    """Example: "s3://b/k" -> True; "data/x.jsonl" -> False"""
    return bool(_URI.match(str(path)))


def filesystem(uri: str):
    """(fsspec filesystem, path within it). ConfigError naming the package when the protocol's is missing."""
    import fsspec

    try:
        return fsspec.core.url_to_fs(uri)
    except (ImportError, ValueError) as exc:
        raise ConfigError(f"{uri!r}: cannot open this URI ({exc}); install the fsspec package for its scheme "
                          "(s3fs for s3://, gcsfs for gs://)") from None


def kind(path: str) -> str | None:
    """file_kind of a path or URI. Example: "s3://b/x.jsonl.gz" -> ".jsonl" """
    return file_kind(Path(str(path).rsplit("/", 1)[-1]))


def expand(items: list[str]) -> list[str]:
    """Files, directories and globs, local or URIs -> sorted files (as strings; URIs keep their scheme)."""
    if not any(is_uri(i) for i in items):
        return [str(p) for p in expand_inputs(items)]
    found: list[str] = []
    for item in items:
        if not is_uri(item):
            found += [str(p) for p in expand_inputs([item])]
            continue
        fs, root = filesystem(item)
        if fs.isdir(root):
            paths = sorted(p for p in fs.find(root) if kind(p))
        elif fs.isfile(root):
            if not kind(root):
                raise ConfigError(f"INPUT {item!r}: unsupported file type; expected one of {', '.join(EXTENSIONS)} "
                                  "(optionally .gz)")
            paths = [root]
        else:
            paths = sorted(p for p in fs.glob(root) if kind(p))
        if not paths:
            raise ConfigError(f"INPUT {item!r}: no such file, directory or matching glob")
        found += [fs.unstrip_protocol(p) for p in paths]
    return list(dict.fromkeys(found))


def open_bytes(path: str):
    """A binary file object for a local path or a URI."""
    if not is_uri(path):
        return open(path, "rb")
    fs, p = filesystem(path)
    return fs.open(p, "rb")


@contextlib.contextmanager
def local_copy(uri: str, span: tuple[int, int, int] | None) -> Iterator[tuple[Path, tuple[int, int, int] | None]]:
    """A local temp file holding `uri`'s bytes in `span` (or all of it); -> (path, span within the copy)."""
    name = uri.rsplit("/", 1)[-1]
    with tempfile.TemporaryDirectory(prefix="llmprep-fetch-") as d:
        local = Path(d) / name
        fs, p = filesystem(uri)
        if span is None:
            fs.get_file(p, str(local))
            yield local, None
        else:
            local.write_bytes(fs.cat_file(p, start=span[0], end=span[1]))
            yield local, (0, span[1] - span[0], span[2])


# ---------------------------------------------------------------- spill files and URI outputs

def write_bytes(path: str, blob: bytes | list) -> None:
    """Write a whole file (bytes, or a list of buffers in turn); local writes are atomic (temp + rename), a
    retried task never leaves half a file."""
    if is_uri(path):
        fs, p = filesystem(path)
        fs.pipe_file(p, blob if isinstance(blob, bytes) else b"".join(blob))
        return
    from llmprep.cache import write_atomic

    write_atomic(Path(path), blob)


def read_bytes(path: str) -> bytes:
    if is_uri(path):
        fs, p = filesystem(path)
        return fs.cat_file(p)
    with open(path, "rb") as fh:
        return fh.read()


def remove(path: str) -> None:
    if is_uri(path):
        fs, p = filesystem(path)
        fs.rm(p, recursive=True)
    else:
        os.unlink(path)


def make_dirs(path: str) -> None:
    if is_uri(path):
        fs, p = filesystem(path)
        fs.makedirs(p, exist_ok=True)
    else:
        Path(path).mkdir(parents=True, exist_ok=True)


def check_out(out: str) -> None:
    """A URI --out may be new, empty, or an earlier llmprep output; anything else is refused."""
    fs, dest = filesystem(out)
    if not fs.exists(dest):
        return
    if not fs.isdir(dest):
        raise ConfigError(f"--out {out!r}: exists and is not a directory")
    names = {p.rstrip("/").rsplit("/", 1)[-1] for p in fs.ls(dest, detail=False)}
    if names and not {"report.json", "dataset_dict.json"} <= names:
        raise ConfigError(f"--out {out!r}: holds files llmprep did not write; pick a new or empty location")


def publish(local_dir: Path, out: str, staging: str) -> None:
    """Upload a finished output dir to the URI `out`: to `staging` first, then moved into place with
    `dataset_dict.json` last, so an interrupted upload never loads as a complete DatasetDict."""
    fs, dest = filesystem(out)
    _, stage = filesystem(staging)
    fs.makedirs(stage, exist_ok=True)
    last = "dataset_dict.json"
    for item in sorted(local_dir.iterdir()):
        if item.name != last:
            fs.put(str(item), f"{stage}/{item.name}", recursive=item.is_dir())
    if fs.exists(dest):
        check_out(out)  # still an llmprep output (it may have changed while we worked)
        fs.rm(dest, recursive=True)
    fs.mv(stage, dest, recursive=True)
    fs.put_file(str(local_dir / last), f"{dest}/{last}")

"""Write an output directory atomically, and never replace a directory llmprep did not write.

Layout of a prepared DIR (loads with `datasets.load_from_disk(DIR)` as a DatasetDict):
    DIR/dataset_dict.json, DIR/train/..., DIR/test/...   (datasets' own format)
    DIR/report.json       counts, token totals, length percentiles, options
    DIR/rejected.jsonl    one line per rejected record: source, line, field, reason, record
    DIR/.llmprep.json     the marker: this directory is llmprep's own, complete output

Every output (prepare, --stream, train, vocab ..., model resize) goes through atomic_output_dir:

    DIR/../.DIR.tmp-HOST-PID-XXXXXXXX   written here; the marker is written last
    DIR/../.DIR.old-HOST-PID-XXXXXXXX   the previous output, moved aside for a moment
    DIR                                  the new output, renamed into place when complete

So an interrupted run (Ctrl-C, SIGTERM, kill -9, a full disk) never leaves anything at DIR that
loads as complete, and the next run removes the temp dirs of processes that are gone. An existing
DIR is replaced only if it holds the marker and nothing but what the marker lists; anything else
(the user's files, `--out .`, an input's folder) is refused before any work starts.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import re
import shutil
import socket
import sys
import tempfile
from pathlib import Path
from typing import Any, Iterator

from llmprep.errors import OutputError

REPORT = "report.json"
REJECTED = "rejected.jsonl"
MARKER = ".llmprep.json"
MARKER_FORMAT = 1
# Errors that mean "the output location can't take it", whichever file the writer was at.
_OUTPUT_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EFBIG}


def check_output_dir(out: str | os.PathLike) -> Path:
    """Refuse an --out that llmprep must not replace or cannot write; -> its absolute path.

    Called before any work (so an hour of processing is not lost to a bad --out) and again by
    atomic_output_dir. Example: check_output_dir("data") where data/ holds train.jsonl
    -> OutputError("--out 'data': holds files llmprep did not write (train.jsonl) ...")
    """
    shown = str(out)
    path = Path(os.path.abspath(out))
    cwd = Path.cwd()
    if path == cwd or path in cwd.parents:
        raise OutputError(f"--out {shown!r}: is the current directory{'' if path == cwd else ' or holds it'}; "
                          "llmprep replaces its output directory as a whole, so give it a directory of its "
                          f"own, e.g. --out {os.path.join(shown, 'out')!r}")
    if os.path.lexists(path):
        _check_existing(path, shown)
    ancestor = path.parent  # where the temp dir goes: its nearest existing folder must take writes
    while not os.path.lexists(ancestor) and ancestor != ancestor.parent:
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        raise OutputError(f"--out {shown!r}: {_as_given(ancestor, shown)!r} is a file, not a directory "
                          f"({os.strerror(errno.ENOTDIR)})")
    _check_writable(ancestor, shown)
    return path


def _as_given(path: Path, shown: str) -> str:
    """`path` relative to the current directory when the user gave a relative --out."""
    return str(path) if os.path.isabs(shown) else os.path.relpath(path)


def _check_existing(path: Path, shown: str) -> None:
    if not path.is_dir():
        raise OutputError(f"--out {shown!r}: exists and is not a directory; pick another path or remove it yourself")
    try:
        entries = set(os.listdir(path))
    except OSError as exc:
        raise OutputError(f"--out {shown!r}: cannot list it: {exc.strerror}") from exc
    if not entries:
        return
    listed = read_marker(path)
    if listed is None:
        names = _some(entries)
        raise OutputError(f"--out {shown!r}: holds files llmprep did not write ({names}) and no {MARKER} marker; "
                          "llmprep never deletes them. Pick a new or empty directory, or remove it yourself.")
    foreign = {e for e in entries - set(listed["entries"]) - {MARKER} if not _TEMP_FILE.fullmatch(e)}
    if foreign:
        raise OutputError(f"--out {shown!r}: an earlier llmprep output, but it now also holds files llmprep did not "
                          f"write ({_some(foreign)}); llmprep never deletes them. Move them out, pick a new or "
                          "empty directory, or remove it yourself.")


def _check_writable(directory: Path, shown: str) -> None:
    if os.access(directory, os.W_OK | os.X_OK):
        return
    try:
        readonly = bool(os.statvfs(directory).f_flag & os.ST_RDONLY)
    except OSError:
        readonly = False
    cause = os.strerror(errno.EROFS if readonly else errno.EACCES)
    raise OutputError(f"--out {shown!r}: cannot write in {_as_given(directory, shown)!r}: {cause}")


def _some(names: set[str], limit: int = 5) -> str:
    """A few names for a message. Example: {"b", "a"} -> "a, b"; 7 names -> "a, b, c, d, e and 2 more" """
    first = sorted(names)[:limit]
    more = len(names) - len(first)
    return ", ".join(first) + (f" and {more} more" if more else "")


def read_marker(path: str | os.PathLike) -> dict | None:
    """The marker of an llmprep output dir, or None if it has none (or an unreadable one).

    Example: read_marker("data/sft") -> {"written_by": "llmprep", "format": 1, "llmprep_version": "0.1.0",
    "command": "llmprep prepare", "entries": ["dataset_dict.json", "rejected.jsonl", "report.json", "train"]}
    """
    try:
        with open(Path(path) / MARKER, encoding="utf-8") as fh:
            data = json.load(fh)
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or data.get("written_by") != "llmprep" or not isinstance(data.get("entries"), list):
        return None
    return data


def record_entry(directory: str | os.PathLike, name: str) -> None:
    """List `name` in the marker of an llmprep output that gains a file after it was written (`llmprep
    report DIR` writing report.html), so the directory stays one llmprep may replace. No marker: nothing.

    Example: record_entry("data/sft", "report.html") -> "report.html" in read_marker("data/sft")["entries"]
    """
    marker = read_marker(directory)
    if marker is None or name in marker["entries"]:
        return
    marker["entries"] = sorted([*marker["entries"], name])
    path = Path(directory) / MARKER
    tmp = path.with_name(f"{MARKER}.tmp-{os.getpid()}")
    write_json(tmp, marker)
    os.replace(tmp, path)


# Which command an output comes from, by the module that writes it: the same for the CLI and the Python
# API, so identical runs write identical bytes however they were started.
_COMMANDS = {"llmprep.prepare": "llmprep prepare", "llmprep.stream": "llmprep prepare --stream",
             "llmprep.train": "llmprep train", "llmprep.vocab.train": "llmprep vocab train",
             "llmprep.vocab.merge": "llmprep vocab merge", "llmprep.vocab.prune": "llmprep vocab prune",
             "llmprep.vocab.resize": "llmprep model resize"}


def _command(frame) -> str:
    """The command writing an output, from the first caller outside contextlib and this module.

    Example: atomic_output_dir(...) entered in llmprep.vocab.merge -> "llmprep vocab merge"
    """
    while frame is not None and frame.f_globals.get("__name__") in ("contextlib", __name__):
        frame = frame.f_back
    module = frame.f_globals.get("__name__", "") if frame is not None else ""
    for prefix in sorted(_COMMANDS, key=len, reverse=True):
        if module == prefix or module.startswith(prefix + "."):
            return _COMMANDS[prefix]
    return module or "unknown"


def write_marker(directory: Path, command: str) -> None:
    """Mark `directory` as a complete llmprep output listing what it holds (no time stamp: reruns are
    byte-identical)."""
    from llmprep import __version__

    entries = sorted(e for e in os.listdir(directory) if e != MARKER)
    write_json(directory / MARKER, {"written_by": "llmprep", "format": MARKER_FORMAT, "llmprep_version": __version__,
                                    "command": command, "entries": entries})


_SIBLING = r"\.{name}\.(?:tmp|old)-(?P<host>.+)-(?P<pid>\d+)-[A-Za-z0-9_]+"
# A file llmprep writes inside an output and renames into place (".report.html.tmp-PID"): one left by a
# killed process is llmprep's, not the user's.
_TEMP_FILE = re.compile(r"\..+\.tmp-\d+")


def _host() -> str:
    return re.sub(r"[^A-Za-z0-9.]", "_", socket.gethostname()) or "host"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def clean_stale(out: Path) -> list[Path]:
    """Remove `.OUT.tmp-*` / `.OUT.old-*` siblings left by dead llmprep processes on this host.

    A live process's temp dir is never touched (its pid is checked), nor one from another host
    sharing the file system. Example: .sft.tmp-box-4242-ab12cd34 with pid 4242 gone -> removed.
    """
    pattern = re.compile(_SIBLING.format(name=re.escape(out.name)))
    removed = []
    try:
        siblings = os.listdir(out.parent)
    except OSError:
        return removed
    host = _host()
    for name in siblings:
        m = pattern.fullmatch(name)
        if m and m["host"] == host and int(m["pid"]) != os.getpid() and not _pid_alive(int(m["pid"])):
            _remove(out.parent / name)
            removed.append(out.parent / name)
    return removed


def _remove(path: Path) -> None:
    if path.is_symlink() or not path.is_dir():
        with contextlib.suppress(OSError):
            path.unlink()
    else:
        shutil.rmtree(path, ignore_errors=True)


def _mkdtemp(path: Path, kind: str, shown: str) -> Path:
    prefix = f".{path.name}.{kind}-{_host()}-{os.getpid()}-"
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=prefix, dir=path.parent))
    except OSError as exc:
        raise _output_error(shown, exc) from exc
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o777 & ~umask)  # mkdtemp makes 0700; an output dir gets the user's usual mode
    return tmp


def _output_error(shown: str, exc: OSError) -> OutputError:
    where = f" ({exc.filename})" if exc.filename else ""
    return OutputError(f"--out {shown!r}: cannot write the output{where}: {exc.strerror or exc}; "
                       "nothing was written there")


def _is_output_error(exc: BaseException, roots: tuple[Path, ...]) -> bool:
    """An OSError from writing the output (not, say, from reading an input inside the block)."""
    if not isinstance(exc, OSError):
        return False
    if exc.errno in _OUTPUT_ERRNOS:
        return True
    name = str(exc.filename or "")
    return any(name.startswith(str(r)) for r in roots)


@contextlib.contextmanager
def atomic_output_dir(out: str | os.PathLike, *, overwrite: bool = True) -> Iterator[Path]:
    """Yield a fresh temp dir beside `out`; when the block ends without raising, mark it complete and
    replace `out` with it; on any error (or signal) remove it, leaving `out` as it was.

    `out` may not exist, be empty, or be an earlier llmprep output (overwrite=False: not that
    either); anything else raises OutputError before the block runs. OSErrors from writing (a full
    disk, a read-only file system) become one OutputError naming `out` and the cause.
    Example: with atomic_output_dir("data/run1") as tmp: (tmp / "x").write_text("1")
    -> data/run1/x and data/run1/.llmprep.json exist only after the block finished.
    """
    shown = str(out)
    command = _command(sys._getframe(1))
    path = check_output_dir(out)
    if not overwrite and path.is_dir() and os.listdir(path):
        raise OutputError(f"--out {shown!r}: directory exists and is not empty")
    clean_stale(path)
    tmp = _mkdtemp(path, "tmp", shown)
    old = None
    try:
        yield tmp
        write_marker(tmp, command)
        if path.is_dir():
            check_output_dir(out)  # it may have changed while we worked
            old = Path(tempfile.mkdtemp(prefix=f".{path.name}.old-{_host()}-{os.getpid()}-", dir=path.parent))
            os.replace(path, old / path.name)
        os.replace(tmp, path)
    except BaseException as exc:
        _remove(tmp)
        if old is not None and not path.exists() and (old / path.name).exists():
            with contextlib.suppress(OSError):
                os.replace(old / path.name, path)  # put the previous output back
        if old is not None:
            _remove(old)
        if _is_output_error(exc, (tmp, path)):
            raise _output_error(shown, exc) from exc
        raise
    if old is not None:
        _remove(old)


def write_json(path: Path, data: Any) -> None:
    """Write JSON with stable key order, UTF-8 kept readable (a lone surrogate is written escaped)."""
    text = json.dumps(data, indent=2, ensure_ascii=False, sort_keys=False) + "\n"
    with open(path, "w", encoding="utf-8", errors="backslashreplace") as fh:
        fh.write(text)

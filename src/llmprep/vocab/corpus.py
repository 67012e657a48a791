"""Read a text corpus (files or folders of UTF-8 text) line by line, with errors a user can act on.

A corpus is one or more sentences per line; blank lines are skipped. Files are streamed, never
loaded whole, so a corpus may be larger than memory.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Iterator, Sequence

from llmprep.errors import ConfigError


class CorpusError(ConfigError):
    """A corpus file is missing, empty or not UTF-8 text."""


def corpus_files(paths: Sequence[str | Path], *, flag: str = "--corpus") -> list[Path]:
    """Expand files and folders (recursively, sorted) into a list of files.

    Example: ["a.txt", "dir/"] -> [a.txt, dir/b.txt, dir/sub/c.txt]
    """
    if not paths:
        raise CorpusError(f"{flag}: no corpus given; expected one or more text files or folders")
    files: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            found = sorted(p for p in path.rglob("*") if p.is_file() and not p.name.startswith("."))
            if not found:
                raise CorpusError(f"{flag} {str(path)!r}: folder holds no files; expected text files")
            files.extend(found)
        elif path.is_file():
            files.append(path)
        else:
            raise CorpusError(f"{flag} {str(path)!r}: no such file or folder")
    return files


def iter_lines(files: Sequence[Path], *, flag: str = "--corpus") -> Iterator[str]:
    """Yield non-blank lines (without the newline) of every file, checking each is UTF-8 text.

    Example: a file "你好\\n\\nworld\\n" -> "你好", "world"
    """
    for path in files:
        seen = 0
        with open(path, "rb") as fh:
            for lineno, raw in enumerate(fh, 1):
                try:
                    line = raw.decode("utf-8").rstrip("\r\n")
                except UnicodeDecodeError as exc:
                    raise CorpusError(f"{flag} {str(path)!r}: line {lineno} is not UTF-8 ({exc.reason} "
                                      f"at byte {exc.start}); expected UTF-8 text") from exc
                if line.strip():
                    seen += 1
                    yield line
        if seen == 0:
            raise CorpusError(f"{flag} {str(path)!r}: file is empty; expected lines of text")


def read_lines(paths: Sequence[str | Path], *, flag: str = "--corpus") -> list[str]:
    """All non-blank lines of a small corpus. Example: ["a.txt"] -> ["line 1", "line 2"]"""
    return list(iter_lines(corpus_files(paths, flag=flag), flag=flag))


def reservoir_sample(lines: Iterator[str], k: int, *, seed: int = 0) -> tuple[list[str], int]:
    """Uniform sample of k lines from a stream of unknown length, in O(k) memory (Algorithm R).

    Returns (sample, number of lines seen). Example: 10 lines, k=3 -> (3 lines, 10)
    """
    rng = random.Random(seed)
    sample: list[str] = []
    n = 0
    for n, line in enumerate(lines, 1):
        if len(sample) < k:
            sample.append(line)
        else:
            j = rng.randrange(n)
            if j < k:
                sample[j] = line
    return sample, n

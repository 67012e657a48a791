"""Real text for the mix tests: the bundled sample's conversations, the GPL excerpt, Tang poems, fortunes-zh."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

ASSETS = Path(__file__).resolve().parents[1] / "assets"
SAMPLE = Path(__file__).resolve().parents[2] / "src" / "llmprep" / "data" / "sample.jsonl"


def paragraphs(path: Path, min_words: int = 0) -> list[str]:
    """Blank-line separated paragraphs of a text asset, lines joined."""
    text = path.read_text(encoding="utf-8")
    out = [" ".join(p.split()) for p in text.split("\n\n") if p.strip()]
    return [p for p in out if len(p.split()) >= min_words]


def poems(path: Path = ASSETS / "tang300_excerpt.txt") -> list[tuple[str, str]]:
    """(title line, body) of each Tang poem of the excerpt."""
    out, title, body = [], None, []
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.startswith("《"):
            if title:
                out.append((title, "".join(body)))
            title, body = line, []
        elif not line.startswith("作者"):
            body.append(line.strip())
    if title:
        out.append((title, "".join(body)))
    return out


@pytest.fixture(scope="session")
def sample_rows() -> list[dict]:
    return [json.loads(line) for line in SAMPLE.read_text(encoding="utf-8").splitlines()]


@pytest.fixture(scope="session")
def gpl_paragraphs() -> list[str]:
    return paragraphs(ASSETS / "english_excerpt.txt", min_words=30)


@pytest.fixture(scope="session")
def tang_poems() -> list[tuple[str, str]]:
    return poems()


@pytest.fixture(scope="session")
def fortunes() -> list[str]:
    """Lines of the fortunes-zh excerpt that are Chinese prose (at least 20 characters, mostly Han)."""
    lines = [x.strip() for x in (ASSETS / "zh_fortunes_excerpt.txt").read_text(encoding="utf-8").splitlines()]
    return [x for x in lines if len(x) >= 20 and sum("\u4e00" <= c <= "\u9fff" for c in x) > len(x) / 2]

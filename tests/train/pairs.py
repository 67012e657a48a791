"""Real sentence pairs for the classification path, built from chatterbot-corpus (English).

sentence1 is a line someone said; sentence2 is either the reply that followed it in the corpus
(label "reply") or a reply from a conversation of another topic file (label "unrelated"). Seeded, so
the same rows come out on every machine; src/llmprep/data/pairs.jsonl is `build_pairs()` written out.
"""

from __future__ import annotations

import glob
import json
import random
import site
from pathlib import Path

CORPUS = Path(site.getsitepackages()[0]) / "chatterbot_corpus" / "data" / "english"


def _exchanges() -> list[tuple[str, str, str]]:
    import yaml

    out = []
    for path in sorted(glob.glob(str(CORPUS / "*.yml"))):
        topic = Path(path).stem
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
        for conv in data.get("conversations") or []:
            turns = [str(t).strip() for t in conv if str(t).strip()]
            out.extend((topic, turns[i], turns[i + 1]) for i in range(len(turns) - 1))
    return out


def _key(row: dict) -> tuple[str, str]:
    """The pair as prepare's exact dedup compares it (whitespace collapsed, case folded)."""
    return tuple(" ".join(row[k].split()).casefold() for k in ("sentence1", "sentence2"))


def build_pairs(n: int = 600, seed: int = 0) -> list[dict]:
    """n distinct pairs (the corpus repeats some exchanges; a repeat is skipped, so prepare's dedup keeps
    every row), alternating "reply" and "unrelated". Example: build_pairs(2) -> 2 dicts with sentence1,
    sentence2, label."""
    rng = random.Random(seed)
    ex = _exchanges()
    rng.shuffle(ex)
    rows: list[dict] = []
    seen: set[tuple[str, str]] = set()
    for topic, said, reply in ex:
        if len(rows) == n:
            break
        if len(rows) % 2:
            other = rng.choice([e for e in ex[:2000] if e[0] != topic])
            row = {"sentence1": said, "sentence2": other[2], "label": "unrelated"}
        else:
            row = {"sentence1": said, "sentence2": reply, "label": "reply"}
        if _key(row) not in seen:
            seen.add(_key(row))
            rows.append(row)
    return rows


def write_pairs(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path


if __name__ == "__main__":
    import sys

    write_pairs(Path(sys.argv[1]), build_pairs())

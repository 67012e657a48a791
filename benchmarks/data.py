"""Deterministic benchmark chat data built from real text (chatterbot-corpus, 28 languages).

Shared by the benchmarks: `build_conversations(n, seed)` gives the same list of conversations for the
same (n, seed) on every machine; `write_jsonl(path, convs)` writes them as `{"messages": [...]}` lines.

Shape (what makes it realistic for an SFT tokenizing benchmark):
  * 1-6 user/assistant turns per conversation (fewer turns more likely), 30% with a system prompt;
  * language mixed per conversation: ~45% English, ~20% Chinese (simplified + traditional), the rest
    spread over the corpus's other 25 languages (Cyrillic, Arabic script, Devanagari, CJK, Thai, ...);
  * long-tailed lengths: user messages are 1-8 corpus lines, assistant replies a Pareto-distributed
    number of lines (1-50, median 1), so most rows are short and a few are thousands of tokens, as in
    real chat-tuning sets. With SmolLM2's tokenizer (n=20000, seed 0): ~3.4M tokens, per row
    median ~130, p90 ~400, p99 ~900, max ~3000. Lines are joined with spaces or newlines, sometimes as
    bullet lists or fenced blocks.

Example: build_conversations(2, seed=0) ->
    [[{"role": "user", "content": "..."}, {"role": "assistant", "content": "..."}, ...], [...]]
"""

from __future__ import annotations

import json
import random
from functools import lru_cache
from pathlib import Path

LANG_WEIGHTS = {"english": 45, "chinese": 12, "traditionalchinese": 8}
OTHER_WEIGHT = 35  # shared by every other language of the corpus, by its amount of text
MAX_REPLY_LINES = 50  # cap of the Pareto tail (a few thousand tokens at most)
MAX_USER_LINES = 8

SYSTEM_PROMPTS = [
    "You are a helpful assistant.",
    "You are a friendly multilingual chatbot. Answer in the user's language.",
    "You are a concise assistant. Keep answers short and accurate.",
    "Eres un asistente útil. Responde con claridad.",
    "你是一个乐于助人的助手。",
    "Ты — полезный ассистент.",
]


def corpus_dir() -> Path:
    import chatterbot_corpus

    return Path(chatterbot_corpus.__file__).parent / "data"


def _strings(item) -> list[str]:
    """Flatten a corpus entry (a string, or nested lists/dicts of strings) into clean lines."""
    if isinstance(item, str):
        s = item.strip()
        return [s] if s else []
    if isinstance(item, (int, float)) and not isinstance(item, bool):
        return [str(item)]
    if isinstance(item, dict):
        return [s for v in item.values() for s in _strings(v)]
    if isinstance(item, list):
        return [s for v in item for s in _strings(v)]
    return []


@lru_cache(maxsize=1)
def load_corpus() -> dict[str, list[list[str]]]:
    """language -> its conversations (each a list of lines), read from every .yml of the corpus."""
    import yaml

    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    out: dict[str, list[list[str]]] = {}
    for lang_dir in sorted(p for p in corpus_dir().iterdir() if p.is_dir()):
        convs: list[list[str]] = []
        for f in sorted(lang_dir.glob("*.yml")):
            try:
                doc = yaml.load(f.read_text(encoding="utf-8"), Loader=loader)
            except (yaml.YAMLError, UnicodeDecodeError):
                continue
            for conv in (doc or {}).get("conversations") or []:
                lines = _strings(conv)
                if lines:
                    convs.append(lines)
        if convs:
            out[lang_dir.name] = convs
    return out


def _lang_weights(corpus: dict[str, list[list[str]]]) -> tuple[list[str], list[float]]:
    others = {k: sum(len(s) for c in v for s in c) for k, v in corpus.items() if k not in LANG_WEIGHTS}
    total = sum(others.values()) or 1
    names, weights = [], []
    for k in sorted(corpus):
        names.append(k)
        weights.append(LANG_WEIGHTS[k] if k in LANG_WEIGHTS else OTHER_WEIGHT * others[k] / total)
    return names, weights


def _lines(rng: random.Random, convs: list[list[str]], count: int) -> list[str]:
    """`count` consecutive-ish corpus lines: walk through random conversations of the language."""
    out: list[str] = []
    while len(out) < count:
        conv = convs[rng.randrange(len(convs))]
        start = rng.randrange(len(conv))
        out += conv[start:start + count - len(out)]
    return out


def _join(rng: random.Random, lines: list[str]) -> str:
    r = rng.random()
    if len(lines) == 1 or r < 0.55:
        return " ".join(lines)
    if r < 0.8:
        return "\n".join(lines)
    if r < 0.93:
        return "\n".join(f"{i + 1}. {s}" if rng.random() < 0.5 else f"- {s}" for i, s in enumerate(lines))
    return lines[0] + "\n\n```\n" + "\n".join(lines[1:]) + "\n```"


def _reply_lines(rng: random.Random) -> int:
    return min(MAX_REPLY_LINES, int(rng.paretovariate(1.6)))


def build_conversations(n: int, seed: int = 0) -> list[list[dict[str, str]]]:
    """n seeded conversations ({"role", "content"} messages); same (n, seed) -> same list."""
    corpus = load_corpus()
    names, weights = _lang_weights(corpus)
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        convs = corpus[rng.choices(names, weights)[0]]
        messages: list[dict[str, str]] = []
        if rng.random() < 0.3:
            messages.append({"role": "system", "content": rng.choice(SYSTEM_PROMPTS)})
        turns = rng.choices(range(1, 7), [40, 25, 15, 10, 6, 4])[0]
        for _ in range(turns):
            user = _lines(rng, convs, min(MAX_USER_LINES, int(rng.paretovariate(2.5))))
            messages.append({"role": "user", "content": _join(rng, user)})
            messages.append({"role": "assistant", "content": _join(rng, _lines(rng, convs, _reply_lines(rng)))})
        out.append(messages)
    return out


def write_jsonl(path: str | Path, conversations: list[list[dict[str, str]]]) -> Path:
    """Write `{"messages": [...]}` per line (UTF-8, non-ASCII kept)."""
    path = Path(path)
    with open(path, "w", encoding="utf-8") as fh:
        for messages in conversations:
            fh.write(json.dumps({"messages": messages}, ensure_ascii=False) + "\n")
    return path


if __name__ == "__main__":  # quick look: python benchmarks/data.py 5
    import sys

    for conv in build_conversations(int(sys.argv[1]) if len(sys.argv) > 1 else 3):
        print(json.dumps(conv, ensure_ascii=False, indent=1)[:1500], "\n---")

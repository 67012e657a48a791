"""Text normalisation and shingles shared by the duplicate and leakage checks (and by dedup later).

One definition, so "duplicate" means the same thing wherever it is counted:
    normalize("  Hello\n  World ") -> "hello world"      (whitespace collapsed, case folded)
    shingles("a b c d e f", n=5) -> {"a b c d e", "b c d e f"}
CJK characters count as words of their own (they are written without spaces).
"""

from __future__ import annotations

import re
from typing import Sequence

_CJK = "\u2e80-\u9fff\uf900-\ufaff\uac00-\ud7af"
_WORD = re.compile(f"[{_CJK}]|[^\\W{_CJK}]+")


def normalize(text: str, *, casefold: bool = True, whitespace: bool = True) -> str:
    """Collapse runs of whitespace to one space (and strip), and case-fold.

    Example: normalize(" What  is\tAI? ") -> "what is ai?"; casefold=False -> "What is AI?"
    """
    if whitespace:
        text = " ".join(text.split())
    return text.casefold() if casefold else text


def words(text: str) -> list[str]:
    """Word tokens of normalised text: letters/digits runs, each CJK character alone.

    Example: "Hello, world 你好" -> ["hello", "world", "你", "好"]
    """
    return _WORD.findall(normalize(text))


def shingles(text: str, n: int = 5) -> set[str]:
    """Word n-grams; a text shorter than n words is one shingle (so it only matches itself).

    Example: shingles("one two three", n=2) -> {"one two", "two three"}; shingles("hi", n=5) -> {"hi"}
    """
    w = words(text)
    if len(w) <= n:
        return {" ".join(w)} if w else set()
    return {" ".join(w[i:i + n]) for i in range(len(w) - n + 1)}


def conversation_text(messages: Sequence[dict]) -> str:
    """One text per conversation, roles included. Example: [user Hi, assistant Yo] -> "user: Hi\\nassistant: Yo" """
    from llmprep.messages import message_text  # content may be parts or null, with tool calls and reasoning

    return "\n".join(f"{m['role']}: {message_text(m)}" for m in messages)


def prompt_text(messages: Sequence[dict]) -> str:
    """Every message before the last assistant reply, whitespace-normalised (the leakage key).

    Example: [system S, user Q1, assistant A1, user Q2, assistant A2] -> "system: S user: Q1 assistant: A1 user: Q2"
    """
    last = max((i for i, m in enumerate(messages) if m["role"] == "assistant"), default=len(messages))
    return normalize(conversation_text(messages[:last]), casefold=False)

"""The prompt text the leakage check compares. Normalisation, units and n-grams are llmprep.mix.text's (one
implementation for prepare's --dedup and the doctor's duplicates/leakage checks):

    prompt_text([system S, user Q1, assistant A1, user Q2, assistant A2]) -> "system: S user: Q1 assistant: A1 user: Q2"
"""

from __future__ import annotations

from typing import Sequence

from llmprep.mix.text import normalize_text


def conversation_text(messages: Sequence[dict]) -> str:
    """One text per conversation, roles included. Example: [user Hi, assistant Yo] -> "user: Hi\\nassistant: Yo" """
    from llmprep.messages import message_text  # content may be parts or null, with tool calls and reasoning

    return "\n".join(f"{m['role']}: {message_text(m)}" for m in messages)


def prompt_text(messages: Sequence[dict]) -> str:
    """Every message before the last assistant reply, whitespace-normalised (the leakage key).

    Example: [system S, user Q1, assistant A1, user Q2, assistant A2] -> "system: S user: Q1 assistant: A1 user: Q2"
    """
    last = max((i for i, m in enumerate(messages) if m["role"] == "assistant"), default=len(messages))
    return normalize_text(conversation_text(messages[:last]), casefold=False)

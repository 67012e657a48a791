"""The one middle format: a conversation is a list of {"role", "content"} messages.

Every input shape (ShareGPT, Alpaca, history pairs, ...) becomes this, and is validated once here.
"""

from __future__ import annotations

from typing import Any, TypedDict

from llmprep.errors import RecordError

ROLES = ("system", "user", "assistant", "tool")


class Message(TypedDict):
    role: str
    content: str


def validate_messages(messages: Any, *, field: str = "messages") -> list[Message]:
    """Check a conversation and return it as plain messages, or raise RecordError saying what's wrong.

    Rules: a list of dicts with a known role and string content; a system message only first; no two
    consecutive user (or assistant) turns; the first turn after the system prompt is the user's; no
    empty assistant reply; at least one assistant reply (otherwise nothing would be trained).

    Example: [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"}] -> same list
    Example: [{"role": "user", ...}, {"role": "user", ...}]
             -> RecordError("two consecutive user messages at index 0 and 1", field="messages[1].role")
    """
    if not isinstance(messages, list):
        raise RecordError(f"expected a list of messages, got {type(messages).__name__}", field=field)
    if not messages:
        raise RecordError("expected at least one message, got an empty list", field=field)
    out: list[Message] = []
    for i, msg in enumerate(messages):
        out.append(_check_message(msg, i, field))
    _check_order(out, field)
    return out


def _check_message(msg: Any, i: int, field: str) -> Message:
    """One message: a dict with a known role and a string content."""
    where = f"{field}[{i}]"
    if not isinstance(msg, dict):
        raise RecordError(f"expected an object with 'role' and 'content', got {type(msg).__name__}", field=where)
    role = msg.get("role")
    if role not in ROLES:
        raise RecordError(f"unknown role {role!r}; expected one of {', '.join(ROLES)}", field=f"{where}.role")
    content = msg.get("content")
    if not isinstance(content, str):
        raise RecordError(f"expected a string, got {type(content).__name__}", field=f"{where}.content")
    if role == "assistant" and not content.strip():
        raise RecordError("empty assistant reply", field=f"{where}.content")
    return {"role": role, "content": content}


def _check_order(msgs: list[Message], field: str) -> None:
    """Turn order: system first only, user opens, no repeated user/assistant turns, one reply at least."""
    for i, msg in enumerate(msgs):
        if msg["role"] == "system" and i != 0:
            raise RecordError(f"system message at index {i}; only the first message may be a system prompt",
                              field=f"{field}[{i}].role")
        if i and msg["role"] == msgs[i - 1]["role"] and msg["role"] in ("user", "assistant"):
            raise RecordError(f"two consecutive {msg['role']} messages at index {i - 1} and {i}",
                              field=f"{field}[{i}].role")
    first = next((i for i, m in enumerate(msgs) if m["role"] != "system"), None)
    if first is None or msgs[first]["role"] != "user":
        got = "nothing" if first is None else f"a {msgs[first]['role']} message"
        raise RecordError(f"the conversation must open with a user message (after an optional system "
                          f"prompt), got {got}", field=f"{field}[{first or 0}].role")
    if not any(m["role"] == "assistant" for m in msgs):
        raise RecordError("no assistant reply: nothing to train on", field=field)


def history_to_messages(history: Any, *, system: str | None = None, field: str = "history") -> list[Message]:
    """Turn history pairs into messages; a final pair may have no answer yet (a generation prompt).

    Example: [["Hi", "Hello!"], ["How are you?", None]]
    -> [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!"},
        {"role": "user", "content": "How are you?"}]
    """
    if not isinstance(history, list):
        raise RecordError(f"expected a list of [user, assistant] pairs, got {type(history).__name__}", field=field)
    msgs: list[Message] = [{"role": "system", "content": system}] if system else []
    for i, pair in enumerate(history):
        if not isinstance(pair, (list, tuple)) or len(pair) != 2:
            raise RecordError(f"expected a [user, assistant] pair, got {pair!r}", field=f"{field}[{i}]")
        user, reply = pair
        if not isinstance(user, str):
            raise RecordError(f"expected a string, got {type(user).__name__}", field=f"{field}[{i}][0]")
        msgs.append({"role": "user", "content": user})
        if reply is None:
            if i != len(history) - 1:
                raise RecordError("only the last pair may have no answer (null)", field=f"{field}[{i}][1]")
            continue
        if not isinstance(reply, str):
            raise RecordError(f"expected a string or null, got {type(reply).__name__}", field=f"{field}[{i}][1]")
        msgs.append({"role": "assistant", "content": reply})
    return msgs

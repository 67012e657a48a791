"""The one middle format: a conversation is a list of messages in OpenAI's chat shape, validated once here.

Every input shape (ShareGPT, Alpaca, history pairs, ...) becomes this. A message is a dict:

    role               "system" | "user" | "assistant" | "tool"
    content            a string, OpenAI text parts [{"type": "text", "text": ...}], or null/absent on an
                       assistant turn that has tool calls or reasoning
    tool_calls         assistant only: [{"type": "function", "id": ..., "function": {"name": ..., "arguments": ...}}]
                       (arguments a JSON string or an object, passed to the template as given, as transformers does)
    tool_call_id, name on tool results
    reasoning_content  the turn's reasoning (also accepted as "reasoning" or "thinking"; transformers fills the
                       other names from it, so every template finds it under the name it reads)
    train / weight     llmprep's per-message loss switch (true/false, or OpenAI fine-tuning's weight 0/1); never
                       passed to the template
    anything else      passed to the template untouched (e.g. Command R7B's "tool_plan")

Keys whose value is null are dropped, as transformers does before rendering.
"""

from __future__ import annotations

import re
from typing import Any

from llmprep.errors import RecordError

ROLES = ("system", "user", "assistant", "tool")
REASONING_FIELDS = ("reasoning_content", "reasoning", "thinking")
CONTROL_KEYS = ("train", "weight")  # read by llmprep, never shown to the template

Message = dict[str, Any]
_PLAIN_ROLES = frozenset(ROLES)


def validate_messages(messages: Any, *, field: str = "messages") -> list[Message]:
    """Check a conversation and return it normalised (null-valued keys dropped), or raise RecordError.

    Rules: a list of dicts with a known role; content a string or text parts (null only on an assistant
    turn with tool calls or reasoning); a system message only first; no two consecutive user (or
    assistant) turns; the first turn after the system prompt is the user's; no empty assistant turn; at
    least one assistant reply (or a message with "train": true), otherwise nothing would be trained.

    Example: [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"}] -> same list
    Example: [{"role": "user", ...}, {"role": "user", ...}]
             -> RecordError("two consecutive user messages at index 0 and 1", field="messages[1].role")
    """
    out = check_messages(messages, field=field)
    _check_order(out, field)
    return out


def check_messages(messages: Any, *, field: str = "messages") -> list[Message]:
    """validate_messages without the turn-order rules: each message well-formed (for inference prompts,
    which end with a user turn). Example: [{"role": "user", "content": "Hi"}] -> same list"""
    if not isinstance(messages, list):
        raise RecordError(f"expected a list of messages, got {type(messages).__name__}", field=field)
    if not messages:
        raise RecordError("expected at least one message, got an empty list", field=field)
    if _all_plain(messages):
        return list(messages)
    return [_check_message(msg, i, field) for i, msg in enumerate(messages)]


def _all_plain(messages: list) -> bool:
    """_plain for a whole conversation at once (half the time of _check_message on each message)."""
    return all(map(_plain, messages))


def _plain(msg: Any) -> bool:
    """The common case, nothing more to check: {"role", "content"} with a string, a known role, no empty reply."""
    # isspace() instead of strip(): the same "blank" answer without copying the (often long) reply
    return type(msg) is dict and len(msg) == 2 and type(msg.get("content")) is str and msg.get("role") in _PLAIN_ROLES \
        and (msg["role"] != "assistant" or (msg["content"] != "" and not msg["content"].isspace()))


def _check_message(msg: Any, i: int, field: str) -> Message:
    """One message: a dict with a known role and well-typed fields; null-valued keys dropped."""
    if _plain(msg):
        return msg
    where = f"{field}[{i}]"
    if not isinstance(msg, dict):
        raise RecordError(f"expected an object with 'role' and 'content', got {type(msg).__name__}", field=where)
    role = msg.get("role")
    if role not in ROLES:
        raise RecordError(f"unknown role {role!r}; expected one of {', '.join(ROLES)}", field=f"{where}.role")
    out = {k: v for k, v in msg.items() if v is not None}
    has_calls = bool(_check_tool_calls(out.get("tool_calls"), role, where))
    for name in REASONING_FIELDS:
        if name in out and not isinstance(out[name], str):
            raise RecordError(f"expected a string, got {type(out[name]).__name__}", field=f"{where}.{name}")
    has_reasoning = any(out.get(name, "").strip() for name in REASONING_FIELDS)
    content = out.get("content")
    if content is None and not (role == "assistant" and (has_calls or has_reasoning)):
        raise RecordError("expected a string, got NoneType" + (
            " (content may be null only on an assistant turn with tool_calls)" if role == "assistant" else ""),
            field=f"{where}.content")
    if isinstance(content, list):
        _check_parts(content, f"{where}.content")
    elif content is not None and not isinstance(content, str):
        raise RecordError(f"expected a string, got {type(content).__name__} (content may also be a list of "
                          "text parts)", field=f"{where}.content")
    if role == "assistant" and not (has_calls or has_reasoning or content_text(content).strip()):
        raise RecordError("empty assistant reply", field=f"{where}.content")
    for name in ("tool_call_id", "name"):
        if name in out and not isinstance(out[name], str):
            raise RecordError(f"expected a string, got {type(out[name]).__name__}", field=f"{where}.{name}")
    _check_train_flag(out, where)
    return out


def _check_parts(parts: list, where: str) -> None:
    """OpenAI content parts: text only (llmprep prepares text models)."""
    if not parts:
        raise RecordError("expected at least one content part, got an empty list", field=where)
    for j, part in enumerate(parts):
        if not isinstance(part, dict):
            raise RecordError(f"expected a content part {{\"type\": \"text\", \"text\": ...}}, got "
                              f"{type(part).__name__}", field=f"{where}[{j}]")
        kind = part.get("type")
        if kind != "text":
            raise RecordError(f"content part type {kind!r} is not supported: llmprep prepares text-only chats "
                              "(expected 'text')", field=f"{where}[{j}].type")
        if not isinstance(part.get("text"), str):
            raise RecordError(f"expected a string, got {type(part.get('text')).__name__}", field=f"{where}[{j}].text")


def _check_tool_calls(calls: Any, role: str, where: str) -> list:
    """OpenAI tool calls: each with a function name and arguments (a JSON string or an object)."""
    if calls is None:
        return []
    if role != "assistant":
        raise RecordError(f"only assistant messages carry tool_calls, got a {role} message",
                          field=f"{where}.tool_calls")
    if not isinstance(calls, list):
        raise RecordError(f"expected a list of tool calls, got {type(calls).__name__}", field=f"{where}.tool_calls")
    for j, call in enumerate(calls):
        at = f"{where}.tool_calls[{j}]"
        if not isinstance(call, dict):
            raise RecordError(f"expected a tool call object, got {type(call).__name__}", field=at)
        fn = call.get("function", call)  # templates accept both {"function": {...}} and the flat form
        if not isinstance(fn, dict):
            raise RecordError(f"expected an object with 'name' and 'arguments', got {type(fn).__name__}",
                              field=f"{at}.function")
        fn_at = f"{at}.function" if "function" in call else at
        if not isinstance(fn.get("name"), str) or not fn["name"]:
            raise RecordError(f"expected the function name as a string, got {fn.get('name')!r:.40}",
                              field=f"{fn_at}.name")
        if not isinstance(fn.get("arguments"), (str, dict)):
            raise RecordError(f"expected arguments as a JSON string or an object, got "
                              f"{type(fn.get('arguments')).__name__}", field=f"{fn_at}.arguments")
    return calls


def _check_train_flag(msg: Message, where: str) -> None:
    if "train" in msg and not isinstance(msg["train"], bool):
        raise RecordError(f"expected true or false, got {msg['train']!r:.40}", field=f"{where}.train")
    if "weight" in msg and (isinstance(msg["weight"], bool) or msg["weight"] not in (0, 1)):
        raise RecordError(f"expected 0 or 1 (OpenAI fine-tuning weight), got {msg['weight']!r:.40}",
                          field=f"{where}.weight")


_ALTERNATING = re.compile(r"s?(ua)+")  # role initials of the common valid conversation: [system] user assistant ...


def _check_order(msgs: list[Message], field: str) -> None:
    """Turn order: system first only, user opens, no repeated user/assistant turns, one reply at least."""
    if _ALTERNATING.fullmatch("".join([m["role"][0] for m in msgs])):
        return  # system?, then user/assistant pairs (check_messages let only the four known roles through)
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
    if not any(m["role"] == "assistant" or train_flag(m) for m in msgs):
        raise RecordError("no assistant reply: nothing to train on", field=field)


def train_flag(msg: Message) -> bool | None:
    """The message's own loss switch: True, False, or None (follow --train-roles).

    Example: {"role": "assistant", "train": False} -> False; {"role": "assistant", "weight": 1} -> True
    """
    if "train" in msg:
        return msg["train"]
    if "weight" in msg:
        return bool(msg["weight"])
    return None


def trained_messages(messages: list[Message], *, roles: tuple[str, ...] = ("assistant",),
                     last_only: bool = False) -> list[int]:
    """Indices of the messages to train: a message's own "train"/"weight" decides, else its role being in
    `roles` (--train-roles); `last_only` keeps the last of them (--train-turns last / --history last).

    Example: [user, assistant, user, assistant {"train": false}] -> [1]; roles=("user", "assistant") -> [0, 1, 2]
    """
    out = [i for i, m in enumerate(messages)
           if (flag := train_flag(m)) or (flag is None and m["role"] in roles)]
    return out[-1:] if last_only else out


def per_turn_units(messages: list[Message], trained: list[int]) -> list[tuple[int, list[int]]]:
    """--history per-turn: one row per trained assistant turn k, holding messages[:k+1] and training turn k
    (plus any other trained message since the previous row). -> [(number of messages, trained indices)].

    Example: [user, assistant, user, assistant], trained [1, 3] -> [(2, [1]), (4, [3])]
    """
    units, pending = [], []
    for i in trained:
        pending.append(i)
        if messages[i]["role"] == "assistant":
            units.append((i + 1, pending))
            pending = []
    if pending:  # trained messages after the last trained reply (e.g. "train": true on a final user turn)
        units.append((len(messages), pending))
    return units


def content_text(content: Any) -> str:
    """The text of a content value. Example: [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}] -> "ab"
    """
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(p.get("text", "") for p in content if isinstance(p, dict))
    return ""


def message_text(msg: Message) -> str:
    """All the text a message carries, for checks that compare conversations: its reasoning, its content
    (text parts joined) and its tool calls as name(arguments).

    Example: {"role": "assistant", "content": None, "tool_calls": [{"function": {"name": "f", "arguments": "{}"}}]}
    -> "f({})"
    """
    import json

    content = msg.get("content")
    if len(msg) == 2 and type(content) is str and "role" in msg:
        return content  # {"role", "content"}: no reasoning, no tool calls
    parts = [reasoning_of(msg) or "", content_text(content)]
    for call in msg.get("tool_calls") or []:
        fn = call.get("function", call)
        args = fn.get("arguments")
        parts.append(f"{fn.get('name')}({args if isinstance(args, str) else json.dumps(args, ensure_ascii=False)})")
    return "\n".join(p for p in parts if p)


def reasoning_of(msg: Message) -> str | None:
    """The turn's reasoning under whichever name it came (transformers' order: reasoning_content, thinking,
    reasoning). Example: {"thinking": "hmm"} -> "hmm" """
    return next((msg[k] for k in ("reasoning_content", "thinking", "reasoning") if msg.get(k) is not None), None)


def message_kinds(messages: list[Message]) -> dict[str, int]:
    """Counts for the report. Example: [user, assistant with 2 tool calls, tool, assistant]
    -> {"tool_call_turns": 1, "tool_calls": 2, "tool_results": 1, "reasoning_turns": 0, "content_parts": 0}"""
    out = dict.fromkeys(("tool_call_turns", "tool_calls", "tool_results", "reasoning_turns", "content_parts"), 0)
    for m in messages:
        if m["role"] == "tool":
            out["tool_results"] += 1
        if len(m) == 2 and type(m.get("content")) is str:
            continue  # {"role", "content"}: nothing else to count
        calls = len(m.get("tool_calls") or [])
        out["tool_call_turns"] += calls > 0
        out["tool_calls"] += calls
        out["reasoning_turns"] += bool((reasoning_of(m) or "").strip())
        out["content_parts"] += isinstance(m.get("content"), list)
    return out


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


def validate_tools(tools: Any, *, field: str = "tools") -> list[dict] | None:
    """A record's tool list (JSON schemas), passed to the template as `tools=`; a JSON string is parsed
    (TRL's `tools` column and LLaMA-Factory's ShareGPT store it as one). Empty -> None (templates print
    tool boilerplate for `tools=[]`).

    Example: '[{"type": "function", "function": {"name": "f"}}]' -> [{"type": "function", "function": {...}}]
    """
    import json

    if tools is None:
        return None
    if isinstance(tools, str):
        if not tools.strip():
            return None
        try:
            tools = json.loads(tools)
        except json.JSONDecodeError as exc:
            raise RecordError(f"expected a JSON list of tool schemas, got invalid JSON ({exc.msg})", field=field)
    if not isinstance(tools, list) or not all(isinstance(t, dict) for t in tools):
        raise RecordError(f"expected a list of tool schemas (objects), got {type(tools).__name__}", field=field)
    return tools or None

"""Any record schema -> one of three example kinds: chat messages, a plain document, a sentence pair.

Formats are detected from a record's fields (first match in FORMATS order wins) or chosen with
--format; --column NEW=OLD renames fields first, for data that uses other names.

Example: {"instruction": "Add", "input": "1+1", "output": "2"}  (alpaca)
-> {"messages": [{"role": "user", "content": "Add\n\n1+1"}, {"role": "assistant", "content": "2"}]}
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Mapping

from llmprep.errors import FormatError, RecordError
from llmprep.messages import Message, history_to_messages, validate_messages, validate_tools

# ShareGPT speaker names -> roles. Unknown speakers are rejected, listing these. "function_call" turns
# (LLaMA-Factory's ShareGPT: the value is the JSON call) become assistant tool calls.
SHAREGPT_ROLES = {
    "human": "user", "user": "user",
    "gpt": "assistant", "assistant": "assistant", "chatgpt": "assistant", "bard": "assistant",
    "function_call": "assistant",
    "system": "system",
    "tool": "tool", "observation": "tool", "function_response": "tool",
}

CHAT, TEXT, PAIR = "chat", "text", "pair"


def _str_field(record: Mapping[str, Any], name: str, *, optional: bool = False) -> str | None:
    """Read a string field. Example: ({"q": "hi"}, "q") -> "hi"; ({"q": 3}, "q") -> RecordError."""
    value = record.get(name)
    if value is None and optional:
        return None
    if value is None:
        raise RecordError("missing field", field=name)
    if not isinstance(value, str):
        raise RecordError(f"expected a string, got {type(value).__name__} {value!r:.40}", field=name)
    return value


def _pair_chat(prompt_field: str, reply_field: str) -> Callable[[Mapping[str, Any]], dict]:
    """Converter for two-field instruction data: prompt -> user turn, reply -> assistant turn."""
    def convert(record: Mapping[str, Any]) -> dict:
        msgs: list[Message] = []
        system = _str_field(record, "system", optional=True)
        if system:
            msgs.append({"role": "system", "content": system})
        msgs.append({"role": "user", "content": _str_field(record, prompt_field)})
        msgs.append({"role": "assistant", "content": _str_field(record, reply_field)})
        return {"messages": validate_messages(msgs, field=reply_field)}
    return convert


def _chat(messages: list, record: Mapping[str, Any], field: str) -> dict:
    """A validated conversation plus the record's tool schemas (passed to the template as tools=)."""
    out = {"messages": validate_messages(messages, field=field)}
    tools = validate_tools(record.get("tools"))
    if tools is not None:
        out["tools"] = tools
    return out


def _messages(record: Mapping[str, Any]) -> dict:
    return _chat(record.get("messages"), record, "messages")


def _sharegpt(record: Mapping[str, Any]) -> dict:
    """ShareGPT: {"conversations": [{"from": "human", "value": "..."}, ...], "tools": "[...]" (optional)}.

    A "function_call" turn's value is the call as JSON ({"name", "arguments"} or a list of them): it
    becomes the tool_calls of an assistant message (joining the assistant text just before it, if any);
    "observation" turns become tool results.
    Example: [human "weather?", function_call '{"name": "w", "arguments": {}}', observation "sunny", gpt "Sunny."]
    -> [user, assistant(tool_calls [w]; null content, left out), tool "sunny", assistant "Sunny."]
    """
    turns = record.get("conversations")
    if not isinstance(turns, list):
        raise RecordError(f"expected a list of turns, got {type(turns).__name__}", field="conversations")
    msgs: list[dict] = []
    for i, turn in enumerate(turns):
        if not isinstance(turn, dict):
            raise RecordError(f"expected an object with 'from' and 'value', got {type(turn).__name__}",
                              field=f"conversations[{i}]")
        speaker = turn.get("from")
        if speaker not in SHAREGPT_ROLES:
            raise RecordError(f"unknown speaker {speaker!r}; expected one of {', '.join(SHAREGPT_ROLES)}",
                              field=f"conversations[{i}].from")
        if speaker == "function_call":
            calls = _sharegpt_calls(turn.get("value"), f"conversations[{i}].value")
            if msgs and msgs[-1]["role"] == "assistant" and "tool_calls" not in msgs[-1]:
                msgs[-1]["tool_calls"] = calls
            else:
                msgs.append({"role": "assistant", "content": None, "tool_calls": calls})  # OpenAI's shape
            continue
        msgs.append({"role": SHAREGPT_ROLES[speaker], "content": turn.get("value")})
    system = record.get("system")
    if isinstance(system, str) and system and (not msgs or msgs[0]["role"] != "system"):
        msgs.insert(0, {"role": "system", "content": system})
    return _chat(msgs, record, "conversations")


def _sharegpt_calls(value: Any, field: str) -> list[dict]:
    """A function_call turn's JSON -> OpenAI tool calls (arguments kept as they came: object or string).

    Example: '{"name": "w", "arguments": {"city": "Oslo"}}'
    -> [{"type": "function", "function": {"name": "w", "arguments": {"city": "Oslo"}}}]
    """
    import json

    try:
        calls = json.loads(value) if isinstance(value, str) else None
    except json.JSONDecodeError as exc:
        raise RecordError(f"expected the call as JSON {{\"name\": ..., \"arguments\": ...}}, got invalid JSON "
                          f"({exc.msg})", field=field)
    calls = [calls] if isinstance(calls, dict) else calls
    if not isinstance(calls, list) or not calls or not all(isinstance(c, dict) for c in calls):
        raise RecordError(f"expected the call as JSON {{\"name\": ..., \"arguments\": ...}} (or a list of them), "
                          f"got {value!r:.60}", field=field)
    return [{"type": "function", "function": {"name": c.get("name"), "arguments": c.get("arguments", {})}}
            for c in calls]


def _alpaca(record: Mapping[str, Any]) -> dict:
    """Alpaca: the instruction and the optional input become one user turn, separated by a blank line."""
    instruction = _str_field(record, "instruction")
    extra = _str_field(record, "input", optional=True)
    user = f"{instruction}\n\n{extra}" if extra else instruction
    msgs: list[Message] = []
    system = _str_field(record, "system", optional=True)
    if system:
        msgs.append({"role": "system", "content": system})
    msgs += [{"role": "user", "content": user}, {"role": "assistant", "content": _str_field(record, "output")}]
    return {"messages": validate_messages(msgs, field="output")}


def _history(record: Mapping[str, Any]) -> dict:
    system = _str_field(record, "system", optional=True)
    return {"messages": validate_messages(history_to_messages(record.get("history"), system=system),
                                          field="history")}


def _text(record: Mapping[str, Any]) -> dict:
    text = _str_field(record, "text")
    if not text.strip():
        raise RecordError("empty document", field="text")
    return {"text": text}


def _class_label(record: Mapping[str, Any]) -> int | str | None:
    """A class id (int, or digits as CSV gives them) or a class name (a non-empty string)."""
    label = record.get("label")
    if label is None or (isinstance(label, int) and not isinstance(label, bool)):
        return label
    if isinstance(label, str) and label.strip():
        return int(label) if label.lstrip("-").isdigit() else label.strip()  # CSV gives every cell as a string
    raise RecordError(f"expected a class id (integer) or a class name (string), got {label!r:.40}", field="label")


def _pair(record: Mapping[str, Any]) -> dict:
    return {"text": _str_field(record, "sentence1"), "text_pair": _str_field(record, "sentence2"),
            "label": _class_label(record)}


def _text_label(record: Mapping[str, Any]) -> dict:
    return {"text": _str_field(record, "text"), "text_pair": None, "label": _class_label(record)}


@dataclass(frozen=True)
class Format:
    name: str
    fields: tuple[str, ...]  # all must be present for auto-detection
    kind: str
    convert: Callable[[Mapping[str, Any]], dict]
    doc: str


# Detection order matters: more specific field sets first ("instruction"+"output" before "input"+"output").
FORMATS: dict[str, Format] = {f.name: f for f in [
    Format("messages", ("messages",), CHAT, _messages, "messages: [{role, content}, ...]"),
    Format("sharegpt", ("conversations",), CHAT, _sharegpt, "conversations: [{from, value}, ...]"),
    Format("alpaca", ("instruction", "output"), CHAT, _alpaca, "instruction, input (optional), output"),
    Format("history", ("history",), CHAT, _history, "history: [[user, assistant], ..., [user, null]]"),
    Format("question-answer", ("question", "answer"), CHAT, _pair_chat("question", "answer"), "question, answer"),
    Format("input-output", ("input", "output"), CHAT, _pair_chat("input", "output"), "input, output"),
    Format("prompt-completion", ("prompt", "completion"), CHAT, _pair_chat("prompt", "completion"),
           "prompt, completion"),
    Format("sentence-pair", ("sentence1", "sentence2"), PAIR, _pair, "sentence1, sentence2, label (optional)"),
    Format("text-label", ("text", "label"), PAIR, _text_label, "text, label (single-text classification)"),
    Format("text", ("text",), TEXT, _text, "text"),
]}


def formats_help() -> str:
    """One line per format, for error messages and --help."""
    return "; ".join(f"{f.name} ({f.doc})" for f in FORMATS.values())


def detect_format(fields: set[str], *, source: str = "input") -> Format:
    """Pick the first format whose fields are all present.

    Example: {"question", "answer", "id"} -> FORMATS["question-answer"]
    """
    for fmt in FORMATS.values():
        if set(fmt.fields) <= fields:
            return fmt
    raise FormatError(f"{source}: the fields {sorted(fields)} match no supported format. "
                      f"Supported: {formats_help()}. Use --column NEW=OLD to rename fields, or --format NAME.")


def get_format(name: str) -> Format:
    """Look a format up by --format value, listing the valid names when it's unknown."""
    if name not in FORMATS:
        raise FormatError(f"--format {name!r} is not a known format. Available: {', '.join(FORMATS)}")
    return FORMATS[name]


def rename_fields(record: Mapping[str, Any], columns: Mapping[str, str]) -> dict:
    """Apply --column NEW=OLD mappings. Example: ({"q": "hi"}, {"question": "q"}) -> {"question": "hi"}"""
    if not columns:
        return dict(record)
    out = {k: v for k, v in record.items() if k not in columns.values()}
    for new, old in columns.items():
        if old in record:
            out[new] = record[old]
    return out

"""messages.py: validate_messages accepts well-formed chats and names the offending message and field
for everything else; history pairs become messages; in a file, rejects name file:line."""

from __future__ import annotations

import json

import pytest
from helpers import a, s, u

from llmprep.errors import RecordError
from llmprep.messages import history_to_messages, per_turn_units, trained_messages, validate_messages
from llmprep.prepare import PrepareConfig, StrictStop, run


def test_valid_conversations_pass_unchanged():
    for msgs in ([u("Hi"), a("Hello")], [s("S"), u("Hi"), a("Hello"), u("More"), a("Sure")],
                 [u("Hi"), a("Hello"), u("trailing question")],
                 [u("Use the tool"), a("calling"), {"role": "tool", "content": "42"}, a("It is 42.")]):
        assert validate_messages(msgs) == msgs


def test_extra_keys_are_kept_and_null_values_dropped():
    """Keys a template may read pass through untouched; null-valued keys are dropped, as transformers does."""
    got = validate_messages([{"role": "user", "content": "Hi", "name": "bob"},
                             {"role": "assistant", "content": "Yo", "tool_plan": "none", "tool_calls": None}])
    assert got == [{"role": "user", "content": "Hi", "name": "bob"},
                   {"role": "assistant", "content": "Yo", "tool_plan": "none"}]


CALL = {"type": "function", "id": "c1", "function": {"name": "get_weather", "arguments": '{"city": "Oslo"}'}}


def test_tool_calls_reasoning_parts_and_train_flags_pass():
    msgs = [s("S"), {"role": "user", "content": [{"type": "text", "text": "Weather"}, {"type": "text", "text": "?"}]},
            {"role": "assistant", "content": None, "tool_calls": [CALL, {"name": "f", "arguments": {"x": 1}}],
             "reasoning_content": "look it up"},
            {"role": "tool", "content": "sunny", "tool_call_id": "c1", "name": "get_weather"},
            {"role": "assistant", "content": "", "thinking": "done", "train": False},
            {"role": "user", "content": "thanks"}, {"role": "assistant", "content": "ok", "weight": 1}]
    got = validate_messages(msgs)
    assert "content" not in got[2] and got[2]["tool_calls"] == msgs[2]["tool_calls"]
    assert got[3:] == msgs[3:]


@pytest.mark.parametrize("msg,field,reason", [
    ({"role": "assistant", "content": None}, "messages[1].content",
     "expected a string, got NoneType (content may be null only on an assistant turn with tool_calls)"),
    ({"role": "assistant", "content": "", "tool_calls": []}, "messages[1].content", "empty assistant reply"),
    ({"role": "assistant", "content": "", "tool_calls": "f()"}, "messages[1].tool_calls",
     "expected a list of tool calls, got str"),
    ({"role": "assistant", "content": "", "tool_calls": [{"function": {"arguments": "{}"}}]},
     "messages[1].tool_calls[0].function.name", "expected the function name as a string, got None"),
    ({"role": "assistant", "content": "", "tool_calls": [{"name": "f", "arguments": 3}]},
     "messages[1].tool_calls[0].arguments", "expected arguments as a JSON string or an object, got int"),
    ({"role": "assistant", "content": "x", "reasoning_content": 5}, "messages[1].reasoning_content",
     "expected a string, got int"),
    ({"role": "assistant", "content": "x", "train": "no"}, "messages[1].train", "expected true or false, got 'no'"),
    ({"role": "assistant", "content": "x", "weight": 0.5}, "messages[1].weight", "expected 0 or 1"),
    ({"role": "assistant", "content": [{"type": "image_url", "image_url": {"url": "x"}}]},
     "messages[1].content[0].type", "content part type 'image_url' is not supported: llmprep prepares text-only"),
    ({"role": "assistant", "content": [{"type": "text", "text": 1}]}, "messages[1].content[0].text",
     "expected a string, got int"),
    ({"role": "assistant", "content": []}, "messages[1].content", "expected at least one content part"),
    ({"role": "tool", "content": {"temp": 20}}, "messages[1].content", "expected a string, got dict"),
    ({"role": "tool", "content": "20", "tool_calls": [CALL]}, "messages[1].tool_calls",
     "only assistant messages carry tool_calls, got a tool message"),
])
def test_invalid_modern_fields(msg, field, reason):
    with pytest.raises(RecordError) as info:
        validate_messages([u("Hi"), msg, a("end")] if msg["role"] == "tool" else [u("Hi"), msg])
    assert (info.value.field, info.value.reason[:len(reason)]) == (field, reason)


def test_train_true_on_a_user_message_is_something_to_train():
    assert validate_messages([u("a"), {"role": "user", "content": "b", "train": True}][1:]) == \
        [{"role": "user", "content": "b", "train": True}]
    with pytest.raises(RecordError, match="no assistant reply"):
        validate_messages([u("a")])


def test_trained_messages_and_per_turn_units():
    msgs = [s("S"), u("a"), a("b"), u("c"), {**a("d"), "train": False}, {**u("e"), "train": True}, a("f")]
    assert trained_messages(msgs) == [2, 5, 6]  # 4 says "train": false, 5 "train": true
    assert trained_messages(msgs, roles=("user", "assistant")) == [1, 2, 3, 5, 6]
    assert trained_messages(msgs, last_only=True) == [6]
    assert per_turn_units(msgs, [2, 5, 6]) == [(3, [2]), (7, [5, 6])]
    assert per_turn_units(msgs, [2, 5]) == [(3, [2]), (7, [5])]  # a trained user turn after the last reply


@pytest.mark.parametrize("msgs,field,reason", [
    ("Hi", "messages", "expected a list of messages, got str"),
    (None, "messages", "expected a list of messages, got NoneType"),
    ([], "messages", "expected at least one message, got an empty list"),
    ([u("Hi"), "Hello"], "messages[1]", "expected an object with 'role' and 'content', got str"),
    ([u("Hi"), {"role": "bot", "content": "x"}], "messages[1].role",
     "unknown role 'bot'; expected one of system, user, assistant, tool"),
    ([u("Hi"), {"content": "x"}], "messages[1].role", "unknown role None"),
    ([{"role": "user", "content": 5}, a("x")], "messages[0].content", "expected a string, got int"),
    ([u("Hi"), {"role": "assistant"}], "messages[1].content", "expected a string, got NoneType"),
    ([u("Hi"), a("")], "messages[1].content", "empty assistant reply"),
    ([u("Hi"), a(" \n\t")], "messages[1].content", "empty assistant reply"),
    ([u("a"), u("b"), a("c")], "messages[1].role", "two consecutive user messages at index 0 and 1"),
    ([u("a"), a("b"), a("c")], "messages[2].role", "two consecutive assistant messages at index 1 and 2"),
    ([u("a"), s("late"), a("b")], "messages[1].role", "system message at index 1; only the first"),
    ([a("I start"), u("b"), a("c")], "messages[0].role", "the conversation must open with a user message"),
    ([s("S"), a("I start")], "messages[1].role", "the conversation must open with a user message"),
    ([s("only system")], "messages[0].role", "the conversation must open with a user message (after an "
                                             "optional system prompt), got nothing"),
    ([u("no reply")], "messages", "no assistant reply: nothing to train on"),
])
def test_invalid_conversations(msgs, field, reason):
    with pytest.raises(RecordError) as info:
        validate_messages(msgs)
    assert info.value.field == field
    assert info.value.reason.startswith(reason)
    assert str(info.value) == f"field '{field}': {info.value.reason}"


def test_history_to_messages():
    assert history_to_messages([["Hi", "Hello!"], ["How are you?", None]]) == \
        [u("Hi"), a("Hello!"), u("How are you?")]
    assert history_to_messages([("q", "r")], system="S") == [s("S"), u("q"), a("r")]
    assert history_to_messages([]) == []
    for bad, field in [([[1, "x"]], "history[0][0]"), ([["q", 2]], "history[0][1]"),
                       ([["q", None], ["r", "s"]], "history[0][1]"), ([["q", "r", "extra"]], "history[0]"),
                       ({"q": "r"}, "history")]:
        with pytest.raises(RecordError) as info:
            history_to_messages(bad)
        assert info.value.field == field


def test_invalid_messages_in_a_file_name_file_line_field(tmp_path):
    rows = [
        {"messages": [u("ok"), a("fine")]},
        {"messages": [u("Hi"), {"role": "robot", "content": "beep"}]},
        {"messages": [u("a"), u("b"), a("c")]},
        {"messages": [u("Hi"), a("  ")]},
        {"messages": [{"role": "user", "content": ["not", "text"]}, a("x")]},
        {"messages": "Hi"},
        {"messages": [u("ok"), a("fine again")]},
    ]
    p = tmp_path / "chats.jsonl"
    p.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    res = run(PrepareConfig(progress=False, num_proc=1), [str(p)])
    got = [(r.line, r.field, r.reason.split(";")[0]) for r in res.rejected]
    assert got == [
        (2, "messages[1].role", "unknown role 'robot'"),
        (3, "messages[1].role", "two consecutive user messages at index 0 and 1"),
        (4, "messages[1].content", "empty assistant reply"),
        (5, "messages[0].content[0]", 'expected a content part {"type": "text", "text": ...}, got str'),
        (6, "messages", "expected a list of messages, got str"),
    ]
    assert all(r.source == str(p) and r.record == rows[r.line - 1] for r in res.rejected)
    assert res.rejected[0].message() == (f"{p}:2: field 'messages[1].role': unknown role 'robot'; "
                                         "expected one of system, user, assistant, tool")
    assert res.report["records"] == {"read": 7, "kept": 2, "rejected": 5, "dropped": 0}
    assert res.report["rejected_reasons"]["empty assistant reply"] == 1
    with pytest.raises(StrictStop) as info:
        run(PrepareConfig(progress=False, num_proc=1, strict=True), [str(p)])
    assert str(info.value) == f"--strict: {res.rejected[0].message()}"


def test_history_with_final_open_turn_trains_only_answers(tmp_path, smollm2):
    """A final [user, null] pair is kept as the last user turn; only real answers are trained."""
    p = tmp_path / "h.jsonl"
    p.write_text(json.dumps({"history": [["Hi", "Hello!"], ["How are you?", None]]}) + "\n")
    row = run(PrepareConfig(progress=False, num_proc=1), [str(p)]).splits["train"][0]
    msgs = [u("Hi"), a("Hello!"), u("How are you?")]
    assert row["input_ids"] == smollm2.apply_chat_template(msgs, tokenize=True)["input_ids"]
    trained = [t for t, lab in zip(row["input_ids"], row["labels"]) if lab != -100]
    assert smollm2.decode(trained) == "Hello!<|im_end|>"

"""messages.py: validate_messages accepts well-formed chats and names the offending message and field
for everything else; history pairs become messages; in a file, rejects name file:line."""

from __future__ import annotations

import json

import pytest
from helpers import a, s, u

from llmprep.errors import RecordError
from llmprep.messages import history_to_messages, validate_messages
from llmprep.prepare import PrepareConfig, StrictStop, run


def test_valid_conversations_pass_unchanged():
    for msgs in ([u("Hi"), a("Hello")], [s("S"), u("Hi"), a("Hello"), u("More"), a("Sure")],
                 [u("Hi"), a("Hello"), u("trailing question")],
                 [u("Use the tool"), a("calling"), {"role": "tool", "content": "42"}, a("It is 42.")]):
        assert validate_messages(msgs) == msgs


def test_extra_keys_are_dropped():
    got = validate_messages([{"role": "user", "content": "Hi", "name": "bob"}, {"role": "assistant",
                                                                              "content": "Yo", "weight": 1}])
    assert got == [u("Hi"), a("Yo")]


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
        (5, "messages[0].content", "expected a string, got list"),
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

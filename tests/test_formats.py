"""formats.py: every data shape converts to the hand-written messages/document/pair; detection, --format
override, --column renaming; per-record errors name file:line and field; unknown fields -> FormatError."""

from __future__ import annotations

import csv
import json

import pytest
from helpers import a, s, u

from llmprep.errors import FormatError, RecordError
from llmprep.examples import to_examples
from llmprep.formats import FORMATS, detect_format, get_format, rename_fields
from llmprep.prepare import PrepareConfig, run
from llmprep.records import Record

# (record, detected format, converted data) -- written out by hand
SHAPES = [
    ({"messages": [u("Hi"), a("Hello")]}, "messages", {"messages": [u("Hi"), a("Hello")]}),
    ({"messages": [s("Be nice"), u("Hi"), a("Hello"), u("Bye"), a("Ciao")], "id": 7}, "messages",
     {"messages": [s("Be nice"), u("Hi"), a("Hello"), u("Bye"), a("Ciao")]}),
    ({"conversations": [{"from": "system", "value": "S"}, {"from": "human", "value": "Hi"},
                        {"from": "gpt", "value": "Yo"}]}, "sharegpt", {"messages": [s("S"), u("Hi"), a("Yo")]}),
    ({"conversations": [{"from": "human", "value": "Hi"}, {"from": "gpt", "value": "Yo"}], "system": "Sys"},
     "sharegpt", {"messages": [s("Sys"), u("Hi"), a("Yo")]}),
    ({"instruction": "Add", "input": "1+1", "output": "2"}, "alpaca", {"messages": [u("Add\n\n1+1"), a("2")]}),
    ({"instruction": "Say hi", "input": "", "output": "hi"}, "alpaca", {"messages": [u("Say hi"), a("hi")]}),
    ({"instruction": "Say hi", "output": "hi", "system": "S"}, "alpaca", {"messages": [s("S"), u("Say hi"), a("hi")]}),
    ({"question": "Capital of France?", "answer": "Paris"}, "question-answer",
     {"messages": [u("Capital of France?"), a("Paris")]}),
    ({"input": "ping", "output": "pong"}, "input-output", {"messages": [u("ping"), a("pong")]}),
    ({"prompt": "Once upon", "completion": " a time"}, "prompt-completion",
     {"messages": [u("Once upon"), a(" a time")]}),
    ({"text": "Just a document."}, "text", {"text": "Just a document."}),
    ({"sentence1": "A man eats.", "sentence2": "Someone eats.", "label": 1}, "sentence-pair",
     {"text": "A man eats.", "text_pair": "Someone eats.", "label": 1}),
    ({"sentence1": "A", "sentence2": "B"}, "sentence-pair", {"text": "A", "text_pair": "B", "label": None}),
    ({"history": [["Hi", "Hello!"], ["How are you?", None]]}, "history",
     {"messages": [u("Hi"), a("Hello!"), u("How are you?")]}),
    ({"history": [["Hi", "Hello!"], ["More?", "Sure."]], "system": "S"}, "history",
     {"messages": [s("S"), u("Hi"), a("Hello!"), u("More?"), a("Sure.")]}),
]


@pytest.mark.parametrize("record,name,converted", SHAPES, ids=[f"{i}-{x[1]}" for i, x in enumerate(SHAPES)])
def test_detect_and_convert(record, name, converted):
    fmt = detect_format(set(record))
    assert fmt.name == name
    assert fmt.convert(record) == converted
    assert get_format(name).convert(record) == converted


def test_every_shape_prepares_from_a_file(tmp_path, smollm2, bert):
    """One file per shape (detection is per file) through the whole pipeline in one run; chat ids equal
    apply_chat_template, documents are the plain tokens + EOS, pairs equal tokenizer(s1, s2)."""
    d = tmp_path / "shapes"
    d.mkdir()
    expected = []
    for i, (record, name, converted) in enumerate(SHAPES):
        if name != "sentence-pair":
            (d / f"{i:02d}.jsonl").write_text(json.dumps(record) + "\n", encoding="utf-8")
            expected.append(converted)
    res = run(PrepareConfig(progress=False, num_proc=1), [str(d)])
    rows = res.splits["train"]
    assert len(rows) == len(expected) and not res.rejected
    for row, converted in zip(rows, expected):
        if "messages" in converted:
            assert row["input_ids"] == smollm2.apply_chat_template(converted["messages"], tokenize=True)["input_ids"]
        else:
            assert row["input_ids"] == smollm2(converted["text"], add_special_tokens=False)["input_ids"] + [2]
    pairs = [(r, c) for r, n, c in SHAPES if n == "sentence-pair"]
    p = tmp_path / "pairs.jsonl"
    p.write_text("".join(json.dumps(r) + "\n" for r, _ in pairs), encoding="utf-8")
    rows = run(PrepareConfig(tokenizer=bert, progress=False, num_proc=1), [str(p)]).splits["train"]
    for row, (_, c) in zip(rows, pairs, strict=True):
        assert row["input_ids"] == bert(c["text"], c["text_pair"])["input_ids"]
        assert row["labels"] == c["label"]


def test_detection_order_prefers_specific_fields():
    assert detect_format({"instruction", "input", "output"}).name == "alpaca"
    assert detect_format({"input", "output"}).name == "input-output"
    assert detect_format({"messages", "text"}).name == "messages"
    assert detect_format({"question", "answer", "text"}).name == "question-answer"


def test_format_override(tmp_path):
    p = tmp_path / "a.jsonl"
    p.write_text(json.dumps({"question": "Q?", "answer": "A.", "text": "a plain document"}) + "\n")
    auto = list(to_examples([Record(str(p), 1, {"question": "Q?", "answer": "A.", "text": "doc"})]))
    assert auto[0].kind == "chat"
    forced = list(to_examples([Record(str(p), 1, {"question": "Q?", "answer": "A.", "text": "doc"})], format="text"))
    assert (forced[0].kind, forced[0].data) == ("text", {"text": "doc"})
    res = run(PrepareConfig(format="text", progress=False, num_proc=1), [str(p)])
    assert res.splits["train"][0]["labels"] == res.splits["train"][0]["input_ids"]  # documents train everything
    with pytest.raises(FormatError, match="--format 'nope' is not a known format. Available: messages, sharegpt"):
        get_format("nope")


def test_column_renaming(tmp_path, smollm2):
    assert rename_fields({"q": "hi", "a": "yo", "id": 1}, {"question": "q", "answer": "a"}) == \
        {"id": 1, "question": "hi", "answer": "yo"}
    assert rename_fields({"q": "hi"}, {}) == {"q": "hi"}
    p = tmp_path / "a.csv"
    with open(p, "w", newline="", encoding="utf-8") as fh:
        csv.writer(fh).writerows([["prompt_text", "reply"], ["Hi", "Hello"]])
    with pytest.raises(FormatError):
        run(PrepareConfig(progress=False, num_proc=1), [str(p)])
    res = run(PrepareConfig(columns={"question": "prompt_text", "answer": "reply"}, progress=False, num_proc=1),
              [str(p)])
    assert res.splits["train"][0]["input_ids"] == smollm2.apply_chat_template([u("Hi"), a("Hello")],
                                                                             tokenize=True)["input_ids"]


def test_unknown_fields_raise_format_error(tmp_path):
    p = tmp_path / "odd.jsonl"
    p.write_text(json.dumps({"foo": 1, "bar": "x"}) + "\n")
    with pytest.raises(FormatError) as info:
        run(PrepareConfig(progress=False, num_proc=1), [str(p)])
    msg = str(info.value)
    assert msg.startswith(f"{p}: the fields ['bar', 'foo'] match no supported format")
    for name in FORMATS:
        assert name in msg
    assert "--column NEW=OLD" in msg and "--format NAME" in msg


def test_detection_is_per_file(tmp_path):
    qa = tmp_path / "a.jsonl"
    qa.write_text(json.dumps({"question": "Q", "answer": "A"}) + "\n")
    msgs = tmp_path / "b.jsonl"
    msgs.write_text(json.dumps({"messages": [u("Hi"), a("Yo")]}) + "\n")
    res = run(PrepareConfig(progress=False, num_proc=1), [str(qa), str(msgs)])
    assert res.report["records"]["kept"] == 2


# --- per-record errors: file:line and field ------------------------------------------------------

BAD = [
    ({"question": 3, "answer": "x"}, "question", "expected a string, got int 3"),
    ({"question": "q", "answer": None}, "answer", "missing field"),
    ({"question": "q", "answer": ["a"]}, "answer", "expected a string, got list"),
    ({"question": "q", "answer": "   "}, "answer[1].content", "empty assistant reply"),
]


def test_qa_record_errors_name_file_line_field(tmp_path):
    p = tmp_path / "qa.jsonl"
    rows = [{"question": "ok?", "answer": "ok"}] + [bad for bad, _, _ in BAD] + [{"question": "ok2?", "answer": "ok2"}]
    p.write_text("".join(json.dumps(r) + "\n" for r in rows))
    res = run(PrepareConfig(progress=False, num_proc=1), [str(p)])
    assert len(res.rejected) == len(BAD)
    for line, (r, (bad, field, reason)) in enumerate(zip(res.rejected, BAD), start=2):
        assert (r.source, r.line, r.field) == (str(p), line, field)
        assert r.reason.startswith(reason)
        assert r.record == bad
        assert r.message().startswith(f"{p}:{line}: field '{field}': {reason}")
    assert res.report["records"] == {"read": 6, "kept": 2, "rejected": 4, "dropped": 0}


def test_missing_field_with_format_override():
    recs = [Record("f.jsonl", 5, {"question": "q"})]
    (r,) = list(to_examples(recs, format="question-answer"))
    assert (r.source, r.line, r.field, r.reason) == ("f.jsonl", 5, "answer", "missing field")


@pytest.mark.parametrize("record,field,reason", [
    ({"conversations": [{"from": "human", "value": "Hi"}, {"from": "robot", "value": "Yo"}]},
     "conversations[1].from", "unknown speaker 'robot'; expected one of human, user, gpt"),
    ({"conversations": "Hi"}, "conversations", "expected a list of turns, got str"),
    ({"conversations": [["human", "Hi"]]}, "conversations[0]", "expected an object with 'from' and 'value'"),
    ({"conversations": [{"from": "human", "value": "Hi"}, {"from": "gpt", "value": 5}]},
     "conversations[1].content", "expected a string, got int"),
    ({"conversations": [{"from": "human", "value": "a"}, {"from": "human", "value": "b"},
                        {"from": "gpt", "value": "c"}]},
     "conversations[1].role", "two consecutive user messages at index 0 and 1"),
    ({"instruction": "x", "output": 1}, "output", "expected a string, got int"),
    ({"instruction": "x", "output": ""}, "output[1].content", "empty assistant reply"),
    ({"history": [["Hi", None], ["More", "x"]]}, "history[0][1]", "only the last pair may have no answer"),
    ({"history": [["Hi"]]}, "history[0]", "expected a [user, assistant] pair"),
    ({"history": "Hi"}, "history", "expected a list of [user, assistant] pairs"),
    ({"history": [["Hi", None]]}, "history", "no assistant reply: nothing to train on"),
    ({"text": "   "}, "text", "empty document"),
    ({"text": 12}, "text", "expected a string, got int"),
    ({"sentence1": "a", "sentence2": "b", "label": " "}, "label", "expected a class id (integer) or a class name"),
    ({"sentence1": "a", "sentence2": "b", "label": True}, "label", "expected a class id (integer) or a class name"),
    ({"sentence1": "a", "sentence2": None}, "sentence2", "missing field"),
])
def test_shape_errors(record, field, reason):
    (r,) = list(to_examples([Record("in.jsonl", 9, record)]))
    assert (r.source, r.line, r.field) == ("in.jsonl", 9, field)
    assert r.reason.startswith(reason)
    assert r.record == record


def test_sentence_pair_csv_label_string_becomes_int():
    fmt = get_format("sentence-pair")
    assert fmt.convert({"sentence1": "a", "sentence2": "b", "label": "1"})["label"] == 1
    assert fmt.convert({"sentence1": "a", "sentence2": "b", "label": "-1"})["label"] == -1
    assert fmt.convert({"sentence1": "a", "sentence2": "b", "label": "equivalent"})["label"] == "equivalent"


def test_text_with_a_label_is_single_text_classification():
    fmt = detect_format({"text", "label"})
    assert fmt.name == "text-label"
    assert fmt.convert({"text": "great film", "label": "pos"}) == {"text": "great film", "text_pair": None,
                                                                   "label": "pos"}


def test_sharegpt_aliases():
    conv = get_format("sharegpt").convert
    got = conv({"conversations": [{"from": "user", "value": "a"}, {"from": "chatgpt", "value": "b"},
                                  {"from": "human", "value": "c"}, {"from": "bard", "value": "d"}]})
    assert [m["role"] for m in got["messages"]] == ["user", "assistant", "user", "assistant"]
    with pytest.raises(RecordError):
        conv({"conversations": []})


WEATHER = [{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}]


def test_tools_and_sharegpt_function_calls():
    """A record's tools (a list, or a JSON string as in TRL/LLaMA-Factory) ride along; ShareGPT function_call
    turns become assistant tool calls (joining the assistant text just before them), observations tool results."""
    got = FORMATS["messages"].convert({"messages": [u("Hi"), a("Yo")], "tools": json.dumps(WEATHER)})
    assert got == {"messages": [u("Hi"), a("Yo")], "tools": WEATHER}
    assert "tools" not in FORMATS["messages"].convert({"messages": [u("Hi"), a("Yo")], "tools": []})
    call = {"name": "get_weather", "arguments": {"city": "Oslo"}}
    record = {"tools": json.dumps(WEATHER), "conversations": [
        {"from": "human", "value": "Weather?"}, {"from": "gpt", "value": "Let me check."},
        {"from": "function_call", "value": json.dumps(call)}, {"from": "observation", "value": "sunny"},
        {"from": "function_call", "value": json.dumps([call, call])}, {"from": "observation", "value": "sunny"},
        {"from": "gpt", "value": "Sunny."}]}
    fn = {"type": "function", "function": call}
    assert FORMATS["sharegpt"].convert(record) == {"tools": WEATHER, "messages": [
        u("Weather?"), {"role": "assistant", "content": "Let me check.", "tool_calls": [fn]},
        {"role": "tool", "content": "sunny"}, {"role": "assistant", "tool_calls": [fn, fn]},
        {"role": "tool", "content": "sunny"}, a("Sunny.")]}


@pytest.mark.parametrize("record,field,reason", [
    ({"conversations": [{"from": "human", "value": "q"}, {"from": "function_call", "value": "w(1)"}]},
     "conversations[1].value", "expected the call as JSON"),
    ({"conversations": [{"from": "human", "value": "q"}, {"from": "function_call", "value": "[]"}]},
     "conversations[1].value", "expected the call as JSON"),
    ({"messages": [u("q"), a("r")], "tools": "not json"}, "tools", "expected a JSON list of tool schemas"),
    ({"messages": [u("q"), a("r")], "tools": {"name": "f"}}, "tools", "expected a list of tool schemas"),
])
def test_tool_shape_errors(record, field, reason):
    (r,) = list(to_examples([Record("in.jsonl", 4, record)]))
    assert (r.field, r.reason[:len(reason)]) == (field, reason)

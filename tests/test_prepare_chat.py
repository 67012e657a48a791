"""prepare() on modern chat data: the report's chat section, --history per-turn rows (accounting, split by
conversation, cache), --add-eos, --train-roles and per-message "train", and reject reasons."""

from __future__ import annotations

import json

import datasets
import pytest
from helpers import a, s, u, write_jsonl
from templates_support import template_path, template_tokenizer

from llmprep.constants import IGNORE_INDEX
from llmprep.errors import ConfigError
from llmprep.prepare import PrepareConfig, run

CALL = {"id": "call00001", "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Oslo"}'}}
TOOLS = [{"type": "function", "function": {"name": "get_weather", "description": "Weather in a city.",
                                           "parameters": {"type": "object", "properties": {}}}}]
AGENT = {"messages": [u("Weather in Oslo?"), {"role": "assistant", "content": "", "tool_calls": [CALL, CALL]},
                      {"role": "tool", "tool_call_id": "call00001", "content": "sunny"},
                      {"role": "tool", "tool_call_id": "call00001", "content": "sunny"},
                      {**a("It is sunny."), "reasoning_content": "The tool says so."}], "tools": TOOLS}
REASONING = {"messages": [u("2+2?"), {**a("4"), "reasoning_content": "add"},
                          u("3+3?"), {**a("6"), "reasoning_content": "add again"}]}
PARTS = {"messages": [{"role": "user", "content": [{"type": "text", "text": "Hi"}]}, a("Hello!")]}


def run_on(tmp_path, name: str, rows, **options):
    options = {"progress": False, "num_proc": 1, "cache": False, "engine": "tokenizers", **options}
    return run(PrepareConfig(tokenizer=template_tokenizer(name), template=str(template_path(name)), **options),
               [str(write_jsonl(tmp_path / "in.jsonl", rows))])


def test_report_chat_section(tmp_path):
    res = run_on(tmp_path, "qwen3", [AGENT, REASONING, PARTS])
    chat = res.report["chat"]
    assert res.report["records"] == {"read": 3, "kept": 2, "rejected": 1, "dropped": 0}
    # Qwen3 prints content parts as "": the user's text would be lost
    assert (res.rejected[0].line, res.rejected[0].field) == (3, "messages[0].content[0].text")
    assert res.rejected[0].reason.startswith("the chat template does not render content parts")
    assert chat["messages"] == {"tool_call_turns": 1, "tool_calls": 2, "tool_results": 2, "reasoning_turns": 3,
                                "content_parts": 0}
    assert chat["history"] == {"mode": "full", "conversations": 2, "rows": 2, "rows_dropped": 0}
    assert chat["not_rendered"] == {"assistant.reasoning": 1}  # turn 1 of REASONING: dropped from history
    assert chat["no_stop_token"] == {"count": 0, "eos_added": 0, "conversations": []}
    # (conversations of more than 2 messages are checked) Qwen3 renders the call turn with an empty think block
    # while it is the last message, and the first reasoning while the next question is not there yet
    assert chat["prefix_consistent"]["checked"] == 2 and chat["prefix_consistent"]["inconsistent"] == 2
    assert chat["prefix_consistent"]["first"]["line"] == 1 and chat["prefix_consistent"]["first"]["message"] == 1
    assert res.report["template"]["end_of_turn"] == ["<|endoftext|>", "<|im_end|>"]
    assert res.report["template"]["generation_prompt"] == "<|im_start|>assistant\n"


def test_history_per_turn_rows_split_and_accounting(tmp_path):
    """One row per reply, each the conversation up to it with only that reply trained; all rows of a
    conversation land in the same split (a test row never holds a prefix of a training row)."""
    tok = template_tokenizer("qwen3")
    convs = [REASONING] + [{"messages": [u(f"q{i}?"), a(f"a{i}"), u("r"), a("b"), u("s"), a("c")]} for i in range(9)]
    res = run_on(tmp_path, "qwen3", convs, history="per-turn", dedup="none", test_size=3, seed=1)
    assert res.report["chat"]["history"] == {"mode": "per-turn", "conversations": 10, "rows": 29, "rows_dropped": 0}
    assert res.report["records"] == {"read": 10, "kept": 10, "rejected": 0, "dropped": 0}
    owner = {}  # conversation -> split of each of its rows
    for name, ds in res.splits.items():
        for row in ds:
            text = tok.decode(row["input_ids"])
            conv = "2+2" if "2+2?" in text else next(f"q{i}" for i in range(9) if f"q{i}?" in text)
            owner.setdefault(conv, []).append(name)
    assert {k: len(v) for k, v in owner.items()} == {"2+2": 2, **{f"q{i}": 3 for i in range(9)}}
    assert all(len(set(v)) == 1 for v in owner.values())
    assert sum(1 for v in owner.values() if v[0] == "test") == 3  # --test-size 3 counts conversations
    rows = [r for ds in res.splits.values() for r in ds if "2+2?" in tok.decode(r["input_ids"])]
    msgs = REASONING["messages"]
    assert sorted(r["input_ids"] for r in rows) == sorted(
        [tok.apply_chat_template(msgs[:2], tokenize=True)["input_ids"], tok.apply_chat_template(msgs)["input_ids"]])
    trained = sorted(tok.decode([t for t, lab in zip(r["input_ids"], r["labels"]) if lab != IGNORE_INDEX])
                     for r in rows)
    # each reasoning trace is trained once, in the row that ends with its turn (Qwen3 drops it from history)
    assert trained == ["<think>\nadd\n</think>\n\n4<|im_end|>", "<think>\nadd again\n</think>\n\n6<|im_end|>"]


def test_per_turn_rows_dropped_by_truncation_are_counted_per_record(tmp_path):
    long = "word " * 40
    convs = [{"messages": [u("short"), a("ok"), u(long), a("fine")]},   # row 1 kept, row 2 too long
             {"messages": [u(long + long), a("x")]}]                      # its only row too long: dropped
    res = run_on(tmp_path, "qwen2.5", convs, history="per-turn", dedup="none", max_length=60, truncation="drop")
    assert res.report["records"] == {"read": 2, "kept": 1, "rejected": 0, "dropped": 1}
    assert res.report["chat"]["history"]["rows_dropped"] == 1 and len(res.splits["train"]) == 1
    assert [d.line for d in res.dropped] == [2]


def test_per_turn_from_the_cache_is_the_same(tmp_path):
    convs = [REASONING] * 6
    first = run_on(tmp_path, "qwen3", convs, history="per-turn", dedup="none", test_size=2, cache=True,
                   cache_dir=str(tmp_path / "cache"))
    again = run_on(tmp_path, "qwen3", convs, history="per-turn", dedup="none", test_size=2, cache=True,
                   cache_dir=str(tmp_path / "cache"))
    assert again.cache["hits"] == 1 and first.report == again.report
    for name in first.splits:
        assert first.splits[name]["input_ids"] == again.splits[name]["input_ids"]


def test_history_last_trains_only_the_last_reply(tmp_path):
    tok = template_tokenizer("qwen2.5")
    res = run_on(tmp_path, "qwen2.5", [REASONING], history="last")
    row = res.splits["train"][0]
    assert tok.decode([t for t, lab in zip(row["input_ids"], row["labels"]) if lab != IGNORE_INDEX]) == "6<|im_end|>"


def test_add_eos_where_the_template_writes_no_stop(tmp_path):
    tok = template_tokenizer("glm-4.5")
    rows = [{"messages": [u("Hi"), a("Hello!")]}, {"messages": [u("Bye"), a("Ciao")]}]
    plain = run_on(tmp_path, "glm-4.5", rows)
    assert plain.report["chat"]["no_stop_token"]["count"] == 2
    assert plain.report["chat"]["no_stop_token"]["conversations"] == [f"{tmp_path / 'in.jsonl'}:1",
                                                                         f"{tmp_path / 'in.jsonl'}:2"]
    fixed = run_on(tmp_path, "glm-4.5", rows, add_eos=True)
    assert fixed.report["chat"]["no_stop_token"] == {"count": 0, "eos_added": 2, "conversations": []}
    for before, after in zip(plain.splits["train"], fixed.splits["train"]):
        assert after["input_ids"] == before["input_ids"] + [tok.eos_token_id]
        assert after["labels"][-1] == tok.eos_token_id


def test_train_roles_and_message_flags(tmp_path):
    tok = template_tokenizer("qwen2.5")
    conv = {"messages": [s("S"), u("Hi"), {**a("Hello!"), "train": False}, {**u("Bye"), "weight": 1}, a("Ciao")]}
    res = run_on(tmp_path, "qwen2.5", [conv])
    row = res.splits["train"][0]
    trained = tok.decode([t for t, lab in zip(row["input_ids"], row["labels"]) if lab != IGNORE_INDEX])
    assert trained == "Bye<|im_end|>Ciao<|im_end|>"  # "weight": 1 trains a user turn, "train": false skips a reply
    res = run_on(tmp_path, "qwen2.5", [conv], train_roles="user,assistant")
    row = res.splits["train"][0]
    trained = tok.decode([t for t, lab in zip(row["input_ids"], row["labels"]) if lab != IGNORE_INDEX])
    assert trained == "Hi<|im_end|>Bye<|im_end|>Ciao<|im_end|>"  # "train": false still wins
    nothing = run_on(tmp_path, "qwen2.5", [{"messages": [u("Hi"), {**a("Hello!"), "train": False}]}] + [conv])
    assert nothing.rejected[0].reason.startswith("nothing to train: no message is in --train-roles assistant")


def test_bad_chat_options_are_named(tmp_path):
    with pytest.raises(ConfigError) as info:
        run_on(tmp_path, "qwen2.5", [REASONING], train_roles="assistant,bot", history="some")
    assert "--history 'some' is not valid; choose one of full, per-turn, last" in str(info.value)
    assert "--train-roles 'assistant,bot': expected a comma-separated list of system, user, assistant, tool" \
        in str(info.value)


def test_null_content_refusal_gets_a_hint(tmp_path):
    """SmolLM2's ChatML template concatenates message['content']: null (dropped, as transformers does) fails."""
    conv = {"messages": [u("Weather?"), {"role": "assistant", "content": None, "tool_calls": [CALL]},
                         {"role": "tool", "tool_call_id": "call00001", "content": "sunny"}, a("Sunny.")]}
    path = str(write_jsonl(tmp_path / "in.jsonl", [conv, REASONING]))
    res = run(PrepareConfig(progress=False, num_proc=1, cache=False), [path])
    assert "refused this conversation" in res.rejected[0].reason
    assert "messages[1].content is null" in res.rejected[0].reason and 'give "" instead' in res.rejected[0].reason
    conv["messages"][1]["content"] = ""  # now it renders, but SmolLM2's template has no place for tool calls
    path = str(write_jsonl(tmp_path / "in.jsonl", [conv, REASONING]))
    res = run(PrepareConfig(progress=False, num_proc=1, cache=False), [path])
    assert res.rejected[0].field == "messages[1].tool_calls[0].function.name"
    assert "does not render this tool call" in res.rejected[0].reason and "hint" not in res.rejected[0].reason


def test_refusal_about_something_else_gets_no_null_content_hint(tmp_path):
    """GLM-4.5 refuses string arguments (it calls arguments.items()), whatever the content: no content hint."""
    conv = {"messages": [u("Weather?"), {"role": "assistant", "content": None, "tool_calls": [CALL]},
                         {"role": "tool", "tool_call_id": "call00001", "content": "sunny"}, a("Sunny.")]}
    reason = run_on(tmp_path, "glm-4.5", [conv, REASONING]).rejected[0].reason
    assert "has no attribute 'items'" in reason and "hint" not in reason


def test_prepared_rows_load_as_a_dataset(tmp_path):
    options = {"progress": False, "num_proc": 1, "cache": False, "engine": "tokenizers"}
    run(PrepareConfig(tokenizer=template_tokenizer("qwen2.5"), template=str(template_path("qwen2.5")), **options),
        [str(write_jsonl(tmp_path / "in.jsonl", [AGENT]))], out=tmp_path / "out")
    row = datasets.load_from_disk(str(tmp_path / "out"))["train"][0]
    tok = template_tokenizer("qwen2.5")
    assert row["input_ids"] == tok.apply_chat_template(AGENT["messages"], tools=TOOLS, tokenize=True)["input_ids"]
    assert json.loads((tmp_path / "out" / "report.json").read_text())["chat"]["messages"]["tool_calls"] == 2


def test_records_offering_different_tools_are_no_duplicates(tmp_path):
    """The rendering prints `tools`: the same messages with other tools are another row, not an exact copy."""
    other = [{"type": "function", "function": {**TOOLS[0]["function"], "name": "get_time"}}]
    chat = {"messages": [u("Weather in Oslo?"), a("Let me check.")]}
    res = run_on(tmp_path, "qwen2.5", [{**chat, "tools": TOOLS}, {**chat, "tools": other}, {**chat, "tools": TOOLS}],
                 dedup="exact", test_size=0)
    assert res.report["records"] == {"read": 3, "kept": 2, "rejected": 1, "dropped": 0}
    assert res.rejected[0].line == 3 and "duplicate" in res.rejected[0].reason


def test_tools_a_template_never_prints_are_a_reject_naming_them(tmp_path):
    """SmolLM2's template has no place for tools: the row would teach calls to tools never shown."""
    chat = {"messages": [u("Weather in Oslo?"), a("Let me check.")]}
    res = run(PrepareConfig(progress=False, num_proc=1, cache=False, test_size=0),
              [str(write_jsonl(tmp_path / "in.jsonl", [{**chat, "tools": TOOLS}, chat]))])
    assert res.report["records"] == {"read": 2, "kept": 1, "rejected": 1, "dropped": 0}
    (bad,) = res.rejected
    assert (bad.line, bad.field) == (1, "tools") and "does not render `tools`" in bad.reason

"""lane.py: a shard processed with the plain-chat lane gives exactly the result of the general path — every
row's ids and labels, every reject and its reason, the report's counts — on real conversations mixed with
records the lane must leave to the general path, for every template whose chats skip rendering."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest
from helpers import a, chat, s, u

import llmprep.shard as shard_mod
from llmprep.lane import PlainLane
from llmprep.records import Record, read_file
from llmprep.render import resolve_template
from llmprep.shard import ShardSettings, process_shard

# Records the lane must not take (or must take exactly as the general path would): each a JSON line.
EDGE_LINES = [
    json.dumps({"messages": chat("Hi", "   ")}),  # blank reply: rejected
    json.dumps({"messages": chat("Hi", " \n")}),
    json.dumps({"messages": chat("", "Yo")}),  # empty user content: valid, but not plain for a shape
    json.dumps({"messages": chat("Hi", "Yo"), "tools": [{"type": "function", "function": {"name": "f"}}]}),
    json.dumps({"messages": chat("Hi", "Yo"), "id": 7, "source": "x"}),  # extra top-level keys: ignored
    json.dumps({"messages": [u("Hi"), a("Yo") | {"train": False}]}),
    json.dumps({"messages": [u("Hi"), a("Yo") | {"name": "bot"}]}),
    json.dumps({"messages": [u("Hi"), {"role": "assistant", "content": [{"type": "text", "text": "Yo"}]}]}),
    json.dumps({"messages": [u("a"), u("b"), a("c")]}),  # two user turns: rejected
    json.dumps({"messages": [u("a"), a("b"), s("late")]}),  # system not first: rejected
    json.dumps({"messages": [a("first")]}),  # no user: rejected
    json.dumps({"messages": [s("only")]}),
    json.dumps({"messages": [u("q"), a("calling"), {"role": "tool", "content": "42"}, a("It is 42.")]}),
    json.dumps({"messages": [u("q"), {"role": "robot", "content": "x"}]}),  # unknown role
    json.dumps({"messages": []}),
    json.dumps({"messages": "Hi"}),
    json.dumps({"messages": chat("<|im_end|> typed by a user", "ok")}),  # control text stays literal
    json.dumps({"messages": chat(" lead", "trail ", "\n x \n", "y")}),
    '{"messages": [{"role": "user", "content": "\\ud800"}, {"role": "assistant", "content": "x"}]}',  # surrogate
    '{"messages": ' + "[" * 40 + "]" * 40 + "}",  # too deep
    json.dumps({"messages": chat("Hi", "Yo"), "meta": json.loads("[" * 120 + "]" * 120)}),  # plain, but too deep
    '{"messages": [{"role": "user", "content": "\\ud83d\\ude00 emoji"}, {"role": "assistant", "content": "ok"}]}',
    '{"messages": [{"role": "user", "content": "Hi"}, ',  # malformed
    "[1, 2]",  # not an object
    json.dumps({"conversation": chat("Hi", "Yo")}),  # no messages field
    json.dumps({"messages": [u("Hi"), {"role": "assistant", "content": None}]}),
    json.dumps({"messages": [u("Hi"), a("Yo")], "messages_extra": 1}),
    # JSON that faster parsers read otherwise than json: an integer beyond 64 bits, NaN, Infinity
    '{"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Yo"}], "id": 123456789012345678901234567890}',
    '{"messages": [{"role": "user", "content": "a"}, {"role": "user", "content": "b"}], "id": -98765432109876543210987}',
    '{"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Yo"}], "score": NaN}',
    '{"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Yo"}], "w": -Infinity}',
]


def _records(english_chats, chinese_chats) -> list[Record]:
    """Real chats (many shapes, with and without a system prompt) with the edge records spread among them,
    as prepare reads them: raw JSON lines, parsed in the shard."""
    real = english_chats[:150] + chinese_chats[:150] + [[s("Be brief.")] + m for m in english_chats[150:230]]
    lines = [json.dumps({"messages": m}, ensure_ascii=False) for m in real]
    for k, edge in enumerate(EDGE_LINES):
        lines.insert(7 + k * 13, edge)
    return [Record("mem.jsonl", i + 1, raw=line) for i, line in enumerate(lines)]


def _summary(res) -> dict:
    enc = res.encoded
    return {
        "rows": [tuple(np.asarray(x).tolist() for x in enc.row(r)) for r in range(len(enc))],
        "rejected": [(x.source, x.line, x.field, x.reason, json.dumps(x.record, sort_keys=True, default=str))
                     for x in res.rejected],
        "dropped": [(x.source, x.line, x.reason) for x in res.dropped],
        "kept": [(ex.source, ex.line, ex.kind, json.dumps(ex.data, sort_keys=True)) for ex in res.kept_examples],
        "counts": (res.truncated, res.control_text_rows, res.fast_rows, res.engine_mismatches, res.kinds,
                   res.kept_at, res.template_rows, res.chat, res.trained_lost, res.dropped_trained),
        "cut": None if res.cut is None else np.asarray(res.cut).tolist(),
    }


def _as_json_array(records: list[Record], path) -> list[Record]:
    """The same records as a prepare task reads them from its range of a .json array file: objects parsed
    (and checked) by the reader, an item nested too deep rejected alone. (The malformed line has no place in
    an array that is one.)"""
    path.write_text("[" + ",\n".join(r.raw for r in records if not r.raw.endswith(", ")) + "]", encoding="utf-8")
    return list(read_file(path, lazy=True, span=(0, path.stat().st_size, 1)))


def _both(records, settings, monkeypatch) -> tuple[dict, dict, int]:
    """(lane result, general result, records the lane took)"""
    lanes = []
    real = PlainLane.for_shard.__func__
    formats = {records[0].source: "messages"}
    shard_mod._STATE.clear()
    with monkeypatch.context() as m:
        m.setattr(PlainLane, "for_shard", classmethod(lambda cls, *args: lanes.append(real(cls, *args)) or lanes[-1]))
        with_lane = process_shard(records, formats, settings)
    shard_mod._STATE.clear()
    with monkeypatch.context() as m:
        m.setattr(PlainLane, "for_shard", classmethod(lambda cls, *args: None))
        general = process_shard(records, formats, settings)
    shard_mod._STATE.clear()
    return _summary(with_lane), _summary(general), lanes[0].taken if lanes[0] else 0


SETTINGS = {
    "default": {},
    "train last turn": {"train_turns": "last"},
    "history last": {"history": "last"},
    "control text not literal": {"literal_control_text": False},
    "train users too": {"train_roles": ("user", "assistant")},
    "train on prompt": {"train_on_prompt": True},
    "truncated": {"max_length": 96},
    "dropped": {"max_length": 96, "truncation": "drop"},
}


@pytest.mark.parametrize("template", ["auto", "chatml", "zephyr", "alpaca"])
@pytest.mark.parametrize("variant", sorted(SETTINGS))
def test_lane_equals_the_general_path(template, variant, english_chats, chinese_chats, monkeypatch, tmp_path):
    from llmprep.tokenizer import load_lite_tokenizer, resolve_tokenizer_path

    tok = load_lite_tokenizer("smollm2")
    name, source = resolve_template(template, tok)
    settings = replace(ShardSettings(tokenizer=resolve_tokenizer_path("smollm2"), template_source=source,
                                     max_length=4096, truncation="right", engine="fastokens", template_name=name),
                       **SETTINGS[variant])
    records = _records(english_chats, chinese_chats)
    if variant == "default":  # and read as one .json array: the lane takes the reader's objects as they are
        json_lane, json_general, json_taken = _both(_as_json_array(records, tmp_path / "mem.json"), settings,
                                                    monkeypatch)
        for key in json_general:
            assert json_lane[key] == json_general[key], key
        if template != "alpaca":
            assert json_taken > len(records) // 2
    lane, general, taken = _both(records, settings, monkeypatch)
    for key in general:
        assert lane[key] == general[key], key
    # the lane really took most chats (those of known shapes, not spot-checked). Alpaca's user turns have
    # no end-of-turn token: trained, they give no shape, so every chat goes the general way there.
    if (template, variant) == ("alpaca", "train users too"):
        assert taken == lane["counts"][6]["shape_rows"] == 0
    else:
        assert lane["counts"][6]["shape_rows"] > taken > len(records) // 2
    assert len(general["rejected"]) >= 10


def test_lane_needs_a_render_free_template_and_known_formats(smollm2):
    from llmprep.render import ChatRenderer

    settings = ShardSettings(tokenizer="smollm2", template_source=smollm2.chat_template, max_length=64,
                             truncation="right")
    r = ChatRenderer.for_tokenizer(smollm2.chat_template, smollm2)
    recs = [Record("a.jsonl", 1, raw="{}")]
    assert PlainLane.for_shard(r, settings, {"a.jsonl": "messages"}, recs) is not None
    assert PlainLane.for_shard(r, settings, {}, recs) is None  # format detected in the shard: general path
    assert PlainLane.for_shard(r, replace(settings, history="per-turn"), {"a.jsonl": "messages"}, recs) is None
    assert PlainLane.for_shard(r, replace(settings, columns=(("messages", "conv"),)), {}, recs) is None
    assert PlainLane.for_shard(r, replace(settings, format="sharegpt"), {"a.jsonl": "messages"}, recs) is None
    llama3 = resolve_template("llama3")[1]  # a template that trims contents: rendered, so no lane
    assert PlainLane.for_shard(ChatRenderer.for_tokenizer(llama3, smollm2), settings, {"a.jsonl": "messages"},
                               recs) is None
    r.shapes.enabled = False  # a spot check found a difference: the shortcut, and so the lane, are off
    assert PlainLane.for_shard(r, settings, {"a.jsonl": "messages"}, recs) is None


def test_prepare_writes_the_same_bytes_with_and_without_the_lane(tmp_path, english_chats, chinese_chats,
                                                                 monkeypatch):
    """End to end: the dataset files and report.json prepare writes are byte-identical with the lane and
    without it (the general path for every record), on real chats mixed with the edge records."""
    from llmprep.prepare import prepare

    src = tmp_path / "chats.jsonl"
    src.write_text("\n".join(r.raw for r in _records(english_chats, chinese_chats)) + "\n", encoding="utf-8")

    def run(name: str) -> dict:
        out = tmp_path / name
        prepare([str(src)], out=out, tokenizer="smollm2", test_size=0.1, num_proc=1, cache=False,
                progress=False, max_length=256)
        return {p.relative_to(out).as_posix(): p.read_bytes() for p in sorted(out.rglob("*"))
                if p.is_file() and p.name != "run.json"}  # run.json: timings

    with_lane = run("lane")
    monkeypatch.setattr(PlainLane, "for_shard", classmethod(lambda cls, *args: None))
    general = run("general")
    assert sorted(with_lane) == sorted(general) and any(k.endswith(".arrow") for k in general)
    for name in general:
        assert with_lane[name] == general[name], name
    report = json.loads(general["report.json"])
    assert report["engine"]["shape_rows"] > 100 and report["records"]["rejected"] >= 10


@pytest.mark.parametrize("name", ["qwen2.5", "phi3.5"])
def test_lane_equals_the_general_path_on_real_templates(name, english_chats, chinese_chats, monkeypatch):
    """The real templates whose plain chats skip rendering (Qwen2.5's, Phi-3.5's, with their own tokenizers):
    the lane gives the general path's result. Qwen2.5's chats take it; Phi-3.5's learn no shape (no generation
    prompt is found for it, so turns are located by prefix renderings), so all go the general way."""
    from templates_support import template_tokenizer

    tok = template_tokenizer(name)
    settings = ShardSettings(tokenizer=tok, template_source=tok.chat_template, max_length=4096, truncation="right",
                             engine="fastokens", template_name=name)
    lane, general, taken = _both(_records(english_chats, chinese_chats), settings, monkeypatch)
    for key in general:
        assert lane[key] == general[key], key
    assert taken > 200 if name == "qwen2.5" else taken == 0


def test_to_examples_plain_chats_in_one_step_equal_the_general_conversion(english_chats, chinese_chats, monkeypatch):
    """to_examples converts a plain `messages` record in one step: the same examples and the same rejects
    (field, reason, record) as the general path, on real chats with the edge records among them."""
    import llmprep.examples as examples_mod
    from llmprep.examples import Example, to_examples

    records = _records(english_chats, chinese_chats)
    records.insert(3, Record("mem.jsonl", 9999, raw=json.dumps({"messages": [u("a"), a("b"), a("c")]})))  # order

    def convert() -> list:
        out = []
        for x in to_examples(records, formats={"mem.jsonl": "messages"}):
            if isinstance(x, Example):
                out.append(("example", x.source, x.line, x.kind, json.dumps(x.data, sort_keys=True)))
            else:
                out.append(("rejected", x.source, x.line, x.field, x.reason, json.dumps(x.record, sort_keys=True)))
        return out

    taken = []
    real = examples_mod._plain_chat

    def counted(rec):
        got = real(rec)
        taken.append(got is not None)
        return got

    monkeypatch.setattr(examples_mod, "_plain_chat", counted)
    quick = convert()
    assert sum(taken) > len(records) // 2  # most records took the one-step conversion
    monkeypatch.setattr(examples_mod, "_plain_chat", lambda rec: None)
    assert quick == convert()
    assert any(x[0] == "rejected" and "consecutive assistant" in x[4] for x in quick)

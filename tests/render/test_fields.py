"""render/markers.py, render/align.py, render/stops.py: sentinels around every renderable field, position
mapping between two renderings, and the end-of-turn token set of a tokenizer."""

from __future__ import annotations

import copy
import json

import pytest
from helpers import a, u
from templates_support import template_tokenizer

from llmprep.render.align import aligner
from llmprep.render.markers import CLOSE, LEAD, OPEN, fields_of, has_sentinels, mark, sentinel, strip, strip_in_order
from llmprep.render.stops import end_of_turn_tokens, generation_config_eos

AGENT = [u("Hi"), {"role": "assistant", "content": None, "reasoning_content": "think",
                   "tool_calls": [{"id": "call00001", "type": "function",
                                   "function": {"name": "f", "arguments": {"city": "Oslo", "n": 3, "a.b": "x"}}},
                                  {"name": "g", "arguments": '{"q": 1}'}]}]


def test_fields_cover_every_renderable_string():
    got = [(f.message, f.path, f.kind, f.text) for f in fields_of(AGENT + [a(""), {
        "role": "user", "content": [{"type": "text", "text": "p1"}, {"type": "text", "text": ""}]}])]
    assert got == [
        (0, "content", "content", "Hi"),
        (1, "reasoning_content", "reasoning", "think"),
        (1, "tool_calls[0].function.name", "tool_call", "f"),
        (1, "tool_calls[0].function.arguments.city", "tool_call", "Oslo"),  # string values only: 3 stays 3
        (1, "tool_calls[0].function.arguments.a.b", "tool_call", "x"),  # a key with a dot is one key
        (1, "tool_calls[1].name", "tool_call", "g"),
        (1, "tool_calls[1].arguments", "tool_call", '{"q": 1}'),
        (3, "content[0].text", "content", "p1"),  # empty strings are never wrapped
    ]


def test_mark_copies_and_strip_gives_positions_back():
    fields = fields_of(AGENT)
    marked = mark(AGENT, fields)
    assert AGENT[1]["tool_calls"][0]["function"]["arguments"]["city"] == "Oslo"  # the data is untouched
    assert marked[1]["tool_calls"][0]["function"]["arguments"] == {
        "city": f"{sentinel(3, OPEN)}Oslo{sentinel(3, CLOSE)}", "n": 3,
        "a.b": f"{sentinel(4, OPEN)}x{sentinel(4, CLOSE)}"}
    text = "<u>" + marked[0]["content"] + "</u>" + json.dumps(marked[1]["tool_calls"][0]["function"]["arguments"],
                                                                ensure_ascii=False)
    plain, marks = strip(text)
    assert plain == '<u>Hi</u>{"city": "Oslo", "n": 3, "a.b": "x"}'
    assert [(plain[p:p + 2], k, o) for p, k, o in marks][:2] == [("Hi", 0, True), ("</", 0, False)]
    assert strip("no sentinels") == ("no sentinels", [])
    assert not has_sentinels(fields) and has_sentinels(fields_of([u(f"a{LEAD}b"), a("c")]))
    # a sentinel cut short by the template stays text; out of order or twice: not the fast path
    assert strip(f"x{LEAD}y") == (f"x{LEAD}y", [])
    two = f"{sentinel(0, OPEN)}a{sentinel(0, CLOSE)}-{sentinel(1, OPEN)}b{sentinel(1, CLOSE)}"
    assert strip_in_order(two, 2) == ("a-b", [0, 1, 2, 3])
    swapped = f"{sentinel(1, OPEN)}b{sentinel(1, CLOSE)}-{sentinel(0, OPEN)}a{sentinel(0, CLOSE)}"
    assert strip_in_order(swapped, 2) is None and strip(swapped)[1] == [(0, 1, True), (1, 1, False), (2, 0, True),
                                                                         (3, 0, False)]
    assert strip_in_order(two + two, 2) is None


@pytest.mark.parametrize("src,dst,queries", [
    # trim: a field start maps to after the removed spaces, its end to before them
    ("<u>  Hi </u>", "<u>Hi</u>", [(3, True, 3), (8, False, 5), (12, False, 9), (0, True, 0)]),
    ("a\n\n b", "a\nb", [(4, True, 2), (5, False, 3)]),
    ("same", "same", [(2, True, 2)]),
    # a non-whitespace difference goes through difflib
    ("<a>xyz</a><b>q</b>", "<a>y</a><b>q</b>", [(3, True, 3), (6, False, 4), (13, True, 11)]),
])
def test_aligner(src, dst, queries):
    to = aligner(src, dst)
    for pos, is_start, want in queries:
        assert to(pos, is_start) == want, (pos, is_start)


def test_end_of_turn_tokens(tmp_path):
    smollm2_like = template_tokenizer("qwen2.5")
    assert end_of_turn_tokens(smollm2_like) == ("<|endoftext|>", "<|im_end|>")
    llama = template_tokenizer("llama3.1")
    assert set(end_of_turn_tokens(llama)) == {"<|eot_id|>", "<|eom_id|>", "<|end_of_text|>", "<|endoftext|>",
                                              "<|im_end|>"}  # (the last two: the SmolLM2 base's own)
    assert "<|start_header_id|>" not in end_of_turn_tokens(llama)
    glm = template_tokenizer("glm-4.5")  # <|user|> and <|observation|> stop GLM
    assert {"<|user|>", "<|observation|>"} <= set(end_of_turn_tokens(glm))
    phi = template_tokenizer("phi3.5")  # ... but <|user|> is only a header for Phi-3.5
    assert "<|user|>" not in end_of_turn_tokens(phi) and "<|end|>" in end_of_turn_tokens(phi)


def test_generation_config_eos_ids_join_the_set(tmp_path):
    """A tokenizer saved with the model's generation_config.json: its eos ids are end-of-turn tokens too."""
    tok = copy.deepcopy(template_tokenizer("qwen2.5"))
    tok.add_special_tokens({"additional_special_tokens": ["<|my_stop|>"]})
    tok.save_pretrained(tmp_path)
    stop = tok.convert_tokens_to_ids("<|my_stop|>")
    (tmp_path / "generation_config.json").write_text(json.dumps({"eos_token_id": [stop, 10 ** 9]}))
    from transformers import AutoTokenizer

    loaded = AutoTokenizer.from_pretrained(str(tmp_path))
    assert generation_config_eos(loaded) == ["<|my_stop|>"]  # an id outside the vocabulary is ignored
    assert "<|my_stop|>" in end_of_turn_tokens(loaded) and "<|my_stop|>" not in end_of_turn_tokens(tok)

"""render/skeleton.py: plain chats laid out from their shape equal the full (sentinel) layout, on every real
template and real conversations; the static check that lets a template's chats skip rendering; the spot
check that turns the shortcut off."""

from __future__ import annotations

import pytest
from helpers import a, chat, s, u
from templates_support import TEMPLATES, template_tokenizer

from llmprep.render import ChatRenderer
from llmprep.render import skeleton
from llmprep.render.opaque import shape_determined


def _compare_all(r: ChatRenderer, tok, conversations, trained_of=None) -> int:
    """Lay out every conversation through the shortcut and the full way; -> rows the shortcut served."""
    rows = 0
    for messages in conversations:
        trained = trained_of(messages) if trained_of else [i for i, m in enumerate(messages)
                                                           if m["role"] == "assistant"]
        before = r.shapes.rows
        quick = r.layout(messages, trained)
        rows += r.shapes.rows - before
        full = r.full_layout(messages, trained)
        assert (quick.text, quick.spans, quick.fields, quick.stop, quick.missing) == (
            full.text, full.spans, full.fields, full.stop, full.missing)
        assert quick.text == tok.apply_chat_template(messages, tokenize=False)
    assert r.shapes.mismatches == 0 and r.shapes.enabled
    return rows


def _real_chats(english_chats, chinese_chats) -> list:
    system = [[s("You are terse.")] + m for m in english_chats[:40]]
    edges = [chat(" lead", "trail ", "\n x \n", "y"), chat("a", "b\n\n"), chat("<|im_end|> typed", "ok")]
    return english_chats[::3] + chinese_chats[::3] + system + edges


@pytest.mark.parametrize("name", sorted(TEMPLATES))
def test_shape_layouts_equal_full_layouts_on_real_templates(name, english_chats, chinese_chats, monkeypatch):
    """Every real template, real English and Chinese chats (with and without a system prompt, and contents
    with edge whitespace, which templates that trim print differently): whatever the shortcut serves is
    exactly the full layout and apply_chat_template's text. No spot checks, so every later chat of a
    shape really takes the shortcut."""
    monkeypatch.setattr(skeleton, "CHECK_PER_SHAPE", 0)
    monkeypatch.setattr(skeleton, "CHECK_EVERY", 10**9)
    tok = template_tokenizer(name)
    r = ChatRenderer.for_tokenizer(tok.chat_template, tok)
    chats = []
    for messages in _real_chats(english_chats, chinese_chats):
        try:
            tok.apply_chat_template(messages, tokenize=False)
        except Exception:  # noqa: BLE001 - e.g. Gemma refuses a system prompt in some versions: not this test's
            continue
        chats.append(messages)
    served = _compare_all(r, tok, chats)
    if name in ("qwen2.5", "smollm3", "llama3.1", "llama3.2", "gemma3"):
        assert served > len(chats) // 2  # plain chats of common shapes do take the shortcut
    if name == "mistral-v0.3":  # add_generation_prompt writes nothing: turns start where prefix renderings say,
        assert served == 0  # which can depend on the content, so no shape is used


def test_smollm2_chats_skip_rendering_and_train_one_turn(smollm2, english_chats, chinese_chats, monkeypatch):
    """SmolLM2's ChatML is provably shape-determined: later chats of a shape are not rendered at all, and the
    result still equals the full layout, also when only the last turn is trained."""
    monkeypatch.setattr(skeleton, "CHECK_PER_SHAPE", 0)
    monkeypatch.setattr(skeleton, "CHECK_EVERY", 10**9)
    r = ChatRenderer.for_tokenizer(smollm2.chat_template, smollm2)
    assert r.shapes.render_free
    chats = _real_chats(english_chats, chinese_chats)
    served = _compare_all(r, smollm2, chats)
    assert r.shapes.unrendered == served > len(chats) // 2
    last_only = _compare_all(r, smollm2, chats, lambda m: [len(m) - 1])
    assert last_only > len(chats) // 2


def test_a_shape_is_learnt_only_where_turn_edges_are_in_the_fixed_text(smollm2):
    """A non-plain message (extra key, empty content, content parts) never takes the shortcut; the shape of a
    chat whose turn has no end-of-turn token (the eot cut off) is remembered as not usable."""
    r = ChatRenderer.for_tokenizer(smollm2.chat_template, smollm2)
    assert skeleton.plain_key(chat("Hi", "Yo"), [1]) == (("user", "assistant"), (1,))
    assert skeleton.plain_key([u("Hi"), {**a("Yo"), "train": True}], [1]) is None
    assert skeleton.plain_key([u(""), a("Yo")], [1]) is None
    assert skeleton.plain_key([u("Hi"), {"role": "assistant", "content": [{"type": "text", "text": "Yo"}]}],
                              [1]) is None
    r.end_of_turn_re = None  # as if the template wrote no end-of-turn token: the end follows prefix renderings
    r.layout(chat("Hi", "Yo"))
    assert r.shapes.by_key[(("user", "assistant"), (1,))] is None
    r.layout(chat("Hey", "There"))
    assert r.shapes.rows == 0


def test_one_difference_turns_the_shortcut_off(smollm2, monkeypatch):
    """The spot check: a shape whose answer differs from the full layout switches the shortcut off for the
    run and counts a mismatch; the row gets the full layout."""
    r = ChatRenderer.for_tokenizer(smollm2.chat_template, smollm2)
    r.layout(chat("Hi", "Yo"))  # learns the shape
    key = (("user", "assistant"), (1,))
    good = r.shapes.by_key[key]
    r.shapes.by_key[key] = skeleton.Shape(good.pieces, tuple((p, x + 1, q, y) for p, x, q, y in good.anchors),
                                          good.stop)  # one character off
    lay = r.layout(chat("Hello", "There"))  # within CHECK_PER_SHAPE: checked
    assert lay.spans == r.full_layout(chat("Hello", "There"), [1]).spans
    assert r.shapes.mismatches == 1 and not r.shapes.enabled
    r.layout(chat("More", "Chat"))
    assert r.shapes.rows == 1  # nothing served after the switch-off


def test_rendered_text_must_equal_the_joined_pieces(monkeypatch):
    """A template that is not shape-determined (Llama 3 trims content) renders every chat; a content with
    edge whitespace renders differently from the joined pieces, so that chat goes the full way."""
    monkeypatch.setattr(skeleton, "CHECK_PER_SHAPE", 0)
    tok = template_tokenizer("llama3.1")
    r = ChatRenderer.for_tokenizer(tok.chat_template, tok)
    assert not r.shapes.render_free
    r.layout(chat("Hi", "Yo"))
    r.layout(chat("Hey", "There"))
    assert r.shapes.rows == 1
    lay = r.layout(chat("  Hey  ", "There"))
    assert r.shapes.rows == 1 and lay.text == tok.apply_chat_template(chat("  Hey  ", "There"), tokenize=False)


@pytest.mark.parametrize("source,expected", [
    ("{% for m in messages %}{{ '<|im_start|>' + m['role'] + '\\n' + m['content'] + '<|im_end|>\\n' }}{% endfor %}",
     True),
    ("{% for m in messages[1:] %}{{ m.content }}{% endfor %}{{ (messages|last).role }}{{ messages|length }}", True),
    ("{% if messages[0]['role'] == 'system' %}S{% endif %}{% for m in messages %}{{ m.content }}{% endfor %}", True),
    ("{% for m in messages %}{{ m }}{% endfor %}", False),  # the dict printed: its repr escapes the content
    ("{{ messages|last }}", False),
    ("{% for m in messages %}{% for k, v in m.items() %}{{ v }}{% endfor %}{% endfor %}", False),
    ("{% for m in messages %}{{ m[key] }}{% endfor %}", False),  # a computed key can read the content
    ("{% for m in messages %}{{ loop.nextitem }}{{ m.content }}{% endfor %}", False),
    ("{% set ns = namespace(x=none) %}{% for m in messages %}{% set ns.x = m %}{% endfor %}{{ ns.x }}", False),
    ("{{ strftime_now('%d') }}{% for m in messages %}{{ m.content }}{% endfor %}", False),  # changes by itself
    ("{% for m in messages %}{{ m.content | trim }}{% endfor %}", False),  # not even content-opaque
    # a plain chat's content is a non-empty string: a test of its truth or type always comes out the same
    ("{% for m in messages %}{% if m.content %}x{% endif %}{{ m.content }}{% endfor %}", True),
    ("{% for m in messages %}{{ 'a' if not m['content'] is string else 'b' }}{{ m.content }}{% endfor %}", True),
    ("{% for m in messages %}{% if m.content and loop.last %}x{% endif %}{{ m.content }}{% endfor %}", True),
    # ...but not a test that looks at what it says
    ("{% for m in messages %}{% if m.content|length > 5 %}x{% endif %}{{ m.content }}{% endfor %}", False),
    ("{% for m in messages %}{% if m.content == 'hi' %}x{% endif %}{{ m.content }}{% endfor %}", False),
    ("{% for m in messages %}{% if 'x' in m.content %}x{% endif %}{{ m.content }}{% endfor %}", False),
    ("{% for m in messages %}{% set c = m.content %}{% if c %}x{% endif %}{{ m.content }}{% endfor %}", False),
    # a loop over another key of the message never runs on a plain chat; its else branch does
    (("{% for m in messages %}{% for c in m.tool_calls %}{{ c|tojson }}{{ m.content|trim }}{% endfor %}"
      "{{ m.content }}{% endfor %}"), True),
    ("{% for m in messages %}{% for c in m.tool_calls %}x{% else %}{{ m.content|trim }}{% endfor %}{% endfor %}",
     False),
    ("{% for m in messages %}{% for c in m['content'] %}{{ c }}{% endfor %}{% endfor %}", False),
])
def test_shape_determined_static_check(source, expected):
    assert shape_determined(source) is expected


def test_builtin_and_real_templates_that_skip_rendering():
    """Of the real templates Phi-3.5's and Qwen2.5's qualify (Qwen2.5 tests a reply's content only in its
    tool-call branch, which a plain chat never reaches); the others trim, compare or date the text. The
    builtin chatml, zephyr and alpaca templates do."""
    from llmprep.render import resolve_template

    assert [n for n in sorted(TEMPLATES) if shape_determined(template_tokenizer(n).chat_template)] == [
        "phi3.5", "qwen2.5"]
    assert all(shape_determined(resolve_template(n)[1]) for n in ("chatml", "zephyr", "alpaca"))
    assert not shape_determined(resolve_template("llama3")[1])

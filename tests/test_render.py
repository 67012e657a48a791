"""render.py: the sandboxed renderer gives exactly apply_chat_template(tokenize=False), and the trained
spans are each assistant reply plus the end-of-turn token the template writes after it."""

from __future__ import annotations

import jinja2
import pytest
from helpers import chat

from llmprep.errors import ConfigError, RecordError
from llmprep.render import ChatRenderer, builtin_templates, compile_template, resolve_template


def template_source(name):
    return resolve_template(name)[1]

HAND_CHATS = [
    chat("Hi", "Hello!"),
    chat("What is 2+2?", "4", system="You are a calculator."),
    chat("Hi", "Hello! How can I help?", "Tell me a joke.", "Why did the chicken cross the road?",
         "Why?", "To get to the other side."),
    chat("Hi", "Hello!", "Bye", "Goodbye.", system="Be brief."),
    # leading/trailing whitespace: llama2 strip()s and llama3 trim()s content -> prefix fallback
    chat("  Hi there \n", " Hello!  ", "\tnext\n", "ok  "),
    chat("  spaced  ", "\n reply with newline \n", system="  sys  "),
    chat("你好", "你好！有什么可以帮你？", "今天天气怎么样？", "今天是晴天。"),
]

# (tokenizer fixture, template name or None for the tokenizer's own)
SETUPS = [("smollm2", None), ("mistral", "mistral"), ("mistral", "llama2"), ("llama3", "llama3")]
EOT = {"smollm2": "<|im_end|>", "mistral": "</s>", "llama3": "<|eot_id|>"}


def setup(request, tok_name, template):
    tok = request.getfixturevalue(tok_name)
    source = template_source(template) if template else tok.chat_template
    return tok, source, ChatRenderer.for_tokenizer(source, tok)


def reference_text(tok, source, messages, **kw):
    return tok.apply_chat_template(messages, chat_template=source, tokenize=False, **kw)


def expected_reply_text(template: str | None, reply: str, eot: str) -> str:
    """What a trained span holds, written out by hand per template."""
    if template is None:  # ChatML: content verbatim, then <|im_end|>
        return reply + eot
    if template == "mistral":  # '[INST] q [/INST]' + content + eos
        return reply + eot
    if template == "llama2":  # ' ' + content.strip() + ' ' + eos (the space before is the template's)
        return reply.strip() + " " + eot
    if template == "llama3":  # content | trim + <|eot_id|>
        return reply.strip() + eot
    raise AssertionError(template)


@pytest.mark.parametrize("tok_name,template", SETUPS)
def test_render_equals_apply_chat_template_hand_chats(request, tok_name, template):
    tok, source, r = setup(request, tok_name, template)
    for messages in HAND_CHATS:
        assert r.render(messages) == reference_text(tok, source, messages)
        assert r.render(messages, add_generation_prompt=True) == reference_text(
            tok, source, messages, add_generation_prompt=True)


@pytest.mark.parametrize("tok_name,template", SETUPS)
def test_render_equals_apply_chat_template_corpus(request, tok_name, template, english_chats, chinese_chats):
    tok, source, r = setup(request, tok_name, template)
    multi = [m for m in english_chats if len(m) > 2][:15] + [m for m in chinese_chats if len(m) > 2][:10]
    sample = english_chats[::25] + chinese_chats[::10] + multi
    assert len(multi) >= 20 and len(sample) > 60
    for messages in sample:
        text = r.render(messages)
        assert text == reference_text(tok, source, messages)


@pytest.mark.parametrize("tok_name,template", SETUPS)
def test_spans_hold_each_reply_and_its_end_of_turn(request, tok_name, template, english_chats, chinese_chats):
    tok, source, r = setup(request, tok_name, template)
    eot = EOT[tok_name]
    for messages in HAND_CHATS + english_chats[::40] + chinese_chats[::15]:
        text, spans = r.render_with_spans(messages)
        assert text == reference_text(tok, source, messages)
        replies = [m["content"] for m in messages if m["role"] == "assistant"]
        got = [text[a:b] for a, b in spans]
        if template == "llama2":  # the prefix fallback also owns the separator space: same tokens
            got = [g[1:] if g.startswith(" ") else g for g in got]
        assert got == [expected_reply_text(template, x, eot) for x in replies]
        assert spans == sorted(spans) and all(a < b for a, b in spans)
        _, last = r.render_with_spans(messages, train_turns="last")
        assert last == spans[-1:]


def test_chatml_golden_span_by_hand():
    """<|im_start|>user\\nHi<|im_end|>\\n = 12+5+2+10+1 = 30 chars; <|im_start|>assistant\\n = 22 more."""
    r = ChatRenderer(template_source("chatml"), {}, ("<|im_start|>", "<|im_end|>"))
    text, spans = r.render_with_spans(chat("Hi", "Yo"))
    assert text == "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\nYo<|im_end|>\n"
    assert spans == [(52, 64)]
    assert text[52:64] == "Yo<|im_end|>"


def test_fields_found_through_trim(llama3, smollm2):
    """ChatML prints content verbatim (fields found as printed); llama3 trims it: the sentinel rendering
    differs from the real one by whitespace and the fields are mapped through the alignment."""
    ws = chat("  Hi ", " Hello ")
    chatml = ChatRenderer.for_tokenizer(smollm2.chat_template, smollm2)
    lay = chatml.layout(ws)
    assert [lay.text[a:b] for _, a, b in lay.fields][-2:] == ["  Hi ", " Hello "]
    l3 = ChatRenderer.for_tokenizer(template_source("llama3"), llama3)
    lay = l3.layout(ws)
    assert lay.text == reference_text(llama3, template_source("llama3"), ws)
    assert [lay.text[a:b] for _, a, b in lay.fields] == ["Hi", "Hello"]
    assert [lay.text[a:b] for a, b in lay.spans] == ["Hello<|eot_id|>"]
    assert lay.stop is True and not lay.missing


def test_system_prompt_not_printed_is_not_an_error(smollm2):
    """A template that drops the system message: spans still found, the system prompt is just not there.
    This template writes no generation prompt, so at inference the model writes "[assistant]" itself:
    it is trained."""
    src = ("{% for m in messages %}{% if m['role'] != 'system' %}[{{ m['role'] }}]{{ m['content'] }}{{ eos_token }}"
           "{% endif %}{% endfor %}")
    r = ChatRenderer.for_tokenizer(src, smollm2)
    lay = r.layout(chat("q", "a", system="hidden"))
    assert lay.text == "[user]q<|im_end|>[assistant]a<|im_end|>"
    assert [f.message for f, _, _ in lay.fields] == [1, 2]
    assert [lay.text[a:b] for a, b in lay.spans] == ["[assistant]a<|im_end|>"]


def test_template_depending_on_later_turns_is_located(smollm2):
    """A template that prints a turn differently once more turns follow (here: the last one in capitals,
    earlier ones trimmed) is located in the full rendering instead of rejected."""
    src = ("{% for m in messages %}{% if loop.last %}{{ m['content'] | trim | upper }}{% else %}"
           "{{ m['content'] | trim }}{% endif %}|{% endfor %}")
    r = ChatRenderer.for_tokenizer(src, smollm2)
    assert r.render(chat(" q", "a ")) == "q|A|"
    lay = r.layout(chat(" q", "a ", "q2", "a2"))
    assert lay.text == "q|a|q2|A2|"
    # No end-of-turn token in this template: a turn ends with its last field, or, where the rendering of the
    # conversation up to it is a prefix of the whole (the last turn), with what the template writes for it.
    assert [lay.text[a:b] for a, b in lay.spans] == ["a", "A2|"]
    assert lay.stop is False


def test_template_refusing_sentinels_is_located_by_prefixes(smollm2):
    """A template that reacts to the sentinel characters themselves (here: refuses content longer than 6
    characters) is located by prefix renderings; a history rewrite on top of that is a reject."""
    src = ("{% for m in messages %}{% if m['content'] | length > 6 %}{{ raise_exception('too long') }}{% endif %}"
           "<{{ m['role'] }}>{{ m['content'] }}{{ eos_token }}{% endfor %}"
           "{% if add_generation_prompt %}<assistant>{% endif %}")
    r = ChatRenderer.for_tokenizer(src, smollm2)
    lay = r.layout(chat("Hi", "Yo", "More", "Sure"))
    assert lay.text == "<user>Hi<|im_end|><assistant>Yo<|im_end|><user>More<|im_end|><assistant>Sure<|im_end|>"
    assert [lay.text[a:b] for a, b in lay.spans] == ["Yo<|im_end|>", "Sure<|im_end|>"] and lay.fields == []
    with pytest.raises(RecordError, match="refused this conversation: too long"):
        r.layout(chat("Hi", "too long"))


@pytest.mark.parametrize("source", [
    "{{ ''.__class__.__mro__ }}",
    "{{ ''.__class__.__mro__[1].__subclasses__() }}",
    "{{ cycler.__init__.__globals__.os.popen('id').read() }}",
    "{{ self.__init__.__globals__ }}",
    "{% set ns = namespace(_secret=1) %}",
    "{{ messages.append({'role': 'user'}) }}",
])
def test_sandbox_refuses_unsafe_access(source):
    r = ChatRenderer(source, {}, ())
    with pytest.raises(RecordError) as info:
        r.render(chat("x", "y"))
    assert isinstance(info.value.__cause__, jinja2.exceptions.SecurityError)
    assert "refused" in str(info.value)


def test_sandbox_namespace_attribute_assignment():
    r = ChatRenderer("{% set ns = namespace(a=1) %}{% set ns._x = 2 %}{{ ns.a }}", {}, ())
    with pytest.raises(RecordError) as info:
        r.render(chat("x", "y"))
    assert isinstance(info.value.__cause__, jinja2.exceptions.SecurityError)


def test_template_globals_like_transformers():
    src = ("{{ messages | tojson }}|{{ namespace(n=3).n }}|{% generation %}G{% endgeneration %}"
           "{% for i in range(5) %}{% if i == 2 %}{% break %}{% endif %}{{ i }}{% endfor %}")
    r = ChatRenderer(src, {}, ())
    # tojson keeps non-ASCII and HTML characters as they are (jinja's own would escape "<")
    assert r.render([{"role": "user", "content": "<b>你</b>"}]) == \
        '[{"role": "user", "content": "<b>你</b>"}]|3|G01'
    with pytest.raises(RecordError, match="nope"):
        ChatRenderer("{{ raise_exception('nope') }}", {}, ()).render(chat("x", "y"))


def test_resolve_template(tmp_path, smollm2, mistral):
    assert {"chatml", "llama2", "llama3", "mistral", "zephyr", "alpaca"} <= set(builtin_templates())
    name, src = resolve_template("auto", smollm2)
    assert name == "auto" and src == smollm2.chat_template
    assert resolve_template("chatml")[1].startswith("{% for message in messages %}")
    custom = tmp_path / "mine.jinja"
    custom.write_text("{{ messages[0]['content'] }}", encoding="utf-8")
    assert resolve_template(str(custom)) == ("mine.jinja", "{{ messages[0]['content'] }}")
    with pytest.raises(ConfigError, match="no chat template"):
        resolve_template("auto", mistral)  # Mistral v1 tokenizer ships no template
    with pytest.raises(ConfigError, match="not a known template.*chatml"):
        resolve_template("no-such-template")
    with pytest.raises(ConfigError, match="no such file"):
        resolve_template(str(tmp_path / "missing.jinja"))
    with pytest.raises(ConfigError, match="does not compile"):
        compile_template("{% for x in %}")

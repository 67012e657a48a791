"""Render conversations with a chat template, and find the characters each assistant turn owns.

Templates are untrusted code (they come from model repos): they run in jinja2's
ImmutableSandboxedEnvironment with the same globals transformers gives them, so the text is exactly
what `tokenizer.apply_chat_template(..., tokenize=False)` produces.

Where the assistant replies are in the text: each message's content is wrapped in private-use
sentinels and the template rendered once more. Removing the sentinels must give back the real
rendering (so the template only printed the content); the sentinel positions are then the content
spans. Templates that rewrite content (Llama 3 trims it) fail that check for some rows; those rows
use prefix rendering instead: render messages[:i] with a generation prompt and messages[:i+1], and
the difference is turn i.

    rendered:  <|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\nHello!<|im_end|>\n
    trained:                                                         ^^^^^^^^^^^^^^^^
    (the reply and the end-of-turn token after it, so the model learns to stop)
"""

from __future__ import annotations

import functools
import hashlib
import importlib.resources
import json
import re
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Sequence

import jinja2
import jinja2.ext
from jinja2.sandbox import ImmutableSandboxedEnvironment

from llmprep.errors import ConfigError, RecordError
from llmprep.messages import Message

OPEN, CLOSE, END = "\ue000", "\ue001", "\ue002"  # private-use: never produced by templates
_MARK = re.compile(f"([{OPEN}{CLOSE}])(\\d+){END}")
Span = tuple[int, int]


# --- the sandbox --------------------------------------------------------------------------------

class _GenerationTag(jinja2.ext.Extension):
    """`{% generation %}...{% endgeneration %}` (transformers' assistant-mask tag): renders its body."""

    tags = {"generation"}

    def parse(self, parser: jinja2.parser.Parser) -> jinja2.nodes.Node:
        lineno = next(parser.stream).lineno
        body = parser.parse_statements(("name:endgeneration",), drop_needle=True)
        return jinja2.nodes.CallBlock(self.call_method("_render"), [], [], body).set_lineno(lineno)

    def _render(self, caller) -> str:
        return caller()


def _raise_exception(message: str) -> None:
    raise jinja2.exceptions.TemplateError(message)


def _tojson(x: Any, ensure_ascii: bool = False, indent: int | None = None, separators=None,
            sort_keys: bool = False) -> str:
    # Jinja's own tojson escapes HTML characters; chat templates expect plain JSON (as transformers does).
    return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)


class _Namespace(jinja2.utils.Namespace):
    """namespace() that refuses dunder/underscore attributes (no reaching CPython internals)."""

    def __init__(*args, **kwargs):
        self, args = args[0], args[1:]
        attrs = dict(*args, **kwargs)
        for name in attrs:
            _Namespace._check(name)
        jinja2.utils.Namespace.__init__(self, attrs)

    def __setitem__(self, name, value):
        _Namespace._check(name)
        jinja2.utils.Namespace.__setitem__(self, name, value)

    @staticmethod
    def _check(name: Any) -> None:
        if isinstance(name, str) and name.startswith("_"):
            raise jinja2.exceptions.SecurityError(f"templates cannot set underscore attributes ({name!r})")


class _Sandbox(ImmutableSandboxedEnvironment):
    """jinja2's immutable sandbox with its attribute verdicts memoised.

    Every `loop.first` or `message.content` in a template asks the sandbox whether that attribute is
    safe; the answer depends only on the object's type and the attribute name (jinja2's checks are
    `isinstance` tests and name tests), so it is computed once per (type, name). Same verdicts,
    about a third less rendering time.
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._verdicts: dict[tuple[type, str], bool] = {}

    def is_safe_attribute(self, obj, attr: str, value) -> bool:
        key = (type(obj), attr)
        verdict = self._verdicts.get(key)
        if verdict is None:
            verdict = self._verdicts[key] = super().is_safe_attribute(obj, attr, value)
        return verdict


@functools.lru_cache(maxsize=64)
def compile_template(source: str) -> jinja2.Template:
    """Compile a chat template in the sandbox. Cached: compiling costs ~1 ms, rendering ~40 µs."""
    env = _Sandbox(trim_blocks=True, lstrip_blocks=True, extensions=[_GenerationTag, jinja2.ext.loopcontrols])
    env.filters["tojson"] = _tojson
    env.globals.update(raise_exception=_raise_exception, namespace=_Namespace,
                       strftime_now=lambda fmt: datetime.now().strftime(fmt))
    try:
        return env.from_string(source)
    except jinja2.TemplateSyntaxError as exc:
        raise ConfigError(f"--template: the chat template does not compile: {exc} (line {exc.lineno})") from exc


# --- template lookup ----------------------------------------------------------------------------

def builtin_templates() -> dict[str, Path]:
    """Named templates shipped as llmprep/templates/NAME.jinja."""
    root = Path(str(importlib.resources.files("llmprep") / "templates"))
    return {p.stem: p for p in sorted(root.glob("*.jinja"))}


def resolve_template(template: str | None, tokenizer=None) -> tuple[str, str]:
    """--template value -> (name, jinja source).

    "auto" (default): the tokenizer's own chat template; a built-in name ("chatml", "llama3", ...);
    or a path to a .jinja file.
    Example: "chatml" -> ("chatml", "{% for message in messages %}...")
    """
    template = template or "auto"
    names = builtin_templates()
    if template == "auto":
        source = getattr(tokenizer, "chat_template", None) if tokenizer is not None else None
        if isinstance(source, dict):  # some repos ship several named templates
            source = source.get("default") or next(iter(source.values()))
        if not source:
            raise ConfigError("--template auto: the tokenizer has no chat template. Pass --template with one "
                              f"of the built-in names ({', '.join(names)}) or a path to a .jinja file.")
        return "auto", source
    if template in names:
        return template, names[template].read_text(encoding="utf-8")
    path = Path(template)
    if path.suffix == ".jinja" or path.is_file():
        if not path.is_file():
            raise ConfigError(f"--template {template!r}: no such file")
        return path.name, path.read_text(encoding="utf-8")
    raise ConfigError(f"--template {template!r} is not a known template. Available: auto, "
                      f"{', '.join(names)}, or a path to a .jinja file")


def content_is_opaque(source: str) -> bool:
    """True when the template only prints message content (concatenates it into output) and never
    inspects it: then rendering with sentinel-wrapped content equals the real rendering with the
    sentinels inserted, and one rendering per conversation is enough.

    Example: ChatML's "{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + ... }}" -> True;
    Llama 3's "message['content'] | trim" -> False (the content is rewritten).
    """
    from jinja2 import nodes

    env = ImmutableSandboxedEnvironment(extensions=[_GenerationTag, jinja2.ext.loopcontrols])
    try:
        tree = env.parse(source)
    except jinja2.TemplateSyntaxError:
        return False
    message_names = {"messages"}
    for node in tree.find_all((nodes.For, nodes.Assign)):  # loop variables and aliases of messages
        value = node.iter if isinstance(node, nodes.For) else node.node
        if any(n.name in message_names for n in value.find_all(nodes.Name)) or (
                isinstance(value, nodes.Name) and value.name in message_names):
            message_names |= {n.name for n in node.target.find_all(nodes.Name)} | (
                {node.target.name} if isinstance(node.target, nodes.Name) else set())
    safe_filters = {"length", "count", "first", "last"}

    def visit(node, parents) -> bool:
        is_content = (isinstance(node, nodes.Getitem) and isinstance(node.arg, nodes.Const)
                      and node.arg.value == "content") or (isinstance(node, nodes.Getattr) and node.attr == "content")
        if is_content:
            for parent in reversed(parents):
                if isinstance(parent, nodes.Output):
                    break
                if not isinstance(parent, (nodes.Add, nodes.Concat)):
                    return False
            else:
                return False
        if isinstance(node, nodes.Filter) and node.name not in safe_filters and _mentions(node.node, message_names):
            return False
        if isinstance(node, nodes.Call) and any(_mentions(a, message_names) for a in node.args):
            return False
        return all(visit(child, parents + [node]) for child in node.iter_child_nodes())

    return visit(tree, [])


def _mentions(node, names: set[str]) -> bool:
    from jinja2 import nodes

    return node is not None and (
        (isinstance(node, nodes.Name) and node.name in names)
        or any(n.name in names for n in node.find_all(nodes.Name)))


def template_fingerprint(source: str) -> str:
    return hashlib.sha256(source.encode("utf-8")).hexdigest()[:16]


# --- rendering ----------------------------------------------------------------------------------

@dataclass
class ChatRenderer:
    """Render conversations and locate trained spans.

    `special_tokens`: the tokenizer's special-token texts (bos/eos/pad/unk...), passed to the template
    as transformers does. `end_of_turn`: texts of control tokens; the first one the template writes
    after an assistant reply is trained with the reply.
    """

    source: str
    special_tokens: dict[str, str]
    end_of_turn: tuple[str, ...]

    def __post_init__(self) -> None:
        self.template = compile_template(self.source)
        # One rendering per conversation when the template provably only prints content; the first
        # rows are still checked against a real rendering, and any mismatch turns the shortcut off.
        self.single_render = content_is_opaque(self.source)
        self._checks_left = 32
        ordered = sorted(set(self.end_of_turn), key=len, reverse=True)
        self._eot = re.compile("|".join(map(re.escape, ordered))) if ordered else None

    @classmethod
    def for_tokenizer(cls, source: str, tokenizer) -> "ChatRenderer":
        special = {k: v for k, v in tokenizer.special_tokens_map.items() if isinstance(v, str)}
        eot = [t for t in getattr(tokenizer, "all_special_tokens", []) if t]
        eot += [t.content for t in getattr(tokenizer, "added_tokens_decoder", {}).values() if t.special]
        return cls(source, special, tuple(dict.fromkeys(eot)))

    def render(self, messages: Sequence[Message], *, add_generation_prompt: bool = False, **kwargs) -> str:
        """Messages -> text, exactly as apply_chat_template(tokenize=False) would give."""
        try:
            return self.template.render(messages=list(messages), add_generation_prompt=add_generation_prompt,
                                        **self.special_tokens, **kwargs)
        except jinja2.exceptions.TemplateError as exc:
            raise RecordError(f"the chat template refused this conversation: {exc}", field="messages") from exc

    def render_with_spans(self, messages: Sequence[Message], *, train_turns: str = "all") -> tuple[str, list[Span]]:
        """Render and return the character spans to train: each assistant reply + its end-of-turn token.

        train_turns: "all" assistant turns, or "last" only.
        Example (chatml): [user "Hi", assistant "Yo"] -> ("<|im_start|>user\\nHi<|im_end|>\\n<|im_start|>
        assistant\\nYo<|im_end|>\\n", [(52, 64)])   # "Yo<|im_end|>"
        """
        text, spans, _ = self.locate(messages)
        return text, spans[-1:] if train_turns == "last" else spans

    def locate(self, messages: Sequence[Message]) -> tuple[str, list[Span], list[Span] | None]:
        """-> (text, trained spans of the assistant turns, content span of every message or None)."""
        text = None
        if not self.single_render or self._checks_left > 0:
            text = self.render(messages)
        contents = self._content_spans(messages, text)
        if text is None:
            if contents is None:  # sentinel rendering failed: fall back to the real text
                text = self.render(messages)
            else:
                text = self._last_plain
        elif self.single_render:
            self._checks_left -= 1
            if contents is None and not any(OPEN in m["content"] or CLOSE in m["content"] for m in messages):
                self.single_render = False
        if contents is None:
            return text, self._prefix_spans(messages, text), None
        starts = sorted(a for a, _ in contents)
        trained = []
        for m, (a, b) in zip(messages, contents):
            if m["role"] == "assistant":
                limit = next((s for s in starts if s >= b), len(text))
                trained.append((a, self._extend_eot(text, b, limit)))
        return text, trained, contents

    def _content_spans(self, messages: Sequence[Message], text: str | None) -> list[Span] | None:
        """Each message's content span, from one sentinel rendering; None when the template rewrote
        content, printed a message twice, or left an assistant message out."""
        if any(OPEN in m["content"] or CLOSE in m["content"] for m in messages):
            return None
        wrapped = [{**m, "content": f"{OPEN}{i}{END}{m['content']}{CLOSE}{i}{END}"} for i, m in enumerate(messages)]
        marked = self.render(wrapped)
        # Where is each marker? str.find runs in C; a marker printed twice makes the counts disagree.
        found = 0
        where: list[tuple[int, int, int, bool]] = []  # (position in marked, length, message, is_open)
        for i in range(len(messages)):
            for is_open, mark in ((True, f"{OPEN}{i}{END}"), (False, f"{CLOSE}{i}{END}")):
                at = marked.find(mark)
                if at != -1:
                    where.append((at, len(mark), i, is_open))
                    found += 1
        if found != marked.count(OPEN) + marked.count(CLOSE):
            return None  # the template printed a message twice: ambiguous
        joined = _MARK.sub("", marked)
        if text is not None and joined != text:
            return None
        self._last_plain = joined
        opens, closes, removed = {}, {}, 0
        for at, length, i, is_open in sorted(where):
            (opens if is_open else closes)[i] = at - removed  # position once markers are removed
            removed += length
        spans = []
        for i, m in enumerate(messages):
            if i not in opens or i not in closes:
                if m["role"] == "assistant":
                    return None
                spans.append((0, 0))  # a message the template does not print (e.g. a dropped system prompt)
                continue
            spans.append((opens[i], closes[i]))
        return spans

    def _extend_eot(self, text: str, end: int, limit: int) -> int:
        """Extend a reply's end over the first end-of-turn token the template writes before `limit`."""
        if self._eot is None:
            return end
        match = self._eot.search(text, end, limit)
        return match.end() if match else end

    def _prefix_spans(self, messages: Sequence[Message], text: str) -> list[Span]:
        """Spans by rendering prefixes; for templates that rewrite content (e.g. trim it)."""
        spans = []
        for i, m in enumerate(messages):
            if m["role"] != "assistant":
                continue
            head = self.render(messages[:i], add_generation_prompt=True)
            upto = self.render(messages[: i + 1])
            if not (upto.startswith(head) and text.startswith(upto)):
                raise RecordError(
                    "cannot locate assistant turn %d: the chat template renders earlier turns differently "
                    "depending on later ones" % i, field=f"messages[{i}]")
            end = len(upto)
            # The turn's text ends with its end-of-turn token and maybe separators; keep up to that token.
            tail = list(self._eot.finditer(text, len(head), end)) if self._eot else []
            spans.append((len(head), tail[-1].end() if tail else end))
        return spans


def render_prompt(messages: Sequence[Message], tokenizer, *, template: str | None = "auto",
                  add_generation_prompt: bool = True) -> str:
    """The inference prompt for a conversation, rendered exactly as training data is.

    Use it (not a hand-written f-string) at generation time, so training and inference can't drift.
    Example (SmolLM2): [user "Hi"] -> "<|im_start|>system\\n...<|im_end|>\\n<|im_start|>user\\nHi<|im_end|>\\n
    <|im_start|>assistant\\n"
    """
    _, source = resolve_template(template, tokenizer)
    return ChatRenderer.for_tokenizer(source, tokenizer).render(messages, add_generation_prompt=add_generation_prompt)

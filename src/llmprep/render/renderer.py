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

import re
from dataclasses import dataclass
from typing import Sequence

import jinja2

from llmprep.errors import RecordError
from llmprep.messages import Message
from llmprep.render.engine import for_source
from llmprep.render.limits import DEFAULT_LIMITS, RenderLimits
from llmprep.render.lookup import resolve_template
from llmprep.render.opaque import content_is_opaque
from llmprep.render.sandbox import compile_template

OPEN, CLOSE, END = "\ue000", "\ue001", "\ue002"  # private-use: never produced by templates
_MARK = re.compile(f"([{OPEN}{CLOSE}])(\\d+){END}")
Span = tuple[int, int]


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
    name: str | None = None  # the --template value, for error messages
    limits: RenderLimits = DEFAULT_LIMITS  # --render-timeout, --max-render-chars (render/sandbox.py)

    def __post_init__(self) -> None:
        self.template = compile_template(self.source, self.name, self.limits)
        # MiniJinja where verified identical, else this jinja2 template (its limits apply either way)
        self.engine = for_source(self.source, self.name, self.limits)
        self.rows_by_engine = {"minijinja": 0, "jinja2": 0}  # located rows: all renders by MiniJinja, or not
        # One rendering per conversation when the template provably only prints content; the first
        # rows are still checked against a real rendering, and any mismatch turns the shortcut off.
        self.single_render = content_is_opaque(self.source)
        self._checks_left = 32
        ordered = sorted(set(self.end_of_turn), key=len, reverse=True)
        self._eot = re.compile("|".join(map(re.escape, ordered))) if ordered else None

    @classmethod
    def for_tokenizer(cls, source: str, tokenizer, *, name: str | None = None,
                      limits: RenderLimits = DEFAULT_LIMITS) -> "ChatRenderer":
        special = {k: v for k, v in tokenizer.special_tokens_map.items() if isinstance(v, str)}
        eot = [t for t in getattr(tokenizer, "all_special_tokens", []) if t]
        eot += [t.content for t in getattr(tokenizer, "added_tokens_decoder", {}).values() if t.special]
        return cls(source, special, tuple(dict.fromkeys(eot)), name, limits)

    def render(self, messages: Sequence[Message], *, add_generation_prompt: bool = False, **kwargs) -> str:
        """Messages -> text, exactly as apply_chat_template(tokenize=False) would give."""
        try:
            return self.engine.render(messages=list(messages), add_generation_prompt=add_generation_prompt,
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
        jinja2_before = self.engine.stats["jinja2"]
        located = self._locate(messages)
        self.rows_by_engine["jinja2" if self.engine.stats["jinja2"] > jinja2_before else "minijinja"] += 1
        return located

    def _locate(self, messages: Sequence[Message]) -> tuple[str, list[Span], list[Span] | None]:
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
        # One regex split finds every marker (in C): [text, kind, index, text, kind, index, ..., text]
        parts = _MARK.split(self.render(wrapped))
        n = len(messages)
        opens: list[int | None] = [None] * n
        closes: list[int | None] = [None] * n
        pos = len(parts[0])  # position in the text once markers are removed
        for k in range(1, len(parts), 3):
            i, table = int(parts[k + 1]), (opens if parts[k] == OPEN else closes)
            if i >= n or table[i] is not None:
                return None  # the template printed a message twice: ambiguous
            table[i] = pos
            pos += len(parts[k + 2])
        joined = "".join(parts[0::3])
        if OPEN in joined or CLOSE in joined or (text is not None and joined != text):
            return None  # a marker was cut (content sliced) or the template rewrote content
        self._last_plain = joined
        spans = []
        for m, a, b in zip(messages, opens, closes):
            if a is None or b is None:
                if m["role"] == "assistant":
                    return None
                spans.append((0, 0))  # a message the template does not print (e.g. a dropped system prompt)
                continue
            spans.append((a, b))
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

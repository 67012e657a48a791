"""Render conversations with a chat template, and lay out the characters each trained turn owns.

Templates are untrusted code (they come from model repos): they run in jinja2's
ImmutableSandboxedEnvironment with the same globals transformers gives them, and get the same
inputs — messages with null-valued keys dropped and the reasoning aliased under every name templates
read, `tools` (None when there are none), `documents=None`, the tokenizer's special tokens — so the
text is exactly what `tokenizer.apply_chat_template(messages, tools=tools, tokenize=False)` produces.
Renders go through render/engine.py (MiniJinja where verified identical, else the jinja2 sandbox).

`ChatRenderer.render` is the one place a compiled template is called. Where the turns are in the
text, and what is trained: layout.py.

    rendered:  <|im_start|>user\\nHi<|im_end|>\\n<|im_start|>assistant\\nHello!<|im_end|>\\n
    trained:                                                         ^^^^^^^^^^^^^^^^
    (the reply and the end-of-turn token after it, so the model learns to stop)
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Sequence

import jinja2

from llmprep.errors import RecordError
from llmprep.messages import CONTROL_KEYS, Message
from llmprep.render.engine import for_source
from llmprep.render.layout import Layout, Locator, Span
from llmprep.render.limits import DEFAULT_LIMITS, RenderLimits
from llmprep.render.lookup import resolve_template
from llmprep.render.opaque import content_is_opaque, shape_determined
from llmprep.render.sandbox import compile_template
from llmprep.render.skeleton import Shapes
from llmprep.render.stops import end_of_turn_tokens

_PLAIN_KEYS = frozenset({"role", "content"})
_PLAIN_OR_CONTROL_KEYS = _PLAIN_KEYS | frozenset(CONTROL_KEYS)


@dataclass
class ChatRenderer:
    """Render conversations and lay out trained spans.

    `special_tokens`: the tokenizer's special-token texts (bos/eos/pad/unk...), passed to the template
    as transformers does. `end_of_turn`: texts of the tokens that end a turn (stops.py). `eos`: the text
    --add-eos appends after a last reply the template leaves without an end-of-turn token.
    """

    source: str
    special_tokens: dict[str, str]
    end_of_turn: tuple[str, ...]
    eos: str | None = None
    name: str | None = None  # the --template value, for error messages
    limits: RenderLimits = DEFAULT_LIMITS  # --render-timeout, --max-render-chars (render/sandbox.py)

    def __post_init__(self) -> None:
        self.template = compile_template(self.source, self.name, self.limits)
        # MiniJinja where verified identical, else this jinja2 template (its limits apply either way)
        self.engine = for_source(self.source, self.name, self.limits)
        # laid-out rows: all renders by MiniJinja, or not, or no rendering (the text from its shape: skeleton.py)
        self.rows_by_engine = {"minijinja": 0, "jinja2": 0, "shape": 0}
        # transformers passes tools=None and documents=None; only a template that reads them gets them (MiniJinja
        # gets the None only where the template provably just tests it: engine_check.nullable_names)
        self._extra = {k: None for k in ("tools", "documents") if k in self.source}
        ordered = sorted(set(self.end_of_turn), key=len, reverse=True)
        self.end_of_turn_re = re.compile("|".join(map(re.escape, ordered))) if ordered else None
        # One rendering per plain conversation when the template provably only prints content; the first
        # rows are still checked against a real rendering, and any mismatch turns the shortcut off.
        self.single_render = content_is_opaque(self.source)
        self._checks_left = 32
        self.locator = Locator(self, eos=self.eos)
        self.shapes = Shapes(self, render_free=shape_determined(self.source))  # plain chats (render/skeleton.py)

    @classmethod
    def for_tokenizer(cls, source: str, tokenizer, *, name: str | None = None,
                      limits: RenderLimits = DEFAULT_LIMITS) -> "ChatRenderer":
        special = {k: v for k, v in tokenizer.special_tokens_map.items() if isinstance(v, str)}
        eos = tokenizer.eos_token if isinstance(tokenizer.eos_token, str) and tokenizer.eos_token else None
        return cls(source, special, end_of_turn_tokens(tokenizer), eos, name=name, limits=limits)

    def render(self, messages: Sequence[Message], *, tools: list | None = None, add_generation_prompt: bool = False,
               **kwargs) -> str:
        """Messages -> text, exactly as apply_chat_template(messages, tools=tools, tokenize=False) would give."""
        try:
            extra = {**self._extra, "tools": tools} if tools is not None else self._extra
            return self.engine.render(messages=template_messages(messages), add_generation_prompt=add_generation_prompt,
                                      **extra, **({**self.special_tokens, **kwargs} if kwargs else self.special_tokens))
        except jinja2.exceptions.TemplateError as exc:
            raise RecordError(f"the chat template refused this conversation: {exc}", field="messages") from exc
        except Exception as exc:  # template code failing on this data (e.g. `str + dict`): transformers raises too
            raise RecordError(f"the chat template failed on this conversation ({type(exc).__name__}: {exc})",
                              field="messages") from exc

    def layout(self, messages: Sequence[Message], trained: Sequence[int] | None = None, *, tools: list | None = None,
               add_eos: bool = False) -> Layout:
        """Render and locate the trained turns (default: every assistant turn). See layout.py for the rule.

        Example (chatml): [user "Hi", assistant "Yo"] -> Layout(text="<|im_start|>user\\nHi<|im_end|>\\n
        <|im_start|>assistant\\nYo<|im_end|>\\n", spans=[(52, 64)])   # "Yo<|im_end|>"
        """
        jinja2_before, unrendered_before = self.engine.stats["jinja2"], self.shapes.unrendered
        lay = self._layout(list(messages), trained, tools, add_eos)
        engine = "jinja2" if self.engine.stats["jinja2"] > jinja2_before else "minijinja"
        self.rows_by_engine["shape" if self.shapes.unrendered > unrendered_before else engine] += 1
        return lay

    def _layout(self, messages: list[Message], trained, tools, add_eos: bool) -> Layout:
        if trained is None:
            trained = [i for i, m in enumerate(messages) if m["role"] == "assistant"]
        if not tools:
            lay = self.shapes.layout(messages, list(trained), add_eos=add_eos)
            if lay is not None:
                return lay
        return self.full_layout(messages, trained, tools=tools, add_eos=add_eos)

    def full_layout(self, messages: list[Message], trained: Sequence[int], *, tools: list | None = None,
                    add_eos: bool = False) -> Layout:
        """The layout by the sentinel rendering (layout.py), without the shape shortcut."""
        plain = self.single_render and not tools and all(_is_plain(m) for m in messages)
        if plain and self._checks_left <= 0:
            return self.locator.layout(messages, list(trained), add_eos=add_eos, sentinel_text_is_real=True)
        lay = self.locator.layout(messages, list(trained), tools=tools, add_eos=add_eos)
        if plain:
            self._checks_left -= 1
            quick = self.locator.layout(messages, list(trained), add_eos=add_eos, sentinel_text_is_real=True)
            if (quick.text, quick.spans) != (lay.text, lay.spans):
                self.single_render = False
        return lay

    def render_with_spans(self, messages: Sequence[Message], *, train_turns: str = "all") -> tuple[str, list[Span]]:
        """(text, trained spans of the assistant turns); train_turns "all" or "last"."""
        lay = self.layout(messages)
        return lay.text, lay.spans[-1:] if train_turns == "last" else lay.spans


def _is_plain(m: Message) -> bool:
    return type(m.get("content")) is str and m.keys() <= _PLAIN_OR_CONTROL_KEYS


def template_messages(messages: Sequence[Message]) -> list[Message]:
    """What transformers passes to the template: null-valued keys and llmprep's control keys dropped, and the
    reasoning under every name templates read (reasoning_content, thinking; transformers 5's aliasing).

    Example: [{"role": "assistant", "content": "4", "reasoning": "2+2", "train": True}]
    -> [{"thinking": "2+2", "role": "assistant", "content": "4", "reasoning": "2+2", "reasoning_content": "2+2"}]
    """
    out = []
    for m in messages:
        if m.keys() == _PLAIN_KEYS and m["content"] is not None:
            out.append(m)
            continue
        m = {k: v for k, v in m.items() if v is not None and k not in CONTROL_KEYS}
        reasoning = next((m[k] for k in ("reasoning_content", "thinking", "reasoning") if k in m), None)
        if reasoning is not None:
            m = {"thinking": reasoning, **m, "reasoning_content": reasoning}
        out.append(m)
    return out


def render_prompt(messages: Sequence[Message], tokenizer, *, template: str | None = "auto",
                  add_generation_prompt: bool = True, tools: list | None = None) -> str:
    """The inference prompt for a conversation, rendered exactly as training data is.

    Use it (not a hand-written f-string) at generation time, so training and inference can't drift.
    Example (SmolLM2): [user "Hi"] -> "<|im_start|>system\\n...<|im_end|>\\n<|im_start|>user\\nHi<|im_end|>\\n
    <|im_start|>assistant\\n"
    """
    _, source = resolve_template(template, tokenizer)
    return ChatRenderer.for_tokenizer(source, tokenizer).render(messages, tools=tools,
                                                                add_generation_prompt=add_generation_prompt)

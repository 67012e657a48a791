"""Render probe conversations through the template and read off what it writes around the content:
the end-of-turn token after a reply, the control tokens of the template's own text.

    ChatML, [user "What is the capital of France?", assistant "Paris."]
    -> eot "<|im_end|>", template text "<|im_start|>user\\n…<|im_end|>\\n<|im_start|>assistant\\n…<|im_end|>\\n"
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from llmprep.checks.registry import Skip
from llmprep.errors import RecordError

Q1, A1 = "What is the capital of France?", "Paris."
Q2, A2 = "And of Italy?", "Rome."
SYSTEM = "You answer in one word."
SHORT = [{"role": "user", "content": Q1}, {"role": "assistant", "content": A1}]
LONG = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": Q1}, {"role": "assistant", "content": A1},
        {"role": "user", "content": Q2}, {"role": "assistant", "content": A2}]

# Text shaped like a control token, in the spellings current chat templates use.
_CONTROL_SHAPES = [
    r"<\|[^|<>\s]{1,40}\|>",          # <|im_start|>, <|eot_id|>, <|start_header_id|>
    "<\uff5c[^\uff5c<>]{1,40}\uff5c>",  # DeepSeek's <｜Assistant｜> (full-width bars)
    r"<[A-Za-z]+_[A-Za-z_]+>",        # <start_of_turn>, <end_of_turn>
    r"</?s>",                         # <s>, </s>
]
_BRACKET = r"\[/?[A-Z][A-Z_]+\]"  # [INST]: a control token only in vocabularies that have such tokens


@dataclass
class Probe:
    """What the template writes: `text` of the short probe, `eot` after its reply, `literal` template text."""

    text: str = ""
    eot: str | None = None
    literal: list[str] = field(default_factory=list)  # template-written pieces of every probe rendering
    error: str | None = None

    def require(self) -> "Probe":
        if self.error:
            raise Skip(self.error)
        return self


def probe_template(subject) -> Probe:
    """Render SHORT and LONG; find the end-of-turn text after SHORT's reply (as the trained span has it)."""
    renderer = subject.renderer
    if renderer is None:
        return Probe(error=subject.template_error or "no chat template")
    try:
        text = renderer.render(SHORT)
    except RecordError as exc:
        return Probe(error=f"the template refused a plain user/assistant conversation: {exc.reason}")
    at = text.rfind(A1)
    eot = _first_control(text[at + len(A1):], renderer.end_of_turn) if at != -1 else None
    literal = [_strip_contents(text, SHORT)]
    try:
        literal.append(_strip_contents(renderer.render(LONG), LONG))
    except RecordError:
        pass  # templates that refuse a system prompt: the short probe is enough
    return Probe(text, eot, literal)


def _first_control(tail: str, specials) -> str | None:
    """The first special token (or control-token-shaped text) in the text after a reply.

    Example: "<|im_end|>\\n" -> "<|im_end|>"; "\\n\\n" -> None
    """
    hits = [(tail.find(t), -len(t), t) for t in specials if t and t in tail]
    shaped = re.search("|".join(_CONTROL_SHAPES), tail)
    if shaped:
        hits.append((shaped.start(), -len(shaped.group(0)), shaped.group(0)))
    return min(hits)[2] if hits else None


def _strip_contents(text: str, messages: list[dict]) -> str:
    """The template's own text: the rendering with each message's content cut out (as a line break)."""
    for m in messages:
        text = text.replace(m["content"], "\n")
    return text


def control_candidates(probe: Probe, tokenizer) -> list[str]:
    """Control-token-shaped strings the template writes, plus the tokenizer's special tokens it writes.

    Example (Llama 3 template): ["<|begin_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"]
    """
    specials = {t for t in getattr(tokenizer, "all_special_tokens", []) if t}
    specials |= {t.content for t in getattr(tokenizer, "added_tokens_decoder", {}).values()}
    shapes = list(_CONTROL_SHAPES)
    if any(re.fullmatch(_BRACKET, t) for t in specials):
        shapes.append(_BRACKET)
    pattern = re.compile("|".join(shapes))
    found: dict[str, None] = {}
    for text in probe.literal:
        for tok in sorted(specials, key=len, reverse=True):
            if tok in text:
                found[tok] = None
        for m in pattern.finditer(text):
            found[m.group(0)] = None
    return list(found)


def token_ids(tokenizer, text: str) -> list[int]:
    """Ids of a text encoded on its own, no BOS/EOS added. Example (SmolLM2): "<|im_end|>" -> [2]"""
    return list(tokenizer(text, add_special_tokens=False)["input_ids"])


def eot_id(subject) -> int:
    """The id of the template's end-of-turn token; Skip when it writes none or it is not one token."""
    probe = subject.probe.require()
    if probe.eot is None:
        raise Skip("the template writes no end-of-turn token after a reply (see no-stop-token)")
    ids = token_ids(subject.tokenizer, probe.eot)
    if len(ids) != 1:
        raise Skip(f"the end-of-turn text {probe.eot!r} is {len(ids)} tokens (see control-token-split)")
    return ids[0]

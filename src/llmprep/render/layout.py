"""Where each message sits in the real rendering, and the character spans to train.

The label rule (one rule, whatever path a row takes): a trained assistant turn is exactly what the
model generates at inference for that turn — everything after the header that
`add_generation_prompt=True` writes, through the whole run of end-of-turn control tokens the
template writes right after the turn. Separators after that run and the next turn's header are not
trained.

    <|im_start|>user\\nHi<|im_end|>\\n<|im_start|>assistant\\n<think>\\nR\\n</think>\\n\\nYo<|im_end|>\\n
                                    header (not trained) ^ trained from here .............^ to here

How it is found, without rejecting templates that rewrite history:
1. Fields: every renderable string is wrapped in sentinels (markers.py) and the conversation rendered
   once more; the sentinels give each field's position. If the template rewrote a field (trimmed it,
   dropped reasoning from history), the sentinel rendering minus sentinels differs from the real one
   and positions are mapped through an alignment of the two texts (align.py).
2. Start of turn i: the end of the generation prompt (the text add_generation_prompt appends, found
   once per template) last seen between the previous message's fields and turn i's first field;
   when the template writes no such text, or writes it differently here, the end of
   render(messages[:i], add_generation_prompt=True) — exact when that is a prefix of the real text,
   else aligned by the longest common suffix inside that gap.
3. End of turn i: the first end-of-turn token (stops.py) after the turn's last field, extended over
   the end-of-turn tokens that follow it directly; the search stops at the next message's first field.

Fields the template did not print: a tool call, content parts or any content but a system prompt is a
reject naming the field (the model would learn from a conversation that is not the data); reasoning
(dropped from history by Qwen3, GLM, DeepSeek-R1, or never printed) and a left-out system prompt are
recorded for the report. Nothing is lost silently.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field

from llmprep.errors import RecordError
from llmprep.messages import Message
from llmprep.render.align import aligner
from llmprep.render.markers import Field, fields_of, has_sentinels, mark, strip, strip_in_order

Span = tuple[int, int]


@dataclass
class Layout:
    """A rendered conversation with its spans.

    text: the rendering (== apply_chat_template(tokenize=False); + eos when --add-eos appended one)
    spans: the trained character spans, in order
    fields: (field, start, end) of every field found in `text` (start or end None when only one of its
            sentinels survived, e.g. DeepSeek-R1 cuts content at '</think>')
    missing: what of the data the template did not print, "role.what" per message (see _check_rendered)
    stop: whether the last assistant turn, if trained, ends with a trained end-of-turn token (None: not trained)
    eos_added: --add-eos appended the eos after the last reply (stop is then True)
    """

    text: str
    spans: list[Span]
    fields: list[tuple[Field, int | None, int | None]] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    stop: bool | None = None
    eos_added: bool = False


class Locator:
    """Lays out conversations for one ChatRenderer (see the module docstring)."""

    def __init__(self, renderer, *, eos: str | None = None):
        self.r = renderer
        self.eos = eos
        self.generation_prompt = self._generation_prompt()

    def _generation_prompt(self) -> str:
        """What add_generation_prompt=True appends after a user turn ("" when nothing, or when it is not a
        pure suffix). Example (ChatML): "<|im_start|>assistant\\n" """
        probe = [{"role": "user", "content": "Hi"}]
        try:
            bare, prompt = self.r.render(probe), self.r.render(probe, add_generation_prompt=True)
        except RecordError:
            return ""
        return prompt[len(bare):] if prompt.startswith(bare) else ""

    def layout(self, messages: list[Message], trained: list[int], *, tools=None, text: str | None = None,
               add_eos: bool = False, sentinel_text_is_real: bool = False) -> Layout:
        """Render and locate. `trained`: indices of the messages to train (any role).

        `text`: the real rendering when the caller has it. `sentinel_text_is_real`: the template is known
        to print fields verbatim, so the sentinel rendering minus sentinels *is* the real text (one
        rendering instead of two).
        """
        if text is None and not sentinel_text_is_real:
            text = self.r.render(messages, tools=tools)  # a template refusal is the reject reason
        all_fields = fields_of(messages)
        found = None if has_sentinels(all_fields) else self._find_fields(messages, all_fields, tools, text)
        if found is None:
            if text is None:
                text = self.r.render(messages, tools=tools)
            return self._layout_by_prefixes(messages, trained, tools, text, add_eos)
        text, fields = found
        lay = Layout(text, [], fields)
        self._check_rendered(messages, all_fields, trained, lay)
        self._spans(messages, trained, tools, lay, add_eos)
        return lay

    # --- fields ------------------------------------------------------------------------------------

    def _find_fields(self, messages, fields: list[Field], tools, text: str | None):
        """-> (real text, [(field, start, end)]) or None when the sentinel rendering fails."""
        try:
            marked = self.r.render(mark(messages, fields), tools=tools)
        except RecordError:
            return None  # the template reacts to the sentinels themselves: locate by prefixes instead
        fast = strip_in_order(marked, len(fields))
        if fast is not None:  # each field printed once, in order (the usual case)
            plain, where = fast
            if text is None or text == plain:
                return plain, [(f, where[2 * k], where[2 * k + 1]) for k, f in enumerate(fields)]
            marks = [(pos, j // 2, j % 2 == 0) for j, pos in enumerate(where)]
        else:
            plain, marks = strip(marked)
        if text is None:
            text = plain
        opens: dict[int, int] = {}
        closes: dict[int, int] = {}
        for pos, k, is_open in marks:
            # A field printed twice (gpt-oss repeats a call's name in the tool result's header): its first
            # printing is the message's own.
            if is_open:
                if k not in opens and k not in closes:
                    opens[k] = pos
            elif k not in closes:
                closes[k] = pos
        if plain != text:  # the template rewrote something: map the positions into the real text
            to_real = aligner(plain, text)
            opens = {k: to_real(pos, True) for k, pos in opens.items()}
            closes = {k: to_real(pos, False) for k, pos in closes.items()}
        if len(opens) == len(closes) == len(fields):  # every field printed (the usual case)
            return text, [(f, opens[k], closes[k]) for k, f in enumerate(fields)]
        return text, [(f, opens.get(k), closes.get(k)) for k, f in enumerate(fields)
                      if k in opens or k in closes]

    def _check_rendered(self, messages, all_fields: list[Field], trained: list[int], lay: Layout) -> None:
        """What of the data the template did not print. Tool calls, content parts (printed as a Python list,
        or as nothing) and any other content but a system prompt: a reject — the model would learn from a
        conversation that is not the data (Phi-3.5 and SmolLM3 print no tool calls, gpt-oss only a message's
        first, DeepSeek-R1-Distill none next to content ""). Reasoning of a trained turn (dropped from history
        by Qwen3, GLM, DeepSeek-R1; no place for it in Llama) and a system prompt: recorded in `missing` as
        "role.what" for the report, the row kept.

        Example: Qwen3, [user, assistant(reasoning) (trained), user, assistant] -> missing ["assistant.reasoning"]
        """
        for i, m in enumerate(messages):
            if isinstance(m.get("content"), list) and "'type': 'text'" in lay.text:
                raise RecordError("the chat template printed the content parts as a Python list: the content would "
                                  "be lost; give it as a string for this template", field=f"messages[{i}].content")
        if len(lay.fields) == len(all_fields):
            return  # every field printed
        shown = {(f.message, f.keys) for f, _, _ in lay.fields}
        trained_set = set(trained)
        seen = set()
        for f in all_fields:
            if (f.message, f.keys) in shown or (f.kind == "reasoning" and f.message not in trained_set):
                continue
            role = messages[f.message]["role"]
            where = f"messages[{f.message}].{f.path}"
            if f.kind == "tool_call":
                raise RecordError("the chat template does not render this tool call: it would be lost from the "
                                  "training text (the model would learn to answer without calling)", field=where)
            if f.kind == "content" and len(f.keys) > 1:
                raise RecordError("the chat template does not render content parts: the content would be lost; "
                                  "give it as a string for this template", field=where)
            if f.kind == "content" and role != "system" and f.text.strip():
                raise RecordError(f"the chat template does not render this {role} message's content: it would be "
                                  "lost from the training text", field=where)
            what = "reasoning" if f.kind == "reasoning" else "content"
            if (f.message, what) not in seen:  # once per message and kind
                seen.add((f.message, what))
                lay.missing.append(f"{role}.{what}")

    # --- turns -------------------------------------------------------------------------------------

    def _spans(self, messages, trained: list[int], tools, lay: Layout, add_eos: bool) -> None:
        text = lay.text
        bounds: dict[int, list[int]] = {}  # message -> [first, last] position of its fields
        for f, a, b in lay.fields:
            a, b = (b if a is None else a), (a if b is None else b)
            have = bounds.get(f.message)
            if have is None:
                bounds[f.message] = [a, b]
            else:
                have[0], have[1] = min(have[0], a), max(have[1], b)
        gaps = _gaps(bounds, len(text))
        last_reply = next((i for i in range(len(messages) - 1, -1, -1) if messages[i]["role"] == "assistant"), None)
        header, eot = self.generation_prompt, self.r.end_of_turn_re
        spans, reply_end = [], None
        for i in trained:
            assistant = messages[i]["role"] == "assistant"
            if i in bounds:
                (first, last), (lo, hi) = bounds[i], gaps[i]
            elif assistant:  # none of its fields printed: the turn is still there
                lo = max((bounds[j][1] for j in bounds if j < i), default=0)
                hi = min((bounds[j][0] for j in bounds if j > i), default=len(text))
                first = hi
                last = None
            else:
                continue  # nothing of it printed (e.g. a system prompt the template drops)
            start = first
            if assistant:  # after the generation prompt, seen in the gap before the turn's first field
                at = text.rfind(header, lo, first) if header else -1
                start = at + len(header) if at != -1 else self._turn_start(messages, i, tools, text, lo, first)
            last = start if last is None else last
            match = eot.search(text, last, hi) if eot is not None else None
            if match is not None:  # the whole run of end-of-turn tokens
                end, stopped = match.end(), True
                while (nxt := eot.match(text, end)) is not None and nxt.end() <= hi:
                    end = nxt.end()
            else:
                end, stopped = last, False
                if assistant:
                    end = self._unstopped_end(messages, i, tools, text, last, hi)
            if i == last_reply:
                lay.stop, reply_end = stopped, end
            spans.append((start, end))
        lay.spans = spans
        if lay.stop is False and add_eos:
            self._append_eos(lay, reply_end)

    def _append_eos(self, lay: Layout, at: int) -> None:
        """--add-eos: write the eos right after the last reply (which the template left without an
        end-of-turn token) and train it; later positions move by its length."""
        if not self.eos:
            return
        n = len(self.eos)
        lay.text = lay.text[:at] + self.eos + lay.text[at:]
        lay.spans = [(a, b + n) if b == at else (_shift(a, at, n), _shift(b, at, n)) for a, b in lay.spans]
        lay.fields = [(f, _shift(a, at, n), _shift(b, at, n)) for f, a, b in lay.fields]
        lay.eos_added = lay.stop = True

    def prefix_gap(self, messages: list[Message], text: str, *, tools=None) -> tuple[int, int] | None:
        """Is the template prefix-consistent on this conversation? The first k whose render(messages[:k+1])
        is not a prefix of the full rendering `text`, with the first differing position; None if every
        one is. Example (Qwen3, reasoning on turn 1 of 4): -> (1, 97)"""
        for k in range(len(messages) - 1):
            try:
                part = self.r.render(messages[: k + 1], tools=tools)
            except RecordError:
                continue
            if not text.startswith(part):
                return k, _common_prefix(part, text)
        return None

    def _turn_start(self, messages, i: int, tools, text: str, lo: int, hi: int) -> int:
        """Where the model starts generating turn i when the generation prompt is not found as it is in the
        gap text[lo:hi] before the turn: the end of render(messages[:i], add_generation_prompt=True) when
        that is a prefix of the text, else aligned by the longest common suffix (see the module docstring)."""
        header = self.generation_prompt
        try:
            prompt = self.r.render(messages[:i], tools=tools, add_generation_prompt=True)
        except RecordError:
            return hi
        if text.startswith(prompt) and lo <= len(prompt) <= hi:
            return len(prompt)
        return _suffix_aligned(prompt, text, lo, hi, header)

    def _unstopped_end(self, messages, i: int, tools, text: str, last: int, hi: int) -> int:
        """The end of a turn the template closes with no end-of-turn token (GLM's last reply): the end of
        render(messages[:i+1]) — closing markup like "</tool_call>" included, trailing whitespace not — when
        that is a prefix of the text; else the end of the text (last message) or of the turn's last field."""
        try:
            upto = self.r.render(messages[: i + 1], tools=tools).rstrip()
        except RecordError:
            upto = None
        if upto is not None and text.startswith(upto) and last <= len(upto) <= hi:
            return len(upto)
        return max(last, len(text.rstrip())) if hi >= len(text) else last

    # --- without sentinels ---------------------------------------------------------------------------

    def _layout_by_prefixes(self, messages, trained, tools, text: str, add_eos: bool) -> Layout:
        """For a template that refuses the sentinel rendering (or data holding sentinel characters): each
        turn is render(messages[:i+1]) minus render(messages[:i], add_generation_prompt=True), mapped into
        the real text; it ends with the last run of end-of-turn tokens inside it."""
        lay = Layout(text, [])
        spans, reply_end = [], None
        for i in sorted(trained):
            try:
                head = self.r.render(messages[:i], tools=tools,
                                     add_generation_prompt=messages[i]["role"] == "assistant")
                upto = self.r.render(messages[: i + 1], tools=tools)
            except RecordError:
                head, upto = "", ""
            if not (upto.startswith(head) and text.startswith(upto)):
                raise RecordError(f"cannot locate turn {i}: the chat template renders earlier turns differently "
                                  "depending on later ones, and refuses the sentinel rendering that would place them",
                                  field=f"messages[{i}]")
            start, end = len(head), len(upto)
            runs = list(self.r.end_of_turn_re.finditer(text, start, end)) if self.r.end_of_turn_re else []
            stopped = bool(runs)
            if runs:
                end = runs[-1].end()
                while (nxt := self.r.end_of_turn_re.match(text, end)) is not None:
                    end = nxt.end()
            if i == max((k for k, m in enumerate(messages) if m["role"] == "assistant"), default=None):
                lay.stop, reply_end = stopped, end
            spans.append((start, end))
        lay.spans = spans
        if lay.stop is False and add_eos:
            self._append_eos(lay, reply_end)
        return lay


def _gaps(bounds: dict[int, list[int]], n: int) -> dict[int, tuple[int, int]]:
    """For each message, the stretch of text around it that belongs to no other message's fields: from the
    nearest other message's last field before it to the nearest one's first field after it.

    Example: {0: [5, 7], 1: [20, 22], 2: [40, 41]}, n=50 -> {0: (0, 20), 1: (7, 40), 2: (22, 50)}
    """
    order = list(bounds)  # fields come in message order: in the usual case that is text order too
    spans = list(bounds.values())
    if all(x[1] <= y[0] for x, y in zip(spans, spans[1:])):  # in order, disjoint
        starts = [y[0] for y in spans[1:]] + [n]
        ends = [0] + [x[1] for x in spans[:-1]]
        return dict(zip(order, zip(ends, starts)))
    by_end = sorted((b, j) for j, (_, b) in bounds.items())
    by_start = sorted((a, j) for j, (a, _) in bounds.items())
    out = {}
    for i, (first, last) in bounds.items():
        k = bisect.bisect_right(by_end, (first, n)) - 1
        while k >= 0 and by_end[k][1] == i:
            k -= 1
        lo = by_end[k][0] if k >= 0 else 0
        k = bisect.bisect_left(by_start, (last, -1))
        while k < len(by_start) and by_start[k][1] == i:
            k += 1
        out[i] = (lo, by_start[k][0] if k < len(by_start) else n)
    return out


def _shift(pos: int | None, at: int, by: int) -> int | None:
    return pos + by if pos is not None and pos >= at else pos


def _common_prefix(a: str, b: str) -> int:
    n = min(len(a), len(b))
    k = 0
    while k < n and a[k] == b[k]:
        k += 1
    return k


def _suffix_aligned(prompt: str, text: str, lo: int, hi: int, header: str) -> int:
    """The position in text[lo:hi] where the longest tail of `prompt` ends — the prompt possibly without the
    end of its generation prompt `header` (cut after a "|>", ">", "]" or newline), when the history writes
    less of it than inference does (DeepSeek-R1's "<think>\n", Nemotron's "<think>\n").

    Example: prompt "..q<A><think>\n", text "..q<A>answer", header "<A><think>\n" -> the position after "<A>"
    """
    keep = [len(header)] + [k for k in range(len(header) - 1, 0, -1) if header[k - 1] in ">]\n"] + [0]
    best, where = 0, hi
    for k in keep:  # the whole header first, then shorter and shorter prefixes of it
        tail = prompt[: len(prompt) - len(header) + k]
        n_best, e_best = 0, hi
        for e in range(hi, lo - 1, -1):
            n = 0
            while n < e and n < len(tail) and n < 512 and text[e - 1 - n] == tail[-1 - n]:
                n += 1
            if n > n_best:
                n_best, e_best = n, e
        if n_best >= min(k, 512) and n_best > 0:
            return e_best  # the kept part of the header is there in full
        if n_best > best:
            best, where = n_best, e_best
    return where

"""Process one shard of examples: render, encode, fit to --max-length. Runs in worker processes.

A shard is a list of records; the result holds the encoded rows plus what was rejected or dropped,
each with its file, line and reason, so the caller can account for every record.

`llmprep.executor.task.run_task` wraps it as the unit an executor runs (reading, cache, spill file).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from itertools import pairwise

import numpy as np

from llmprep.encode import (
    ChatEncoder,
    Encoded,
    concat,
    encode_documents,
    encode_pairs,
    take,
)
from llmprep.errors import ConfigError, RecordError
from llmprep.examples import Example, Rejected, reject, to_examples
from llmprep.formats import CHAT, PAIR, TEXT
from llmprep.lane import ChatRows, PlainLane
from llmprep.messages import message_kinds, per_turn_units, trained_messages
from llmprep.records import Record
from llmprep.render import ChatRenderer
from llmprep.render.limits import (
    DEFAULT_MAX_RENDER_CHARS,
    DEFAULT_RENDER_TIMEOUT,
    RenderLimits,
)
from llmprep.render.skeleton import ContentFields
from llmprep.tokenizer import load_lite_tokenizer
from llmprep.truncate import fit


@dataclass(frozen=True)
class ShardSettings:
    """Everything a worker needs; picklable (the tokenizer travels as a name or an object)."""

    tokenizer: object
    template_source: str | None
    max_length: int
    truncation: str
    train_on_prompt: bool = False
    train_turns: str = "all"
    train_roles: tuple[str, ...] = ("assistant",)
    history: str = "full"
    add_eos: bool = False
    literal_control_text: bool = True
    engine: str = "auto"
    format: str | None = None
    columns: tuple[tuple[str, str], ...] = ()
    template_error: str | None = None  # why no template could be resolved; raised only if a chat shows up
    template_name: str | None = None  # the --template value, named in template errors
    render_timeout: float = DEFAULT_RENDER_TIMEOUT  # --render-timeout, per rendering (render/sandbox.py)
    max_render_chars: int = DEFAULT_MAX_RENDER_CHARS  # --max-render-chars


@dataclass
class ShardResult:
    encoded: Encoded
    rejected: list[Rejected] = field(default_factory=list)
    dropped: list[Rejected] = field(default_factory=list)
    truncated: int = 0
    control_text_rows: int = 0
    fast_rows: int = 0
    engine_mismatches: int = 0
    kinds: dict = field(default_factory=dict)  # examples per kind (chat/text/pair)
    kept_at: list[tuple[str, int]] | None = None  # (source, line) of the record behind each kept row
    template_rows: dict = field(default_factory=dict)  # chat rows per template engine (render/engine.py)
    chat: dict = field(default_factory=dict)  # chat statistics for the report (ChatStats.to_json)
    kept_examples: list[Example] | None = None  # the example behind each kept row (its text: llmprep.mix keys)
    dropped_examples: list[Example] | None = None  # the example behind each entry of `dropped`
    cut: np.ndarray | None = None  # trained tokens truncation cut from each kept row (None: pairs)
    trained_lost: int = 0  # trained tokens of rows truncation dropped from records that keep other rows
    dropped_trained: list[int] = field(default_factory=list)  # per entry of `dropped`: its trained tokens


_STATE: dict = {}


def _tools(settings: ShardSettings):
    """Tokenizer, renderer and encoder, built once per process and settings."""
    # Keyed on the tokenizer itself, not id(settings): a freed settings object's id is reused by the next
    # one, which then silently got the previous tokenizer/template. _STATE holds `tok`, so its id stays valid.
    tok_key = settings.tokenizer if isinstance(settings.tokenizer, str) else id(settings.tokenizer)
    limits = RenderLimits(settings.render_timeout, settings.max_render_chars)
    key = (tok_key, settings.template_source, settings.engine, settings.template_name, limits)
    if _STATE.get("key") != key:
        tok = load_lite_tokenizer(settings.tokenizer) if isinstance(settings.tokenizer, str) else settings.tokenizer
        renderer = (ChatRenderer.for_tokenizer(settings.template_source, tok, name=settings.template_name,
                                               limits=limits) if settings.template_source else None)
        _STATE.update(key=key, tok=tok, renderer=renderer,
                      encoder=ChatEncoder(tok, engine=settings.engine))
    return _STATE["tok"], _STATE["renderer"], _STATE["encoder"]


def warm(settings: ShardSettings) -> None:
    """Build in this process what each shard worker would build first (tokenizer, compiled template,
    encoder): workers forked after it inherit them instead of each spending ~40 ms before its first shard,
    and a later run in this process with the same settings finds them built."""
    _tools(settings)


_WORKER_SETTINGS: list[ShardSettings] = []


def worker_init(settings: ShardSettings | None = None) -> None:
    """Pool initializer: settings (and so the tokenizer) travel once per worker, not once per shard."""
    # Each worker encodes single-threaded: the processes already fill the cores.
    os.environ["TOKENIZERS_PARALLELISM"] = "false"
    _WORKER_SETTINGS[:] = [settings] if settings is not None else []


def process_shard(records: list[Record], formats: dict[str, str],
                  settings: ShardSettings | None = None) -> ShardResult:
    """Records -> parsed, converted, encoded, fitted rows (in input order) + rejects + drops.

    `formats` maps each file to its detected format; `settings` may be omitted in a pool worker
    started with worker_init(settings).
    """
    settings = settings or _WORKER_SETTINGS[0]
    tok, renderer, encoder = _tools(settings)
    if renderer is not None:
        renderer.shapes.new_shard()
    fast_before, mismatch_before = encoder.fast_rows, encoder.engine_mismatches
    rows_before = _template_rows(renderer)
    stats = ChatStats()
    lane = PlainLane.for_shard(renderer, settings, formats, records)
    if lane is not None:  # plain chats parsed and laid out in one step (lane.py); the others the general way
        examples, rejected, chat_rows = lane.run(
            records, encoder, stats, lambda ex, rej: lay_out_chat(ex, renderer, encoder, settings, rej, stats))
    else:
        converted = list(to_examples(records, format=settings.format, columns=dict(settings.columns),
                                     formats=formats))
        examples = [x for x in converted if isinstance(x, Example)]
        rejected = [x for x in converted if isinstance(x, Rejected)]
        chat_rows = None
    kinds = {k: sum(1 for ex in examples if ex.kind == k) for k in {ex.kind for ex in examples}}
    if CHAT in kinds and renderer is None:
        raise ConfigError(settings.template_error or "--template: no chat template")
    if PAIR in kinds and len(kinds) > 1:
        raise ConfigError("INPUT mixes sentence pairs with chats or documents; prepare them separately")
    parts: list[Encoded] = []
    order: list[int] = []  # example index of each encoded row, to restore input order
    chats = [i for i, ex in enumerate(examples) if ex.kind == CHAT]
    if chat_rows is None:
        chat_rows = ChatRows()
        for i in chats:
            chat_rows.add(i, *lay_out_chat(examples[i], renderer, encoder, settings, rejected, stats))
    encoded, ok, control_rows = _encode_chats(chat_rows, encoder, settings)
    if ok:
        parts.append(encoded)
        order += ok
    docs = [i for i, ex in enumerate(examples) if ex.kind == TEXT]
    if docs:
        parts.append(encode_documents(tok, [examples[i].data["text"] for i in docs]))
        order += docs
    pairs = [i for i, ex in enumerate(examples) if ex.kind == PAIR]
    if pairs:
        d = [examples[i].data for i in pairs]
        parts.append(encode_pairs(tok, [x["text"] for x in d], [x["text_pair"] for x in d],
                                  [x["label"] for x in d], settings.max_length, settings.truncation))
        order += pairs
    if len(parts) == 1 and all(a < b for a, b in pairwise(order)):
        enc = parts[0]  # one kind of example, already in input order
    else:
        enc = take(concat(parts), np.argsort(order, kind="stable")) if parts else concat([])
    order = sorted(order)
    fitted = fit(enc, settings.max_length, settings.truncation, require_trained=not pairs)
    dropped, dropped_examples, dropped_trained, lost = _dropped_records(examples, order, fitted, stats)
    file_order = {src: i for i, src in enumerate(dict.fromkeys(r.source for r in records))}
    rejected.sort(key=lambda r: (file_order.get(r.source, 0), r.line))  # input order
    kept = [examples[order[r]] for r in fitted.kept.tolist()]
    kept_at = [(ex.source, ex.line) for ex in kept]
    return ShardResult(fitted.encoded, rejected, dropped, fitted.truncated, control_rows,
                       encoder.fast_rows - fast_before, encoder.engine_mismatches - mismatch_before, kinds, kept_at,
                       {k: v - rows_before.get(k, 0) for k, v in _template_rows(renderer).items()},
                       stats.to_json() if chats else {}, kept, dropped_examples, fitted.cut, lost, dropped_trained)


def _dropped_records(examples: list[Example], order: list[int], fitted,
                     stats: ChatStats) -> tuple[list[Rejected], list[Example], list[int], int]:
    """(dropped records, the example behind each, the trained tokens truncation cut from each, the trained
    tokens cut from rows dropped from records that keep others). A record is dropped when all its rows are
    (one row per record, except with --history per-turn, where the rows dropped from a record that keeps
    others are counted in the report's chat section)."""
    kept = {order[r] for r in fitted.kept}
    out, behind, trained, at = [], [], [], {}
    lost_elsewhere = 0
    for (r, why), lost in zip(fitted.dropped, fitted.lost or [0] * len(fitted.dropped)):
        i = order[r]
        if i in kept:
            stats.rows_dropped += 1
            lost_elsewhere += lost
        elif i not in at:
            at[i] = len(out)
            ex = examples[i]
            out.append(Rejected(ex.source, ex.line, None, why, ex.data))
            behind.append(ex)
            trained.append(lost)
        else:
            trained[at[i]] += lost
    return out, behind, trained, lost_elsewhere


TEMPLATE_ROWS = ("minijinja_rows", "jinja2_rows", "minijinja_mismatches", "shape_rows", "shape_mismatches")


def _template_rows(renderer: ChatRenderer | None) -> dict:
    """Rows laid out with every render by MiniJinja / not / with no rendering (their text from their shape,
    render/skeleton.py), and spot-check mismatches of MiniJinja (render/engine.py) and of the shapes."""
    if renderer is None:
        return {}
    by = renderer.rows_by_engine
    return dict(zip(TEMPLATE_ROWS, (by["minijinja"], by["jinja2"], renderer.engine.stats["mismatches"], by["shape"],
                                    renderer.shapes.mismatches)))


def lay_out_chat(ex: Example, renderer: ChatRenderer, encoder: ChatEncoder, settings: ShardSettings,
                 rejected: list[Rejected], stats: ChatStats) -> tuple[list[str], list, list]:
    """Render one chat example and locate its trained spans: (texts, spans, literal control-text spans), one
    entry per row. A conversation the template refuses, or whose fields it would drop, is appended to
    `rejected` (and gives no row)."""
    messages, tools = ex.data["messages"], ex.data.get("tools")
    try:
        layouts = chat_layouts(renderer, messages, tools, settings)
    except RecordError as err:
        rejected.append(reject(ex, _with_hint(err, messages), ex.data))
        return [], [], []
    stats.add(ex, messages, layouts)
    if stats.wants_prefix(len(messages)):
        stats.prefix(ex, renderer.locator.prefix_gap(messages, layouts[-1].text if settings.history != "per-turn"
                                                     else renderer.render(messages, tools=tools), tools=tools))
    return ([lay.text for lay in layouts], [lay.spans for lay in layouts],
            [_literal_spans(encoder, lay) if settings.literal_control_text else [] for lay in layouts])


def _encode_chats(rows: ChatRows, encoder: ChatEncoder,
                  settings: ShardSettings) -> tuple[Encoded | None, list[int], int]:
    """Encode the chat rows. Returns (encoded rows, the example index of each row, rows holding
    control-token text)."""
    if not rows.ok:
        return None, [], 0
    encoded = encoder.encode(rows.texts, rows.spans, rows.literal, train_all=settings.train_on_prompt)
    return encoded, rows.ok, sum(1 for x in rows.literal if x)


def _with_hint(err: RecordError, messages: list) -> RecordError:
    """A template refusal on a tool-call turn with null content (the OpenAI shape; transformers drops the key)
    gets a hint: many templates read message.content and need a string there.

    Example: "...refused this conversation: 'dict object' has no attribute 'content'" -> same + " (hint: ...)"
    """
    nulls = [i for i, m in enumerate(messages) if m["role"] == "assistant" and "content" not in m]
    if not nulls or err.field != "messages" or "content" not in err.reason:  # e.g. GLM: arguments must be objects
        return err
    return RecordError(f"{err.reason} (hint: messages[{nulls[0]}].content is null, which transformers passes as "
                       "absent; this template reads it: give \"\" instead)", field=err.field)


PREFIX_CHECKS = 8  # conversations per shard whose every prefix rendering is compared with the full one


def chat_layouts(renderer: ChatRenderer, messages: list, tools, settings: ShardSettings) -> list:
    """The rows of one conversation: its full rendering (--history full|last) or one rendering per trained
    reply, each ending with that reply (--history per-turn)."""
    trained = trained_messages(messages, roles=settings.train_roles,
                               last_only=settings.train_turns == "last" or settings.history == "last")
    if not trained and not settings.train_on_prompt:
        raise RecordError(f"nothing to train: no message is in --train-roles {','.join(settings.train_roles)} "
                          "without \"train\": false", field="messages")
    if tools:
        check_tools_rendered(renderer, messages, tools)
    if settings.history != "per-turn":
        return [renderer.layout(messages, trained, tools=tools, add_eos=settings.add_eos)]
    return [renderer.layout(messages[:n], turn, tools=tools, add_eos=settings.add_eos)
            for n, turn in per_turn_units(messages, trained)]


def check_tools_rendered(renderer: ChatRenderer, messages: list, tools: list) -> None:
    """A record's `tools` must change the rendering: a template that never prints them (SmolLM2's, Gemma's)
    would train the model to call tools it was never shown. Raises the reject (field "tools") then.

    Example: SmolLM2's template, tools=[{"type": "function", ...}] -> RecordError(field="tools")
    """
    with_tools = renderer.render(messages, tools=tools)  # a refusal is this record's reject reason
    try:
        without = renderer.render(messages)
    except RecordError:
        return  # the template needs them: it reads them
    if without == with_tools:
        raise RecordError("the chat template does not render `tools`: the tool definitions would be lost from the "
                          "training text (the model would learn to call tools it was never shown); use a template "
                          "that prints them, or drop `tools` from these records", field="tools")


def _literal_spans(encoder: ChatEncoder, lay) -> list[tuple[int, int]]:
    """Spans of the fields holding control-token text, which must stay literal ([] when there are none)."""
    if isinstance(lay.fields, ContentFields):  # a chat laid out by shape: its contents, without Field objects
        return lay.fields.control_spans(encoder.has_control_text)
    spans = []
    for f, a, b in lay.fields:
        if not encoder.has_control_text(f.text):
            continue
        if a is not None and b is not None:
            spans.append((a, b))
            continue
        # Only one sentinel survived (the template cut the field): find what is visible of it.
        body = f.text.strip()
        start = lay.text.find(body)
        while start != -1:
            spans.append((start, start + len(body)))
            start = lay.text.find(body, start + 1)
    return spans


@dataclass
class ChatStats:
    """What the report says about chats: message kinds, rows, reasoning the template did not print,
    replies left without a trained stop token, prefix-consistency of the template."""

    kinds: dict = field(default_factory=lambda: dict.fromkeys(
        ("tool_call_turns", "tool_calls", "tool_results", "reasoning_turns", "content_parts"), 0))
    conversations: int = 0
    rows: int = 0
    not_rendered: dict = field(default_factory=dict)
    no_stop: int = 0
    no_stop_examples: list = field(default_factory=list)
    eos_added: int = 0
    rows_dropped: int = 0
    prefix_checked: int = 0
    prefix_inconsistent: int = 0
    prefix_first: dict | None = None

    def add(self, ex: Example, messages: list, layouts: list) -> None:
        for k, v in message_kinds(messages).items():
            self.kinds[k] += v
        self.conversations += 1
        self.rows += len(layouts)
        for lay in layouts:  # one per row (several per conversation with --history per-turn)
            for what in lay.missing:
                self.not_rendered[what] = self.not_rendered.get(what, 0) + 1
            self.eos_added += lay.eos_added
            if lay.stop is False:
                self.no_stop += 1
                if len(self.no_stop_examples) < 20:
                    self.no_stop_examples.append(f"{ex.source}:{ex.line}")

    def add_plain(self, roles: tuple[str, ...]) -> None:
        """`add` for a plain chat laid out by its shape (lane.py): one row, nothing missing, its stop token
        there (a shape never has stop False), tool results its only kind to count."""
        self.conversations += 1
        self.rows += 1
        if "tool" in roles:
            self.kinds["tool_results"] += roles.count("tool")

    def wants_prefix(self, n_messages: int) -> bool:
        """Is a conversation of this many messages one of the shard's prefix-consistency checks?"""
        return self.prefix_checked < PREFIX_CHECKS and n_messages > 2

    def prefix(self, ex: Example, gap) -> None:
        self.prefix_checked += 1
        if gap is not None:
            self.prefix_inconsistent += 1
            if self.prefix_first is None:
                self.prefix_first = {"source": ex.source, "line": ex.line, "message": gap[0], "position": gap[1]}

    def to_json(self) -> dict:
        return {k: v for k, v in vars(self).items()}

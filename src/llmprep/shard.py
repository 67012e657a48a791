"""Process one shard of examples: render, encode, fit to --max-length. Runs in worker processes.

A shard is a list of records; the result holds the encoded rows plus what was rejected or dropped,
each with its file, line and reason, so the caller can account for every record.

`llmprep.executor.task.run_task` wraps it as the unit an executor runs (reading, cache, spill file).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import numpy as np

from llmprep.encode import ChatEncoder, Encoded, concat, encode_documents, encode_pairs, take
from llmprep.errors import ConfigError, RecordError
from llmprep.examples import Example, Rejected, reject, to_examples
from llmprep.formats import CHAT, PAIR, TEXT
from llmprep.records import Record
from llmprep.render import ChatRenderer
from llmprep.render.limits import DEFAULT_MAX_RENDER_CHARS, DEFAULT_RENDER_TIMEOUT, RenderLimits
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
    kept_examples: list[Example] | None = None  # the example behind each kept row (its text: llmprep.mix keys)
    dropped_examples: list[Example] | None = None  # the example behind each entry of `dropped`


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
    fast_before, mismatch_before = encoder.fast_rows, encoder.engine_mismatches
    rows_before = _template_rows(renderer)
    converted = list(to_examples(records, format=settings.format, columns=dict(settings.columns), formats=formats))
    examples = [x for x in converted if isinstance(x, Example)]
    rejected: list[Rejected] = [x for x in converted if isinstance(x, Rejected)]
    kinds = {k: sum(1 for ex in examples if ex.kind == k) for k in {ex.kind for ex in examples}}
    if CHAT in kinds and renderer is None:
        raise ConfigError(settings.template_error or "--template: no chat template")
    if PAIR in kinds and len(kinds) > 1:
        raise ConfigError("INPUT mixes sentence pairs with chats or documents; prepare them separately")
    parts: list[Encoded] = []
    order: list[int] = []  # example index of each encoded row, to restore input order
    chats = [i for i, ex in enumerate(examples) if ex.kind == CHAT]
    encoded, ok, control_rows = _encode_chats(examples, chats, renderer, encoder, settings, rejected)
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
    enc = take(concat(parts), np.argsort(order, kind="stable")) if parts else concat([])
    order = sorted(order)
    fitted = fit(enc, settings.max_length, settings.truncation, require_trained=not pairs)
    dropped = [Rejected(examples[order[r]].source, examples[order[r]].line, None, why, examples[order[r]].data)
               for r, why in fitted.dropped]
    dropped_examples = [examples[order[r]] for r, _ in fitted.dropped]
    file_order = {src: i for i, src in enumerate(dict.fromkeys(r.source for r in records))}
    rejected.sort(key=lambda r: (file_order.get(r.source, 0), r.line))  # input order
    kept = [examples[order[r]] for r in fitted.kept.tolist()]
    kept_at = [(ex.source, ex.line) for ex in kept]
    return ShardResult(fitted.encoded, rejected, dropped, fitted.truncated, control_rows,
                       encoder.fast_rows - fast_before, encoder.engine_mismatches - mismatch_before, kinds, kept_at,
                       {k: v - rows_before.get(k, 0) for k, v in _template_rows(renderer).items()},
                       kept, dropped_examples)


TEMPLATE_ROWS = ("minijinja_rows", "jinja2_rows", "minijinja_mismatches")


def _template_rows(renderer: ChatRenderer | None) -> dict:
    """Rows located with every render by MiniJinja / not, and spot-check mismatches (render/engine.py)."""
    if renderer is None:
        return {}
    return dict(zip(TEMPLATE_ROWS, (renderer.rows_by_engine["minijinja"], renderer.rows_by_engine["jinja2"],
                                    renderer.engine.stats["mismatches"])))


def _encode_chats(examples: list[Example], chats: list[int], renderer: ChatRenderer, encoder: ChatEncoder,
                  settings: ShardSettings, rejected: list[Rejected]) -> tuple[Encoded | None, list[int], int]:
    """Render and encode the chat examples at `chats`; a conversation the template refuses is appended
    to `rejected`. Returns (encoded rows, their example indices, rows holding control-token text)."""
    texts, spans, literal, ok = [], [], [], []
    for i in chats:
        ex = examples[i]
        try:
            text, sp, contents = renderer.locate(ex.data["messages"])
        except RecordError as err:
            rejected.append(reject(ex, err, ex.data))
            continue
        if settings.train_turns == "last":
            sp = sp[-1:]
        texts.append(text), spans.append(sp), ok.append(i)
        literal.append(_literal_spans(encoder, ex.data["messages"], text, contents)
                       if settings.literal_control_text else [])
    if not ok:
        return None, [], 0
    encoded = encoder.encode(texts, spans, literal, train_all=settings.train_on_prompt)
    return encoded, ok, sum(1 for x in literal if x)


def _literal_spans(encoder: ChatEncoder, messages, text: str, contents) -> list[tuple[int, int]]:
    """Content spans holding control-token text that must stay literal ([] when there are none)."""
    flagged = [i for i, m in enumerate(messages) if encoder.has_control_text(m["content"])]
    if not flagged:
        return []
    if contents is not None:
        return [contents[i] for i in flagged]
    # The template rewrote content (e.g. trimmed it): find the visible text of each flagged message.
    spans = []
    for i in flagged:
        body = messages[i]["content"].strip()
        start = text.find(body)
        while start != -1:
            spans.append((start, start + len(body)))
            start = text.find(body, start + 1)
    return spans

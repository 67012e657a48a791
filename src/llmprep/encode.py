"""Rendered text + trained character spans -> token ids + labels. Labels are made here and only here.

The ids are those of `tokenizer(text, add_special_tokens=False)` — what apply_chat_template(tokenize=True)
gives — computed for a whole batch at once with the Rust tokenizer (`encode_batch`, threaded).
A token is trained when its characters overlap a trained span; every other label is IGNORE_INDEX.

Control-token text inside message content (a user typing "<|im_end|>") is encoded as plain text by
default: such rows are split at the template's own control tokens and the pieces encoded with
special-token matching turned off, so only the template can emit control tokens.
"""

from __future__ import annotations

import functools
import os
import re
from dataclasses import dataclass, field
from itertools import chain
from typing import Sequence

import numpy as np

from llmprep.constants import IGNORE_INDEX, MAX_PROCESSES
from llmprep.errors import ConfigError

Span = tuple[int, int]
ENGINES = ("auto", "tokenizers", "fastokens")


@dataclass
class Encoded:
    """A batch of encoded rows as flat arrays + offsets (cheap to turn into Arrow list columns).

    Row r is ids[offsets[r]:offsets[r+1]]. Example: ids=[5,6,7,8], offsets=[0,3,4] -> rows [5,6,7], [8]
    """

    ids: np.ndarray
    labels: np.ndarray
    offsets: np.ndarray
    token_type_ids: np.ndarray | None = None
    extra: dict = field(default_factory=dict)

    @property
    def lengths(self) -> np.ndarray:
        return np.diff(self.offsets)

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def row(self, r: int) -> tuple[list[int], list[int]]:
        a, b = self.offsets[r], self.offsets[r + 1]
        return self.ids[a:b].tolist(), self.labels[a:b].tolist()


def backend(tokenizer):
    """The Rust `tokenizers.Tokenizer` behind a fast HF tokenizer, set to encode whole texts; slow
    tokenizers can't give offsets."""
    inner = getattr(tokenizer, "backend_tokenizer", None) or getattr(tokenizer, "_tokenizer", None)
    if inner is None or not hasattr(inner, "encode_batch"):
        raise ConfigError(f"--tokenizer: {type(tokenizer).__name__} is not a fast (Rust) tokenizer; "
                          "llmprep needs one for exact label masks. Save it with tokenizers' tokenizer.json.")
    return whole_texts(inner)


def whole_texts(inner):
    """Turn off the backend's truncation and padding. They are shared state: a tokenizer.json may set
    them (BERT's: 128) and `tokenizer(a, b, truncation=True, max_length=n)` leaves them on, which would
    silently cut every later batch encode of the same tokenizer."""
    if inner.truncation is not None:
        inner.no_truncation()
    if inner.padding is not None:
        inner.no_padding()
    return inner


def span_labels(ids: np.ndarray, starts: np.ndarray, ends: np.ndarray, spans: Sequence[Span]) -> np.ndarray:
    """Labels for one row: the id where the token overlaps a span, IGNORE_INDEX elsewhere.

    Example: ids=[10,11,12,13], token chars (0,2),(2,4),(4,6),(6,7), spans=[(3,6)] -> [-100,11,12,-100]
    """
    keep = np.zeros(len(ids), dtype=bool)
    for a, b in spans:
        keep |= (ends > a) & (starts < b)
    return np.where(keep, ids, IGNORE_INDEX)


_JSON: dict[tuple, tuple[object, str]] = {}  # (id, vocabulary size, pipeline) -> (backend, tokenizer.json)
_PIPELINE = ("normalizer", "pre_tokenizer", "post_processor", "decoder", "truncation", "padding")
_JSON_KEPT = 4  # texts kept (each ~3.5 MB for a 49k vocabulary, and its tokenizer kept alive)


def tokenizer_json(inner) -> str:
    """The backend's tokenizer.json text, computed once per backend object and state: its vocabulary size
    (a token added later) and its pipeline parts (a normalizer set later) are in the key, so a changed
    tokenizer gives a new text. to_str takes ~40 ms for a 49k vocabulary; prepare computes it before the
    workers fork, so they inherit it."""
    parts = [getattr(inner, name, None) for name in _PIPELINE]
    key = (id(inner), inner.get_vocab_size(with_added_tokens=True),
           *(x.__getstate__() if hasattr(x, "__getstate__") else repr(x) for x in parts))
    hit = _JSON.get(key)
    if hit is None or hit[0] is not inner:
        hit = _JSON[key] = (inner, inner.to_str())  # holding `inner` keeps its id from being reused
        while len(_JSON) > _JSON_KEPT:  # a long-lived process with many tokenizers: keep the newest few
            del _JSON[next(iter(_JSON))]
    return hit[1]


@functools.lru_cache(maxsize=4)
def _byte_lengths_for(text: str) -> np.ndarray | None:
    try:
        return token_byte_lengths(text)
    except (ValueError, KeyError, TypeError):  # a tokenizer.json shape this reading does not know: two encodes
        return None


def encode_threads() -> int:
    """Threads for one fastokens encode: the cores left over when prepare's processes (one per core, at most
    MAX_PROCESSES) each work a shard. Example: 2 cores -> 1, 16 cores -> 4"""
    cores = os.cpu_count() or 1
    return max(1, cores // min(cores, MAX_PROCESSES))


def fast_engine_for(tokenizer_json: str) -> None:
    """Load (and cache) the fastokens tokenizer for a tokenizer.json text; prepare calls it in a thread
    ahead of the workers. Any failure is left to the first real use."""
    try:
        _fastokens_for(tokenizer_json)
        _byte_lengths_for(tokenizer_json)
    except Exception:  # noqa: BLE001 - never let a preload break the run
        pass


def token_byte_lengths(tokenizer_json: str) -> np.ndarray | None:
    """UTF-8 bytes of text behind each token id, for a byte-level BPE tokenizer that changes no text (no
    normalizer, no prefix space, no added token that swallows whitespace), else None.

    In such a tokenizer every token stands for a fixed run of the text's bytes — a vocabulary entry's
    characters are bytes in GPT-2's byte alphabet, one character each; an added token is its own text — so
    summing lengths over a row's ids gives every token's byte range without offsets.
    Example (SmolLM2): "Ġhello" -> 6, "<|im_end|>" -> 10, "ä¸Ń" (the bytes of "中") -> 3
    """
    import json

    cfg = json.loads(tokenizer_json)
    model, pre = cfg.get("model") or {}, cfg.get("pre_tokenizer") or {}
    steps = pre.get("pretokenizers", [pre]) if pre.get("type") == "Sequence" else [pre]
    byte_level = [x for x in steps if x.get("type") == "ByteLevel"]
    if model.get("type") != "BPE" or cfg.get("normalizer") is not None or len(byte_level) != 1 \
            or byte_level[0].get("add_prefix_space") or any(x.get("type") not in ("ByteLevel", "Split") for x in steps):
        return None
    added = cfg.get("added_tokens") or []
    if any(t.get("lstrip") or t.get("rstrip") or t.get("single_word") for t in added):
        return None
    alphabet = set(_byte_alphabet())
    vocab = model.get("vocab") or {}
    size = max([*vocab.values(), *(t["id"] for t in added)], default=-1) + 1
    lengths = np.full(size, -1, dtype=np.int64)  # an id with no known text: a row holding it is not verified
    for token, i in vocab.items():
        if alphabet.issuperset(token):
            lengths[i] = len(token)
    for t in added:
        lengths[t["id"]] = len(t["content"].encode("utf-8"))
    return lengths


@functools.lru_cache(maxsize=1)
def _byte_alphabet() -> str:
    """GPT-2's printable stand-ins for the 256 byte values (the ByteLevel pre-tokenizer's alphabet)."""
    keep = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    extra = [b for b in range(256) if b not in keep]
    return "".join(map(chr, keep + [256 + n for n in range(len(extra))]))


@functools.lru_cache(maxsize=4)
def _fastokens_for(tokenizer_json: str):
    """Build (once per tokenizer.json) the fastokens tokenizer; loading takes ~1 s."""
    try:
        import fastokens
    except ImportError:
        return None
    # fastokens spreads one encode over a thread pool as big as the machine, started at its first batch; prepare
    # already runs a shard per core (the main process and its workers), so those threads only compete with the
    # other shards (2 cores: the main process's share of the shards gained nothing while its encodes took a
    # second thread). Set before that first batch: the pool's size is read once per process, and forked workers
    # inherit the setting. (With a pool, a worker forked from it encodes on its calling thread alone: fastokens'
    # caller takes every chunk its missing threads do not.)
    os.environ.setdefault("FASTOKENS_BPE_THREADS", str(encode_threads()))
    try:
        inner = fastokens.Tokenizer.from_json_str(tokenizer_json)
        inner.no_truncation(), inner.no_padding()
        return inner
    except Exception:  # a tokenizer.json feature it doesn't support: stay on `tokenizers`
        return None


class FastEngine:
    """`fastokens` (a faster Rust BPE engine that loads the same tokenizer.json), used only where its
    ids are verified identical to the `tokenizers` ones, row by row.

    Its flat batch call gives no character offsets. For a byte-level tokenizer that changes no text,
    labels come from the tokens' byte lengths (`token_byte_lengths`, `_labels_by_bytes`): one encode.
    Otherwise each row is encoded twice — whole, and cut at the trained-span boundaries — in two flat
    batch calls; where the pieces' ids concatenate to exactly the whole row's ids, the cut points are
    token boundaries and the labels are exact. Rows either way leaves out (a reply that starts with
    whitespace merging into the template's newline, SentencePiece's prefix space) go through
    `tokenizers` with offsets. The first rows of every batch are also compared with `tokenizers` itself;
    one mismatch switches the engine off for the run.
    """

    CHECK_ROWS = 8
    MIN_CHARS = 200_000  # --engine auto: a batch this big (~300 chats) repays loading fastokens (~0.3 s)

    def __init__(self, inner, byte_lengths: np.ndarray | None = None):
        self.inner = inner
        self.enabled = True
        self.byte_lengths = byte_lengths  # token_byte_lengths: labels from one encode (see _labels_by_bytes)

    @classmethod
    def load(cls, slow_backend) -> "FastEngine | None":
        """A verified-on-use engine for this tokenizer, or None if fastokens is missing or can't load it."""
        text = tokenizer_json(slow_backend)
        inner = _fastokens_for(text)
        return cls(inner, _byte_lengths_for(text)) if inner is not None else None

    def flat(self, texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
        """ids and row offsets of a batch. Example: ["ab", "c"] -> ids [x, y, z], offsets [0, 2, 3]"""
        ids, offsets = self.inner.encode_batch_flat(texts, add_special_tokens=False)
        return np.frombuffer(ids, np.uint32).astype(np.int64), np.frombuffer(offsets, np.uint64).astype(np.int64)


def edge_labels(enc, ids: np.ndarray, spans: Sequence[Span]) -> np.ndarray | None:
    """span_labels from a `tokenizers` Encoding without converting every offset to Python: look up the
    tokens at each span's edges, then widen over neighbours that still overlap the span (byte-level
    tokenizers split one character into several tokens that share its offsets). None when an edge
    character belongs to no token.

    Example: tokens "He" "llo" " w" "orld" (0-2, 2-5, 5-7, 7-11), span (3, 7) -> [-100, llo, w, -100]
    """
    labels = np.full(len(ids), IGNORE_INDEX, dtype=np.int64)
    n = len(ids)
    for a, b in spans:
        if b <= a:
            continue
        first, last = enc.char_to_token(a), enc.char_to_token(b - 1)
        if first is None or last is None:
            return None
        while first > 0 and enc.token_to_chars(first - 1)[1] > a:
            first -= 1
        while last + 1 < n and enc.token_to_chars(last + 1)[0] < b:
            last += 1
        labels[first:last + 1] = ids[first:last + 1]
    return labels


class ChatEncoder:
    """Encode rendered conversations in batches. Built once per tokenizer."""

    def __init__(self, tokenizer, *, engine: str = "auto"):
        if engine not in ENGINES:
            raise ConfigError(f"--engine {engine!r} is not valid; choose one of {', '.join(ENGINES)}")
        self.tokenizer = tokenizer
        self.backend = backend(tokenizer)
        self.engine = engine
        # auto uses fastokens (loading it takes ~0.3 s) only for batches big enough to repay that; a choice
        # made per batch, so the rows each engine encodes (in the report) do not depend on which worker
        # saw which shard first
        self.fast = FastEngine.load(self.backend) if engine == "fastokens" else None
        self._fast_loaded = engine != "auto"
        self.engine_mismatches = 0
        self.fast_rows = 0
        specials = sorted({t.content for t in tokenizer.added_tokens_decoder.values() if t.special},
                          key=len, reverse=True)
        self._special_re = re.compile("|".join(map(re.escape, specials))) if specials else None
        self._special_ids = {t: tokenizer.convert_tokens_to_ids(t) for t in specials}

    def has_control_text(self, text: str) -> bool:
        """Does this (message content) text contain the text of a control token?"""
        return bool(self._special_re and self._special_re.search(text))

    def encode(self, texts: list[str], spans: list[list[Span]], literal_rows: Sequence[list[Span]] | None = None,
               *, train_all: bool = False) -> Encoded:
        """Encode a batch. `literal_rows[r]`, when not None, lists content spans of row r whose control-token
        text must stay plain text. `train_all` labels every token (--train-on-prompt)."""
        done: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        whole_texts(self.backend)
        big = self.engine != "auto" or sum(map(len, texts)) >= FastEngine.MIN_CHARS
        if big and not self._fast_loaded:
            self.fast, self._fast_loaded = FastEngine.load(self.backend), True
        if big and self.fast is not None and self.fast.enabled:
            plain = [r for r in range(len(texts)) if not (literal_rows is not None and literal_rows[r])]
            done = self._encode_fast(texts, spans, plain, train_all)
            self.fast_rows += len(done)
            if isinstance(done, Encoded):  # every row, already flat
                return done
        rest = [r for r in range(len(texts)) if r not in done]
        encodings = self.backend.encode_batch([texts[r] for r in rest], add_special_tokens=False) if rest else []
        for r, enc in zip(rest, encodings):
            if literal_rows is not None and literal_rows[r]:
                ids, off = self._encode_literal(texts[r], literal_rows[r])
                done[r] = ids, (ids.copy() if train_all else span_labels(ids, off[:, 0], off[:, 1], spans[r]))
                continue
            ids = np.asarray(enc.ids, dtype=np.int64)
            labels = ids.copy() if train_all else edge_labels(enc, ids, spans[r])
            if labels is None:  # a span edge on a character no token covers: use every offset
                off = np.asarray(enc.offsets, dtype=np.int64).reshape(-1, 2)
                labels = span_labels(ids, off[:, 0], off[:, 1], spans[r])
            done[r] = ids, labels
        rows = [done[r] for r in range(len(texts))]
        return Encoded(_cat([i for i, _ in rows]), _cat([lab for _, lab in rows]),
                       offsets_of([len(i) for i, _ in rows]))

    def _encode_fast(self, texts, spans, rows, train_all) -> dict[int, tuple[np.ndarray, np.ndarray]] | Encoded:
        """Rows whose fast ids are verified exact: {row: (ids, labels)}; the others are left out. When that is
        every row of the batch (the usual case), the flat Encoded instead: no split into rows and back."""
        if not rows:
            return {}
        whole_ids, whole_off = self.fast.flat([texts[r] for r in rows])
        if not self._agrees(texts, rows[: FastEngine.CHECK_ROWS], whole_ids, whole_off):
            return {}
        if train_all or self.fast.byte_lengths is not None:
            if train_all:  # every token trained: no span edge to verify
                labels, good = whole_ids.copy(), np.ones(len(rows), dtype=bool)
            else:
                labels, good = _labels_by_bytes(self.fast.byte_lengths, texts, spans, rows, whole_ids, whole_off)
            if len(rows) == len(texts) and good.all():
                return Encoded(whole_ids, labels, whole_off)
            bounds = whole_off.tolist()
            return {r: (whole_ids[bounds[k]:bounds[k + 1]], labels[bounds[k]:bounds[k + 1]])
                    for k, r in enumerate(rows) if good[k]}
        pieces, owner, trained = [], [], []
        for k, r in enumerate(rows):
            text, pos = texts[r], 0
            for a, b in spans[r]:  # spans are sorted and disjoint: untrained, trained, untrained, ...
                if a > pos:
                    pieces.append(text[pos:a]), owner.append(k), trained.append(False)
                if b > a:
                    pieces.append(text[a:b]), owner.append(k), trained.append(True)
                pos = b
            if pos < len(text) or not spans[r]:
                pieces.append(text[pos:]), owner.append(k), trained.append(False)
        piece_ids, piece_off = self.fast.flat(pieces)
        piece_len = np.diff(piece_off)
        owner_arr = np.asarray(owner)
        row_len = np.bincount(owner_arr, weights=piece_len, minlength=len(rows)).astype(np.int64)
        out = {}
        mask_flat = np.repeat(np.asarray(trained, dtype=bool), piece_len)
        if len(piece_ids) == len(whole_ids) and np.array_equal(piece_ids, whole_ids):
            # Every row verified at once (the usual case): split the flat arrays back into rows.
            labels = whole_ids.copy() if train_all else np.where(mask_flat, whole_ids, IGNORE_INDEX)
            for k, r in enumerate(rows):
                a, b = whole_off[k], whole_off[k + 1]
                out[r] = whole_ids[a:b], labels[a:b]
            return out
        piece_row_start = offsets_of(row_len)
        for k, r in enumerate(rows):
            ids = whole_ids[whole_off[k]:whole_off[k + 1]]
            if row_len[k] != len(ids):
                continue
            seg = slice(piece_row_start[k], piece_row_start[k + 1])
            if not np.array_equal(piece_ids[seg], ids):
                continue  # the cut points are not token boundaries here: use offsets instead
            out[r] = ids, (ids.copy() if train_all else np.where(mask_flat[seg], ids, IGNORE_INDEX))
        return out

    def _agrees(self, texts, rows, ids, offsets) -> bool:
        """Compare the fast engine with `tokenizers` on a few rows; disable it on any difference."""
        ref = self.backend.encode_batch([texts[r] for r in rows], add_special_tokens=False)
        for k, enc in enumerate(ref):
            if list(enc.ids) != ids[offsets[k]:offsets[k + 1]].tolist():
                self.fast.enabled = False
                self.engine_mismatches += 1
                return False
        return True

    def _encode_literal(self, text: str, content_spans: list[Span]) -> tuple[np.ndarray, np.ndarray]:
        """Encode with control tokens recognised only outside `content_spans`.

        The text is cut at the template's own control tokens (exactly where the tokenizer would cut it)
        and each piece is encoded with special-token matching off.
        """
        cuts: list[tuple[int, int, int]] = []  # (start, end, id) of template control tokens
        for m in self._special_re.finditer(text):
            if not any(a < m.end() and m.start() < b for a, b in content_spans):
                cuts.append((m.start(), m.end(), self._special_ids[m.group(0)]))
        ids: list[int] = []
        offs: list[tuple[int, int]] = []
        pos = 0
        previous = self.backend.encode_special_tokens
        self.backend.encode_special_tokens = True
        try:
            for start, end, tid in cuts + [(len(text), len(text), None)]:
                if start > pos:
                    enc = self.backend.encode(text[pos:start], add_special_tokens=False)
                    ids += enc.ids
                    offs += [(a + pos, b + pos) for a, b in enc.offsets]
                if tid is not None:
                    ids.append(tid)
                    offs.append((start, end))
                pos = end
        finally:
            self.backend.encode_special_tokens = previous
        return np.asarray(ids, dtype=np.int64), np.asarray(offs, dtype=np.int64).reshape(-1, 2)


def _labels_by_bytes(byte_lengths: np.ndarray, texts: list[str], spans: list[list[Span]], rows: list[int],
                     ids: np.ndarray, off: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Labels from one encode: (flat labels of `rows`, whether each row's labels are exact — every span edge
    of it a token edge).

    Each token's byte range in the text is the running sum of token_byte_lengths. A row counts only when
    those sums reach exactly its UTF-8 length (the tokens are the text, byte for byte), and a span edge
    only when a token starts (or ends) at that byte: then the trained tokens — those overlapping a span —
    are exactly the ones inside it. Rows left out (a reply whose first character merged into the template's
    newline) take `tokenizers` with offsets, as without this step.

    Example: tokens "<|im_start|>" "assistant" "Ċ" "Yo" "<|im_end|>" (bytes 12, 9, 1, 2, 10), span chars
    (22, 34) -> bytes (22, 34) start at "Yo" and end after "<|im_end|>" -> labels [-100, -100, -100, Yo, im_end]
    """
    if len(ids) and int(ids.max()) >= len(byte_lengths):  # an id the table does not know: no row is trusted
        return np.full(len(ids), IGNORE_INDEX, dtype=np.int64), np.zeros(len(rows), dtype=bool)
    n = len(ids)
    # few passes over the batch's tokens (each is a pass over millions of int64s): token i spans bytes
    # at[i]:at[i + 1] of the whole batch; starts and ends are views of that one array
    tb = byte_lengths[ids]
    at = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(tb, out=at[1:])
    starts, ends = at[:-1], at[1:]
    tok_at = at[off]  # where each row's tokens start, in bytes of the whole batch
    good = np.ones(len(rows), dtype=bool)
    if n and tb.min() < 0:  # ids with no known text: their rows are not verified
        good &= np.diff(np.concatenate([[0], np.cumsum(tb < 0)])[off]) == 0
    row_texts = [texts[r] for r in rows]
    char_at = offsets_of(np.fromiter(map(len, row_texts), np.int64, len(rows)))  # rows' starts in the joined text
    byte_of = _utf8_positions("".join(row_texts))  # character position in the joined text -> byte position
    text_at = byte_of(char_at)
    good &= np.diff(tok_at) == np.diff(text_at)  # the tokens are the text, byte for byte
    counts = np.fromiter(map(len, (spans[r] for r in rows)), np.int64, len(rows))
    flat = np.fromiter(chain.from_iterable(chain.from_iterable(spans[r] for r in rows)), np.int64,
                       2 * int(counts.sum())).reshape(-1, 2)
    span_row = np.repeat(np.arange(len(rows)), counts)
    keep = (flat[:, 1] > flat[:, 0]) & good[span_row]
    flat, span_row = flat[keep], span_row[keep]
    shift = tok_at[span_row] - text_at[span_row]
    ga = byte_of(char_at[span_row] + flat[:, 0]) + shift
    gb = byte_of(char_at[span_row] + flat[:, 1]) + shift
    first = np.searchsorted(ends, ga, side="right")  # the first token ending after the span's start
    stop = np.searchsorted(starts, gb, side="left")  # the first token starting at or after its end
    on_edges = (starts[np.minimum(first, n - 1)] == ga) & (ends[np.maximum(stop - 1, 0)] == gb) if n else first < 0
    good[span_row[~on_edges]] = False
    # tokens inside a span: +1 where one starts, -1 where it stops, summed (int32: a quarter of bincount's
    # two int64 arrays); np.add.at counts two spans starting at one token twice
    depth = np.zeros(n + 1, dtype=np.int32)
    np.add.at(depth, first, 1)
    np.add.at(depth, stop, -1)
    np.cumsum(depth, out=depth)
    return np.where(depth[:n] > 0, ids, IGNORE_INDEX), good


def _utf8_positions(text: str):
    """A function from character positions in `text` (an int array) to UTF-8 byte positions.

    Example: "aé中" -> positions [0, 1, 2, 3] map to bytes [0, 1, 3, 6]
    """
    if text.isascii():
        return lambda chars: chars
    code = np.frombuffer(text.encode("utf-32-le", "surrogatepass"), dtype=np.uint32)
    # a character takes one byte more for each of these bounds it reaches; most text has few such
    # characters, so count them by position (searchsorted) instead of summing over every character
    wide = np.flatnonzero(code >= 0x80)
    wider = wide[code[wide] >= 0x800]
    widest = wider[code[wider] >= 0x10000]

    def byte_of(chars):
        return chars + np.searchsorted(wide, chars) + np.searchsorted(wider, chars) + np.searchsorted(widest, chars)
    return byte_of


def encode_documents(tokenizer, texts: list[str]) -> Encoded:
    """Plain documents: BOS if the tokenizer adds one by default (never two), EOS appended once;
    labels = input_ids.

    Example (a tokenizer that adds BOS 1, EOS 2): ["Hi"] -> [1, 15359, 2]; ["<s>Hi"] -> the same, not [1, 1, ...]
    """
    from llmprep.pack import boundary_tokens, with_boundaries

    bos, eos = boundary_tokens(tokenizer)
    enc = backend(tokenizer).encode_batch(texts, add_special_tokens=False)
    parts = [np.asarray(with_boundaries(e.ids, bos, eos), dtype=np.int64) for e in enc]
    ids = np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64)
    return Encoded(ids, ids.copy(), offsets_of([len(p) for p in parts]))


def encode_pairs(tokenizer, first: list[str], second: list[str], labels: list, max_length: int,
                 truncation: str) -> Encoded:
    """Sentence pairs (BERT-style): [CLS] a [SEP] b [SEP] with token_type_ids; labels = the class ids.

    Truncation follows the tokenizer's pair strategy ("longest_first"), cutting tokens from the side
    --truncation names; --truncation drop is applied by the caller on the untruncated lengths.
    """
    side = tokenizer.truncation_side
    tokenizer.truncation_side = "left" if truncation == "left" else "right"
    try:
        second = None if all(x is None for x in second) else second  # single-text classification
        enc = tokenizer(first, second, truncation=truncation != "drop", max_length=max_length,
                        return_token_type_ids=True)
    finally:
        tokenizer.truncation_side = side
    ids = [np.asarray(x, dtype=np.int64) for x in enc["input_ids"]]
    tt = [np.asarray(x, dtype=np.int64) for x in enc["token_type_ids"]]
    flat = np.concatenate(ids) if ids else np.zeros(0, dtype=np.int64)
    out = Encoded(flat, np.full(len(flat), IGNORE_INDEX, dtype=np.int64), offsets_of([len(x) for x in ids]),
                  token_type_ids=np.concatenate(tt) if tt else np.zeros(0, dtype=np.int64))
    out.extra["class_labels"] = labels
    return out


def _cat(parts: list[np.ndarray]) -> np.ndarray:
    return np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64)


def offsets_of(lengths) -> np.ndarray:
    """Row offsets from row lengths. Example: [2, 0, 3] -> [0, 2, 2, 5]"""
    offsets = np.zeros(len(lengths) + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    return offsets


def int32_if_fits(values) -> np.ndarray:
    """Integers as int32 when every value fits, else int64: per-row metadata the main process holds for every
    row of a run (2M rows: 8 MB per int64 column saved). Example: [1, 7] -> int32; [2**31] -> int64"""
    a = np.asarray(values, dtype=np.int64)
    if len(a) == 0 or (a.min() >= np.iinfo(np.int32).min and a.max() <= np.iinfo(np.int32).max):
        return a.astype(np.int32)
    return a


def gather_index(starts: np.ndarray, ends: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Flat positions of the ranges [starts[i], ends[i]) and the new row offsets, without a Python loop.

    Example: starts=[5, 0], ends=[7, 1] -> index [5, 6, 0], offsets [0, 2, 3]
    """
    lengths = np.asarray(ends, dtype=np.int64) - np.asarray(starts, dtype=np.int64)
    offsets = offsets_of(lengths)
    index = np.arange(offsets[-1], dtype=np.int64) + np.repeat(np.asarray(starts, np.int64) - offsets[:-1], lengths)
    return index, offsets


def concat(parts: Sequence[Encoded]) -> Encoded:
    """Join batches row-wise. Example: rows [a], [b, c] -> rows [a, b, c]"""
    parts = [p for p in parts if len(p)]
    if not parts:
        return Encoded(np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(1, np.int64))
    offsets = offsets_of(np.concatenate([p.lengths for p in parts]))
    tt = None
    if all(p.token_type_ids is not None for p in parts):
        tt = np.concatenate([p.token_type_ids for p in parts])
    out = Encoded(np.concatenate([p.ids for p in parts]), np.concatenate([p.labels for p in parts]), offsets, tt)
    if all("class_labels" in p.extra for p in parts):
        out.extra["class_labels"] = [x for p in parts for x in p.extra["class_labels"]]
    return out


def take(enc: Encoded, rows: Sequence[int] | np.ndarray, starts: np.ndarray | None = None,
         ends: np.ndarray | None = None) -> Encoded:
    """Select rows (in the given order), optionally only the token range [starts[i], ends[i]) of each
    (flat positions; truncation uses that). Example: rows [a, b, c], take [2, 0] -> rows [c, a]"""
    rows = np.asarray(rows, dtype=np.int64)
    starts = enc.offsets[:-1][rows] if starts is None else starts
    ends = enc.offsets[1:][rows] if ends is None else ends
    index, offsets = gather_index(starts, ends)
    tt = enc.token_type_ids[index] if enc.token_type_ids is not None else None
    out = Encoded(enc.ids[index], enc.labels[index], offsets, tt)
    if "class_labels" in enc.extra:
        out.extra["class_labels"] = [enc.extra["class_labels"][r] for r in rows]
    return out

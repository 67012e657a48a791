"""Every label path gives the same labels as the plain offset rule (span_labels over all offsets):
the fastokens engine (token byte lengths, or span-cut re-encoding), `tokenizers` with edge lookups, and the
offsets fallback."""

import os

import numpy as np
import pytest

from llmprep.encode import (
    ChatEncoder,
    _labels_by_bytes,
    edge_labels,
    span_labels,
    token_byte_lengths,
)
from llmprep.render import ChatRenderer, resolve_template


def _reference(tok, texts, spans):
    out = []
    for enc, sp in zip(tok.backend_tokenizer.encode_batch(texts, add_special_tokens=False), spans):
        off = np.asarray(enc.offsets, dtype=np.int64).reshape(-1, 2)
        out.append(span_labels(np.asarray(enc.ids), off[:, 0], off[:, 1], sp))
    return out


def _rendered(tok, template, chats):
    renderer = ChatRenderer.for_tokenizer(template, tok)
    pairs = [renderer.render_with_spans(m) for m in chats]
    return [p[0] for p in pairs], [p[1] for p in pairs]


@pytest.mark.parametrize("name", ["smollm2", "mistral"])
def test_engines_agree_with_offset_rule(name, request, english_chats, chinese_chats):
    tok = request.getfixturevalue(name)
    template = resolve_template("auto" if name == "smollm2" else "mistral", tok)[1]
    chats = english_chats[:150] + chinese_chats[:150]
    # Replies that start with whitespace or split multi-byte characters stress the span edges.
    chats += [[{"role": "user", "content": "你好"}, {"role": "assistant", "content": "\n\n  你好，世界 ok"}],
              [{"role": "user", "content": "x"}, {"role": "assistant", "content": " 🙂🙂 emoji"}]]
    chats += [[{"role": "user", "content": "a"}, {"role": "assistant", "content": "\nstarts on a newline"}],
              [{"role": "user", "content": "b"}, {"role": "assistant", "content": "  two spaces"}],
              [{"role": "user", "content": "ü"}, {"role": "assistant", "content": "é"}]]
    texts, spans = _rendered(tok, template, chats)
    ref = _reference(tok, texts, spans)
    for engine, by_bytes in (("fastokens", True), ("fastokens", False), ("auto", True), ("tokenizers", None)):
        encoder = ChatEncoder(tok, engine=engine)
        if name == "smollm2" and engine == "fastokens":
            assert encoder.fast.byte_lengths is not None  # byte-level BPE: labels from one encode
            if not by_bytes:
                encoder.fast.byte_lengths = None  # the two-encode way
        enc = encoder.encode(texts, spans)
        for r in range(len(texts)):
            ids, labels = enc.row(r)
            assert labels == ref[r].tolist(), (engine, by_bytes, texts[r])


def test_token_byte_lengths_are_the_bytes_each_token_stands_for(smollm2, mistral, bert):
    """SmolLM2's table gives, for every id, the length of the bytes the tokenizer decodes it to; tokenizers
    that change the text (SentencePiece's prefix space, BERT's normalizer) get none."""
    backend = smollm2.backend_tokenizer
    lengths = token_byte_lengths(backend.to_str())
    assert lengths is not None and len(lengths) == backend.get_vocab_size(with_added_tokens=True)
    for i in range(0, len(lengths), 7):
        assert lengths[i] == len(smollm2.convert_tokens_to_string([backend.id_to_token(i)]).encode("utf-8")) or \
            "\ufffd" in smollm2.convert_tokens_to_string([backend.id_to_token(i)]), i  # a lone byte of a character
    assert lengths[smollm2.convert_tokens_to_ids("<|im_end|>")] == len("<|im_end|>")
    assert token_byte_lengths(mistral.backend_tokenizer.to_str()) is None
    assert token_byte_lengths(bert.backend_tokenizer.to_str()) is None


def test_labels_by_bytes_leave_out_rows_whose_edges_fall_inside_a_token(smollm2):
    """A span edge inside a token (a reply opening with a newline merges with the template's) and a row
    whose tokens are not its text byte for byte go to the offsets path; the others get exact labels."""
    backend = smollm2.backend_tokenizer
    lengths = token_byte_lengths(backend.to_str())
    texts = ["<|im_start|>assistant\nYo<|im_end|>", "<|im_start|>assistant\n\n\nYo<|im_end|>", "中文 ok"]
    spans = [[(22, 34)], [(22, 36)], [(1, 2)]]
    encs = backend.encode_batch(texts, add_special_tokens=False)
    ids = np.concatenate([np.asarray(e.ids, dtype=np.int64) for e in encs])
    off = np.cumsum([0] + [len(e.ids) for e in encs])
    labels, good = _labels_by_bytes(lengths, texts, spans, [0, 1, 2], ids, off)
    assert good.tolist() == [True, False, True]  # row 1: the template's newline and the reply's first are one token
    for r in (0, 2):
        o = np.asarray(encs[r].offsets).reshape(-1, 2)
        assert labels[off[r]:off[r + 1]].tolist() == span_labels(np.asarray(encs[r].ids), o[:, 0], o[:, 1],
                                                                 spans[r]).tolist()
    broken = lengths.copy()
    broken[encs[2].ids[0]] += 1  # a table that disagrees with the text: that row is not trusted
    assert _labels_by_bytes(broken, texts, spans, [0, 1, 2], ids, off)[1].tolist() == [True, False, False]
    assert not _labels_by_bytes(lengths[:100], texts, spans, [0, 1, 2], ids, off)[1].any()  # ids past the table


def test_edge_labels_widen_over_byte_tokens(smollm2):
    text = "ab你好"  # each Han character is several byte-level tokens sharing one character offset
    enc = smollm2.backend_tokenizer.encode(text, add_special_tokens=False)
    ids = np.asarray(enc.ids)
    off = np.asarray(enc.offsets).reshape(-1, 2)
    for span in [(2, 3), (3, 4), (1, 3), (0, 4)]:
        assert edge_labels(enc, ids, [span]).tolist() == span_labels(ids, off[:, 0], off[:, 1], [span]).tolist()


def test_pair_truncation_side_follows_option(bert):
    from llmprep.encode import encode_pairs

    a, b = "one two three four five six", "seven eight nine ten"
    for side in ("left", "right"):
        enc = encode_pairs(bert, [a], [b], [1], 8, side)
        bert.truncation_side = side
        try:
            expected = bert(a, b, truncation=True, max_length=8)["input_ids"]
        finally:
            bert.truncation_side = "right"
        assert enc.row(0)[0] == expected
    left, right = (encode_pairs(bert, [a], [b], [1], 8, side).row(0)[0] for side in ("left", "right"))
    assert left != right
    assert bert.truncation_side == "right"  # the shared tokenizer is left as it was


def test_truncation_left_on_the_backend_never_cuts_rows(smollm2):
    """transformers leaves the backend truncating after `tok(a, b, truncation=True, max_length=n)` (and a
    tokenizer.json may set it): chats and documents are still encoded whole, by both engines."""
    import copy

    from llmprep.encode import encode_documents

    tok = copy.deepcopy(smollm2)
    text = "word " * 60 + "<|im_end|>"
    for engine in ("fastokens", "tokenizers"):
        tok("one two three", "four five", truncation=True, max_length=4)
        assert tok.backend_tokenizer.truncation is not None
        enc = ChatEncoder(tok, engine=engine).encode([text] * 3, [[(0, len(text))]] * 3)
        assert enc.row(2)[0] == tok(text, add_special_tokens=False)["input_ids"]  # (this call turns it off)
    tok("one two three", "four five", truncation=True, max_length=4)
    doc = "word " * 60
    assert len(encode_documents(tok, [doc]).ids) == len(tok(doc)["input_ids"]) + 1  # + EOS


def test_auto_loads_fastokens_only_for_a_batch_that_repays_it(smollm2, monkeypatch):
    """--engine auto: a small input (a 20-record file) never pays fastokens' ~0.3 s load; a big batch loads
    and uses it, a small one after it still goes through tokenizers (the choice is per batch, so the
    report's counts do not depend on which worker saw which shard first)."""
    from llmprep.encode import FastEngine

    texts = ["<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\nHello there!<|im_end|>\n"] * 20
    spans = [[(len(t) - 23, len(t) - 1)] for t in texts]
    enc = ChatEncoder(smollm2, engine="auto")
    small = enc.encode(texts, spans)
    assert enc.fast is None and enc.fast_rows == 0
    monkeypatch.setattr(FastEngine, "MIN_CHARS", sum(map(len, texts)))
    big = enc.encode(texts, spans)
    assert enc.fast is not None and enc.fast_rows == 20
    enc.encode(texts[:1], spans[:1])
    assert enc.fast_rows == 20
    assert [small.row(r) for r in range(20)] == [big.row(r) for r in range(20)]


def test_fingerprint_ignores_truncation_left_on(smollm2):
    """The cache key / report fingerprint is the tokenizer's, not the state an earlier call left behind."""
    import copy

    from llmprep.prepare import _tokenizer_fingerprint

    tok = copy.deepcopy(smollm2)
    before = _tokenizer_fingerprint(tok)
    tok("one two three", "four five", truncation=True, max_length=4)
    assert _tokenizer_fingerprint(tok) == before


def test_fingerprint_follows_a_tokenizer_changed_in_place(smollm2):
    """The tokenizer.json text is computed once per backend, but a token added or a normaliser set on the same
    object afterwards gives a new fingerprint (a cache entry of the old tokenizer is never served)."""
    import copy

    from tokenizers import normalizers

    from llmprep.prepare import _tokenizer_fingerprint

    tok = copy.deepcopy(smollm2)
    first = _tokenizer_fingerprint(tok)
    tok.add_tokens(["<new_token_for_the_test>"])
    second = _tokenizer_fingerprint(tok)
    tok.backend_tokenizer.normalizer = normalizers.Lowercase()
    assert len({first, second, _tokenizer_fingerprint(tok)}) == 3


def test_prepare_preloads_the_fast_engine_under_the_key_workers_look_up(tmp_path, monkeypatch):
    """prepare loads fastokens in a thread while it plans a big local input; a worker forked afterwards
    builds its encoder from the inherited tokenizer and finds the engine loaded (a cache hit, no 0.3 s load)."""
    import llmprep.prepare as prep
    from llmprep.encode import _fastokens_for
    from llmprep.prepare import PrepareConfig
    from llmprep.tokenizer import load_lite_tokenizer

    tok = load_lite_tokenizer("smollm2")
    data = tmp_path / "in.jsonl"
    data.write_bytes(b"x" * 64)
    _fastokens_for.cache_clear()
    monkeypatch.setattr(prep, "PRELOAD_BYTES", 64)
    assert prep._preload_fast_engine(tok, PrepareConfig(engine="tokenizers"), [str(data)]) is None
    assert prep._preload_fast_engine(tok, PrepareConfig(executor="ray"), [str(data)]) is None
    monkeypatch.setattr(prep, "PRELOAD_BYTES", 65)
    assert prep._preload_fast_engine(tok, PrepareConfig(), [str(data)]) is None  # too small to use it
    monkeypatch.setattr(prep, "PRELOAD_BYTES", 64)
    prep._preload_fast_engine(tok, PrepareConfig(), [str(data)]).join()
    assert _fastokens_for.cache_info().currsize == 1
    enc = ChatEncoder(tok, engine="fastokens")  # what a worker builds
    assert enc.fast is not None and _fastokens_for.cache_info().hits == 1


def test_utf8_positions_match_encoding_each_prefix():
    from llmprep.encode import _utf8_positions

    for text in ["plain ascii", "aé中🙂x", "你好，世界 ok", "", "ü" * 5 + "\U0001f600"]:
        chars = np.arange(len(text) + 1)
        assert _utf8_positions(text)(chars).tolist() == [len(text[:i].encode("utf-8")) for i in chars]


def test_tokenizer_json_keeps_only_the_newest_few(smollm2):
    """The tokenizer.json cache holds each backend alive: a process that prepares with many tokenizers keeps
    only the newest few, not all of them."""
    import copy

    from llmprep import encode

    toks = [copy.deepcopy(smollm2) for _ in range(encode._JSON_KEPT + 2)]
    for tok in toks:
        assert encode.tokenizer_json(tok.backend_tokenizer) == tok.backend_tokenizer.to_str()
    assert len(encode._JSON) <= encode._JSON_KEPT
    assert all(entry[0] is not toks[0].backend_tokenizer for entry in encode._JSON.values())


def test_fastokens_encodes_on_the_cores_left_over_by_prepares_processes(smollm2, monkeypatch):
    # prepare runs one shard per core (at most MAX_PROCESSES processes); fastokens' own pool, sized to the
    # machine, would only compete with the other shards, so its size is set before its first batch (the
    # pool is started once per process and inherited by forked workers) unless the user chose one.
    from llmprep import encode

    for cores, threads in ((1, 1), (2, 1), (4, 1), (8, 2), (16, 4), (None, 1)):
        monkeypatch.setattr(encode.os, "cpu_count", lambda cores=cores: cores)
        assert encode.encode_threads() == threads
    pytest.importorskip("fastokens")
    text = encode.tokenizer_json(encode.backend(smollm2))
    monkeypatch.setattr(encode.os, "cpu_count", lambda: 16)
    for preset, expected in ((None, "4"), ("3", "3")):
        if preset is None:
            monkeypatch.delenv("FASTOKENS_BPE_THREADS", raising=False)
        else:
            monkeypatch.setenv("FASTOKENS_BPE_THREADS", preset)
        encode._fastokens_for.cache_clear()
        assert encode._fastokens_for(text) is not None
        assert os.environ["FASTOKENS_BPE_THREADS"] == expected
    encode._fastokens_for.cache_clear()

"""Packing: hand-computed BFD bins and wrap blocks, boundaries (never a double BOS), stats, errors."""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from llmprep.constants import IGNORE_INDEX
from llmprep.errors import ConfigError
from llmprep.pack import (add_document_boundaries, bfd_bins, boundary_tokens, pack_examples,
                          segment_positions, with_boundaries)
from llmprep.tokenizer import load_tokenizer

P = IGNORE_INDEX


@pytest.fixture(scope="module")
def mistral(tmp_path_factory):
    """Mistral v1 SentencePiece tokenizer with its real tokenizer_config (add_bos_token true)."""
    import mistral_common
    from transformers import AutoTokenizer

    src = Path(mistral_common.__file__).parent / "data" / "tokenizer.model.v1"
    d = tmp_path_factory.mktemp("mistral")
    shutil.copy(src, d / "tokenizer.model")
    (d / "tokenizer_config.json").write_text(json.dumps({
        "tokenizer_class": "LlamaTokenizer", "add_bos_token": True, "add_eos_token": False,
        "bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>"}))
    tok = AutoTokenizer.from_pretrained(str(d))
    assert len(tok) == 32000
    return tok


def test_bfd_bins_hand_computed():
    # capacity 10; decreasing order: 7(i1) 6(i4) 5(i0) 4(i3,i5) 3(i2) 2(i6) 1(i7,i8)
    # 7 -> new bin A(free 3); 6 -> new B(4); 5 -> new C(5); 4(i3) -> best fit B (free 4 -> 0);
    # 4(i5) -> C (5 -> 1); 3 -> A (3 -> 0); 2 -> no bin with >= 2 free -> new D(8);
    # 1(i7) -> C (1 -> 0); 1(i8) -> D (8 -> 7)
    # fmt: off
    lengths = [5, 7, 3, 4, 6, 4, 2, 1, 1]
    expected = [[1, 2], [3, 4], [0, 5, 7], [6, 8]]
    # fmt: on
    assert bfd_bins(lengths, 10) == expected


def test_bfd_ties_broken_by_index_and_deterministic():
    # four equal lengths, capacity 4: index order, and the first-opened bin wins among equal free space
    assert bfd_bins([2, 2, 2, 2], 4) == [[0, 1], [2, 3]]
    rng = np.random.default_rng(0)
    lengths = rng.integers(1, 300, 2000).tolist()
    assert bfd_bins(lengths, 512) == bfd_bins(list(lengths), 512)


def test_bfd_bins_are_valid_and_global():
    rng = np.random.default_rng(1)
    lengths = np.clip(rng.lognormal(np.log(300), 1.0, 5000).astype(int), 1, 2048)
    bins = bfd_bins(lengths, 2048)
    assert sorted(i for b in bins for i in b) == list(range(len(lengths)))
    assert max(sum(lengths[i] for i in b) for b in bins) <= 2048
    fill = lengths.sum() / (len(bins) * 2048)
    assert fill >= 0.997  # global BFD on a long-tailed distribution


def test_pack_bfd_columns_golden():
    # fmt: off
    ids = [[10, 11], [12], [13, 14, 15]]
    labels = [[P, 11], [12], [13, P, 15]]
    cols, stats = pack_examples({"input_ids": ids, "labels": labels}, strategy="bfd", max_length=4, pad_token_id=0)
    assert cols == {
        "input_ids":      [[12, 13, 14, 15], [10, 11]],
        "labels":         [[P, P, P, 15],    [P, 11]],
        "attention_mask": [[1, 1, 1, 1],     [1, 1]],
        "position_ids":   [[0, 0, 1, 2],     [0, 1]],
        "seq_lengths":    [[1, 3],           [2]],
    }
    # fmt: on
    assert stats["strategy"] == "bfd" and stats["rows"] == 2 and stats["examples_packed"] == 3
    assert stats["fill"] == pytest.approx(6 / 8)
    assert stats["remainder_tokens_dropped"] == 0 and stats["padding_tokens"] == 0
    json.dumps(stats)


def test_pack_bfd_rejects_too_long_examples_clearly():
    with pytest.raises(ConfigError, match=r"example 1 has 5 tokens > --max-length 4.*--truncation"):
        pack_examples({"input_ids": [[1], [1, 2, 3, 4, 5]], "labels": [[1], [1, 2, 3, 4, 5]]},
                      strategy="bfd", max_length=4, pad_token_id=0)


def test_wrap_blocks_and_remainder_options():
    docs = [[1, 5, 6, 2], [1, 7, 2], [1, 8, 9, 2]]  # 11 tokens, block 4 -> 2 blocks + 3 left
    common = dict(strategy="wrap", max_length=4, pad_token_id=0)
    cols, stats = pack_examples({"input_ids": docs, "labels": docs}, remainder="drop", **common)
    # fmt: off
    assert cols["input_ids"] ==    [[1, 5, 6, 2], [1, 7, 2, 1]]
    assert cols["labels"] ==       [[P, 5, 6, 2], [P, 7, 2, P]]
    assert cols["position_ids"] == [[0, 1, 2, 3], [0, 1, 2, 0]]
    assert cols["seq_lengths"] ==  [[4],          [3, 1]]
    # fmt: on
    assert stats["remainder_tokens_dropped"] == 3 and stats["fill"] == 1.0 and stats["rows"] == 2

    cols, stats = pack_examples({"input_ids": docs, "labels": docs}, remainder="pad", **common)
    assert cols["input_ids"][-1] == [8, 9, 2, 0]
    assert cols["labels"][-1] == [P, 9, 2, P]  # continuation piece starts a new segment
    assert cols["attention_mask"][-1] == [1, 1, 1, 0]
    assert cols["position_ids"][-1] == [0, 1, 2, 0]
    assert cols["seq_lengths"][-1] == [3]
    assert stats["padding_tokens"] == 1 and stats["remainder_tokens_dropped"] == 0
    assert stats["fill"] == pytest.approx(11 / 12)

    cols, stats = pack_examples({"input_ids": docs, "labels": docs}, remainder="keep", **common)
    assert cols["input_ids"][-1] == [8, 9, 2] and stats["padding_tokens"] == 0


def test_wrap_keeps_every_token_in_order():
    rng = np.random.default_rng(2)
    docs = [rng.integers(3, 100, rng.integers(1, 40)).tolist() for _ in range(200)]
    cols, stats = pack_examples({"input_ids": docs, "labels": docs}, strategy="wrap", max_length=64,
                                pad_token_id=0, remainder="keep")
    assert sum(cols["input_ids"], []) == sum(docs, [])
    assert all(len(r) == 64 for r in cols["input_ids"][:-1])
    assert all(sum(s) == len(r) for s, r in zip(cols["seq_lengths"], cols["input_ids"]))


def test_segment_positions():
    assert segment_positions(np.array([True, False, False, True, False])).tolist() == [0, 1, 2, 0, 1]


def test_options_errors_name_flag_value_and_choices():
    with pytest.raises(ConfigError) as err:
        pack_examples({"input_ids": [[1]]}, strategy="greedy", max_length=0, pad_token_id=0, remainder="trim")
    msg = str(err.value)
    assert "--pack 'greedy'" in msg and "none, wrap, bfd" in msg
    assert "--max-length/--block-size 0" in msg
    assert "--remainder 'trim'" in msg and "drop, pad, keep" in msg


def test_boundaries_with_bos_tokenizer_never_double(mistral):
    bos, eos = boundary_tokens(mistral)
    assert (bos, eos) == (1, 2)
    ids = mistral("<s>hello")["input_ids"]  # the literal "<s>" + the tokenizer's own BOS
    assert ids[:2] == [1, 1]
    fixed = add_document_boundaries(ids, mistral)
    assert fixed[0] == 1 and fixed[1] != 1 and fixed[-1] == 2
    plain = mistral("hello", add_special_tokens=False)["input_ids"]
    assert add_document_boundaries(plain, mistral) == [1] + plain + [2]
    assert add_document_boundaries([1] + plain + [2], mistral) == [1] + plain + [2]


def test_boundaries_without_bos_tokenizer():
    tok = load_tokenizer("smollm2")
    assert boundary_tokens(tok) == (None, tok.eos_token_id)
    ids = tok("hello world")["input_ids"]
    assert add_document_boundaries(ids, tok) == ids + [tok.eos_token_id]


def test_with_boundaries_pieces():
    assert with_boundaries([5, 6], 1, 2, first=True, last=False) == [1, 5, 6]
    assert with_boundaries([7], 1, 2, first=False, last=True) == [7, 2]
    assert with_boundaries([], None, 2) == [2]

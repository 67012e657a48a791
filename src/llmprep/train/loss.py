"""Causal-LM loss: per trained token, the same for padded, packed and flattened batches, never
materialising the full [tokens x vocab] float32 logits.

Normalisation. The loss of one optimizer step is

    sum of cross-entropy over every trained target of the step / number of trained targets of the step

where "the step" is all gradient-accumulation micro-batches on all ranks (HF Trainer passes that count
as `num_items_in_batch`, gathered across ranks) and a target is a position t whose label[t + 1] is
not IGNORE_INDEX. Packing changes how examples sit in rows, not which targets exist: llmprep.pack
masks each packed example's first label, so the count is the same packed or not, and so is the loss.
(Peers report packed losses 3x off when the denominator is per row or per micro-batch instead.)

Memory. SmolLM2's vocabulary is 49,152: float32 logits for 16 x 2048 tokens are 6.4 GB. The fused
path keeps only the trained positions, then computes logits, loss and both gradients chunk by chunk
(`chunk` rows at a time) inside the forward pass, storing just the gradients (the same shapes as
hidden states and lm_head weight) for backward.
"""

from __future__ import annotations

import types
from typing import Any

import torch

from llmprep.constants import IGNORE_INDEX

# Models whose logits are exactly lm_head(final hidden states): no soft-capping, scaling or extra loss.
FUSED_MODEL_TYPES = ("llama", "mistral", "qwen2", "qwen3", "smollm3", "phi3", "olmo2")
DEFAULT_CHUNK = 4096


class _LinearCrossEntropy(torch.autograd.Function):
    """sum_i CE(hidden[i] @ weight.T, targets[i]) * scale, gradients computed in forward, chunk by chunk."""

    @staticmethod
    def forward(ctx, hidden, weight, targets, scale, chunk):  # noqa: D401 - autograd API
        need_h, need_w = hidden.requires_grad, weight.requires_grad
        grad_h = torch.empty_like(hidden) if need_h else None
        grad_w = torch.zeros(weight.shape, dtype=torch.float32, device=weight.device) if need_w else None
        total = torch.zeros((), dtype=torch.float32, device=hidden.device)
        for start in range(0, hidden.shape[0], chunk):
            h = hidden[start:start + chunk]
            t = targets[start:start + chunk]
            logits = (h @ weight.t()).float()  # under autocast: a bf16 matmul, as the lm_head would be
            lse = torch.logsumexp(logits, dim=-1)
            total += (lse - logits.gather(1, t[:, None]).squeeze(1)).sum()
            if need_h or need_w:
                probs = torch.exp_(logits.sub_(lse[:, None]))  # softmax, in place of the logits
                probs[torch.arange(len(t), device=t.device), t] -= 1.0
                g = probs.mul_(scale).to(h.dtype)
                if need_h:
                    grad_h[start:start + chunk] = (g @ weight.to(g.dtype)).to(hidden.dtype)
                if need_w:
                    grad_w += (g.t() @ h.to(g.dtype)).float()
        ctx.save_for_backward(grad_h if need_h else torch.empty(0), grad_w if need_w else torch.empty(0))
        ctx.need = (need_h, need_w)
        ctx.weight_dtype = weight.dtype
        return total * scale

    @staticmethod
    def backward(ctx, grad_out):
        grad_h, grad_w = ctx.saved_tensors
        need_h, need_w = ctx.need
        return (grad_h * grad_out.to(grad_h.dtype) if need_h else None,
                (grad_w * grad_out).to(ctx.weight_dtype) if need_w else None, None, None, None)


def linear_cross_entropy(hidden: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor,
                         normalizer: torch.Tensor | float, *, chunk: int = DEFAULT_CHUNK) -> torch.Tensor:
    """sum of CE(hidden @ weight.T, targets) / normalizer, without keeping the logits.

    hidden [N, d], weight [V, d], targets [N] (no IGNORE_INDEX left). Example: 3 rows, normalizer 3
    -> the mean cross-entropy of the 3 rows (equal to F.cross_entropy(hidden @ weight.T, targets)).
    """
    if not torch.is_tensor(normalizer):
        normalizer = torch.tensor(float(normalizer), device=hidden.device)
    scale = 1.0 / normalizer.to(device=hidden.device, dtype=torch.float32).clamp(min=1)
    if hidden.shape[0] == 0:  # nothing trained in this micro-batch: a zero that still reaches the weights
        return (hidden.sum() + weight.sum()) * 0.0
    return _LinearCrossEntropy.apply(hidden, weight, targets, scale, chunk)


def trained_targets(labels: torch.Tensor) -> torch.Tensor:
    """How many targets a batch trains: labels[..., 1:] != IGNORE_INDEX (HF shifts inside the loss).

    Example: labels [[-100, 5, 6], [-100, -100, 7]] -> 3
    """
    return (labels[..., 1:] != IGNORE_INDEX).sum()


def fused_loss_supported(model: Any) -> bool:
    """Can the fused path stand in for this model's logits? Example: LlamaForCausalLM -> True"""
    config = getattr(model, "config", None)
    return (config is not None and config.model_type in FUSED_MODEL_TYPES
            and hasattr(model, "lm_head") and hasattr(model, "model")
            and getattr(config, "final_logit_softcapping", None) is None)


def install_fused_loss(model: Any, *, chunk: int = DEFAULT_CHUNK) -> bool:
    """Make `model(..., labels=...)` return the fused per-token loss (and no logits).

    Patches the instance's forward, so DDP/peft wrappers that call it still go through their own
    forward. Without labels (generation, inference) the original forward runs. Returns whether it was
    installed. Example: install_fused_loss(llama) -> True; llama(input_ids=x, labels=y).logits is None
    """
    if not fused_loss_supported(model) or getattr(model, "_llmprep_fused", False):
        return bool(getattr(model, "_llmprep_fused", False))
    from transformers.modeling_outputs import CausalLMOutputWithPast

    original = model.forward

    def forward(self, input_ids=None, attention_mask=None, position_ids=None, labels=None,
                num_items_in_batch=None, **kwargs):
        if labels is None:
            return original(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids, **kwargs)
        kwargs.pop("logits_to_keep", None)
        kwargs.pop("return_dict", None)
        kwargs.setdefault("use_cache", False)
        out = self.model(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids, **kwargs)
        hidden = out.last_hidden_state[:, :-1]
        targets = labels[:, 1:].to(hidden.device)
        keep = targets != IGNORE_INDEX
        n = num_items_in_batch if num_items_in_batch is not None else keep.sum()
        loss = linear_cross_entropy(hidden[keep], self.lm_head.weight, targets[keep], n, chunk=chunk)
        return CausalLMOutputWithPast(loss=loss, logits=None)

    model.forward = types.MethodType(forward, model)
    model._llmprep_fused = True
    return True

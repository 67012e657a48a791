"""The model a run trains: loaded for the task, with the attention path, loss, adapters and compile it needs.

Attention (`--attention auto`): on a CUDA GPU with bf16 and torch's varlen kernel, causal LMs train
on flattened batches with `llmprep_varlen` (flash attention per example, no padding, no mask);
elsewhere the model's own implementation (sdpa on CPU), with block-diagonal masks for packed rows.
"""

from __future__ import annotations

import importlib
from typing import Any

import torch

from llmprep import models
from llmprep.attention import VARLEN, attention_implementation, register_varlen, varlen_available
from llmprep.errors import ConfigError
from llmprep.models import CAUSAL_LM, CLASSIFICATION
from llmprep.train.config import TrainConfig
from llmprep.train.data import TrainData
from llmprep.train.loss import install_fused_loss

IMPLEMENTATIONS = {"sdpa": "sdpa", "eager": "eager", "flex": "flex_attention", "varlen": VARLEN}


def build_model(src: Any, data: TrainData, tokenizer, cfg: TrainConfig, *, device: torch.device,
                sharded: bool = False) -> tuple[Any, dict]:
    """Load (or take) the model and set it up for training; returns it and what was chosen.

    Example: build_model("smollm2", chats, tok, TrainConfig(lora=True), device=cpu)
    -> (PeftModel, {"attention": "sdpa", "fused_loss": True, "dtype": "float32", ...})
    """
    kwargs: dict[str, Any] = {}
    if data.task == CLASSIFICATION:
        names = data.label_names or []
        kwargs = {"num_labels": len(names), "id2label": dict(enumerate(names)),
                  "label2id": {n: i for i, n in enumerate(names)}}
    if isinstance(src, (str, models.ModelSource)):
        model = models.load(src, task=data.task, **kwargs)
    else:
        model = src
    spec = src.spec if isinstance(src, models.ModelSource) else str(src)[:80]
    if data.task == CAUSAL_LM:
        models.check_causal_lm(model.config, spec=spec)
    if data.task == CLASSIFICATION:
        if getattr(model.config, "num_labels", None) != len(kwargs.get("id2label", {})) and kwargs:
            raise ConfigError(f"--model {spec!r} has {model.config.num_labels} classes but DATA has "
                              f"{len(kwargs['id2label'])} ({', '.join(kwargs['id2label'].values())})")
        if model.config.pad_token_id is None and tokenizer.pad_token_id is not None:
            model.config.pad_token_id = tokenizer.pad_token_id  # decoder classifiers find the last token by it
    from llmprep.train.run import check_vocab

    check_vocab(model, tokenizer)
    chosen = choose_attention(cfg, model, data.task, device)
    if chosen != attention_implementation(model):
        model.set_attn_implementation(chosen)
    fused = data.task == CAUSAL_LM and cfg.fused_loss and not sharded and install_fused_loss(model)
    if cfg.lora:
        model = with_lora(model, cfg, data.task)
    if cfg.compile:
        compile_layers(model)
    details = {"attention": attention_implementation(model), "fused_loss": bool(fused),
               "dtype": str(next(model.parameters()).dtype).replace("torch.", ""),
               "mixed_precision": "bf16" if cfg.bf16 else "no", "compiled": cfg.compile}
    return model, details


def choose_attention(cfg: TrainConfig, model, task: str, device: torch.device) -> str:
    """The attention implementation for this run. Example: auto, CUDA, bf16 -> "llmprep_varlen"; auto, CPU -> "sdpa" """
    current = attention_implementation(model)
    if task != CAUSAL_LM:
        if cfg.attention not in ("auto", "sdpa", "eager"):
            raise ConfigError(f"--attention {cfg.attention}: classification runs use sdpa or eager")
        return current if cfg.attention == "auto" else cfg.attention
    if cfg.attention == "auto":
        if varlen_available(device) and cfg.bf16:
            return register_varlen()
        return current
    if cfg.attention == "varlen":
        return register_varlen()
    if cfg.attention == "flex":
        if torch.device(device).type == "cpu":
            raise ConfigError("--attention flex: torch has no flex-attention backward on CPU; train with it on a "
                              "GPU, or use --attention sdpa|varlen here")
        try:
            importlib.import_module("torch.nn.attention.flex_attention")
        except ImportError as exc:
            raise ConfigError("--attention flex needs torch >= 2.5 (flex attention)") from exc
    return IMPLEMENTATIONS[cfg.attention]


def with_lora(model, cfg: TrainConfig, task: str):
    """Wrap the model in LoRA adapters on every linear layer (peft); a classifier's head trains in full."""
    try:
        import peft
    except ImportError as exc:
        raise ConfigError("--lora needs peft: pip install 'llmprep[train]'") from exc
    lora = peft.LoraConfig(r=cfg.lora_r, lora_alpha=cfg.lora_alpha or 2 * cfg.lora_r, lora_dropout=cfg.lora_dropout,
                           target_modules="all-linear", task_type="CAUSAL_LM" if task == CAUSAL_LM else "SEQ_CLS")
    return peft.get_peft_model(model, lora)


def compile_layers(model) -> int:
    """torch.compile each decoder layer on its own (identical layers share one compiled graph, so it
    compiles in seconds, not minutes). Shapes are dynamic from the start: flattened and dynamically
    padded batches change length every step, and one symbolic graph beats a recompile per length.
    Returns how many layers were compiled."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    decoder = base.get_decoder() if hasattr(base, "get_decoder") else None
    layers = getattr(decoder, "layers", None)
    if layers is None:
        raise ConfigError(f"--compile: {type(base).__name__} has no decoder layers to compile")
    for layer in layers:
        layer.compile(dynamic=True)
    return len(layers)


def training_template(data: TrainData, tokenizer) -> str | None:
    """The chat template the data was rendered with (from its report), for the saved tokenizer.

    None when the data has no chats. Raises when the template cannot be found again or changed since.
    """
    from llmprep.render import resolve_template, template_fingerprint

    name, sha = data.template
    if not sha:
        return None
    _, source = resolve_template(name or "auto", tokenizer)
    if template_fingerprint(source) != sha:
        raise ConfigError(f"DATA was rendered with template {name!r} (sha256 {sha}) but that template now reads "
                          f"differently (sha256 {template_fingerprint(source)}); prepare the data again")
    return source

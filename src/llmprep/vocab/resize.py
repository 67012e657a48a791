"""Resize a model's embeddings to an extended tokenizer: `llmprep model resize`.

Old rows are copied bit for bit; tied input/output embeddings stay one tensor. New rows:
  subword-mean  mean of the rows of the pieces the OLD tokenizer splits the new token into
                (input and output matrices each from their own rows), so "中国" starts as the
                average of "中" and "国" (or of its byte pieces)
  mean          mean of all old rows
  zero          zeros
  random        normal, with the old rows' standard deviation (seeded)
Rows added only to pad to a multiple (--pad-to-multiple-of) get the mean of all old rows.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from tokenizers import Tokenizer

from llmprep.errors import ConfigError
from llmprep.store import atomic_output_dir, write_json
from llmprep.vocab.modelio import (check_rows, load_fast, load_model, save_with_tokenizer,
                                   tokenizer_dir, vocab_size)

INITS = ("subword-mean", "mean", "zero", "random")


@dataclass
class ResizeReport:
    """What resize changed; saved as DIR/resize_report.json."""

    old_rows: int
    new_rows: int
    base_tokens: int
    new_tokens: int
    init: str
    tied: bool

    def summary(self) -> str:
        """Example: "embeddings 49,152 -> 56,711 rows (7,559 new, subword-mean), tied" """
        return (f"embeddings {self.old_rows:,} -> {self.new_rows:,} rows "
                f"({self.new_tokens - self.base_tokens:,} new tokens, init {self.init})"
                f"{', tied' if self.tied else ''}")


def check_extends(base: Tokenizer, new: Tokenizer, *, base_name: str, new_name: str) -> None:
    """Every base id must name the same token in the new tokenizer. Example: merged vs base -> ok"""
    n_base = vocab_size(base)
    if vocab_size(new) < n_base:
        raise ConfigError(f"--tokenizer {new_name!r}: {vocab_size(new):,} ids, fewer than the base "
                          f"{base_name!r} ({n_base:,}); expected an extension (use vocab prune to shrink)")
    for i in range(n_base):
        if base.id_to_token(i) != new.id_to_token(i):
            raise ConfigError(f"--tokenizer {new_name!r}: id {i} is {new.id_to_token(i)!r} but "
                              f"{base.id_to_token(i)!r} in the base {base_name!r}; expected every "
                              "base id to keep its token")


def subword_ids(token: str, base: Tokenizer, new: Tokenizer) -> list[int]:
    """Ids of the pieces the base tokenizer splits a new token's text into.

    Vocabulary tokens go through the base *model* (no normalizer, no dummy prefix), so "▁中国"
    splits exactly as written; added tokens (e.g. "<|tool|>") are encoded as text.
    Example: "中国" with Mistral v1 -> [ids of "中", "国"]
    """
    if token in {t.content for t in new.get_added_tokens_decoder().values()}:
        return base.encode(token, add_special_tokens=False).ids
    return [t.id for t in base.model.tokenize(token)]


def _init_rows(weight: torch.Tensor, ids: range, init: str, groups: list[list[int]],
               n_base: int, gen: torch.Generator) -> None:
    old = weight[:n_base]
    mean = old.mean(0)
    for k, i in enumerate(ids):
        if init == "subword-mean" and groups[k]:
            weight[i] = old[groups[k]].mean(0)
        elif init == "zero":
            weight[i] = 0
        elif init == "random":
            weight[i] = torch.randn(weight.shape[1], generator=gen, dtype=weight.dtype) * old.std()
        else:
            weight[i] = mean


def resize_model(model, base: Tokenizer, new: Tokenizer, *, init: str = "subword-mean",
                 pad_to_multiple_of: int | None = None, seed: int = 0) -> ResizeReport:
    """Resize in place. Example: SmolLM2 + merged tokenizer (56,711) -> 56,711 rows"""
    if init not in INITS:
        raise ConfigError(f"--init {init!r}: expected one of {', '.join(INITS)}")
    if pad_to_multiple_of is not None and pad_to_multiple_of < 1:
        raise ConfigError(f"--pad-to-multiple-of {pad_to_multiple_of}: expected a positive integer")
    n_base, n_new = vocab_size(base), vocab_size(new)
    rows = model.get_input_embeddings().weight.shape[0]
    target = max(rows, n_new)
    if pad_to_multiple_of:
        target = -(-target // pad_to_multiple_of) * pad_to_multiple_of
    tied = model.get_output_embeddings() is not None and \
        model.get_output_embeddings().weight is model.get_input_embeddings().weight
    model.resize_token_embeddings(target, mean_resizing=False)
    new_ids = range(n_base, n_new)
    groups = [subword_ids(new.id_to_token(i), base, new) for i in new_ids]
    gen = torch.Generator().manual_seed(seed)
    mats = [model.get_input_embeddings().weight]
    out = model.get_output_embeddings()
    if out is not None and out.weight is not mats[0]:
        mats.append(out.weight)
    with torch.no_grad():
        for w in mats:
            _init_rows(w, new_ids, init, groups, n_base, gen)
            _init_rows(w, range(n_new, target), "mean", [], n_base, gen)  # padding rows
    if tied:
        model.tie_weights()
    return ResizeReport(rows, target, n_base, n_new, init, tied)


def resize(model_path: str | Path, tokenizer: str | Path, out: str | Path, *,
           base_tokenizer: str | Path | None = None, init: str = "subword-mean",
           pad_to_multiple_of: int | None = None) -> ResizeReport:
    """Load, check, resize and save model + tokenizer to `out` (safetensors).

    The base tokenizer is `base_tokenizer`, else the model directory's own tokenizer.
    Example: resize("smol/", "merged/", "smol_zh/") -> smol_zh/model.safetensors + tokenizer.json
    """
    if base_tokenizer is None:
        if not Path(model_path).is_dir():
            raise ConfigError(f"--model {str(model_path)!r}: not a directory, so it has no tokenizer "
                              "of its own; pass --base-tokenizer (the tokenizer the model was trained with)")
        base_tokenizer = model_path
    base_flag = "--base-tokenizer" if base_tokenizer != model_path else "--model"
    base = load_fast(base_tokenizer, flag=base_flag)
    new_dir = tokenizer_dir(tokenizer, flag="--tokenizer")
    new = load_fast(new_dir, flag="--tokenizer")
    check_extends(base, new, base_name=str(base_tokenizer), new_name=str(tokenizer))
    model = load_model(model_path)
    check_rows(model, vocab_size(base), tokenizer=str(base_tokenizer), model_name=str(model_path))
    report = resize_model(model, base, new, init=init, pad_to_multiple_of=pad_to_multiple_of)
    with atomic_output_dir(out) as tmp:
        save_with_tokenizer(model, new_dir, tmp)
        write_json(tmp / "resize_report.json", report.__dict__)
    return report

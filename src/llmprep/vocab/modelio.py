"""Load and save the model and tokenizer files that resize and prune operate on."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from tokenizers import Tokenizer

from llmprep.errors import ConfigError
from llmprep.tokenizer import EMBEDDED, embedded_path
from llmprep.vocab.spm_hf import CARRIED_FILES, hf_tokenizer_from_proto, load_proto


class ModelMismatchError(ConfigError):
    """A model's embedding matrix does not fit its tokenizer."""


def tokenizer_dir(spec: str | Path, *, flag: str) -> Path:
    """Directory of a tokenizer given as a dir, a file in it, or an embedded name.

    Example: "smollm2" -> .../assets/smollm2; "tok/tokenizer.json" -> tok
    """
    p = embedded_path(str(spec)) if str(spec) in EMBEDDED else Path(spec)
    if p.is_file() and p.name in ("tokenizer.json", "tokenizer.model"):
        p = p.parent
    if not (p / "tokenizer.json").is_file() and not (p / "tokenizer.model").is_file():
        raise ConfigError(f"{flag} {str(spec)!r}: no tokenizer.json or tokenizer.model there; "
                          "expected a tokenizer directory or an embedded name "
                          f"({', '.join(EMBEDDED)})")
    return p


def load_fast(spec: str | Path, *, flag: str) -> Tokenizer:
    """An HF `tokenizers.Tokenizer` for a tokenizer dir (tokenizer.json, else tokenizer.model).

    Example: "smollm2" -> Tokenizer with 49152 tokens
    """
    d = tokenizer_dir(spec, flag=flag)
    if (d / "tokenizer.json").is_file():
        return Tokenizer.from_file(str(d / "tokenizer.json"))
    return hf_tokenizer_from_proto(load_proto(d / "tokenizer.model", flag=flag))


def vocab_size(tok: Tokenizer) -> int:
    """Number of ids, added tokens included. Example: SmolLM2 -> 49152"""
    return max(tok.get_vocab(with_added_tokens=True).values()) + 1


def load_model(path: str | Path):
    """A causal LM from a directory (config + safetensors) or a .gguf file (dequantized to float32 once,
    then read from the cache: see llmprep.models).

    Example: "smollm2.Q4_1.gguf" -> LlamaForCausalLM (float32, no quantization flags)
    """
    from llmprep import models

    p = Path(path)
    if not ((p.is_file() and p.suffix == ".gguf") or (p.is_dir() and (p / "config.json").is_file())):
        raise ConfigError(f"--model {str(path)!r}: expected a model directory with config.json or a .gguf file")
    return models.load(str(p))


def check_rows(model, n_tokens: int, *, tokenizer: str, model_name: str) -> int:
    """Embedding rows, checked to cover every id of the tokenizer. Example: 49152 rows, 49152 ids -> 49152"""
    rows = model.get_input_embeddings().weight.shape[0]
    if rows < n_tokens:
        raise ModelMismatchError(
            f"--model {model_name!r}: its embedding has {rows:,} rows but its tokenizer "
            f"{tokenizer!r} has {n_tokens:,} ids; expected at least one row per id (is this the "
            "model's own tokenizer?)")
    return rows


def save_with_tokenizer(model, tok_dir: Path, out: Path, *, tokenizer_json: Tokenizer | None = None) -> None:
    """save_pretrained (safetensors) plus the tokenizer files from `tok_dir`."""
    model.save_pretrained(str(out), safe_serialization=True)
    for name in ("tokenizer.json", "tokenizer.model", *CARRIED_FILES):
        if (tok_dir / name).is_file() and not (out / name).exists():
            shutil.copyfile(tok_dir / name, out / name)
    if tokenizer_json is not None:
        tokenizer_json.save(str(out / "tokenizer.json"))
    cfg = out / "tokenizer_config.json"
    if not cfg.exists():
        cfg.write_text(json.dumps({"tokenizer_class": "TokenizersBackend"}) + "\n")

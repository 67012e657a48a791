"""A tokenizer without importing transformers (or torch): a verified snapshot of what AutoTokenizer loads.

Importing transformers costs seconds (it imports torch); `tokenizers` loads in a few milliseconds.
The first time a local tokenizer directory is used, it is loaded the real way (AutoTokenizer), and what
that object is made of — the Rust backend exactly as transformers left it (`to_str()`: vocabulary,
normalizer, added tokens, post-processor, truncation/padding) plus the Python-side settings (special
tokens, chat template, sides, model input names) — is written as JSON to
`$LLMPREP_CACHE/tokenizers/<key>.json`. Later processes rebuild a `LiteTokenizer` from it.

A snapshot is only used when it was verified at creation: the tokenizer's class overrides none of the
methods LiteTokenizer re-implements, and both objects give identical results on probe texts (ids with
and without special tokens, pairs, truncation on both sides, tokens, decode). Otherwise the snapshot
records why, and every load goes through transformers as before.

The key hashes the directory's tokenizer files and the versions of transformers, tokenizers and the
snapshot format, so editing a file or upgrading a library makes a new snapshot.

    first load:  AutoTokenizer (~3 s with imports) -> snapshot JSON (verified) -> LiteTokenizer
    later loads: snapshot JSON -> tokenizers.Tokenizer.from_str (~0.1 s) -> LiteTokenizer
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from importlib import metadata
from pathlib import Path
from typing import Any

FORMAT = 2
# Named special tokens, in transformers' order (PreTrainedTokenizerBase.SPECIAL_TOKENS_ATTRIBUTES).
SPECIAL = ("bos_token", "eos_token", "unk_token", "sep_token", "pad_token", "cls_token", "mask_token")
# Files of a model directory that are not read to build its tokenizer (and are large): not hashed.
WEIGHTS = (".safetensors", ".bin", ".gguf", ".pt", ".pth", ".h5", ".msgpack", ".onnx", ".ot", ".ckpt")
# Methods LiteTokenizer re-implements: a class that overrides any of them gets no snapshot.
EMULATED = ("__call__", "_encode_plus", "_get_padding_truncation_strategies", "set_truncation_and_padding",
            "_convert_encoding", "convert_tokens_to_ids", "_convert_token_to_id_with_added_voc",
            "convert_ids_to_tokens", "decode", "_decode", "clean_up_tokenization", "special_tokens_map",
            "all_special_tokens", "all_special_ids", "added_tokens_decoder", "__len__", "get_vocab", "vocab_size")
LARGE_INTEGER = int(1e20)  # transformers: a model_max_length above this means "no limit"
PROBES = ("Hello world", "  two  spaces and trailing  ", "你好，世界！ 這是測試", "tabs\tand\nnew\r\nlines",
          "émigré ümlaut 🤗 emoji 12345 67.89", "don't stop , please ! isn't it ?", "")


class LiteTokenizer:
    """The part of a transformers fast tokenizer that `prepare` and `inspect` use, on `tokenizers` alone.

    Same attribute and method names as transformers' (`backend_tokenizer`, `special_tokens_map`,
    `convert_tokens_to_ids`, `decode`, `tok(text, pair, truncation=..., max_length=...)`, ...); anything
    else is on `full()`, the real transformers tokenizer (loaded on first use).
    Example: LiteTokenizer(snapshot)("Hi")["input_ids"] == AutoTokenizer.from_pretrained(dir)("Hi")["input_ids"]
    """

    is_fast = True

    def __init__(self, snapshot: dict[str, Any], source: str):
        from tokenizers import Tokenizer

        self._tokenizer = Tokenizer.from_str(snapshot["backend"])
        self._tokenizer.encode_special_tokens = snapshot["split_special_tokens"]
        self.source = source
        self.hf_class: str = snapshot["class"]
        self.name_or_path = source  # snapshots are keyed by content: a copy elsewhere shares this one
        self.chat_template = snapshot["chat_template"]
        self._special: dict[str, str] = dict(snapshot["special_tokens"])
        self._extra: list[str] = list(snapshot["extra_special_tokens"])
        for key in ("truncation_side", "padding_side", "model_max_length", "model_input_names",
                    "clean_up_tokenization_spaces", "split_special_tokens", "pad_token_type_id"):
            setattr(self, key, snapshot[key])
        # transformers' record of how it was built (tokenizer_config.json + resolved files), JSON-able part
        self.init_kwargs = {k: _anchored(v, source) for k, v in snapshot["init_kwargs"].items()}
        if snapshot.get("vocab_file") is not None:
            self.vocab_file = _anchored(snapshot["vocab_file"], source)

    def __repr__(self) -> str:
        return f"LiteTokenizer({self.hf_class}, {self.name_or_path!r}, {len(self)} tokens)"

    def full(self):
        """The transformers tokenizer of the same directory (imports transformers; a separate object)."""
        from llmprep.tokenizer import load_tokenizer

        return load_tokenizer(self.source)

    # --- vocabulary and special tokens ---------------------------------------------------------------

    @property
    def backend_tokenizer(self):
        return self._tokenizer

    @property
    def special_tokens_map(self) -> dict[str, str]:
        return {k: self._special[k] for k in SPECIAL if self._special.get(k) is not None}

    @property
    def all_special_tokens(self) -> list[str]:
        return list(dict.fromkeys([self._special[k] for k in SPECIAL if self._special.get(k) is not None]
                                  + self._extra))

    @property
    def all_special_ids(self) -> list[int]:
        return self.convert_tokens_to_ids(self.all_special_tokens)

    @property
    def added_tokens_decoder(self) -> dict:
        return self._tokenizer.get_added_tokens_decoder()

    def __getattr__(self, name: str):
        # bos_token / bos_token_id and the other named special tokens, as transformers resolves them
        base = name.removesuffix("_id")
        if base in SPECIAL and "_special" in self.__dict__:
            token = self._special.get(base)
            return token if token is None or base == name else self.convert_tokens_to_ids(token)
        raise AttributeError(f"LiteTokenizer has no attribute {name!r}; use .full() for the transformers tokenizer")

    def __len__(self) -> int:
        return self._tokenizer.get_vocab_size(with_added_tokens=True)

    @property
    def vocab_size(self) -> int:
        return self._tokenizer.get_vocab_size(with_added_tokens=False)

    def get_vocab(self) -> dict[str, int]:
        return self._tokenizer.get_vocab(with_added_tokens=True)

    def convert_tokens_to_ids(self, tokens: str | list[str]) -> int | list[int] | None:
        """Unknown tokens give the unk id (None without one). Example: "<|im_end|>" -> 2"""
        if isinstance(tokens, str):
            index = self._tokenizer.token_to_id(tokens)
            return index if index is not None else self.unk_token_id
        return [self.convert_tokens_to_ids(t) for t in tokens]

    def convert_ids_to_tokens(self, ids, skip_special_tokens: bool = False):
        if isinstance(ids, int):
            return self._tokenizer.id_to_token(ids)
        skip = set(self.all_special_ids) if skip_special_tokens else set()
        return [self._tokenizer.id_to_token(int(i)) for i in ids if int(i) not in skip]

    def decode(self, ids, skip_special_tokens: bool = False) -> str | list[str]:
        """Ids -> text (a list of rows -> a list of texts), with transformers' space clean-up where it applies."""
        ids = ids.tolist() if hasattr(ids, "tolist") else ids
        if isinstance(ids, int):
            ids = [ids]
        if ids and isinstance(ids[0], (list, tuple)):
            return [self.decode(row, skip_special_tokens) for row in ids]
        text = self._tokenizer.decode(list(ids), skip_special_tokens=skip_special_tokens)
        # transformers skips the clean-up (WordPiece-era " ." -> ".") for BPE models: it corrupts them
        if self.clean_up_tokenization_spaces and type(self._tokenizer.model).__name__ != "BPE":
            for old, new in ((" .", "."), (" ?", "?"), (" !", "!"), (" ,", ","), (" ' ", "'"), (" n't", "n't"),
                             (" 'm", "'m"), (" 's", "'s"), (" 've", "'ve"), (" 're", "'re")):
                text = text.replace(old, new)
        return text

    # --- encoding ------------------------------------------------------------------------------------

    def __call__(self, text, text_pair=None, *, add_special_tokens: bool = True, truncation=None,
                 max_length: int | None = None, return_token_type_ids: bool | None = None,
                 return_attention_mask: bool | None = None) -> dict[str, list]:
        """`tokenizer(text, text_pair, ...)` without padding: a dict of lists (of lists for a batch).

        truncation: None/False (off), True or "longest_first", "only_first", "only_second"; a max_length
        alone turns on "longest_first" (as transformers does).
        """
        strategy = self._strategy(truncation, max_length)
        if strategy is not None and max_length is None:
            if self.model_max_length > LARGE_INTEGER:
                strategy = None
            else:
                max_length = self.model_max_length
        self._configure(strategy, max_length)
        batched = isinstance(text, (list, tuple))
        if batched:
            if text_pair is not None and len(text) != len(text_pair):
                raise ValueError(f"batch length of text ({len(text)}) != text_pair ({len(text_pair)})")
            inputs = list(zip(text, text_pair)) if text_pair is not None else list(text)
        else:
            inputs = [(text, text_pair)] if text_pair else [text]
        encodings = self._tokenizer.encode_batch(inputs, add_special_tokens=add_special_tokens)
        if return_token_type_ids is None:
            return_token_type_ids = "token_type_ids" in self.model_input_names
        if return_attention_mask is None:
            return_attention_mask = "attention_mask" in self.model_input_names
        out = {"input_ids": [e.ids for e in encodings]}
        if return_token_type_ids:
            out["token_type_ids"] = [e.type_ids for e in encodings]
        if return_attention_mask:
            out["attention_mask"] = [e.attention_mask for e in encodings]
        return out if batched else {k: v[0] for k, v in out.items()}

    @staticmethod
    def _strategy(truncation, max_length: int | None) -> str | None:
        if max_length is not None and truncation is None:
            truncation = True
        if truncation in (None, False, "do_not_truncate"):
            return None
        if truncation is True:
            return "longest_first"
        if truncation not in ("longest_first", "only_first", "only_second"):
            raise ValueError(f"truncation {truncation!r}: expected True, False, 'longest_first', 'only_first' "
                             "or 'only_second'")
        return truncation

    def _configure(self, strategy: str | None, max_length: int | None) -> None:
        """Backend truncation/padding as transformers sets them for a call (set_truncation_and_padding)."""
        current = self._tokenizer.truncation
        if strategy is None:
            if current is not None:
                self._tokenizer.no_truncation()
        else:
            target = {"max_length": max_length, "stride": 0, "strategy": strategy, "direction": self.truncation_side}
            if current is None or {k: current.get(k) for k in target} != target:
                self._tokenizer.enable_truncation(**target)
        if self._tokenizer.padding is not None:
            self._tokenizer.no_padding()
        if self._tokenizer.encode_special_tokens != self.split_special_tokens:
            self._tokenizer.encode_special_tokens = self.split_special_tokens


# --- snapshots -----------------------------------------------------------------------------------

def snapshot_key(directory: Path) -> str | None:
    """Hash of a tokenizer directory's files (weights excluded) and the library versions; None if unreadable.

    Example: a directory with tokenizer.json + tokenizer_config.json -> "3f1c...e9" (32 hex digits)
    """
    h = hashlib.sha256()
    for name in ("transformers", "tokenizers"):
        try:
            h.update(f"{name}={metadata.version(name)}\n".encode())
        except metadata.PackageNotFoundError:
            return None
    h.update(f"format={FORMAT}\n".encode())
    try:
        files = sorted(p for p in directory.iterdir() if p.is_file() and not p.name.lower().endswith(WEIGHTS))
        templates = directory / "additional_chat_templates"
        if templates.is_dir():
            files += sorted(p for p in templates.iterdir() if p.is_file())
        for path in files:
            h.update(f"{path.relative_to(directory)}\0{path.stat().st_size}\0".encode())
            with open(path, "rb") as fh:
                for block in iter(lambda: fh.read(1 << 20), b""):
                    h.update(block)
    except OSError:
        return None
    return h.hexdigest()[:32]


def snapshot_path(key: str) -> Path:
    from llmprep.cache import default_cache_dir

    return default_cache_dir() / "tokenizers" / f"{key}.json"


def read_snapshot(key: str) -> dict | None:
    """The stored snapshot for this key, or None (missing, unreadable, or from another key/format)."""
    try:
        data = json.loads(snapshot_path(key).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) and data.get("key") == key and data.get("format") == FORMAT else None


def write_snapshot(data: dict) -> None:
    """Store atomically (temp file + rename); a read-only or full cache directory only costs the speed-up."""
    path = snapshot_path(data["key"])
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".json", dir=path.parent)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(data, fh, ensure_ascii=False)
        os.replace(tmp, path)
    except OSError:
        return


def take_snapshot(full, key: str) -> dict:
    """Snapshot a freshly loaded transformers tokenizer (before any call changed its backend settings),
    then verify it: {"verified": True, ...} or {"verified": False, "why": ...}."""
    special = {k: str(v) for k, v in full.special_tokens_map.items() if v is not None}
    data = {
        "format": FORMAT, "key": key, "class": type(full).__name__, "name_or_path": str(full.name_or_path),
        "backend": full.backend_tokenizer.to_str(), "special_tokens": special,
        "extra_special_tokens": [str(t) for t in full.all_special_tokens if str(t) not in special.values()],
        "chat_template": full.chat_template, "truncation_side": full.truncation_side,
        "padding_side": full.padding_side, "model_max_length": int(min(full.model_max_length, 2**63 - 1)),
        "model_input_names": list(full.model_input_names),
        "clean_up_tokenization_spaces": bool(full.clean_up_tokenization_spaces),
        "split_special_tokens": bool(full.split_special_tokens), "pad_token_type_id": full.pad_token_type_id,
        "init_kwargs": _portable_kwargs(full), "vocab_file": _portable(getattr(full, "vocab_file", None), full),
    }
    why = _unsupported(full)
    if why is None:
        why = compare(full, LiteTokenizer(data, source=str(full.name_or_path)))
    data["verified"], data["why"] = why is None, why
    return data


DIR = "{tokenizer_dir}"  # a path inside the tokenizer's directory, stored relative: copies share snapshots


def _portable(value: Any, full) -> Any:
    """Example: "/models/m/tokenizer.model" (loaded from /models/m) -> "{tokenizer_dir}/tokenizer.model"."""
    root = str(full.name_or_path).rstrip(os.sep)
    if isinstance(value, str) and (value == root or value.startswith(root + os.sep)):
        return DIR + value[len(root):]
    return value


def _anchored(value: Any, source: str) -> Any:
    return source + value[len(DIR):] if isinstance(value, str) and value.startswith(DIR) else value


def _portable_kwargs(full) -> dict:
    """init_kwargs entries that are plain data (AddedToken objects and the like are left out)."""
    out = {}
    for key, value in full.init_kwargs.items():
        try:
            json.dumps(value)
        except (TypeError, ValueError):
            continue
        out[key] = _portable(value, full)
    return out


def _unsupported(full) -> str | None:
    """Why a LiteTokenizer cannot stand in for this tokenizer class, or None."""
    try:
        from transformers.tokenization_utils_tokenizers import TokenizersBackend
    except ImportError:
        return "transformers has no TokenizersBackend"
    cls = type(full)
    if not isinstance(full, TokenizersBackend):
        return f"{cls.__name__} is not a tokenizers-backed tokenizer"
    overridden = [m for m in EMULATED if getattr(cls, m, None) is not getattr(TokenizersBackend, m, None)]
    if overridden or hasattr(cls, "_switch_to_input_mode"):
        return f"{cls.__name__} overrides {', '.join(overridden) or '_switch_to_input_mode'}"
    if full.model_max_length <= 0:
        return "model_max_length <= 0"
    return None


def compare(full, lite: LiteTokenizer) -> str | None:
    """Run both tokenizers on probe texts (every special token included); the first difference, or None."""
    texts = list(PROBES) + [f"a{t}b {t}" for t in full.all_special_tokens]
    checks: list[tuple[str, Any]] = [
        ("special_tokens_map", lambda t: t.special_tokens_map), ("all_special_tokens", lambda t: t.all_special_tokens),
        ("len", len), ("vocab_size", lambda t: t.vocab_size),
        ("added_tokens", lambda t: {i: (a.content, a.special) for i, a in t.added_tokens_decoder.items()}),
        ("named ids", lambda t: [getattr(t, f"{k}_id") for k in t.special_tokens_map]),
        ("chat_template", lambda t: t.chat_template),
        ("vocab_file", lambda t: getattr(t, "vocab_file", None)),
        ("init_kwargs", lambda t: {k: t.init_kwargs[k] for k in lite.init_kwargs}),
    ]
    for text in texts:
        checks += [
            (f"call {text!r}", lambda t, x=text: dict(t(x))),
            (f"call no specials {text!r}", lambda t, x=text: dict(t(x, add_special_tokens=False))),
            (f"pair {text!r}", lambda t, x=text: dict(t(x, "second part", return_token_type_ids=True))),
        ]
    for side in ("right", "left"):
        checks.append((f"truncated pair ({side})", lambda t, s=side: _truncated(t, s)))
    checks.append(("batch", lambda t: dict(t(texts, add_special_tokens=False))))
    for text in texts:
        checks += [
            (f"tokens {text!r}", lambda t, x=text: t.convert_ids_to_tokens(full(x)["input_ids"])),
            (f"decode {text!r}", lambda t, x=text: (t.decode(full(x)["input_ids"]),
                                                   t.decode(full(x)["input_ids"], skip_special_tokens=True))),
        ]
    checks.append(("backend after calls", lambda t: t.backend_tokenizer.to_str()))
    for what, get in checks:
        try:
            a, b = get(full), get(lite)
        except Exception as exc:  # a probe one of them cannot run: no snapshot, whatever the reason
            return f"{what}: {type(exc).__name__}: {exc}"
        if a != b:
            return f"{what}: transformers gives {a!r:.200}, the snapshot {b!r:.200}"
    return None


def _truncated(tok, side: str) -> list:
    old = tok.truncation_side
    tok.truncation_side = side
    try:
        return tok(["one two three four five six seven", "x"], ["eight nine ten eleven", "y z"],
                   truncation=True, max_length=7)["input_ids"]
    finally:
        tok.truncation_side = old

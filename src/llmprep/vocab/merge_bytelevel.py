"""Merge new pieces into a byte-level BPE tokenizer.json (GPT-2 style, e.g. SmolLM2).

A byte-level tokenizer has no scores: a word becomes one token only if a chain of merges builds
it from bytes. For each new piece, in the new model's order, we encode its bytes with the current
merges; if that gives several tokens t1..tk, we append the merges (t1,t2), (t1t2,t3), ... and
their results to the vocabulary. Appended merges rank after every base merge, so they fire only
when no base merge applies; with the script rule (CJK pieces only) they never touch text without
CJK characters, which therefore keeps its base ids.

Pieces the pre-tokenizer would split (e.g. "。中" is two pre-tokens under the GPT-2 regex) can
never be one token and are skipped ("not reachable" in the report). There is no SentencePiece
model to save for a byte-level base: the output is an HF tokenizer directory.
"""

from __future__ import annotations

import json
from pathlib import Path

from sentencepiece import sentencepiece_model_pb2 as pb
from tokenizers import Tokenizer
from tqdm import tqdm

from llmprep.errors import ConfigError
from llmprep.vocab.bpe import bpe_encode, merges_as_pairs, to_byte_level
from llmprep.vocab.scripts import SPACE, keep_rule
from llmprep.vocab.spm_hf import NORMAL, copy_carried_files


def load_bytelevel_json(path: Path, *, flag: str = "--base") -> dict:
    """Read a tokenizer.json and check it is a byte-level BPE. Example: smollm2 -> dict"""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ConfigError(f"{flag} {str(path)!r}: not a tokenizer.json ({exc}); expected an HF "
                          "tokenizer.json or a SentencePiece tokenizer.model") from exc
    model = data.get("model") if isinstance(data, dict) else None
    if not isinstance(model, dict) or model.get("type") != "BPE":
        raise ConfigError(f"{flag} {str(path)!r}: model type {model and model.get('type')!r}; "
                          "expected a BPE tokenizer.json (byte-level) or a SentencePiece model")
    if "ByteLevel" not in json.dumps(data.get("pre_tokenizer")):
        raise ConfigError(f"{flag} {str(path)!r}: a BPE tokenizer.json without a ByteLevel "
                          "pre-tokenizer; expected a byte-level BPE (GPT-2 style) or a "
                          "SentencePiece tokenizer.model")
    return data


def merge_into_bytelevel(base_file: Path, new: pb.ModelProto, out: Path, *, keep_script: str,
                         report) -> None:
    """Write out/tokenizer.json (+ carried config files) with the new pieces merged in.

    Example: SmolLM2 + a Chinese model -> "中国" encodes to one token with an id >= 49152.
    """
    data = load_bytelevel_json(base_file)
    keep = keep_rule(keep_script)
    vocab: dict[str, int] = data["model"]["vocab"]
    pairs = merges_as_pairs(data["model"]["merges"])
    ranks = {pair: i for i, pair in enumerate(pairs)}
    next_id = max([*vocab.values(), *(t["id"] for t in data.get("added_tokens", []))]) + 1
    report.base_size = next_id
    pre = Tokenizer.from_str(json.dumps(data)).pre_tokenizer
    for p in tqdm(new.pieces, desc="merging pieces", leave=False):
        if p.type != NORMAL:
            continue
        if not keep(p.piece):
            report.skipped_script += 1
            continue
        text = p.piece.replace(SPACE, " ")
        word = to_byte_level(text)
        if word in vocab:
            report.skipped_in_base += 1
            continue
        if pre is not None and len(pre.pre_tokenize_str(text)) != 1:
            report.skipped_unreachable += 1
            continue
        parts = bpe_encode(word, ranks)
        cur = parts[0]
        for nxt in parts[1:]:
            if (cur, nxt) not in ranks:
                ranks[(cur, nxt)] = len(pairs)
                pairs.append((cur, nxt))
            cur += nxt
            if cur not in vocab:
                vocab[cur] = next_id
                next_id += 1
                report.added += 1
    data["model"]["merges"] = [list(pair) for pair in pairs]
    report.merged_size = next_id
    out.mkdir(parents=True, exist_ok=True)
    Tokenizer.from_str(json.dumps(data)).save(str(out / "tokenizer.json"))
    copy_carried_files(base_file.parent, out, default_config={"tokenizer_class": "TokenizersBackend"})

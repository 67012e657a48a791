"""Cut a tokenizer and its model down to the tokens a corpus uses: `llmprep vocab prune`.

Kept: every token the corpus encodes to (at least --min-count times), every special/added token,
the 256 byte tokens (byte-level alphabet, or SentencePiece <0x..> byte-fallback pieces, so any
text still encodes), and every vocabulary token that is a substring of a kept token.

Why substrings: while encoding, every intermediate symbol BPE builds ends up inside some final
token, so it is a substring of a used token. Keeping those (and, for byte-level BPE, every merge
whose two sides and result are kept) keeps every merge the corpus needs; the ones dropped were
never applied, so BPE picks the same merges in the same order and the corpus encodes to the same
tokens, under new ids. Ids are renumbered in the old order; tokenizer, embeddings, LM head and the
config's special ids all use the same map.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import torch
from sentencepiece import sentencepiece_model_pb2 as pb
from tokenizers import Tokenizer
from tqdm import tqdm

from llmprep.errors import ConfigError
from llmprep.store import atomic_output_dir, write_json
from llmprep.vocab.bpe import byte_to_unicode, merges_as_pairs
from llmprep.vocab.corpus import read_lines
from llmprep.vocab.modelio import (check_rows, load_fast, load_model, save_with_tokenizer,
                                   tokenizer_dir, vocab_size)
from llmprep.vocab.spm_hf import BYTE, NORMAL, load_proto, save_sp_hf_dir


@dataclass
class PruneReport:
    """What prune kept; saved as DIR/prune_report.json."""

    old_tokens: int
    kept_tokens: int
    used_tokens: int
    corpus_lines: int
    min_count: int
    corpus_identical: bool

    def summary(self) -> str:
        """Example: "kept 3,210 of 49,152 tokens (2,900 used by 500 lines); corpus encodes identically" """
        same = "identically" if self.corpus_identical else "DIFFERENTLY (rare tokens dropped)"
        return (f"kept {self.kept_tokens:,} of {self.old_tokens:,} tokens ({self.used_tokens:,} "
                f"used by {self.corpus_lines:,} lines); corpus encodes {same}")


def substring_closure(tokens: set[str], vocab: set[str]) -> set[str]:
    """Tokens plus every vocabulary entry that is a substring of one of them.

    Example: {"abc"}, vocab {"a","b","c","ab","bc","abc","x"} -> {"a","b","c","ab","bc","abc"}
    """
    out = set(tokens)
    for t in tokens:
        for i in range(len(t)):
            for j in range(i + 1, len(t) + 1):
                if t[i:j] in vocab:
                    out.add(t[i:j])
    return out


def count_ids(tok: Tokenizer, lines: Sequence[str]) -> tuple[Counter, list[list[int]]]:
    """How often each id occurs when encoding the lines (no special tokens added)."""
    encoded = [e.ids for e in tok.encode_batch(list(lines), add_special_tokens=False)]
    return Counter(i for ids in encoded for i in ids), encoded


def _kept_ids(tok: Tokenizer, counts: Counter, min_count: int, byte_tokens: set[str]) -> list[int]:
    vocab = tok.get_vocab(with_added_tokens=False)
    used = {tok.id_to_token(i) for i, c in counts.items() if c >= min_count}
    keep = substring_closure(used, set(vocab)) | (byte_tokens & set(vocab))
    ids = {vocab[t] for t in keep if t in vocab}
    ids |= set(tok.get_added_tokens_decoder())  # every special/added token
    return sorted(ids)


def _prune_bytelevel(tok_dir: Path, kept: list[int], old: Tokenizer) -> Tokenizer:
    data = json.loads((tok_dir / "tokenizer.json").read_text(encoding="utf-8"))
    remap = {o: n for n, o in enumerate(kept)}
    vocab = {t: remap[i] for t, i in data["model"]["vocab"].items() if i in remap}
    data["model"]["vocab"] = vocab
    data["model"]["merges"] = [list(m) for m in merges_as_pairs(data["model"]["merges"])
                               if m[0] in vocab and m[1] in vocab and m[0] + m[1] in vocab]
    for t in data.get("added_tokens", []):
        t["id"] = remap[t["id"]]
    return _remap_post_processor(Tokenizer.from_str(json.dumps(data)), data, remap)


def _remap_post_processor(tok: Tokenizer, data: dict, remap: dict[int, int]) -> Tokenizer:
    """Special-token ids inside a TemplateProcessing post-processor follow the new ids."""
    post = data.get("post_processor")
    if post and post.get("type") == "TemplateProcessing":
        for spec in post.get("special_tokens", {}).values():
            spec["ids"] = [remap[i] for i in spec["ids"]]
        return Tokenizer.from_str(json.dumps(data))
    return tok


def _prune_sentencepiece(proto: pb.ModelProto, kept: list[int]) -> pb.ModelProto:
    out = pb.ModelProto()
    out.CopyFrom(proto)
    del out.pieces[:]
    for i in kept:
        out.pieces.add().CopyFrom(proto.pieces[i])
    spec = out.trainer_spec
    remap = {o: n for n, o in enumerate(kept)}
    for name in ("unk_id", "bos_id", "eos_id", "pad_id"):
        old = getattr(spec, name)
        setattr(spec, name, remap.get(old, -1) if old >= 0 else old)
    spec.vocab_size = len(kept)
    return out


def prune_model(model, kept: list[int]) -> None:
    """Keep only rows `kept` (in that order) of the embeddings and LM head, in place."""
    emb = model.get_input_embeddings()
    head = model.get_output_embeddings()
    tied = head is not None and head.weight is emb.weight
    index = torch.tensor(kept)
    new_emb = torch.nn.Embedding(len(kept), emb.weight.shape[1], dtype=emb.weight.dtype)
    with torch.no_grad():
        new_emb.weight.copy_(emb.weight[index])
    model.set_input_embeddings(new_emb)
    if head is not None:
        new_head = torch.nn.Linear(head.weight.shape[1], len(kept), bias=head.bias is not None,
                                   dtype=head.weight.dtype)
        with torch.no_grad():
            new_head.weight.copy_(new_emb.weight if tied else head.weight[index])
            if head.bias is not None:
                new_head.bias.copy_(head.bias[index])
        model.set_output_embeddings(new_head)
    model.config.vocab_size = len(kept)
    if tied:
        model.tie_weights()
    remap = {o: n for n, o in enumerate(kept)}
    for cfg in (model.config, getattr(model, "generation_config", None)):
        for name in ("bos_token_id", "eos_token_id", "pad_token_id"):
            value = getattr(cfg, name, None) if cfg is not None else None
            if isinstance(value, int):
                setattr(cfg, name, remap.get(value))
            elif isinstance(value, list):
                setattr(cfg, name, [remap[v] for v in value if v in remap])


def prune(model_path: str | Path, tokenizer: str | Path, corpus: Sequence[str | Path],
          out: str | Path, *, min_count: int = 1) -> PruneReport:
    """Prune tokenizer + model to the corpus and save both to `out`.

    Example: prune("smol/", "smollm2", ["zh.txt"], "smol_small/") -> ~3k tokens instead of 49k
    """
    if min_count < 1:
        raise ConfigError(f"--min-count {min_count}: expected a positive integer")
    tok_dir = tokenizer_dir(tokenizer, flag="--tokenizer")
    is_sp = (tok_dir / "tokenizer.model").is_file()
    if not is_sp and '"ByteLevel"' not in (tok_dir / "tokenizer.json").read_text(encoding="utf-8"):
        raise ConfigError(f"--tokenizer {str(tokenizer)!r}: expected a SentencePiece tokenizer.model "
                          "or a byte-level BPE tokenizer.json")
    old = load_fast(tok_dir, flag="--tokenizer")
    lines = read_lines(corpus)
    model = load_model(model_path)
    check_rows(model, vocab_size(old), tokenizer=str(tokenizer), model_name=str(model_path))
    counts, before = count_ids(old, tqdm(lines, desc="encoding corpus", leave=False))
    if is_sp:
        proto = load_proto(tok_dir / "tokenizer.model", flag="--tokenizer")
        bytes_ = {p.piece for p in proto.pieces if p.type == BYTE}
        kept = _kept_ids(old, counts, min_count, bytes_)
        kept = sorted(set(kept) | {i for i, p in enumerate(proto.pieces) if p.type != NORMAL})
        new_proto = _prune_sentencepiece(proto, kept)
    else:
        kept = _kept_ids(old, counts, min_count, set(byte_to_unicode().values()))
    remap = {o: n for n, o in enumerate(kept)}
    prune_model(model, kept)
    with atomic_output_dir(out) as tmp:
        if is_sp:
            save_sp_hf_dir(new_proto, tmp, carry_from=tok_dir)
            new_tok = Tokenizer.from_file(str(tmp / "tokenizer.json"))
        else:
            new_tok = _prune_bytelevel(tok_dir, kept, old)
        save_with_tokenizer(model, tok_dir, tmp, tokenizer_json=None if is_sp else new_tok)
        after_ids = [e.ids for e in new_tok.encode_batch(lines, add_special_tokens=False)]
        identical = all([remap.get(i, -1) for i in b] == a for b, a in zip(before, after_ids))
        report = PruneReport(vocab_size(old), len(kept), sum(1 for c in counts.values() if c >= min_count),
                             len(lines), min_count, identical)
        write_json(tmp / "prune_report.json", report.__dict__)
    return report

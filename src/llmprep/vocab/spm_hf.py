"""SentencePiece model files: load, inspect, and turn into an HF tokenizer directory that agrees.

transformers 5 converts a `tokenizer.model` with a Metaspace pre-tokenizer that disagrees with
SentencePiece on runs of spaces and on a leading space ("a  b", " x"). We build `tokenizer.json`
ourselves the way SentencePiece encodes: prepend "▁", replace " " by "▁", no pre-tokenizer, BPE
merges ordered by piece score, byte fallback. Ids then match `SentencePieceProcessor.encode`.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from sentencepiece import sentencepiece_model_pb2 as pb
from tokenizers import Tokenizer, decoders, normalizers, processors
from tokenizers.models import BPE

from llmprep.errors import ConfigError

NORMAL, UNKNOWN, CONTROL, USER_DEFINED, UNUSED, BYTE = 1, 2, 3, 4, 5, 6
# Files of an HF tokenizer dir that carry special tokens and the chat template.
CARRIED_FILES = ("tokenizer_config.json", "special_tokens_map.json", "chat_template.jinja",
                 "chat_template.json", "generation_config.json")


def load_proto(path: str | Path, *, flag: str = "--base") -> pb.ModelProto:
    """Parse a SentencePiece model file. Example: "tok/tokenizer.model" -> ModelProto(32000 pieces)."""
    path = Path(path)
    model = pb.ModelProto()
    try:
        model.ParseFromString(path.read_bytes())
    except Exception as exc:  # protobuf raises DecodeError, a plain Exception subclass
        raise ConfigError(f"{flag} {str(path)!r}: not a SentencePiece model file ({exc}); expected "
                          "a tokenizer.model written by sentencepiece") from exc
    if not model.pieces:
        raise ConfigError(f"{flag} {str(path)!r}: not a SentencePiece model file (no pieces); "
                          "expected a tokenizer.model written by sentencepiece")
    return model


def sp_merges(model: pb.ModelProto) -> list[tuple[str, str]]:
    """BPE merges that reproduce SentencePiece's score-ordered merging.

    SentencePiece merges the adjacent pair whose concatenation is the piece with the highest
    score; HF BPE applies the merge with the lowest rank. Ranking each (left, right) by the score
    of left+right gives the same order.
    Example: pieces ["▁", "t", "h", "▁t"(-1), "he"(-2), "▁the"(-3)] ->
             [("▁","t"), ("h","e"), ("▁t","he")]
    """
    score = {p.piece: (p.score, i) for i, p in enumerate(model.pieces) if p.type == NORMAL}
    ranked = []
    for piece, (s, i) in score.items():
        for cut in range(1, len(piece)):
            left, right = piece[:cut], piece[cut:]
            if left in score and right in score:
                ranked.append((-s, i, score[left][1], left, right))
    ranked.sort()
    return [(left, right) for *_, left, right in ranked]


def hf_tokenizer_from_proto(model: pb.ModelProto) -> Tokenizer:
    """An HF `tokenizers.Tokenizer` that encodes exactly like SentencePiece (BPE models only).

    Example: for the Mistral v1 model, encode("Hello world  test").ids == sp.encode(...).
    """
    if model.trainer_spec.model_type != pb.TrainerSpec.BPE:
        raise ConfigError("only SentencePiece BPE models convert exactly to an HF BPE tokenizer; "
                          f"this one is {pb.TrainerSpec.ModelType.Name(model.trainer_spec.model_type)}")
    vocab = {p.piece: i for i, p in enumerate(model.pieces)}
    unk = model.pieces[model.trainer_spec.unk_id].piece if model.trainer_spec.unk_id >= 0 else None
    tok = Tokenizer(BPE(vocab=vocab, merges=sp_merges(model), unk_token=unk, fuse_unk=True,
                        byte_fallback=model.trainer_spec.byte_fallback))
    norm = []
    if model.normalizer_spec.add_dummy_prefix:
        norm.append(normalizers.Prepend("▁"))
    norm.append(normalizers.Replace(" ", "▁"))
    tok.normalizer = normalizers.Sequence(norm)
    steps = [decoders.Replace("▁", " "), decoders.ByteFallback(), decoders.Fuse()]
    if model.normalizer_spec.add_dummy_prefix:
        steps.append(decoders.Strip(" ", 1, 0))
    tok.decoder = decoders.Sequence(steps)
    specials = [p.piece for p in model.pieces if p.type in (CONTROL, USER_DEFINED, UNKNOWN)]
    from tokenizers import AddedToken
    tok.add_special_tokens([AddedToken(s, special=True, normalized=False) for s in specials])
    bos_id = model.trainer_spec.bos_id
    if bos_id >= 0:  # LLaMA-family tokenizers prepend <s> and nothing else
        bos = model.pieces[bos_id].piece
        tok.post_processor = processors.TemplateProcessing(
            single=f"{bos} $A", pair=f"{bos} $A {bos} $B", special_tokens=[(bos, bos_id)])
    return tok


def _special_config(model: pb.ModelProto) -> dict:
    """tokenizer_config.json for a SentencePiece model with no HF config of its own."""
    spec = model.trainer_spec
    pick = lambda i: model.pieces[i].piece if 0 <= i < len(model.pieces) else None  # noqa: E731
    cfg = {"tokenizer_class": "TokenizersBackend", "bos_token": pick(spec.bos_id),
           "eos_token": pick(spec.eos_id), "unk_token": pick(spec.unk_id),
           "pad_token": pick(spec.pad_id)}
    return {k: v for k, v in cfg.items() if v is not None}


def save_sp_hf_dir(model: pb.ModelProto, out: Path, *, carry_from: Path | None = None) -> None:
    """Write `tokenizer.model`, `tokenizer.json` and the special-token/chat-template files to `out`.

    Files in CARRIED_FILES are copied from `carry_from` (the base tokenizer's directory) when it
    has them; `tokenizer_class` is forced to TokenizersBackend so transformers loads our
    tokenizer.json as written instead of re-converting tokenizer.model.
    """
    out.mkdir(parents=True, exist_ok=True)
    (out / "tokenizer.model").write_bytes(model.SerializeToString())
    hf_tokenizer_from_proto(model).save(str(out / "tokenizer.json"))
    copy_carried_files(carry_from, out, default_config=_special_config(model))


def copy_carried_files(src: Path | None, out: Path, *, default_config: dict) -> None:
    """Copy special-token files and the chat template from `src` (may be None) into `out`."""
    for name in CARRIED_FILES:
        if src is not None and (src / name).is_file():
            shutil.copyfile(src / name, out / name)
    cfg_path = out / "tokenizer_config.json"
    cfg = json.loads(cfg_path.read_text(encoding="utf-8")) if cfg_path.exists() else default_config
    cfg["tokenizer_class"] = "TokenizersBackend"
    for drop in ("vocab_file", "tokenizer_file", "added_tokens_decoder", "legacy"):
        cfg.pop(drop, None)  # these point at the base's files or ids; ours are in tokenizer.json
    cfg_path.write_text(json.dumps(cfg, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")

"""Merge a new SentencePiece vocabulary into a base tokenizer: `llmprep vocab merge`.

Rule: base pieces keep their order, ids and scores. Each new NORMAL piece that passes the script
rule (see `scripts.py`; default: Han characters only) and is not already in the base is appended.

Score: appended pieces score below every base piece (base minimum - 1 - their rank in the new
model). SentencePiece BPE merges the highest-scoring pair first, so base merges always win and the
new pieces merge only where no base merge applies, in the order the new model learned them. With
the seed's score 0 all new pieces outrank every base merge and tie with each other, so their
learned order is lost; keeping it costs nothing and measures slightly fewer tokens (docs/vocab.md).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from sentencepiece import sentencepiece_model_pb2 as pb

from llmprep.errors import ConfigError
from llmprep.store import atomic_output_dir, write_json
from llmprep.vocab.scripts import keep_rule
from llmprep.vocab.spm_hf import NORMAL, load_proto, save_sp_hf_dir

REPORT = "merge_report.json"
SCORE_MODES = ("below-base", "zero")


@dataclass
class MergeReport:
    """What a merge added; saved as DIR/merge_report.json."""

    base: str
    add: str
    kind: str  # "sentencepiece" or "byte-level-bpe"
    keep_script: str
    base_size: int = 0
    merged_size: int = 0
    added: int = 0
    skipped_in_base: int = 0
    skipped_script: int = 0
    skipped_unreachable: int = 0
    files: list[str] = field(default_factory=list)

    def summary(self) -> str:
        """Example: "merged 8000 new pieces: +6500 (1200 already in base, 300 not han) -> 38500" """
        return (f"{self.kind} base {self.base_size:,} + {self.added:,} new pieces = "
                f"{self.merged_size:,} ({self.skipped_in_base:,} already in base, "
                f"{self.skipped_script:,} outside --keep-script {self.keep_script}, "
                f"{self.skipped_unreachable:,} not reachable); wrote {', '.join(self.files)}")


def resolve_sp_file(path: str | Path, *, flag: str) -> Path:
    """A SentencePiece model given as a file or a dir holding tokenizer.model.

    Example: "zh_sp/" -> zh_sp/tokenizer.model
    """
    p = Path(path)
    if p.is_dir():
        p = p / "tokenizer.model"
    if not p.is_file():
        raise ConfigError(f"{flag} {str(path)!r}: no such file; expected a SentencePiece "
                          "tokenizer.model or a directory holding one")
    return p


def merge_protos(base: pb.ModelProto, new: pb.ModelProto, *, keep_script: str = "cjk",
                 score_mode: str = "below-base", report: MergeReport | None = None) -> pb.ModelProto:
    """Append the new model's pieces to a copy of `base` (see module docstring for the rule).

    Example: base [<unk>, <s>, </s>, ..., "梦"] + new ["▁", "中国", "ok"] (keep "han")
    -> base + ["中国"] scored min(base) - 1
    """
    if score_mode not in SCORE_MODES:
        raise ConfigError(f"score_mode {score_mode!r}: expected one of {', '.join(SCORE_MODES)}")
    keep = keep_rule(keep_script)
    merged = pb.ModelProto()
    merged.CopyFrom(base)
    have = {p.piece for p in base.pieces}
    floor = min(p.score for p in base.pieces if p.type == NORMAL) if base.pieces else 0.0
    report = report or MergeReport("", "", "sentencepiece", keep_script)
    for p in new.pieces:
        if p.type != NORMAL:
            continue  # <unk>, <s>, </s>, byte pieces: the base has its own
        if p.piece in have:
            report.skipped_in_base += 1
            continue
        if not keep(p.piece):
            report.skipped_script += 1
            continue
        piece = merged.pieces.add()
        piece.piece, piece.type = p.piece, NORMAL
        piece.score = 0.0 if score_mode == "zero" else floor - 1.0 - report.added
        have.add(p.piece)
        report.added += 1
    report.base_size, report.merged_size = len(base.pieces), len(merged.pieces)
    return merged


def detect_base(path: str | Path) -> tuple[str, Path]:
    """Which kind of tokenizer `--base` names, and its file.

    Example: "mistral/" (holds tokenizer.model) -> ("sentencepiece", mistral/tokenizer.model);
             "smollm2" -> ("byte-level-bpe", .../assets/smollm2/tokenizer.json)
    """
    from llmprep.tokenizer import EMBEDDED, embedded_path
    p = embedded_path(str(path)) if str(path) in EMBEDDED else Path(path)
    if p.is_dir():
        for name in ("tokenizer.model", "tokenizer.json"):
            if (p / name).is_file():
                p = p / name
                break
        else:
            raise ConfigError(f"--base {str(path)!r}: directory holds neither tokenizer.model nor "
                              "tokenizer.json; expected a SentencePiece model or an HF tokenizer.json")
    if not p.is_file():
        raise ConfigError(f"--base {str(path)!r}: no such file or directory")
    if p.suffix == ".json":
        return "byte-level-bpe", p
    head = p.read_bytes()[:1]
    if head == b"{":
        return "byte-level-bpe", p
    load_proto(p, flag="--base")  # raises a clear error when it is not a SentencePiece model
    return "sentencepiece", p


def merge_vocab(base: str | Path, add: str | Path, out: str | Path, *, keep_script: str = "cjk",
                score_mode: str = "below-base") -> MergeReport:
    """Merge the SentencePiece model `add` into `base` and save the result to `out`.

    SentencePiece base: writes tokenizer.model and an HF dir (tokenizer.json) that encodes the
    same ids. Byte-level BPE base (tokenizer.json): writes the HF dir only; there is no
    SentencePiece model for a byte-level tokenizer.
    Example: merge_vocab("mistral/", "zh_sp/", "merged/") -> merged/tokenizer.model, tokenizer.json
    """
    kind, base_file = detect_base(base)
    new = load_proto(resolve_sp_file(add, flag="--add"), flag="--add")
    report = MergeReport(str(base), str(add), kind, keep_script)
    with atomic_output_dir(out) as tmp:
        if kind == "sentencepiece":
            merged = merge_protos(load_proto(base_file), new, keep_script=keep_script,
                                  score_mode=score_mode, report=report)
            save_sp_hf_dir(merged, tmp, carry_from=base_file.parent)
        else:
            from llmprep.vocab.merge_bytelevel import merge_into_bytelevel
            merge_into_bytelevel(base_file, new, tmp, keep_script=keep_script, report=report)
        report.files = sorted(f.name for f in tmp.iterdir()) + [REPORT]
        write_json(tmp / REPORT, json.loads(json.dumps(report.__dict__)))
    return report

"""Train a SentencePiece vocabulary on a corpus: `llmprep vocab train`.

Defaults suit extending a LLaMA-family tokenizer: BPE (the base merges by piece score, so new
pieces need their BPE intermediates), `identity` normalization (the base does not NFKC-normalize,
so pieces must keep full-width punctuation as written), split digits, no byte fallback (the base
already has byte pieces).
"""

from __future__ import annotations

import io
import re
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Iterator, Sequence

import sentencepiece as spm
from tqdm import tqdm

from llmprep.errors import ConfigError
from llmprep.store import atomic_output_dir, write_json
from llmprep.vocab.corpus import corpus_files, iter_lines, reservoir_sample

MODEL_TYPES = ("bpe", "unigram")
REPORT = "train_report.json"


@dataclass
class TrainReport:
    """What `train_vocab` used and made; saved as DIR/train_report.json."""

    files: list[str]
    vocab_size: int
    model_type: str
    character_coverage: float
    max_sentences: int | None
    sentences_seen: int = 0
    sentences_used: int = 0
    characters_used: int = 0
    sampled: bool = False
    seconds: float = 0.0
    pieces: dict[str, int] = field(default_factory=dict)

    def summary(self) -> str:
        """One line for the terminal. Example: "trained bpe 8000 pieces on 5000/5000 sentences ..." """
        how = f"a sample of {self.sentences_used:,}" if self.sampled else f"all {self.sentences_used:,}"
        return (f"trained {self.model_type} vocabulary of {self.vocab_size:,} pieces on {how} of "
                f"{self.sentences_seen:,} sentences ({self.characters_used:,} characters) from "
                f"{len(self.files)} file(s) in {self.seconds:.1f}s")


def _check_options(vocab_size: int, model_type: str, character_coverage: float,
                   max_sentences: int | None) -> None:
    problems = []
    if vocab_size < 8:
        problems.append(f"--vocab-size {vocab_size}: expected an integer >= 8")
    if model_type not in MODEL_TYPES:
        problems.append(f"--model-type {model_type!r}: expected one of {', '.join(MODEL_TYPES)}")
    if not 0.9 <= character_coverage <= 1.0:
        problems.append(f"--character-coverage {character_coverage}: expected a value in [0.9, 1.0]")
    if max_sentences is not None and max_sentences < 1:
        problems.append(f"--max-sentences {max_sentences}: expected a positive integer")
    if problems:
        raise ConfigError("; ".join(problems))


def train_vocab(corpus: Sequence[str | Path], *, vocab_size: int, out: str | Path,
                model_type: str = "bpe", character_coverage: float = 0.9995,
                max_sentences: int | None = None, seed: int = 0) -> TrainReport:
    """Train a SentencePiece model on `corpus` and write DIR/tokenizer.model, .vocab and a report.

    Example: train_vocab(["zh.txt"], vocab_size=8000, out="zh_sp")
    -> zh_sp/tokenizer.model (8000 pieces), zh_sp/train_report.json
    """
    _check_options(vocab_size, model_type, character_coverage, max_sentences)
    files = corpus_files(corpus)
    report = TrainReport([str(f) for f in files], vocab_size, model_type, character_coverage,
                         max_sentences)
    start = time.perf_counter()
    stream = tqdm(iter_lines(files), desc="reading corpus", unit=" lines", leave=False)
    if max_sentences is not None:
        # Sampling needs the whole stream first; memory stays O(max_sentences).
        sentences, report.sentences_seen = reservoir_sample(stream, max_sentences, seed=seed)
        report.sampled = report.sentences_seen > len(sentences)
    else:
        sentences = None
    counted = _Counter(report)
    source: Iterator[str] = counted.wrap(iter(sentences) if sentences is not None else stream)
    model = io.BytesIO()
    spm.set_random_generator_seed(seed)
    try:
        spm.SentencePieceTrainer.train(
            sentence_iterator=source, model_writer=model, vocab_size=vocab_size,
            model_type=model_type, character_coverage=character_coverage,
            normalization_rule_name="identity", remove_extra_whitespaces=False, split_digits=True, byte_fallback=False,
            max_sentencepiece_length=16, input_sentence_size=0, shuffle_input_sentence=False,
            num_threads=2, minloglevel=2)
    except RuntimeError as exc:
        if "ocabulary size" not in str(exc):
            raise ConfigError(f"--corpus {', '.join(report.files)}: SentencePiece training failed: "
                              f"{exc}") from exc
        # e.g. "Vocabulary size too high (5000). Please set it to a value <= 29."
        limit = re.search(r"<= *(\d+)", str(exc))
        most = f"at most {limit.group(1)}" if limit else "a smaller value"
        floor = re.search(r"smaller than required_chars\. *\d+ vs (\d+)", str(exc))
        if floor:  # more distinct characters than pieces
            raise ConfigError(f"--vocab-size {vocab_size}: the corpus ({', '.join(report.files)}) "
                              f"has {floor.group(1)} characters to cover; expected at least that, "
                              "or a lower --character-coverage") from exc
        raise ConfigError(f"--vocab-size {vocab_size}: the corpus ({', '.join(report.files)}) "
                          f"cannot support it; expected {most}, or more text") from exc
    report.seconds = round(time.perf_counter() - start, 2)
    if sentences is None:
        report.sentences_seen = report.sentences_used
    with atomic_output_dir(out) as tmp:
        (tmp / "tokenizer.model").write_bytes(model.getvalue())
        sp = spm.SentencePieceProcessor(model_proto=model.getvalue())
        with open(tmp / "tokenizer.vocab", "w", encoding="utf-8") as fh:
            for i in range(sp.get_piece_size()):
                fh.write(f"{sp.id_to_piece(i)}\t{sp.get_score(i):g}\n")
        report.pieces = {"total": sp.get_piece_size(),
                         "normal": sum(1 for i in range(sp.get_piece_size()) if not (
                             sp.is_control(i) or sp.is_unknown(i) or sp.is_byte(i)))}
        write_json(tmp / REPORT, asdict(report))
    return report


class _Counter:
    """Count sentences and characters as SentencePiece pulls them from the iterator."""

    def __init__(self, report: TrainReport):
        self.report = report

    def wrap(self, lines: Iterator[str]) -> Iterator[str]:
        for line in lines:
            self.report.sentences_used += 1
            self.report.characters_used += len(line)
            yield line

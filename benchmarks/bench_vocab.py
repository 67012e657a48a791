"""Full-size vocabulary extension benchmark: 8,000 pieces from fortunes-zh `chinese` merged into
the Mistral v1 tokenizer, measured on the held-out Tang poems (`tang300`).

Usage: python benchmarks/bench_vocab.py [FORTUNES_DIR] [--vocab-size N]
Needs Debian fortunes-zh (default dir /usr/share/games/fortunes); installs nothing.
"""

from __future__ import annotations

import argparse
import re
import shutil
import site
import sys
import tempfile
from pathlib import Path

import sentencepiece as spm

from llmprep.vocab.compare import compare, render_table
from llmprep.vocab.merge import merge_protos, merge_vocab
from llmprep.vocab.spm_hf import load_proto
from llmprep.vocab.train import train_vocab


def fortune_lines(path: Path) -> list[str]:
    """Lines of a fortune file without ANSI colour escapes and `%` separators."""
    text = re.sub(r"\x1b\[[0-9;]*m", "", path.read_text(encoding="utf-8"))
    return [line for line in text.splitlines() if line.strip() and line.strip() != "%"]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("fortunes", nargs="?", default="/usr/share/games/fortunes")
    ap.add_argument("--vocab-size", type=int, default=8000)
    args = ap.parse_args()
    src = Path(args.fortunes)
    if not (src / "chinese").is_file():
        sys.exit(f"{src}/chinese not found: apt-get install fortunes-zh, or pass its folder")
    work = Path(tempfile.mkdtemp(prefix="bench_vocab_"))
    corpus = work / "chinese.txt"
    corpus.write_text("\n".join(fortune_lines(src / "chinese")) + "\n", encoding="utf-8")
    tang = fortune_lines(src / "tang300")
    base = work / "mistral"
    base.mkdir()
    shutil.copyfile(Path(site.getsitepackages()[0]) / "mistral_common/data/tokenizer.model.v1",
                    base / "tokenizer.model")
    print(train_vocab([corpus], vocab_size=args.vocab_size, out=work / "zh").summary())
    for rule in ("cjk", "han", "all"):
        print(merge_vocab(base, work / "zh", work / f"merged_{rule}", keep_script=rule).summary())
    seed = merge_protos(load_proto(base / "tokenizer.model"), load_proto(work / "zh/tokenizer.model"),
                        keep_script="all", score_mode="zero")
    (work / "seed").mkdir()
    (work / "seed/tokenizer.model").write_bytes(seed.SerializeToString())
    merge_vocab("smollm2", work / "zh", work / "smollm2_cjk")
    specs = [str(base / "tokenizer.model"), str(work / "seed/tokenizer.model")] + \
        [str(work / f"merged_{r}/tokenizer.model") for r in ("cjk", "han", "all")] + \
        [str(work / "merged_cjk"), "smollm2", str(work / "smollm2_cjk")]
    print(f"\nheld-out Tang poems ({sum(map(len, tang)):,} characters, {len(tang):,} lines):")
    print(render_table(compare(specs, tang)))
    english = [line for p in Path(__file__).resolve().parents[1].joinpath("src").rglob("*.py")
               for line in p.read_text(encoding="utf-8").splitlines() if line.strip() and line.isascii()]
    b = spm.SentencePieceProcessor(model_file=specs[0])
    for name, spec in (("seed", specs[1]), ("cjk", specs[2])):
        m = spm.SentencePieceProcessor(model_file=spec)
        changed = sum(b.encode(x) != m.encode(x) for x in english)
        print(f"{name}: {changed} of {len(english)} ASCII lines of llmprep source change ids vs base")
    shutil.rmtree(work)


if __name__ == "__main__":
    main()

"""Real text for the mix tests: the bundled sample's conversations, the GPL excerpt, Tang poems, fortunes-zh;
a benchmark built from the GPL preamble and Tang poems, and training rows that quote, paraphrase or only share
common phrases with it."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from helpers import write_jsonl

from llmprep.mix.decontaminate import BenchmarkIndex, DecontConfig

ASSETS = Path(__file__).resolve().parents[1] / "assets"
SAMPLE = Path(__file__).resolve().parents[2] / "src" / "llmprep" / "data" / "sample.jsonl"


def paragraphs(path: Path, min_words: int = 0) -> list[str]:
    """Blank-line separated paragraphs of a text asset, lines joined."""
    text = path.read_text(encoding="utf-8")
    out = [" ".join(p.split()) for p in text.split("\n\n") if p.strip()]
    return [p for p in out if len(p.split()) >= min_words]


def poems(path: Path = ASSETS / "tang300_excerpt.txt") -> list[tuple[str, str]]:
    """(title line, body) of each Tang poem of the excerpt."""
    out, title, body = [], None, []
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.startswith("《"):
            if title:
                out.append((title, "".join(body)))
            title, body = line, []
        elif not line.startswith("作者"):
            body.append(line.strip())
    if title:
        out.append((title, "".join(body)))
    return out


@pytest.fixture(scope="session")
def sample_rows() -> list[dict]:
    return [json.loads(line) for line in SAMPLE.read_text(encoding="utf-8").splitlines()]


@pytest.fixture(scope="session")
def gpl_paragraphs() -> list[str]:
    return paragraphs(ASSETS / "english_excerpt.txt", min_words=30)


@pytest.fixture(scope="session")
def tang_poems() -> list[tuple[str, str]]:
    return poems()


@pytest.fixture(scope="session")
def fortunes() -> list[str]:
    """Lines of the fortunes-zh excerpt that are Chinese prose (at least 20 characters, mostly Han)."""
    lines = [x.strip() for x in (ASSETS / "zh_fortunes_excerpt.txt").read_text(encoding="utf-8").splitlines()]
    return [x for x in lines if len(x) >= 20 and sum("\u4e00" <= c <= "\u9fff" for c in x) > len(x) / 2]


@pytest.fixture(scope="session")
def bench(tmp_path_factory, gpl_paragraphs, tang_poems):
    d = tmp_path_factory.mktemp("bench")
    write_jsonl(d / "gpl.jsonl", [{"id": i, "question": p, "choices": ["yes", "no"], "answer": 0}
                                  for i, p in enumerate(gpl_paragraphs[:6])])
    (d / "tang.txt").write_text("\n".join(title + body for title, body in tang_poems[:10]) + "\n", encoding="utf-8")
    pq.write_table(pa.table({"prompt": ["Name the three branches of the United States federal government",
                                        "Why?"]}), d / "short.parquet")
    return d, BenchmarkIndex.build(DecontConfig((str(d / "gpl.jsonl"), str(d / "tang.txt"), str(d / "short.parquet"))))


@pytest.fixture(scope="session")
def decont_rows(gpl_paragraphs, tang_poems) -> dict[str, list[dict]]:
    """Training conversations against `bench`: verbatim quotes (caught), paraphrases and common phrases (not)."""
    quote_en = " ".join(gpl_paragraphs[3].split()[10:30])  # 20 words of item 4, inside a longer reply
    quote_zh = tang_poems[1][1][:17]  # "浮云终日行，游子久不至。三夜频梦君": 15 characters without punctuation
    return {
        "verbatim-en": [{"role": "user", "content": "What does the GPL say about passing on freedoms?"},
                        {"role": "assistant", "content": f"It says, roughly: {quote_en}. That is the key duty."}],
        "verbatim-zh": [{"role": "user", "content": "背一下杜甫的诗"},
                        {"role": "assistant", "content": f"好的：{quote_zh}……"}],
        "paraphrase-en": [{"role": "user", "content": "Explain free software."},
                          {"role": "assistant", "content": "Free software is about liberty rather than cost: you "
                           "may share copies, even sell them, get the code, change it, and reuse parts of it in "
                           "new programs, and you should be told that you can."}],
        "paraphrase-zh": [{"role": "user", "content": "这首诗讲了什么？"},
                          {"role": "assistant",
                           "content": "诗人梦见了远方的李白，醒来后担心朋友的处境，感叹他名满天下却一生坎坷。"}],
        "common-en": [{"role": "user", "content": "Is the GNU General Public License a free software license?"},
                      {"role": "assistant", "content": "Yes: the GNU General Public License guarantees your freedom "
                       "to share and change software."}],
        "common-zh": [{"role": "user", "content": "江湖多风波是什么意思？"},
                      {"role": "assistant", "content": "“江湖多风波，舟楫恐失坠”是说世路艰险，要处处小心。"}],
        "short-item-whole": [{"role": "user", "content": "Quiz: name the three branches of the United States "
                              "federal government."},
                             {"role": "assistant", "content": "Legislative, executive, judicial."}],
    }

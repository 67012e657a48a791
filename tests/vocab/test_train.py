import json

import pytest
import sentencepiece as spm

from llmprep.errors import ConfigError
from llmprep.vocab.train import train_vocab
from llmprep.vocab.corpus import reservoir_sample

from vocab_assets import ZH


def test_trained_model_covers_corpus_and_reports(zh_sp, zh_lines):
    sp = spm.SentencePieceProcessor(model_file=str(zh_sp / "tokenizer.model"))
    assert sp.get_piece_size() == 3000
    report = json.loads((zh_sp / "train_report.json").read_text(encoding="utf-8"))
    assert report["sentences_used"] == len(zh_lines) and not report["sampled"]
    assert report["characters_used"] == sum(map(len, zh_lines))
    # identity normalization: lines without a rare (unknown) character come back exactly,
    # full-width punctuation included; no byte fallback, so rare characters are <unk>
    encoded = sp.encode(zh_lines)
    unk = sum(ids.count(sp.unk_id()) for ids in encoded)
    assert unk / sum(map(len, encoded)) < 0.005
    clean = [(line, ids) for line, ids in zip(zh_lines, encoded) if sp.unk_id() not in ids]
    assert len(clean) > len(zh_lines) / 2
    assert all(sp.decode(ids) == line for line, ids in clean)
    assert any(len(sp.id_to_piece(i).strip("▁")) >= 2 for i in range(sp.get_piece_size()))


def test_max_sentences_samples(tmp_path, zh_lines):
    report = train_vocab([ZH], vocab_size=2700, out=tmp_path / "s", max_sentences=200)
    assert report.sampled and report.sentences_used == 200
    assert report.sentences_seen == len(zh_lines)


def test_reservoir_sample_is_uniform_subset():
    sample, seen = reservoir_sample(iter(str(i) for i in range(1000)), 10, seed=1)
    assert seen == 1000 and len(set(sample)) == 10 and set(sample) <= {str(i) for i in range(1000)}


@pytest.mark.parametrize("content,expected", [
    (None, "no such file"),
    (b"\n\n", "file is empty"),
    (b"ok line\n\xff\xfe broken\n", "line 2 is not UTF-8"),
])
def test_bad_corpus_stops_with_message_and_no_output(tmp_path, content, expected):
    corpus = tmp_path / "corpus.txt"
    if content is not None:
        corpus.write_bytes(content)
    out = tmp_path / "out"
    with pytest.raises(ConfigError, match=expected) as err:
        train_vocab([corpus], vocab_size=100, out=out)
    assert str(corpus) in str(err.value)
    assert not out.exists() and list(tmp_path.iterdir()) == ([corpus] if content else [])


def test_vocab_size_too_large_for_corpus(tmp_path):
    corpus = tmp_path / "tiny.txt"
    corpus.write_text("你好世界\nhello world\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"--vocab-size 5000: .*tiny.txt.*expected at most \d+"):
        train_vocab([corpus], vocab_size=5000, out=tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_vocab_size_below_character_count(tmp_path):
    with pytest.raises(ConfigError, match=r"--vocab-size 500: .* characters to cover"):
        train_vocab([ZH], vocab_size=500, out=tmp_path / "out")

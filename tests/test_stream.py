"""Streaming wrap: same blocks as in-memory packing, BOS/EOS per document, bounded memory, errors."""

import json
import shutil
import tracemalloc
from pathlib import Path

import datasets
import pytest

from llmprep.errors import ConfigError
from llmprep.pack import add_document_boundaries, pack_examples
from llmprep.stream import prepare_stream, txt_documents
from llmprep.tokenizer import load_tokenizer

P = -100
PARAGRAPHS = ["Hello world.\nSecond line.", "Another paragraph here.", "Third.", "A fourth and longer one, "
              "with enough words to cross a block boundary or two."]


@pytest.fixture(scope="module")
def tok():
    return load_tokenizer("smollm2")


@pytest.fixture
def corpus(tmp_path):
    (tmp_path / "a.txt").write_text("\n\n".join(PARAGRAPHS) + "\n", encoding="utf-8")
    (tmp_path / "b.jsonl").write_text('{"text": "json doc one"}\n{"body": 1}\nnot json\n{"text": "json doc two"}\n')
    return tmp_path


def test_txt_documents_paragraphs_and_pieces(tmp_path):
    path = tmp_path / "t.txt"
    path.write_text("ab cd\nef\n\n\ngh\n")
    assert list(txt_documents(path)) == [("ab cd\nef", True, True), ("gh", True, True)]
    assert list(txt_documents(path, mode="line")) == [("ab cd", True, True), ("ef", True, True), ("gh", True, True)]
    # a document longer than max_doc_chars is read in pieces of whole reads (readline(4) gives
    # "ab c", "d\n", "ef\n"); only the first/last get BOS/EOS; an empty last piece carries the EOS
    assert list(txt_documents(path, max_doc_chars=4)) == [
        ("ab c", True, False), ("d\nef\n", False, False), ("", False, True), ("gh", True, True)]


def test_stream_matches_in_memory_wrap(tok, corpus):
    out = corpus / "out"
    report = prepare_stream([str(corpus / "a.txt"), str(corpus / "b.jsonl")], tokenizer=tok, out=out,
                            block_size=8, remainder="pad", batch_size=2)
    texts = PARAGRAPHS + ["json doc one", "json doc two"]
    docs = [add_document_boundaries(tok(t)["input_ids"], tok) for t in texts]
    expected, stats = pack_examples({"input_ids": docs, "labels": docs}, strategy="wrap", max_length=8,
                                    pad_token_id=tok.pad_token_id, remainder="pad")
    ds = datasets.load_from_disk(str(out))
    assert isinstance(ds, datasets.DatasetDict) and list(ds) == ["train"]
    assert ds["train"][:] == expected
    assert report["documents"] == 6 and report["rejected"] == 2
    for key in ("rows", "fill", "padding_tokens", "remainder_tokens_dropped", "tokens"):
        assert report["packing"][key] == stats[key], key
    assert json.loads((out / "report.json").read_text()) == report
    rejected = [json.loads(line) for line in (out / "rejected.jsonl").read_text().splitlines()]
    assert [r["line"] for r in rejected] == [2, 3]
    assert rejected[0]["reason"] == "missing or not a string (the --text-field is 'text')"
    assert rejected[1]["reason"].startswith("malformed JSON")
    assert not list(corpus.glob(".out.tmp-*"))


def test_stream_golden_first_block(tok, corpus):
    out = corpus / "out"
    prepare_stream([str(corpus / "a.txt")], tokenizer=tok, out=out, block_size=8, remainder="drop")
    first = datasets.load_from_disk(str(out))["train"][0]
    eos = tok.eos_token_id
    # "Hello world.\nSecond line." is exactly 7 tokens + EOS: one document fills the first block
    assert tok.decode(first["input_ids"]) == "Hello world.\nSecond line.<|im_end|>"
    assert first["input_ids"][-1] == eos and first["labels"][0] == P
    assert first["position_ids"] == list(range(8)) and first["seq_lengths"] == [8]


def test_stream_bos_tokenizer_never_double_bos(corpus):
    import mistral_common
    from transformers import AutoTokenizer

    d = corpus / "mistral"
    d.mkdir()
    shutil.copy(Path(mistral_common.__file__).parent / "data" / "tokenizer.model.v1", d / "tokenizer.model")
    (d / "tokenizer_config.json").write_text(json.dumps({
        "tokenizer_class": "LlamaTokenizer", "add_bos_token": True, "bos_token": "<s>", "eos_token": "</s>"}))
    mistral = AutoTokenizer.from_pretrained(str(d))
    assert len(mistral) == 32000
    (corpus / "m.txt").write_text("<s>starts with a literal bos\n\nplain text\n")
    report = prepare_stream([str(corpus / "m.txt")], tokenizer=mistral, out=corpus / "o", block_size=64,
                            remainder="keep")
    row = datasets.load_from_disk(str(corpus / "o"))["train"][0]
    starts = [0] + [sum(row["seq_lengths"][:i]) for i in range(1, len(row["seq_lengths"]))]
    assert [row["input_ids"][s] for s in starts] == [1, 1]       # every document starts with BOS ...
    assert [row["input_ids"][s + 1] for s in starts] != [1, 1]   # ... and only one
    assert row["input_ids"].count(1) == 2 and row["input_ids"].count(2) == 2
    assert report["boundaries"] == {"bos": 1, "eos": 2}


def test_stream_python_memory_does_not_grow_with_corpus(tok, tmp_path):
    """Python-heap peak (tracemalloc) with a 2.4 MB corpus stays near one 100 kB batch."""
    line = "The quick brown fox jumps over the lazy dog. " * 4 + "\n\n"
    path = tmp_path / "big.txt"
    path.write_text(line * 12_000)
    assert path.stat().st_size > 2_000_000
    tracemalloc.start()
    report = prepare_stream([str(path)], tokenizer=tok, out=tmp_path / "o", block_size=256,
                            batch_chars=100_000)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert report["documents"] == 12_000
    assert peak < 8_000_000, peak


def test_stream_errors_list_every_problem(tok, tmp_path):
    (tmp_path / "x.csv").write_text("a")
    with pytest.raises(ConfigError) as err:
        prepare_stream([str(tmp_path / "missing.txt"), str(tmp_path / "x.csv")], tokenizer=tok,
                       out=tmp_path / "o", block_size=0, remainder="trim")
    msg = str(err.value)
    assert "missing.txt" in msg and "not a file" in msg
    assert "reads .txt or .jsonl (or .gz of them), got '.csv'" in msg
    assert "--block-size 0" in msg and "--remainder 'trim'" in msg
    assert not (tmp_path / "o").exists()

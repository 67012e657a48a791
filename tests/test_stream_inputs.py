"""--stream input handling: gzip, non-UTF-8 bytes and bad JSONL lines are rejected with file:line and
the raw record; a run that writes no block fails and leaves nothing behind."""

import gzip
import json

import datasets
import pytest

from llmprep.errors import LlmprepError
from llmprep.stream import prepare_stream
from llmprep.tokenizer import load_tokenizer


def test_gzip_text_with_bad_bytes(tmp_path):
    src = tmp_path / "corpus.txt.gz"
    with gzip.open(src, "wb") as fh:
        fh.write(b"good line one\n\n\xff\xfe bad\n\nmore good text here\n")
    report = prepare_stream([str(src)], tokenizer=load_tokenizer("smollm2"), out=tmp_path / "o", block_size=4)
    rejects = [json.loads(x) for x in (tmp_path / "o" / "rejected.jsonl").read_text().splitlines()]
    assert rejects == [{"source": str(src), "line": 3, "field": None, "reason": "not valid UTF-8",
                        "record": "\ufffd\ufffd bad"}]
    assert report["documents"] == 2 and report["rejected"] == 1
    assert datasets.load_from_disk(str(tmp_path / "o"))["train"].num_rows == 2


def test_jsonl_rejects_carry_the_record(tmp_path):
    src = tmp_path / "docs.jsonl"
    src.write_bytes(b'{"text": "ok doc here"}\n\xff\n{"text": 3}\n{broken\n')
    prepare_stream([str(src)], tokenizer=load_tokenizer("smollm2"), out=tmp_path / "o", block_size=2)
    rejects = [json.loads(x) for x in (tmp_path / "o" / "rejected.jsonl").read_text().splitlines()]
    assert [(r["line"], r["field"]) for r in rejects] == [(2, None), (3, "text"), (4, None)]
    assert "not valid UTF-8" in rejects[0]["reason"] and rejects[1]["record"] == {"text": 3}
    assert "malformed JSON" in rejects[2]["reason"] and rejects[2]["record"] == "{broken"


def test_no_block_is_an_error_and_writes_nothing(tmp_path):
    src = tmp_path / "docs.jsonl"
    src.write_text('{"body": "x"}\n')
    with pytest.raises(LlmprepError, match="wrote no block.*1 rejected"):
        prepare_stream([str(src)], tokenizer=load_tokenizer("smollm2"), out=tmp_path / "o", block_size=8)
    assert not (tmp_path / "o").exists()


def test_directory_input_expands(tmp_path):
    folder = tmp_path / "corpus"
    folder.mkdir()
    for i in range(3):
        (folder / f"part{i}.txt").write_text(f"document number {i} with some words\n")
    report = prepare_stream([str(folder)], tokenizer=load_tokenizer("smollm2"), out=tmp_path / "o", block_size=4)
    assert report["documents"] == 3 and len(report["inputs"]) == 3

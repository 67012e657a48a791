"""Inputs and --out as fsspec URIs (the code path s3:// and gs:// take), tested with file:// URIs:
the same rows, report and rejects as local paths, sources named by their URI."""

import json

import datasets
import pytest
from helpers import a, u, write_jsonl

import llmprep.prepare as prep
from llmprep.errors import ConfigError
from llmprep.executor import storage
from llmprep.prepare import PrepareConfig, run


@pytest.fixture
def inputs(tmp_path, monkeypatch):
    monkeypatch.setattr(prep, "SHARD_SIZE", 5)
    d = tmp_path / "in"
    d.mkdir()
    write_jsonl(d / "a.jsonl", [{"messages": [u(f"Q{i}"), a(f"A{i}")]} for i in range(12)] + ["{bad"])
    (d / "b.json").write_text(json.dumps([{"question": f"q{i}", "answer": f"a{i}"} for i in range(7)]))
    return d


def test_file_uri_inputs_and_out_match_local_paths(inputs, tmp_path):
    opts = dict(progress=False, cache=False, num_proc=2, test_size=3)
    local = run(PrepareConfig(**opts), [str(inputs)], out=tmp_path / "local")
    uri_out = f"file://{tmp_path}/remote"
    remote = run(PrepareConfig(**opts), [f"file://{inputs}/", f"file://{inputs}/*.json"], out=uri_out)
    assert remote.out == uri_out and not list(tmp_path.glob("remote.tmp-*"))
    dl, dr = datasets.load_from_disk(str(tmp_path / "local")), datasets.load_from_disk(str(tmp_path / "remote"))
    for split in ("train", "test"):
        assert dl[split].to_list() == dr[split].to_list()
    # b.json's q0..q6/a0..a6 repeat a.jsonl's Q0..Q6/A0..A6 up to case: --dedup exact (the default) rejects them,
    # naming the kept copy by its URI
    assert remote.report["records"] == local.report["records"] == {"read": 20, "kept": 12, "rejected": 8,
                                                                    "dropped": 0}
    assert [x["path"] for x in remote.report["inputs"]] == [f"file://{inputs}/a.jsonl", f"file://{inputs}/b.json"]
    bad, *dups = remote.rejected
    assert (bad.source, bad.line) == (f"file://{inputs}/a.jsonl", 13)
    assert [(d.line, d.duplicate_of) for d in dups] == [(i, f"file://{inputs}/a.jsonl:{i}") for i in range(1, 8)]
    assert [x["sha256"] for x in remote.report["inputs"]] == [x["sha256"] for x in local.report["inputs"]]
    assert len(remote.splits["test"]) == 3


def test_uri_errors_name_the_input_and_refuse_foreign_out(inputs, tmp_path):
    with pytest.raises(ConfigError, match="no such file, directory or matching glob"):
        storage.expand([f"file://{tmp_path}/missing/*.jsonl"])
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "precious.txt").write_text("keep me")
    with pytest.raises(ConfigError, match="holds files llmprep did not write"):
        run(PrepareConfig(progress=False, cache=False), [str(inputs)], out=f"file://{tmp_path}/mine")
    assert (tmp_path / "mine" / "precious.txt").read_text() == "keep me"

"""`llmprep cache info|clear|prune` and prepare's --executor/--ray-address/--stream flags."""

import json

import datasets
from click.testing import CliRunner
from helpers import a, u, write_jsonl

from llmprep.cli import main


def _prepare(tmp_path, *flags):
    src = write_jsonl(tmp_path / "c.jsonl", [{"messages": [u(f"Q {i}?"), a(f"A {i}.")]} for i in range(30)])
    return CliRunner().invoke(main, ["prepare", str(src), "--out", str(tmp_path / "o"), "--quiet",
                                     "--cache-dir", str(tmp_path / "cache"), *flags])


def test_cache_info_prune_clear(tmp_path):
    res = _prepare(tmp_path)
    assert res.exit_code == 0, res.output
    cache = ["--cache-dir", str(tmp_path / "cache")]
    info = CliRunner().invoke(main, ["cache", "info", *cache])
    assert info.exit_code == 0 and "entries: 1 " in info.output and "last run: llmprep" in info.output
    as_json = json.loads(CliRunner().invoke(main, ["cache", "info", "--json", *cache]).output)
    assert as_json["entries"] == 1 and as_json["bytes"] > 0 and len(as_json["last_run"]["content"]) == 1
    kept = CliRunner().invoke(main, ["cache", "prune", "--max-size", "20G", *cache])
    assert kept.exit_code == 0 and "removed 0 entries" in kept.output
    pruned = CliRunner().invoke(main, ["cache", "prune", "--max-size", "1k", *cache])
    assert "removed 1 entries" in pruned.output
    bad = CliRunner().invoke(main, ["cache", "prune", "--max-size", "lots", *cache])
    assert bad.exit_code != 0 and "--max-size 'lots'" in bad.output and "20G" in bad.output
    _prepare(tmp_path)
    cleared = CliRunner().invoke(main, ["cache", "clear", *cache])
    assert "removed 1 entries" in cleared.output
    assert json.loads(CliRunner().invoke(main, ["cache", "info", "--json", *cache]).output)["entries"] == 0


def test_run_json_says_executor_tasks_and_cache(tmp_path):
    for expected_hits, why in ((0, {"new data": 1}), (1, {})):
        res = _prepare(tmp_path, "--num-proc", "1")
        assert res.exit_code == 0, res.output
        info = json.loads((tmp_path / "o" / "run.json").read_text())
        assert info["executor"] == {"name": "local", "workers": 1, "tasks": 1, "shards": 1}
        assert info["cache"]["hits"] == expected_hits and info["cache"]["computed"] == 1 - expected_hits
        assert set(info["seconds"]) >= {"plan", "shards", "assemble", "total"}
        assert info["cache"]["miss_reasons"] == why  # in the file itself


def test_executor_flags_are_checked(tmp_path):
    res = _prepare(tmp_path, "--ray-address", "127.0.0.1:6379")
    assert res.exit_code != 0 and "--ray-address needs --executor ray" in res.output
    res = _prepare(tmp_path, "--executor", "spark")
    assert res.exit_code != 0 and "'spark' is not one of 'local', 'ray'" in res.output


def test_stream_is_an_alias_of_pack_wrap(tmp_path):
    src = write_jsonl(tmp_path / "d.jsonl", [{"text": f"document {i} " + "words " * i} for i in range(20)])
    outs = {}
    for name, flags in (("stream", ["--stream"]), ("plain", [])):
        res = CliRunner().invoke(main, ["prepare", str(src), "--out", str(tmp_path / name), "--quiet", "--no-cache",
                                        "--pack", "wrap", "--block-size", "16", *flags])
        assert res.exit_code == 0, res.output
        outs[name] = datasets.load_from_disk(str(tmp_path / name))["train"].to_list()
    assert outs["stream"] == outs["plain"] and len(outs["plain"]) > 5

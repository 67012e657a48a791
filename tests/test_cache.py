"""The shard cache: a second identical run is served from disk with identical output; anything that
shaped the tokens (tokenizer, template, options, data) misses."""

import json

import numpy as np

from llmprep.prepare import PrepareConfig, run


def _chats(path, n=30, extra=""):
    rows = [{"messages": [{"role": "user", "content": f"Question {i}{extra}"},
                          {"role": "assistant", "content": "Answer " * (i + 1)}]} for i in range(n)]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


def _ids(result):
    return result.splits["train"]["input_ids"], result.splits["train"]["labels"]


def test_second_run_hits_and_matches(tmp_path):
    src = _chats(tmp_path / "a.jsonl")
    cfg = dict(cache_dir=str(tmp_path / "cache"), progress=False, num_proc=1)
    first = run(PrepareConfig(**cfg), [src])
    second = run(PrepareConfig(**cfg), [src])
    assert first.cache == {"enabled": True, "hits": 0, "misses": 1}
    assert second.cache == {"enabled": True, "hits": 1, "misses": 0}
    assert _ids(first) == _ids(second)
    assert first.report == second.report


def test_changes_that_shape_tokens_miss(tmp_path, mistral_dir):
    src = _chats(tmp_path / "a.jsonl")
    base = dict(cache_dir=str(tmp_path / "cache"), progress=False, num_proc=1)
    run(PrepareConfig(**base), [src])
    for change in [dict(max_length=64), dict(template="zephyr"), dict(train_on_prompt=True),
                   dict(tokenizer=str(mistral_dir), template="mistral")]:
        again = run(PrepareConfig(**base, **change), [src])
        assert again.cache["hits"] == 0, change
    edited = run(PrepareConfig(**base), [_chats(tmp_path / "a.jsonl", extra="!")])
    assert edited.cache["hits"] == 0


def test_cached_rejects_and_drops_still_counted(tmp_path):
    src = tmp_path / "a.jsonl"
    _chats(src, 5)
    with open(src, "a") as fh:
        fh.write("{broken\n")
    cfg = dict(cache_dir=str(tmp_path / "cache"), progress=False, num_proc=1, max_length=39, truncation="drop")
    first = run(PrepareConfig(**cfg), [str(src)])
    second = run(PrepareConfig(**cfg), [str(src)])
    assert second.cache["hits"] == 1
    assert first.report["records"]["dropped"] > 0 and first.report["records"]["kept"] > 0
    assert first.report["records"] == second.report["records"]
    assert [r.to_json() for r in first.dropped] == [r.to_json() for r in second.dropped]
    assert [r.to_json() for r in first.rejected] == [r.to_json() for r in second.rejected]


def test_no_cache_writes_nothing(tmp_path):
    src = _chats(tmp_path / "a.jsonl")
    res = run(PrepareConfig(cache=False, cache_dir=str(tmp_path / "cache"), progress=False), [src])
    assert res.cache["enabled"] is False
    assert not (tmp_path / "cache").exists()
    assert np.all(np.asarray(res.splits["train"]["attention_mask"][0]) == 1)

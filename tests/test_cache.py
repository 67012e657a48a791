"""The shard cache: content-addressed (renames and moves hit, new files alone are computed), every miss
explained, corrupt entries recomputed, read-only or full cache dirs survived, LRU pruning, and two
runs sharing one cache dir at once."""

import json
import multiprocessing as mp
import os

import numpy as np
import pytest
from helpers import mount_tmpfs

import llmprep
import llmprep.prepare as prep
from llmprep.cache import VERSION, ShardCache, parse_size
from llmprep.prepare import PrepareConfig, run


def _chats(path, n=30, extra=""):
    rows = [{"messages": [{"role": "user", "content": f"Question {i}{extra}"},
                          {"role": "assistant", "content": "Answer " * (i + 1)}]} for i in range(n)]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


def _ids(result):
    return result.splits["train"]["input_ids"], result.splits["train"]["labels"]


def _files(d):
    return {str(f.relative_to(d)): f.read_bytes() for f in sorted(d.rglob("*")) if f.is_file() and f.name != "run.json"}


def _entries(cache_dir):
    return sorted(p for p in (cache_dir / f"shards-v{VERSION}").glob("*/*.arrow"))


def test_second_run_hits_and_matches(tmp_path):
    src = _chats(tmp_path / "a.jsonl")
    cfg = dict(cache_dir=str(tmp_path / "cache"), progress=False, num_proc=1)
    first = run(PrepareConfig(**cfg), [src])
    second = run(PrepareConfig(**cfg), [src])
    assert first.cache == {"enabled": True, "hits": 0, "misses": 1}
    assert second.cache == {"enabled": True, "hits": 1, "misses": 0}
    assert _ids(first) == _ids(second)
    assert first.report == second.report
    assert first.run_info["cache"]["miss_reasons"] == {"new data": 1}


def test_changes_that_shape_tokens_miss_and_say_why(tmp_path, mistral_dir, monkeypatch):
    src = _chats(tmp_path / "a.jsonl")
    base = dict(cache_dir=str(tmp_path / "cache"), progress=False, num_proc=1)
    run(PrepareConfig(**base), [src])
    for change, why in [(dict(max_length=64), "option --max-length changed"),
                        (dict(template="zephyr"), "template changed"),
                        (dict(train_on_prompt=True), "option --train-on-prompt changed"),
                        (dict(history="last"), "option --history changed"),
                        (dict(train_roles="assistant,user"), "option --train-roles changed"),
                        (dict(tokenizer=str(mistral_dir), template="mistral"), "tokenizer changed")]:
        again = run(PrepareConfig(**base, **change), [src])
        assert again.cache["hits"] == 0, change
        assert again.run_info["cache"]["miss_reasons"] == {why: 1}, change
        run(PrepareConfig(**base), [src])  # back to the base settings: the manifest's last run
    monkeypatch.setattr(llmprep, "__version__", "9.9.9")
    assert run(PrepareConfig(**base), [src]).run_info["cache"]["miss_reasons"] == {"llmprep version changed": 1}
    monkeypatch.undo()
    run(PrepareConfig(**base), [src])
    import llmprep.cache as cache_module  # an llmprep that stores shards in a new format reads none of the old

    import llmprep.executor.task as task_module

    monkeypatch.setattr(cache_module, "VERSION", cache_module.VERSION + 1)
    monkeypatch.setattr(task_module, "_CACHES", {})  # a new process: no ShardCache of the old format in hand
    assert run(PrepareConfig(**base), [src]).run_info["cache"]["miss_reasons"] == {
        "cache format changed (this llmprep stores shards differently)": 1}
    monkeypatch.undo()
    edited = run(PrepareConfig(**base), [_chats(tmp_path / "a.jsonl", extra="!")])
    assert edited.cache["hits"] == 0 and edited.run_info["cache"]["miss_reasons"] == {"new data": 1}
    # options applied after the cache (split, padding, bfd) reuse every shard
    split = run(PrepareConfig(**base, test_size=0.2, padding="longest", pack="bfd"), [src])
    assert split.cache == {"enabled": True, "hits": 1, "misses": 0}


def test_content_addressed_rename_move_and_new_file(tmp_path, monkeypatch):
    monkeypatch.setattr(prep, "SHARD_SIZE", 8)
    d = tmp_path / "data"
    d.mkdir()
    a = _chats(d / "a.jsonl", 20)
    with open(a, "a") as fh:
        fh.write("{broken\n")  # line 21, in a's third shard
    base = dict(cache_dir=str(tmp_path / "cache"), progress=False, num_proc=1, test_size=3)
    first = run(PrepareConfig(**base), [str(d)], out=tmp_path / "o1")
    assert first.cache == {"enabled": True, "hits": 0, "misses": 3}
    moved = tmp_path / "elsewhere"
    moved.mkdir()
    os.replace(a, moved / "renamed.jsonl")
    _chats(moved / "b_new.jsonl", 5, extra="?")
    second = run(PrepareConfig(**base), [str(moved)], out=tmp_path / "o2")
    assert second.cache == {"enabled": True, "hits": 3, "misses": 1}  # only the new file is computed
    assert second.run_info["cache"]["miss_reasons"] == {"new data": 1}
    (reject,) = second.rejected
    assert (reject.source, reject.line) == (str(moved / "renamed.jsonl"), 21)  # file:line of this run
    assert second.report["records"]["kept"] == 25


def test_unchanged_rerun_is_byte_identical(tmp_path):
    src = _chats(tmp_path / "a.jsonl", 40)
    cfg = dict(cache_dir=str(tmp_path / "cache"), progress=False, num_proc=1, test_size=0.1, pack="bfd")
    run(PrepareConfig(**cfg), [src], out=tmp_path / "o1")
    again = run(PrepareConfig(**cfg), [src], out=tmp_path / "o2")
    assert again.cache["misses"] == 0
    assert _files(tmp_path / "o1") == _files(tmp_path / "o2")


@pytest.mark.parametrize("damage", ["truncate", "bitflip", "empty"])
def test_corrupt_entry_is_a_miss_recomputed_and_said(tmp_path, capfd, damage):
    src = _chats(tmp_path / "a.jsonl")
    cfg = dict(cache_dir=str(tmp_path / "cache"), progress=False, num_proc=1)
    run(PrepareConfig(**cfg), [src], out=tmp_path / "o1")
    (entry,) = _entries(tmp_path / "cache")
    good = entry.read_bytes()
    blob = {"truncate": good[: len(good) // 2], "empty": b"",
            "bitflip": good[:100] + bytes([good[100] ^ 0x10]) + good[101:]}[damage]
    entry.write_bytes(blob)
    capfd.readouterr()
    again = run(PrepareConfig(**cfg), [src], out=tmp_path / "o2")
    err = capfd.readouterr().err
    assert again.cache == {"enabled": True, "hits": 0, "misses": 1}
    (why,) = again.run_info["cache"]["miss_reasons"]
    assert why.startswith("corrupt entry") and "corrupt entry" in err and "recomputed" in err
    assert entry.read_bytes() == good  # overwritten with a good entry
    assert _files(tmp_path / "o1") == _files(tmp_path / "o2")


def test_read_only_cache_dir_runs_without_cache_and_warns_once(tmp_path, capfd):
    src = _chats(tmp_path / "a.jsonl")
    ro = tmp_path / "ro"
    unmount = mount_tmpfs(ro, "1m", read_only=True)
    try:
        capfd.readouterr()
        res = run(PrepareConfig(cache_dir=str(ro), progress=False, num_proc=2), [src], out=tmp_path / "o")
        err = capfd.readouterr().err
    finally:
        unmount()
    assert err.count("warning") == 1 and "Read-only file system" in err and "without the cache" in err
    assert res.cache["enabled"] is False and res.report["records"]["kept"] == 30


def test_full_cache_dir_goes_on_without_writing(tmp_path, capfd, monkeypatch):
    monkeypatch.setattr(prep, "SHARD_SIZE", 5)
    src = _chats(tmp_path / "a.jsonl", 40)
    full = tmp_path / "full"
    unmount = mount_tmpfs(full, "8k")
    try:
        capfd.readouterr()
        res = run(PrepareConfig(cache_dir=str(full), progress=False, num_proc=2), [src], out=tmp_path / "o")
        err = capfd.readouterr().err
        leftovers = [p for p in full.rglob("*.tmp")]
    finally:
        unmount()
    assert "No space left on device" in err and "without writing to the cache" in err
    assert err.count("warning") <= 2  # once per worker process at most
    assert leftovers == [] and res.report["records"]["kept"] == 40
    run(PrepareConfig(cache=False, progress=False, num_proc=1), [src], out=tmp_path / "ref")
    assert _files(tmp_path / "o") == _files(tmp_path / "ref")


def _run_in_child(src, out, cache_dir, q):
    try:
        res = run(PrepareConfig(cache_dir=cache_dir, progress=False, num_proc=1), [src], out=out)
        q.put(("ok", res.report["records"]["kept"]))
    except BaseException as exc:  # report anything to the parent
        q.put(("error", repr(exc)))


def test_two_runs_sharing_one_cache_dir_at_once(tmp_path, monkeypatch):
    monkeypatch.setattr(prep, "SHARD_SIZE", 3)
    src = _chats(tmp_path / "a.jsonl", 60)
    ctx = mp.get_context("fork")
    q = ctx.Queue()
    procs = [ctx.Process(target=_run_in_child, args=(src, str(tmp_path / f"o{i}"), str(tmp_path / "cache"), q))
             for i in range(2)]
    for p in procs:
        p.start()
    results = [q.get(timeout=120) for _ in procs]
    for p in procs:
        p.join(30)
    assert results == [("ok", 60), ("ok", 60)]
    assert _files(tmp_path / "o0") == _files(tmp_path / "o1")
    third = run(PrepareConfig(cache_dir=str(tmp_path / "cache"), progress=False, num_proc=1), [src])
    assert third.cache["misses"] == 0  # every entry complete and verified


def test_prune_evicts_least_recently_used(tmp_path, monkeypatch):
    monkeypatch.setattr(prep, "SHARD_SIZE", 10)
    src = _chats(tmp_path / "a.jsonl", 30)
    cache_dir = tmp_path / "cache"
    run(PrepareConfig(cache_dir=str(cache_dir), progress=False, num_proc=1), [src])
    entries = _entries(cache_dir)
    assert len(entries) == 3
    for age, p in enumerate(entries):  # entries[0] used last, entries[2] longest ago
        os.utime(p, (1_000_000 - age * 1000, 1_000_000 - age * 1000))
    cache = ShardCache(cache_dir)
    size = sum(p.stat().st_size for p in entries)
    removed, freed = cache.prune(size - 1)
    assert removed == 1 and not entries[2].exists() and entries[0].exists() and entries[1].exists()
    assert freed > 0 and cache.info()["entries"] == 2
    assert parse_size("20G") == 20 * 10**9 and parse_size("1.5M") == 1_500_000


def test_no_cache_writes_nothing(tmp_path):
    src = _chats(tmp_path / "a.jsonl")
    res = run(PrepareConfig(cache=False, cache_dir=str(tmp_path / "cache"), progress=False), [src])
    assert res.cache["enabled"] is False
    assert not (tmp_path / "cache").exists()
    assert np.all(np.asarray(res.splits["train"]["attention_mask"][0]) == 1)


def test_size_cap_evicts_at_the_end_of_a_run(tmp_path, monkeypatch):
    monkeypatch.setattr(prep, "SHARD_SIZE", 10)
    src = _chats(tmp_path / "a.jsonl", 30)
    cache_dir = tmp_path / "cache"
    monkeypatch.setenv("LLMPREP_CACHE_MAX_SIZE", "20G")
    run(PrepareConfig(cache_dir=str(cache_dir), progress=False, num_proc=1), [src])
    sizes = sorted(p.stat().st_size for p in _entries(cache_dir))
    assert len(sizes) == 3
    monkeypatch.setenv("LLMPREP_CACHE_MAX_SIZE", str(sum(sizes) - 1))  # one entry too many
    run(PrepareConfig(cache_dir=str(cache_dir), progress=False, num_proc=1), [src])
    assert len(_entries(cache_dir)) == 2


def test_a_native_entry_read_keeps_int32_in_place_with_the_same_rows():
    from llmprep.cache import entry_bytes, parse_entry
    from llmprep.encode import Encoded

    enc = Encoded(np.array([5, 49151, 7, 2], np.int64), np.array([-100, -100, 7, 2], np.int64), np.array([0, 1, 4]),
                  np.array([0, 0, 1, 1], np.int64))
    blob = entry_bytes(enc, {"shard": 0})
    wide, meta = parse_entry(blob)
    native, _ = parse_entry(blob, native=True)
    assert meta == {"shard": 0} and wide.ids.dtype == np.int64 and native.ids.dtype == np.int32
    assert native.labels.dtype == np.int32 and native.token_type_ids.dtype == np.int8
    for a, b in ((wide.ids, native.ids), (wide.labels, native.labels), (wide.offsets, native.offsets),
                 (wide.token_type_ids, native.token_type_ids)):
        assert a.tolist() == b.tolist()
    assert not native.ids.flags.writeable  # a view of the entry's bytes, not a copy


def test_entry_parts_are_the_entry_and_an_unchecked_spill_never_passes_verification():
    from llmprep.cache import CorruptEntry, entry_bytes, entry_parts, parse_entry
    from llmprep.encode import Encoded

    enc = Encoded(np.array([1, 2, 3], np.int64), np.array([-100, 2, 3], np.int64), np.array([0, 1, 3]))
    assert b"".join(entry_parts(enc, {"k": 1})) == entry_bytes(enc, {"k": 1})
    parse_entry(entry_bytes(enc, {"k": 1}))  # verified
    unchecked = b"".join(entry_parts(enc, {"k": 1}, checksum=False))
    with pytest.raises(CorruptEntry, match="checksum"):
        parse_entry(unchecked)  # a spill written without its digest can never pass for a cache entry
    assert parse_entry(unchecked, verify=False)[0].labels.tolist() == [-100, 2, 3]


def test_write_atomic_writes_a_list_of_buffers_in_turn(tmp_path):
    import pyarrow as pa

    from llmprep.cache import write_atomic

    write_atomic(tmp_path / "x", [pa.py_buffer(b"ab"), b"cd", memoryview(b"ef")])
    assert (tmp_path / "x").read_bytes() == b"abcdef" and list(tmp_path.iterdir()) == [tmp_path / "x"]

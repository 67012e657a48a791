"""Shard tasks: a line file's byte ranges hold exactly its lines, a .json array's ranges its items and a
parquet file's row-group runs its rows, numbered as a whole-file read numbers them; other files are one
task; a file with no text stays one task (its "empty file" reject)."""

import gzip
import json

import pytest

from llmprep.executor.plan import plan, scan
from llmprep.records import read_file


def _lines(records):
    return [(r.line, r.raw if r.data is None else r.data) for r in records]


def test_ranges_cover_every_line_with_its_number(tmp_path):
    p = tmp_path / "a.jsonl"
    body = "".join(("\n" if i % 5 == 3 else json.dumps({"text": f"doc {i}"}) + "\n") for i in range(23))
    p.write_text(body + '{"text": "no newline at the end"}')
    s = scan(p, shard_lines=4)
    assert [c[2] for c in s.cuts] == [1, 5, 9, 13, 17, 21]  # first line number of each range
    assert s.cuts[0][0] == 0 and s.cuts[-1][1] == p.stat().st_size
    assert all(a[1] == b[0] for a, b in zip(s.cuts, s.cuts[1:]))  # contiguous, no byte twice
    by_range = [r for span in s.cuts for r in read_file(p, lazy=True, span=span)]
    assert _lines(by_range) == _lines(read_file(p, lazy=True))
    assert len(s.sha256) == 64


def test_whole_file_tasks_and_formats(tmp_path):
    (tmp_path / "a.json").write_text(json.dumps([{"question": "q", "answer": "a"}] * 3))
    with gzip.open(tmp_path / "b.jsonl.gz", "wt") as fh:
        fh.write('{"text": "x"}\n' * 10)
    (tmp_path / "c.txt").write_text("\n \n\n")  # no text at all
    (tmp_path / "d.txt").write_text("one\ntwo\nthree\n")
    files = sorted(tmp_path.iterdir())
    tasks, scans = plan(files, shard_lines=2, fmt=None, columns={})
    assert [(t.path.rsplit("/", 1)[1], t.span is None, t.format) for t in tasks] == [
        ("a.json", False, "question-answer"), ("a.json", False, "question-answer"),  # items 1-2, item 3
        ("b.jsonl.gz", True, "text"), ("c.txt", True, None), ("d.txt", False, "text"), ("d.txt", False, "text")]
    assert [t.index for t in tasks] == [0, 1, 2, 3, 4, 5] and [t.file_index for t in tasks] == [0, 0, 1, 2, 3, 3]
    assert [len(s) for s in tasks[2].shards(4)] == [4, 4, 2]
    (empty,) = list(tasks[3].records())
    assert empty.error is not None and "empty file" in empty.error.reason


def test_a_range_of_blank_lines_is_a_task_with_no_shard(tmp_path, monkeypatch):
    import llmprep.prepare as prep
    from llmprep.prepare import PrepareConfig, run

    monkeypatch.setattr(prep, "SHARD_SIZE", 3)
    p = tmp_path / "a.jsonl"
    p.write_text('{"text": "first doc"}\n' + "\n" * 7 + '{"text": "last doc"}\n')
    res = run(PrepareConfig(progress=False, cache=False, num_proc=1), [str(p)])
    assert res.run_info["executor"]["tasks"] == 3 and res.run_info["executor"]["shards"] == 2
    assert res.report["records"] == {"read": 2, "kept": 2, "rejected": 0, "dropped": 0}


def _parquet(path, rows: list[dict], group: int):
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.Table.from_pylist(rows), path, row_group_size=group)
    return path


def test_parquet_row_groups_are_tasks_holding_every_row_with_its_number(tmp_path):
    rows = [{"question": f"q{i}", "answer": f"a{i}"} for i in range(50)]
    p = _parquet(tmp_path / "a.parquet", rows, group=7)  # 8 row groups: 7 x 7 rows + 1
    s = scan(p, shard_lines=15)
    assert s.cuts == [(0, 3, 1), (3, 6, 22), (6, 8, 43)]  # 21, 21 and 8 rows
    by_groups = [r for span in s.cuts for r in read_file(p, span=span)]
    assert _lines(by_groups) == _lines(read_file(p)) and [r.line for r in by_groups] == list(range(1, 51))
    tasks, _ = plan([p], shard_lines=15, fmt=None, columns={})
    assert [t.span for t in tasks] == s.cuts and {t.format for t in tasks} == {"question-answer"}


def test_parquet_of_one_row_group_or_unreadable_is_one_task(tmp_path):
    one = _parquet(tmp_path / "one.parquet", [{"text": f"doc {i}"} for i in range(40)], group=1000)
    assert scan(one, shard_lines=10).cuts is None
    bad = tmp_path / "bad.parquet"
    bad.write_bytes(b"PAR1 not really parquet")
    assert scan(bad, shard_lines=10).cuts is None
    (rec,) = list(read_file(bad))
    assert rec.error is not None and "cannot read the Parquet file" in rec.error.reason


def test_a_parquet_file_runs_as_parallel_tasks_with_the_output_of_its_jsonl_twin(tmp_path, monkeypatch):
    """The bundled real chats as one parquet file of row groups of 40: with shards of 64 rows it is cut
    into tasks (local path and file:// URI alike), and prepares exactly as the same chats in a .jsonl."""
    from doctor_assets import sample_lines
    from helpers import write_jsonl

    import llmprep.prepare as prep
    from llmprep.prepare import PrepareConfig, run

    monkeypatch.setattr(prep, "SHARD_SIZE", 64)
    rows = sample_lines(300)
    pq_file = _parquet(tmp_path / "chats.parquet", rows, group=40)
    twin = write_jsonl(tmp_path / "chats.jsonl", rows)
    cfg = PrepareConfig(progress=False, cache=False, num_proc=2)
    results = [run(cfg, [src]) for src in (str(pq_file), f"file://{pq_file}", str(twin))]
    assert [r.run_info["executor"]["tasks"] for r in results] == [4, 4, 5]  # runs of 2 row groups; 300 lines / 64
    for r in results[:2]:
        assert r.report["records"] == results[2].report["records"]
        assert r.report["tokens"] == results[2].report["tokens"]
        assert list(r.splits) == list(results[2].splits)
        for name in r.splits:
            assert r.splits[name].to_list() == results[2].splits[name].to_list()


def test_a_json_array_runs_as_parallel_tasks_with_the_output_of_its_jsonl_twin(tmp_path, monkeypatch):
    """The bundled real chats as one .json array (LLaMA-Factory's shape): cut into tasks of 64 items, it
    prepares exactly as the same chats in a .jsonl (rows, rejects, report), locally and as a file:// URI."""
    from doctor_assets import sample_lines
    from helpers import write_jsonl

    import llmprep.prepare as prep
    from llmprep.prepare import PrepareConfig, run

    monkeypatch.setattr(prep, "SHARD_SIZE", 64)
    rows = sample_lines(300)
    rows[10] = {"messages": "not a list"}  # a reject in both
    array = tmp_path / "chats.json"
    array.write_text(json.dumps(rows, ensure_ascii=False, indent=1), encoding="utf-8")
    twin = write_jsonl(tmp_path / "chats.jsonl", rows)
    cfg = PrepareConfig(progress=False, cache=False, num_proc=2)
    results = [run(cfg, [src]) for src in (str(array), f"file://{array}", str(twin))]
    assert [r.run_info["executor"]["tasks"] for r in results] == [5, 5, 5]  # 300 items / 64
    for r in results[:2]:
        assert r.report["records"] == results[2].report["records"] and r.report["tokens"] == results[2].report["tokens"]
        assert [(x.line, x.reason) for x in r.rejected] == [(x.line, x.reason) for x in results[2].rejected]
        assert list(r.splits) == list(results[2].splits)
        for name in r.splits:
            assert r.splits[name].to_list() == results[2].splits[name].to_list()


def test_a_gzip_line_file_is_decompressed_once_and_cut_into_ranges(tmp_path):
    """A .jsonl.gz read by one task becomes line ranges of its decompressed copy: together they hold exactly
    its records, each named by the .gz file and its own line number; the tasks are numbered again."""
    from llmprep.executor.plan import split_compressed

    body = "".join(("\n" if i % 7 == 3 else json.dumps({"text": f"doc {i}"}) + "\n") for i in range(23))
    with gzip.open(tmp_path / "b.jsonl.gz", "wt") as fh:
        fh.write(body + "{broken\n")
    (tmp_path / "a.txt").write_text("one\ntwo\nthree\n")
    work = tmp_path / "work"
    work.mkdir()
    tasks, _ = plan(sorted(tmp_path.glob("*.*")), shard_lines=5, fmt=None, columns={})
    assert [t.span is None for t in tasks] == [False, True]  # a.txt: its one range; b.jsonl.gz: the whole file
    split = split_compressed(tasks, str(work), shard_lines=5)
    assert [t.index for t in split] == list(range(len(split))) == list(range(6))
    assert split[0] == tasks[0]  # a plain file's task is left as it was
    gz = split[1:]
    assert {t.local for t in gz} == {str(work / "input-00001.jsonl")} and [t.span[2] for t in gz] == [1, 6, 11, 16, 21]
    assert all(t.format == "text" and t.file_index == 1 for t in gz)
    whole = list(read_file(tmp_path / "b.jsonl.gz", lazy=True))
    by_range = [r for t in gz for r in t.records()]
    assert [(r.source, r.line, r.raw) for r in by_range] == [(r.source, r.line, r.raw) for r in whole]
    assert by_range[-1].line == 24 and by_range[-1].source == str(tmp_path / "b.jsonl.gz")


def test_a_small_or_broken_gzip_file_stays_one_task_and_leaves_no_copy(tmp_path):
    from llmprep.executor.plan import split_compressed

    with gzip.open(tmp_path / "small.jsonl.gz", "wt") as fh:
        fh.write('{"text": "x"}\n' * 3)
    (tmp_path / "truncated.jsonl.gz").write_bytes(gzip.compress(b'{"text": "y"}\n' * 50)[:-30])
    (tmp_path / "not-gzip.txt.gz").write_text("plain text, not gzip\n" * 50)
    work = tmp_path / "work"
    work.mkdir()
    tasks, _ = plan(sorted(tmp_path.glob("*.gz")), shard_lines=5, fmt="text", columns={})
    assert split_compressed(tasks, str(work), shard_lines=5) == tasks
    assert list(work.iterdir()) == []
    (bad,) = [r for r in tasks[2].records() if r.error is not None]  # the whole-file task says why
    assert "cannot read file" in bad.error.reason


@pytest.mark.parametrize("kind", [".jsonl", ".json"])
def test_a_gzip_file_runs_as_parallel_tasks_with_the_output_of_its_plain_twin(kind, tmp_path, monkeypatch):
    """The bundled real chats gzipped (JSON lines, or one JSON array): cut into tasks of 64 lines (items), they
    prepare exactly as the same chats in a plain .jsonl (rows, rejects with their lines, report), and the
    decompressed copy goes with the run."""
    from doctor_assets import sample_lines
    from helpers import write_jsonl

    import llmprep.prepare as prep
    from llmprep.prepare import PrepareConfig, run

    monkeypatch.setattr(prep, "SHARD_SIZE", 64)
    rows = sample_lines(300)
    rows[100] = {"messages": "not a list"}  # a reject in both, in the second task
    gz = tmp_path / f"chats{kind}.gz"
    if kind == ".json":
        with gzip.open(gz, "wt", encoding="utf-8") as fh:
            json.dump(rows, fh, ensure_ascii=False, indent=1)
    else:
        write_jsonl(gz, rows, gzip.open)
    twin = write_jsonl(tmp_path / "chats.jsonl", rows)
    cfg = PrepareConfig(progress=False, cache=False, num_proc=2, test_size=0.1)
    results = [run(cfg, [str(src)], out=tmp_path / f"out-{src.name}") for src in (gz, twin)]
    assert [r.run_info["executor"]["tasks"] for r in results] == [5, 5]  # 300 lines (items) / 64
    assert results[0].report["records"] == results[1].report["records"]
    assert results[0].report["tokens"] == results[1].report["tokens"]
    assert [(x.line, x.reason) for x in results[0].rejected] == [(x.line, x.reason) for x in results[1].rejected]
    assert {x.source for x in results[0].rejected} == {str(gz)} and results[0].rejected[0].line == 101
    for name in ("train", "test"):
        assert (tmp_path / f"out-{gz.name}" / name / "data-00000-of-00001.arrow").read_bytes() == \
            (tmp_path / f"out-{twin.name}" / name / "data-00000-of-00001.arrow").read_bytes()
    assert not [f for f in (tmp_path / f"out-{gz.name}").rglob("*") if "input-" in f.name]


def test_a_full_disk_while_decompressing_is_the_outputs_clear_error(tmp_path, monkeypatch):
    """The decompressed copy goes to the output's work dir: a disk that fills up while it is written fails
    the run with --out's one-line error, leaving nothing there."""
    import os

    from helpers import mount_tmpfs

    import llmprep.prepare as prep
    from llmprep.errors import OutputError
    from llmprep.prepare import PrepareConfig, run

    monkeypatch.setattr(prep, "SHARD_SIZE", 64)
    gz = tmp_path / "docs.jsonl.gz"
    with gzip.open(gz, "wt") as fh:  # 1 MB of text that compresses to a few kB
        fh.writelines(json.dumps({"text": f"document {i} " + "words " * 150}) + "\n" for i in range(1000))
    full = tmp_path / "full"
    unmount = mount_tmpfs(full, "256k")
    try:
        with pytest.raises(OutputError) as info:
            run(PrepareConfig(progress=False, cache=False, num_proc=2), [str(gz)], out=full / "out")
        assert str(info.value).startswith(f"--out {str(full / 'out')!r}: cannot write the output")
        assert "No space left on device" in str(info.value)
        assert os.listdir(full) == []
    finally:
        unmount()


def test_prepares_doctor_pass_reads_a_json_gz_through_its_copy_by_range(tmp_path, monkeypatch):
    """A big .json.gz input is never parsed whole in prepare's main process: its format is detected from its
    first range, and prepare's own doctor pass reads the copy decompressed for the tasks, range by range; it
    finds what it finds in the plain .json."""
    from doctor_assets import sample_lines

    import llmprep.prepare as prep
    from llmprep import jsonarray, records
    from llmprep.prepare import PrepareConfig, run

    monkeypatch.setattr(prep, "SHARD_SIZE", 64)
    monkeypatch.setattr(records, "STREAM_JSON_ITEMS", 50)
    monkeypatch.setattr(records, "STREAM_JSON_BYTES", 80)  # every file counts as big (the plan's format detection too)
    rows = sample_lines(300)
    gz, plain = tmp_path / "chats.json.gz", tmp_path / "chats.json"
    with gzip.open(gz, "wt", encoding="utf-8") as fh:
        json.dump(rows, fh, ensure_ascii=False)
    plain.write_text(json.dumps(rows, ensure_ascii=False), encoding="utf-8")
    parsed: list[int] = []
    items = records._json_items
    monkeypatch.setattr(records, "_json_items", lambda value, *a, **k: parsed.append(len(value)) or items(value, *a, **k))
    scanned = []
    whole_scan = jsonarray.scan_file
    monkeypatch.setattr(jsonarray, "scan_file", lambda path, *a, **k: scanned.append(path) or whole_scan(path, *a, **k))
    cfg = PrepareConfig(progress=False, cache=False, num_proc=2, dedup="none", test_size=0.1)
    res = run(cfg, [str(gz)], out=tmp_path / "out-gz")
    assert res.run_info["executor"]["tasks"] == 5 and res.report["examples"] == {"chat": 300}
    # this process parsed the first task's range (64 items: the format), the ranges of the tasks it worked itself
    # (64 items or fewer) and ranges of 50 (the doctor), never all 300
    assert parsed[0] == 64 and max(parsed) == 64 and 50 in parsed[1:]
    assert scanned == []  # the format came from the first range of the copy, not a pass over the whole stream
    twin = run(cfg, [str(plain)], out=tmp_path / "out-plain")
    assert json.dumps(res.report["doctor"]).replace(gz.name, "X") == json.dumps(twin.report["doctor"]).replace(
        plain.name, "X")
    assert res.report["doctor"]["findings"]  # something to compare (the sample holds duplicates)

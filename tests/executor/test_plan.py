"""Shard tasks: a line file's byte ranges hold exactly its lines, numbered as a whole-file read numbers
them; other files are one task; a file with no text stays one task (its "empty file" reject)."""

import gzip
import json

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
        ("a.json", True, "question-answer"), ("b.jsonl.gz", True, "text"), ("c.txt", True, None),
        ("d.txt", False, "text"), ("d.txt", False, "text")]
    assert [t.index for t in tasks] == [0, 1, 2, 3, 4] and [t.file_index for t in tasks] == [0, 1, 2, 3, 3]
    assert [len(s) for s in tasks[1].shards(4)] == [4, 4, 2]
    (empty,) = list(tasks[2].records())
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

"""records.py: every file type reads to the same records with 1-based lines; bad input becomes a reject
that names file:line (and field), and --strict stops at the first with the same message."""

from __future__ import annotations

import csv
import gzip
import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from helpers import write_jsonl

from llmprep.errors import ConfigError
from llmprep.prepare import PrepareConfig, StrictStop, run
from llmprep.records import expand_inputs, file_kind, read_file, read_records

ROWS = [
    {"question": "What is the capital of France?", "answer": "Paris."},
    {"question": "2+2?", "answer": "4"},
    {"question": "Say hi in Chinese", "answer": "你好"},
]


def run_prepare(inputs, **options):
    options.setdefault("progress", False)
    options.setdefault("num_proc", 1)
    return run(PrepareConfig(**options), [str(i) for i in (inputs if isinstance(inputs, list) else [inputs])])


def write_csv(path, rows, opener=open):
    with opener(path, "wt", encoding="utf-8", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    return path


def write_all_kinds(d: Path) -> dict[str, Path]:
    d.mkdir(parents=True, exist_ok=True)
    files = {
        "jsonl": write_jsonl(d / "a.jsonl", ROWS),
        "jsonl.gz": write_jsonl(d / "a.jsonl.gz", ROWS, gzip.open),
        "csv": write_csv(d / "a.csv", ROWS),
        "csv.gz": write_csv(d / "a.csv.gz", ROWS, gzip.open),
        "parquet": d / "a.parquet",
        "json": d / "a.json",
        "json.gz": d / "b.json.gz",
    }
    pq.write_table(pa.Table.from_pylist(ROWS), files["parquet"])
    files["json"].write_text(json.dumps(ROWS, ensure_ascii=False, indent=1), encoding="utf-8")
    with gzip.open(files["json.gz"], "wt", encoding="utf-8") as fh:
        json.dump(ROWS, fh)
    return files


def test_file_kind():
    assert file_kind(Path("a/b.jsonl.gz")) == ".jsonl"
    assert file_kind(Path("X.JSON")) == ".json"
    assert file_kind(Path("x.md")) is None and file_kind(Path("x.gz")) is None


def test_every_file_type_reads_the_same_records(tmp_path):
    files = write_all_kinds(tmp_path)
    first_line = {"csv": 2, "csv.gz": 2}  # CSV line 1 is the header
    for kind, path in files.items():
        recs = list(read_file(path))
        assert [r.data for r in recs] == ROWS, kind
        assert all(r.error is None and r.source == str(path) for r in recs)
        start = first_line.get(kind, 1)
        assert [r.line for r in recs] == [start, start + 1, start + 2], kind


def test_every_file_type_prepares_to_the_same_rows(tmp_path, smollm2):
    files = write_all_kinds(tmp_path)
    results = {kind: run_prepare(p) for kind, p in files.items()}
    ref = results["jsonl"].splits["train"]
    assert len(ref) == 3
    ids = [smollm2.apply_chat_template([{"role": "user", "content": r["question"]},
                                        {"role": "assistant", "content": r["answer"]}],
                                       tokenize=True)["input_ids"] for r in ROWS]
    assert ref["input_ids"] == ids
    for kind, res in results.items():
        assert res.splits["train"]["input_ids"] == ids, kind
        assert res.splits["train"]["labels"] == ref["labels"], kind


def test_jsonl_blank_lines_keep_line_numbers(tmp_path):
    p = write_jsonl(tmp_path / "a.jsonl", [ROWS[0], "", "   ", ROWS[1]])
    assert [(r.line, r.data) for r in read_file(p)] == [(1, ROWS[0]), (4, ROWS[1])]


def test_txt_documents(tmp_path, smollm2):
    p = tmp_path / "docs.txt"
    p.write_text("First document.\n\nSecond one, 中文.\r\n", encoding="utf-8")
    assert [(r.line, r.data) for r in read_file(p)] == [(1, {"text": "First document."}),
                                                       (3, {"text": "Second one, 中文."})]
    g = tmp_path / "docs.txt.gz"
    g.write_bytes(gzip.compress(p.read_bytes()))
    assert [r.data for r in read_file(g)] == [r.data for r in read_file(p)]
    res = run_prepare(p)
    first = res.splits["train"][0]
    assert first["input_ids"] == smollm2("First document.", add_special_tokens=False)["input_ids"] + [2]
    assert first["labels"] == first["input_ids"]


def test_directory_of_many_small_files(tmp_path):
    d = tmp_path / "many"
    (d / "sub").mkdir(parents=True)
    for i in range(40):
        where = d / "sub" if i % 2 else d
        write_jsonl(where / f"part-{i:03d}.jsonl", [{"question": f"q{i}", "answer": f"a{i}"}])
    (d / "README.md").write_text("not data")
    files = expand_inputs([str(d)])
    assert len(files) == 40 and files == sorted(files)
    assert all(f.suffix == ".jsonl" for f in files)
    res = run_prepare(d)
    assert res.report["records"] == {"read": 40, "kept": 40, "rejected": 0, "dropped": 0}
    assert len(res.report["inputs"]) == 40


def test_glob_and_dedup(tmp_path):
    files = write_all_kinds(tmp_path)
    assert expand_inputs([str(tmp_path / "*.jsonl")]) == [files["jsonl"]]
    assert expand_inputs([str(tmp_path / "*.json*")]) == sorted([files["json"], files["jsonl"], files["jsonl.gz"],
                                                                 files["json.gz"]])
    (tmp_path / "deep" / "er").mkdir(parents=True)
    write_jsonl(tmp_path / "deep" / "er" / "z.jsonl", ROWS)
    assert expand_inputs([str(tmp_path / "**" / "z.jsonl")]) == [tmp_path / "deep" / "er" / "z.jsonl"]
    # the same file named twice (directly and by glob) is read once
    assert expand_inputs([str(files["jsonl"]), str(tmp_path / "a.jsonl")]) == [files["jsonl"]]
    res = run_prepare([str(tmp_path / "*.jsonl"), str(files["csv"])])
    assert res.report["records"]["read"] == 6


def test_expand_inputs_errors(tmp_path):
    with pytest.raises(ConfigError, match="no input"):
        expand_inputs([])
    with pytest.raises(ConfigError, match="no such file, directory or matching glob"):
        expand_inputs([str(tmp_path / "missing.jsonl")])
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError, match="directory holds no"):
        expand_inputs([str(tmp_path / "empty")])
    (tmp_path / "x.md").write_text("hi")
    with pytest.raises(ConfigError, match="unsupported file type"):
        expand_inputs([str(tmp_path / "x.md")])


# --- bad input: one reject each, naming file:line (and field) -----------------------------------

def one_reject(tmp_path, name, content: bytes, **options):
    """Write a file with a good record around the bad one; return (path, the single reject)."""
    p = tmp_path / name
    p.write_bytes(content)
    res = run_prepare(p, **options)
    assert len(res.rejected) == 1, res.rejected
    assert res.report["records"]["rejected"] == 1
    return p, res.rejected[0]


GOOD = json.dumps(ROWS[0]).encode()
GOOD2 = json.dumps(ROWS[1]).encode()  # another good record (a second GOOD would be rejected as a duplicate)


def test_malformed_json_line(tmp_path):
    p, r = one_reject(tmp_path, "a.jsonl", GOOD + b'\n{"question": "x", "answer": \n' + GOOD2 + b"\n")
    assert (r.source, r.line) == (str(p), 2)
    assert r.reason.startswith("malformed JSON")
    assert r.record == '{"question": "x", "answer": '
    assert r.message().startswith(f"{p}:2: malformed JSON")


def test_json_line_not_an_object(tmp_path):
    p, r = one_reject(tmp_path, "a.jsonl", GOOD + b'\n["a", "b"]\n')
    assert (r.line, r.reason) == (2, "expected a JSON object, got list")


def test_non_utf8_jsonl(tmp_path):
    p, r = one_reject(tmp_path, "a.jsonl", GOOD + b"\n" + GOOD2 + b'\n{"question": "caf\xe9", "answer": "x"}\n')
    assert (r.source, r.line) == (str(p), 3)
    assert "not valid UTF-8" in r.reason and "\\xe9" in r.reason


def test_non_utf8_csv_names_the_field(tmp_path):
    p, r = one_reject(tmp_path, "a.csv", b"question,answer\nhi,there\nok,caf\xe9\n")
    assert (r.source, r.line, r.field) == (str(p), 3, "answer")
    assert r.message() == f"{p}:3: field 'answer': not valid UTF-8"


def test_non_utf8_json_array(tmp_path):
    p = tmp_path / "a.json"
    p.write_bytes(b'[{"question": "caf\xe9", "answer": "x"}]')
    recs = list(read_file(p))
    assert len(recs) == 1 and recs[0].line == 1 and "not valid UTF-8" in recs[0].error.reason


def test_csv_row_with_extra_cells(tmp_path):
    p, r = one_reject(tmp_path, "a.csv", b"question,answer\nhi,there\na,b,c\n")
    assert (r.line, r.reason) == (3, "row has 3 cells, the header has 2")


def test_empty_file(tmp_path):
    good = write_jsonl(tmp_path / "a.jsonl", ROWS[:1])
    empty = tmp_path / "b.jsonl"
    empty.write_bytes(b"")
    res = run_prepare([good, empty])
    assert [(r.source, r.line, r.reason) for r in res.rejected] == [(str(empty), 0, "empty file: no records")]
    assert res.report["records"] == {"read": 2, "kept": 1, "rejected": 1, "dropped": 0}
    for name in ("c.json", "d.csv", "e.txt", "f.parquet"):
        p = tmp_path / name
        if name.endswith(".parquet"):
            pq.write_table(pa.table({"question": pa.array([], pa.string())}), p)
        else:
            p.write_bytes(b"" if not name.endswith(".csv") else b"question,answer\n")
        recs = list(read_file(p))
        assert [(r.line, r.error.reason) for r in recs] == [(0, "empty file: no records")], name


def test_truncated_gzip(tmp_path):
    p = tmp_path / "a.jsonl.gz"
    data = gzip.compress(b"\n".join([GOOD] * 200))
    p.write_bytes(data[: len(data) // 2])
    recs = list(read_file(p))
    assert recs[-1].line == 0 and recs[-1].error.reason.startswith("cannot read file")


def test_strict_stops_with_the_reject_message(tmp_path):
    content = GOOD + b'\n{"question": "x", "answer": \n'
    p, r = one_reject(tmp_path, "a.jsonl", content)
    with pytest.raises(StrictStop) as info:
        run_prepare(p, strict=True)
    assert str(info.value) == f"--strict: {r.message()}"
    assert f"{p}:2: malformed JSON" in str(info.value)


def test_read_records_in_order(tmp_path):
    a = write_jsonl(tmp_path / "a.jsonl", ROWS[:2])
    b = write_jsonl(tmp_path / "b.jsonl", ROWS[2:])
    got = [(Path(r.source).name, r.line) for r in read_records([a, b])]
    assert got == [("a.jsonl", 1), ("a.jsonl", 2), ("b.jsonl", 1)]

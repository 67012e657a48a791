"""records.py on hostile input: a byte-order mark, lone surrogates, deep nesting, a corrupt Parquet file,
multi-line CSV rows, and records past --max-record-bytes. Each becomes clean data or a reject naming
file, line (and field) — never a crash — and rejected.jsonl stays valid UTF-8."""

from __future__ import annotations

import gzip
import json
import tracemalloc

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from helpers import write_jsonl

from llmprep.prepare import PrepareConfig, prepare, run
from llmprep.records import MAX_JSON_DEPTH, expand_inputs, read_file, text_lines
from llmprep.store import MARKER

BOM = "\ufeff"
QA = [{"instruction": "Name the capital of France.", "output": "Paris."},
      {"instruction": "Add 2 and 2.", "output": "4"}]


def opts(**kw):
    return {"progress": False, "num_proc": 1, "cache": False, **kw}


def records(path, **kw):
    return list(read_file(path, **kw))


@pytest.mark.parametrize("gz", [False, True])
@pytest.mark.parametrize("kind", ["csv", "txt", "jsonl", "json"])
def test_byte_order_mark_is_dropped_in_every_text_format(tmp_path, kind, gz):
    body = {"csv": "instruction,output\nName the capital of France.,Paris.\nAdd 2 and 2.,4\n",
            "txt": "first document\nsecond\n",
            "jsonl": "".join(json.dumps(r) + "\n" for r in QA),
            "json": json.dumps(QA)}[kind]
    path = tmp_path / (f"a.{kind}" + (".gz" if gz else ""))
    data = (BOM + body).encode("utf-8")  # what Excel's "CSV UTF-8" and Notepad write
    path.write_bytes(gzip.compress(data) if gz else data)
    got = records(path)
    assert all(r.error is None for r in got), [r.error for r in got]
    if kind == "txt":
        assert [r.data for r in got] == [{"text": "first document"}, {"text": "second"}]
    else:
        assert [r.data for r in got] == QA  # the first column is "instruction", not "\ufeffinstruction"


def test_bom_csv_keeps_every_instruction(tmp_path):
    """The reported bug: Excel's BOM made the first column '\\ufeffinstruction', so every row's
    instruction was dropped and the rows detected as input/output."""
    path = tmp_path / "excel.csv"
    path.write_bytes((BOM + "instruction,output\nName the capital of France.,Paris.\n").encode())
    ds = prepare([str(path)], **opts())
    text = ds["train"][0]["input_ids"]
    from llmprep.tokenizer import load_tokenizer
    assert "Name the capital of France." in load_tokenizer("smollm2").decode(text)


def test_stream_readers_drop_the_bom_too(tmp_path):
    from llmprep.stream import txt_documents

    path = tmp_path / "a.txt"
    path.write_bytes((BOM + "hello\n\nworld\n").encode())
    assert [p[0] for p in txt_documents(path)] == ["hello", "world"]
    jl = tmp_path / "b.jsonl"
    jl.write_bytes((BOM + '{"text": "x"}\n').encode())
    assert [t for _, t in text_lines(jl)] == ['{"text": "x"}\n']


def test_lone_surrogate_is_rejected_naming_the_field(tmp_path):
    path = tmp_path / "s.jsonl"
    write_jsonl(path, [
        '{"messages": [{"role": "user", "content": "hi \\ud800"}, {"role": "assistant", "content": "yo"}]}',
        '{"messages": [{"role": "user", "content": "ok \\ud83d\\ude00"}, {"role": "assistant", "content": "yo"}]}',
        '{"instruction\\udfff": "x", "output": "y"}',
    ])
    got = records(path)
    assert got[0].error.field == "messages[0].content" and "lone surrogate U+D800" in got[0].error.reason
    assert got[1].error is None and got[1].data["messages"][0]["content"] == "ok 😀"  # a valid pair is fine
    assert got[2].error is not None and "field name" in got[2].error.reason
    # through prepare: rejected with file:line and field, rejected.jsonl valid UTF-8
    out = tmp_path / "out"
    result = run(PrepareConfig(**opts()), [str(path)], out=out)
    assert result.report["records"] == {"read": 3, "kept": 1, "rejected": 2, "dropped": 0}
    raw = (out / "rejected.jsonl").read_bytes()
    rejected = [json.loads(line) for line in raw.decode("utf-8").splitlines()]
    assert [(r["line"], r["field"]) for r in rejected] == [(1, "messages[0].content"), (3, None)]


def test_lone_surrogate_in_a_json_array_item(tmp_path):
    path = tmp_path / "a.json"
    path.write_text('[{"text": "fine"}, {"text": "bad \\udc80"}]')
    got = records(path)
    assert got[0].error is None and got[1].error.field == "text" and got[1].line == 2
    assert got[1].raw == '{"text": "bad \\udc80"}'  # the escape it came as: encodable anywhere


def test_deep_nesting_rejects_the_line_or_the_file(tmp_path):
    deep = "[" * 10_000 + "]" * 10_000
    path = tmp_path / "d.jsonl"
    write_jsonl(path, [f'{{"text": {deep}}}', {"text": "ok"},
                       json.dumps({"text": "x", "meta": json.loads("[" * 150 + "]" * 150)})])
    got = records(path)
    assert got[0].line == 1 and f"nested more than {MAX_JSON_DEPTH} levels" in got[0].error.reason
    assert got[1].data == {"text": "ok"}
    assert got[2].error is not None and got[2].error.field.startswith("meta[0][0]")
    whole = tmp_path / "d.json"
    whole.write_text(deep)
    got = records(whole)
    assert len(got) == 1 and got[0].line == 1 and "nested more than" in got[0].error.reason
    result = run(PrepareConfig(**opts()), [str(path)])  # no RecursionError anywhere downstream
    assert result.report["records"]["rejected"] == 2


def test_corrupt_parquet_is_rejected_with_its_name(tmp_path):
    good = tmp_path / "good.parquet"
    pq.write_table(pa.Table.from_pylist(QA), good)
    bad = tmp_path / "bad.parquet"
    bad.write_bytes(good.read_bytes()[:-20])  # footer cut off
    junk = tmp_path / "junk.parquet"
    junk.write_bytes(b"not a parquet file at all")
    for path in (bad, junk):
        got = records(path)
        assert len(got) == 1 and got[0].line == 0 and got[0].source == str(path)
        assert got[0].error.reason.startswith("cannot read the Parquet file: ")
    result = run(PrepareConfig(**opts()), [str(good), str(bad)])
    assert result.report["records"] == {"read": 3, "kept": 2, "rejected": 1, "dropped": 0}


def test_multi_line_csv_rows_are_reported_where_they_start(tmp_path):
    path = tmp_path / "m.csv"
    path.write_text('instruction,output\n'
                    '"a question\nover two lines",fine\n'   # lines 2-3: a good multi-line row
                    '\n'                                      # line 4: blank
                    '"bad row\nwith\nthree lines",x,extra\n'  # lines 5-7: too many cells
                    'q,"unclosed quote\nrunning on\n')        # lines 8-9: broken quoting
    got = records(path)
    assert [(r.line, r.error is None) for r in got] == [(2, True), (5, False), (8, False)]
    assert got[0].data == {"instruction": "a question\nover two lines", "output": "fine"}
    assert got[1].error.reason == "row has 3 cells, the header has 2" and got[1].error.line == 5
    assert got[2].error.reason.startswith("malformed CSV row: unexpected end of data")


@pytest.mark.parametrize("kind", ["jsonl", "txt", "csv", "json", "parquet"])
def test_a_record_over_max_record_bytes_is_rejected_with_its_size(tmp_path, kind):
    big = "x" * 5000
    rows = [{"instruction": "short", "output": "ok"}, {"instruction": big, "output": "ok"},
            {"instruction": "after", "output": "ok"}]
    path = tmp_path / f"r.{kind}"
    if kind == "jsonl":
        write_jsonl(path, rows)
    elif kind == "txt":
        path.write_text("short\n" + big + "\nafter\n")
    elif kind == "csv":
        path.write_text("instruction,output\nshort,ok\n" + big + ",ok\nafter,ok\n")
    elif kind == "json":
        path.write_text(json.dumps(rows))
    else:
        pq.write_table(pa.Table.from_pylist(rows), path)
    got = records(path, max_record_bytes=1000)
    assert [r.error is None for r in got] == [True, False, True]
    err = got[1].error
    assert err.line == 2 + (kind == "csv") and "over --max-record-bytes 1,000" in err.reason
    assert "raise --max-record-bytes to read it" in err.reason
    assert len(got[1].raw) <= 210  # rejected.jsonl gets a preview, not the record
    assert [r.error is None for r in records(path, max_record_bytes=10_000)] == [True, True, True]


def test_a_huge_line_is_never_held_whole(tmp_path):
    path = tmp_path / "huge.jsonl"
    with open(path, "w") as fh:
        fh.write('{"text": "a"}\n{"text": "' + "y" * (40 << 20) + '"}\n{"text": "b"}\n')
    tracemalloc.start()
    got = records(path, max_record_bytes=1 << 20)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert [r.line for r in got] == [1, 2, 3] and got[1].error is not None
    assert f"{(40 << 20) + 12:,} bytes" in got[1].error.reason
    assert peak < 8 << 20  # a 40 MB line read with ~1 MB pieces


def test_max_record_bytes_reaches_prepare_and_stream(tmp_path):
    path = tmp_path / "t.jsonl"
    write_jsonl(path, [{"text": "short document"}, {"text": "z " * 2000}])
    with pytest.raises(Exception, match="max-record-bytes"):
        run(PrepareConfig(**opts(max_record_bytes=0)), [str(path)])
    result = run(PrepareConfig(**opts(max_record_bytes=1000)), [str(path)])
    assert result.report["records"] == {"read": 2, "kept": 1, "rejected": 1, "dropped": 0}
    assert result.report["options"]["max_record_bytes"] == 1000
    from llmprep.stream import prepare_stream
    from llmprep.tokenizer import load_tokenizer

    report = prepare_stream([str(path)], tokenizer=load_tokenizer("smollm2"), out=tmp_path / "s", block_size=4,
                            remainder="pad", max_record_bytes=1000)
    assert report["rejected"] == 1 and report["documents"] == 1


def test_an_output_inside_an_input_folder_is_not_read_back(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    write_jsonl(data / "chats.jsonl", [{"text": "doc"}])
    prepare([str(data)], out=data / "prepared", **opts())
    assert (data / "prepared" / MARKER).exists() and (data / "prepared" / "rejected.jsonl").exists()
    (data / ".prepared.tmp-box-123-abcd1234").mkdir()
    (data / ".prepared.tmp-box-123-abcd1234" / "report.json").write_text("{}")
    assert expand_inputs([str(data)]) == [data / "chats.jsonl"]

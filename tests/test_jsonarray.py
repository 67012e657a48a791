"""The structural scan of .json arrays (jsonarray.py): ranges of whole items whatever the strings hold
(quotes, backslash runs, brackets, commas), fed in blocks of any size; anything but one plain array is
left to the whole-file reader; a range reads back exactly its items."""

from __future__ import annotations

import json
import random

import pytest

from llmprep.jsonarray import item_texts, scan_bytes, span_body
from llmprep.records import read_file

TRICKY = ['"', "\\", "\\\\", '\\"', "]", "[", "{", "}", ",", " , ", "é", "床前明月光", "\n", "\t", "x" * 30, "\ue000"]


def _value(rng: random.Random, depth: int = 0):
    kind = rng.randrange(6 if depth < 3 else 3)
    if kind == 0:
        return "".join(rng.choice(TRICKY) for _ in range(rng.randrange(6)))
    if kind == 1:
        return rng.choice([1, -2.5, True, None, 0])
    if kind == 2:
        return rng.choice(["", "plain"])
    if kind == 3:
        return [_value(rng, depth + 1) for _ in range(rng.randrange(4))]
    return {"".join(rng.choice(TRICKY) for _ in range(2)): _value(rng, depth + 1) for _ in range(rng.randrange(4))}


def _items(seed: int, n: int) -> list:
    rng = random.Random(seed)
    return [{"messages": _value(rng), "k": _value(rng)} if rng.random() < 0.9 else _value(rng) for _ in range(n)]


@pytest.mark.parametrize("seed", range(6))
def test_ranges_hold_exactly_the_items_whatever_the_strings_and_blocks(seed):
    items = _items(seed, 57)
    rng = random.Random(seed)
    text = json.dumps(items, ensure_ascii=rng.random() < 0.5, indent=rng.choice([None, 1, 4]))
    data = (b"\xef\xbb\xbf" if seed % 2 else b"") + b"\n " + text.encode() + b" \n"
    for block in (1, 3, 7, 64, 1 << 24):
        for every in (1, 5, 20):
            cuts = scan_bytes(data, every, block=block)
            assert cuts is not None and cuts[0][0] == 0 and cuts[-1][1] == len(data)
            assert all(a[1] == b[0] for a, b in zip(cuts, cuts[1:]))
            assert [c[2] for c in cuts] == list(range(1, len(items) + 1, every))
            back = [x for a, b, first in cuts for x in json.loads(span_body(data[a:b].decode(), first == 1))]
            assert back == items, (block, every)


@pytest.mark.parametrize("data", [
    b'{"a": 1}', b'[1, 2] x', b'[1, 2]]', b'[1, [2, 3', b'["open, 1]', b'x[1, 2]', b"", b"  \n", b"[]",
    b'[{"a": 1}]', b'["\\\\"] "'])
def test_anything_but_a_plain_array_of_several_items_is_one_task(data):
    assert scan_bytes(data, 1, block=2) is None


def test_item_texts_split_an_array_text():
    assert item_texts('[{"a": "x,]"}, [2, 3], "s\\\\"]') == ['{"a": "x,]"}', "[2, 3]", '"s\\\\"']
    assert item_texts("[ ]") == [] and item_texts('[{"a": 1}]') == ['{"a": 1}']


def test_a_range_reads_its_items_numbered_as_the_whole_file(tmp_path):
    items = [{"question": f"q{i}", "answer": f"a{i}"} for i in range(10)]
    items[4] = [1, 2]  # not an object: a reject, item 5
    p = tmp_path / "a.json"
    p.write_text(json.dumps(items, indent=2))
    cuts = scan_bytes(p.read_bytes(), 3)
    by_range = [r for span in cuts for r in read_file(p, span=span)]
    whole = list(read_file(p))
    assert [(r.line, r.data, r.error and r.error.reason) for r in by_range] == \
        [(r.line, r.data, r.error and r.error.reason) for r in whole]
    assert by_range[4].error is not None and by_range[4].line == 5


def test_a_malformed_item_is_rejected_alone(tmp_path):
    """The whole-file reader can only reject the whole file; a range rejects the one item that does not parse."""
    p = tmp_path / "a.json"
    p.write_text('[{"question": "q1", "answer": "a1"},\n {"question": "q2" "answer": "a2"},\n'
                 ' {"question": "q3", "answer": "a3"}]')
    cuts = scan_bytes(p.read_bytes(), 2)
    recs = [r for span in cuts for r in read_file(p, span=span)]
    assert [r.line for r in recs] == [1, 2, 3]
    assert recs[0].data == {"question": "q1", "answer": "a1"} and recs[2].data["answer"] == "a3"
    assert recs[1].error is not None and "malformed JSON" in recs[1].error.reason


def test_a_big_json_file_read_whole_streams_range_by_range(tmp_path, monkeypatch):
    """Reading a whole .json file (the doctor's example pass, rejected records read again) never parses a
    big array at once: over STREAM_JSON_BYTES it is read range by range, with the same records."""
    import llmprep.records as records

    items = [{"question": f'q{i} \\" ]', "answer": f"a{i}"} for i in range(9000)] + [[1]]
    p = tmp_path / "big.json"
    p.write_text(json.dumps(items))
    whole = [(r.line, r.data, r.error and r.error.reason) for r in read_file(p)]
    parsed = []
    monkeypatch.setattr(records, "STREAM_JSON_BYTES", 1000)
    monkeypatch.setattr(records, "_json_items", _spy(records._json_items, parsed))
    streamed = [(r.line, r.data, r.error and r.error.reason) for r in read_file(p)]
    assert streamed == whole and len(whole) == 9001 and whole[-1][2] is not None
    assert max(parsed) <= 4096  # items parsed at once


def test_a_json_file_this_process_scanned_is_read_by_range_without_a_second_scan(tmp_path, monkeypatch):
    """plan's scan (done while it hashes the file) is remembered: reading the file whole afterwards (prepare's
    doctor pass) goes range by range, with the records of a whole-file read, and scans nothing again; a file
    rewritten since is read as it is now."""
    from llmprep import jsonarray, records
    from llmprep.executor.plan import scan

    items = [{"question": f"q{i}", "answer": f"a{i}"} for i in range(9000)]
    p = tmp_path / "a.json"
    p.write_text(json.dumps(items))
    whole = [(r.line, r.data) for r in read_file(p)]
    assert scan(p, shard_lines=2048).cuts is not None
    parsed = []
    monkeypatch.setattr(records, "_json_items", _spy(records._json_items, parsed))
    monkeypatch.setattr(jsonarray.ArrayScan, "feed", lambda *a: pytest.fail("scanned a second time"))
    assert [(r.line, r.data) for r in read_file(p)] == whole
    assert sorted(parsed) == [808, 4096, 4096]  # items parsed at once: by range, not all 9,000
    monkeypatch.undo()
    p.write_text(json.dumps(items[:10]))  # not the scanned file any more
    assert [(r.line, r.data) for r in read_file(p)] == whole[:10]


def _spy(fn, sizes: list[int]):
    def wrapper(value, *args, **kwargs):
        sizes.append(len(value))
        return fn(value, *args, **kwargs)
    return wrapper


def test_a_big_gzip_json_array_read_whole_streams_range_by_range(tmp_path, monkeypatch):
    """A .json.gz array that may be big is read in two passes over the stream (find whole items, then parse
    them range by range), with the records of a whole-file read; a truncated one is the whole-file error."""
    import gzip

    from llmprep import records

    items = [{"question": f'q{i} \\" ]', "answer": f"a{i}"} for i in range(9000)] + [[1]]
    p = tmp_path / "big.json.gz"
    with gzip.open(p, "wt") as fh:
        json.dump(items, fh)
    whole = [(r.line, r.data, r.error and r.error.reason) for r in read_file(p)]
    parsed = []
    monkeypatch.setattr(records, "STREAM_JSON_BYTES", 80)  # compressed: over 10 bytes
    monkeypatch.setattr(records, "_json_items", _spy(records._json_items, parsed))
    streamed = [(r.line, r.data, r.error and r.error.reason) for r in read_file(p)]
    assert streamed == whole and len(whole) == 9001 and whole[-1][2] is not None
    assert sorted(parsed) == [809, 4096, 4096]
    p.write_bytes(p.read_bytes()[:-40])
    (bad,) = list(read_file(p))
    assert "cannot read file" in bad.error.reason

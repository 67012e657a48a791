"""`llmprep prepare --pack` wiring: wrap never truncates documents first, bfd fills rows, --stream works."""

import json

import datasets
from click.testing import CliRunner

from llmprep.cli import main
from llmprep.constants import IGNORE_INDEX
from llmprep.tokenizer import load_tokenizer


def _docs(tmp_path, n=60):
    path = tmp_path / "docs.jsonl"
    rows = [{"text": f"Document {i}: " + "lorem ipsum dolor sit amet " * (i % 9 + 1)} for i in range(n)]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path, rows


def test_wrap_keeps_every_token_of_long_documents(tmp_path):
    src, rows = _docs(tmp_path)
    out = tmp_path / "o"
    res = CliRunner().invoke(main, ["prepare", str(src), "--out", str(out), "--quiet", "--pack", "wrap",
                                    "--block-size", "16", "--remainder", "keep"])
    assert res.exit_code == 0, res.output
    tok = load_tokenizer("smollm2")
    expected = []
    for r in rows:  # SmolLM2 adds no BOS; every document ends with exactly one EOS
        expected += tok(r["text"], add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
    train = datasets.load_from_disk(str(out))["train"]
    got = [t for row in train["input_ids"] for t in row]
    assert got == expected
    assert all(len(row) == 16 for row in train["input_ids"][:-1])
    report = json.loads((out / "report.json").read_text())
    assert report["packing"]["train"]["strategy"] == "wrap" and report["records"]["dropped"] == 0


def test_bfd_rows_respect_max_length_and_never_train_across_examples(tmp_path):
    src = tmp_path / "c.jsonl"
    chats = [{"messages": [{"role": "user", "content": "q" * (i % 7 + 1)},
                           {"role": "assistant", "content": "answer " * (i % 5 + 1)}]} for i in range(50)]
    src.write_text("".join(json.dumps(c) + "\n" for c in chats))
    out = tmp_path / "o"
    res = CliRunner().invoke(main, ["prepare", str(src), "--out", str(out), "--quiet", "--pack", "bfd",
                                    "--max-length", "256"])
    assert res.exit_code == 0, res.output
    train = datasets.load_from_disk(str(out))["train"]
    # 35 distinct chats (i % 7, i % 5): --dedup exact, the default, rejected the 15 repeats
    report = json.loads((out / "report.json").read_text())
    assert sum(len(s) for s in train["seq_lengths"]) == 35 == report["kept"]["train"]
    for row in train:
        assert len(row["input_ids"]) <= 256
        start = 0
        for n in row["seq_lengths"]:
            assert row["position_ids"][start:start + n] == list(range(n))
            assert row["labels"][start] == IGNORE_INDEX
            start += n
    report = json.loads((out / "report.json").read_text())
    assert 0 < report["packing"]["train"]["fill"] <= 1


def test_stream_requires_wrap_and_writes_blocks(tmp_path):
    src, _ = _docs(tmp_path)
    bad = CliRunner().invoke(main, ["prepare", str(src), "--out", str(tmp_path / "x"), "--stream"])
    assert bad.exit_code != 0 and "--pack wrap" in bad.output
    out = tmp_path / "s"
    ok = CliRunner().invoke(main, ["prepare", str(src), "--out", str(out), "--quiet", "--stream", "--pack", "wrap",
                                   "--block-size", "32"])
    assert ok.exit_code == 0, ok.output
    train = datasets.load_from_disk(str(out))["train"]
    assert train.num_rows > 0 and all(len(r) == 32 for r in train["input_ids"])


def test_block_size_only_with_wrap(tmp_path):
    src, _ = _docs(tmp_path, 3)
    res = CliRunner().invoke(main, ["prepare", str(src), "--out", str(tmp_path / "o"), "--block-size", "32"])
    assert res.exit_code != 0 and "--block-size" in res.output

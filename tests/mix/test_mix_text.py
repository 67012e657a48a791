import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import xxhash

from llmprep.mix import text as T
from llmprep.mix.text import (
    UnitBatch,
    example_text,
    ngram_hashes,
    normalize_text,
    units,
    window_hashes,
)


def test_normalize_text_collapses_whitespace_and_folds_case_each_switchable():
    assert normalize_text("  Hello\n\tWORLD  ") == "hello world"
    assert normalize_text("Straße") == "strasse"  # casefold, not lower
    assert normalize_text("  Hello\n\tWORLD  ", casefold=False) == "Hello WORLD"
    assert normalize_text("  Hello\n\tWORLD  ", collapse_whitespace=False) == "  hello\n\tworld  "


def test_example_text_of_each_kind(sample_rows):
    msgs = sample_rows[0]["messages"]
    assert example_text("chat", {"messages": msgs}) == "\n".join(m["content"] for m in msgs)
    assert example_text("text", {"text": "doc"}) == "doc"
    assert example_text("pair", {"text": "a", "text_pair": "b", "label": 1}) == "a\nb"
    # fields other than role/content (tool calls, reasoning) take part: two rows differing only there differ
    tool = {"role": "assistant", "content": "", "tool_calls": [{"name": "f", "arguments": {"x": 1}}]}
    assert '"name": "f"' in example_text("chat", {"messages": [msgs[0], tool]})


def test_units_split_words_and_cjk_characters_and_drop_punctuation():
    assert units("Hello, 世界 2024! ไทย") == (["hello", "世", "界", "2024", "ไ", "ท", "ย"],
                                             [False, True, True, False, True, True, True])


def _reference_hash(tokens: list[str]) -> int:
    """The documented n-gram hash in plain Python integers: polynomial of xxh64 unit hashes, length salt, mixer."""
    m = (1 << 64) - 1
    poly = 0
    for t in tokens:
        poly = (poly * 0x9E3779B97F4A7C15 + xxhash.xxh64_intdigest(t.encode())) & m
    x = (poly + len(tokens) * 0xD6E8FEB86659FD93) & m
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & m
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & m
    return x ^ (x >> 31)


def test_ngram_hashes_equal_reference_and_stay_inside_script_runs():
    flat, off = ngram_hashes(["The quick brown fox jumps over", "床前明月光疑是地上霜 ok"], 5, 4, short_runs=False)
    words = ["the", "quick", "brown", "fox", "jumps", "over"]
    assert list(off) == [0, 2, 9]
    assert flat[:2].tolist() == [_reference_hash(words[:5]), _reference_hash(words[1:])]
    chars = list("床前明月光疑是地上霜")
    assert flat[2:].tolist() == [_reference_hash(chars[i:i + 4]) for i in range(7)]  # "ok" is a short run: none


def test_short_runs_give_one_shingle_and_windows_cross_runs():
    flat, off = ngram_hashes(["hi there", "", "a b c d e f"], 5, 5, short_runs=True)
    assert list(off) == [0, 1, 1, 3]
    assert flat[0] == _reference_hash(["hi", "there"])
    w, woff = window_hashes(UnitBatch.of(["x 床前 y"]), 4)
    assert list(woff) == [0, 1] and w[0] == _reference_hash(["x", "床", "前", "y"])


def test_hashes_do_not_depend_on_the_process():
    code = ("from llmprep.mix.text import ngram_hashes; "
            "print(ngram_hashes(['Hello brave new world of tokens, 你好世界'], 3, 3, short_runs=True)[0].tolist())")
    env = dict(os.environ, PYTHONHASHSEED="123")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True).stdout
    here = ngram_hashes(["Hello brave new world of tokens, 你好世界"], 3, 3, short_runs=True)[0].tolist()
    assert eval(out) == here


def test_span_hashes_match_direct_polynomial_for_long_spans():
    h = T.unit_hashes([f"w{i}" for i in range(300)])
    s, e = np.array([0, 17, 250]), np.array([300, 40, 251])
    got = T._span_hashes(h, s, e)
    expect = [_reference_hash([f"w{i}" for i in range(a, b)]) for a, b in zip(s, e)]
    assert got.tolist() == expect


def _corpus_texts() -> list[str]:
    """Every line of chatterbot-corpus, all its 28 languages (English, Chinese, Japanese, Korean, Thai, Persian,
    Hindi, Russian...), one text per conversation."""
    import site

    import yaml

    corpus = Path(site.getsitepackages()[0]) / "chatterbot_corpus" / "data"  # as tests/conftest.py finds it
    out = []
    for path in sorted(corpus.glob("*/*.yml")):
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        out += ["\n".join(str(t) for t in conv) for conv in data.get("conversations") or []]
    return out


def _same_batch(a: UnitBatch, b: UnitBatch) -> bool:
    return (a.h.dtype == b.h.dtype and np.array_equal(a.h, b.h) and np.array_equal(a.cjk, b.cjk)
            and np.array_equal(a.offsets, b.offsets))


def test_unit_batch_arrays_equal_the_regex_and_xxhash_per_unit_on_real_text():
    texts = _corpus_texts()
    assert len(texts) > 1000 and any(not t.isascii() for t in texts)
    for i in range(0, len(texts), 700):
        batch = texts[i:i + 700]
        assert _same_batch(UnitBatch.of(batch), UnitBatch._of_each(batch)), i


def test_unit_batch_arrays_equal_the_definition_on_random_unicode():
    # every plane, lone surrogates, combining marks, the no-space scripts, long words (the >= 32-byte xxh64
    # path), case that folds to more characters (ß, ﬁ), empty and blank texts
    rng = np.random.default_rng(0)
    pools = [list("abcXYZ_09 ,.-\n\t"), [chr(c) for c in range(0x80, 0x800)], [chr(c) for c in range(0x3000, 0x3100)],
             [chr(c) for c in range(0x4E00, 0x4E40)], [chr(c) for c in range(0x0E00, 0x0E80)], ["ß", "ﬁ", "İ", "Σ"],
             [chr(c) for c in (0x1F600, 0x20000, 0x2A6D6, 0x10400, 0x1D400, 0xE0041)], ["\ud800", "\udfff", "\u0301"]]
    texts = []
    for _ in range(400):
        parts = [rng.choice(pools[rng.integers(len(pools))]) for _ in range(rng.integers(0, 60))]
        texts.append("".join(parts))
    texts += ["", "   ", "x" * 31, "y" * 32, "z" * 33, "é" * 20, "ab" * 100, "\x00 nul inside", "end\x00"]
    for i in range(0, len(texts), 50):
        batch = texts[i:i + 50]
        assert _same_batch(UnitBatch.of(batch), UnitBatch._of_each(batch)), batch
    assert _same_batch(UnitBatch.of([]), UnitBatch._of_each([]))
    for text in texts:
        assert _same_batch(UnitBatch.of([text]), UnitBatch._of_each([text])), text


def test_xxh64_arrays_equal_xxhash_for_every_short_length():
    rng = np.random.default_rng(1)
    buf = rng.integers(0, 256, 4000, dtype=np.uint8)
    start = rng.integers(0, 3900, 600)
    length = np.r_[np.arange(1, 41), rng.integers(1, 80, 560)]
    got = T._xxh64_spans(buf, start, length)
    assert got.tolist() == [xxhash.xxh64_intdigest(buf[s:s + n].tobytes()) for s, n in zip(start, length)]

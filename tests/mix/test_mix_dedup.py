import numpy as np
import pytest

from llmprep.errors import ConfigError
from llmprep.mix.dedup import (
    DedupConfig,
    Deduplicator,
    Duplicate,
    dedup_keys,
    lsh_params,
)
from llmprep.mix.text import example_text, normalize_text


def _run(texts, where, cfg, batch=97):
    """Feed rows in uneven batches, as shards arrive."""
    d, out = Deduplicator(cfg), []
    for i in range(0, len(texts), batch):
        out += d.check(dedup_keys(texts[i:i + batch], cfg), [w[0] for w in where[i:i + batch]],
                       [w[1] for w in where[i:i + batch]])
    return d, out


def test_exact_dedup_on_the_sample_equals_a_python_reference(sample_rows):
    # two "sources": the sample, then its first 300 rows again with other spacing and case
    texts = [example_text("chat", r) for r in sample_rows]
    texts += ["  " + t.upper().replace(" ", "\n ") for t in texts[:300]]
    where = [("sample.jsonl", i + 1) for i in range(len(sample_rows))] + [("again.jsonl", i + 1) for i in range(300)]
    first: dict[str, tuple] = {}
    expect = []
    for t, w in zip(texts, where):
        key = normalize_text(t)
        expect.append(None if key not in first else Duplicate(f"{first[key][0]}:{first[key][1]}", "exact"))
        first.setdefault(key, w)
    d, got = _run(texts, where, DedupConfig())
    assert got == expect
    assert sum(x is not None for x in got[:len(sample_rows)]) > 0  # the sample repeats some real dialogues
    assert all(x is not None and x.of.startswith("sample.jsonl:") for x in got[len(sample_rows):])
    assert d.kept == len(first) and d.removed == {"exact": len(texts) - len(first), "near": 0}
    assert d.nbytes() <= 40 * d.kept  # 16-byte key + id + source/line per kept row, no Python object per row


def test_normalisation_switches(gpl_paragraphs):
    p = gpl_paragraphs[0]
    texts = [p, p.upper(), p.replace(" ", "  ")]
    where = [("a", 1), ("a", 2), ("a", 3)]
    assert [x is None for x in _run(texts, where, DedupConfig())[1]] == [True, False, False]
    assert [x is None for x in _run(texts, where, DedupConfig(casefold=False))[1]] == [True, True, False]
    assert [x is None for x in _run(texts, where, DedupConfig(collapse_whitespace=False))[1]] == [True, False, True]
    assert [x is None for x in _run(texts, where, DedupConfig(mode="none"))[1]] == [True, True, True]


def test_near_dedup_catches_edited_copies_and_keeps_distinct_text(gpl_paragraphs, fortunes):
    long_zh = [f for f in fortunes if len(f) >= 40][:3]
    en = gpl_paragraphs[:6]
    edited_en = en[1].replace("software", "programs", 1)  # one word changed in a long paragraph
    edited_zh = long_zh[0] + "善哉。"  # two characters added
    texts = en + long_zh + [edited_en, edited_zh, gpl_paragraphs[7]]
    where = [("src", i + 1) for i in range(len(texts))]
    _, exact = _run(texts, where, DedupConfig())
    assert all(x is None for x in exact)  # not the same text
    d, near = _run(texts, where, DedupConfig(mode="near"), batch=4)
    assert near[:9] == [None] * 9
    assert near[9] == Duplicate("src:2", "near") and near[10] == Duplicate("src:7", "near")
    assert near[11] is None
    assert d.removed == {"exact": 0, "near": 2}


def test_near_dedup_within_one_batch_names_the_first_kept_row(gpl_paragraphs):
    p = gpl_paragraphs[2]
    texts = [p, p + " Thanks.", p.upper(), p + " Thanks. Bye."]
    d, out = _run(texts, [("f", i) for i in range(1, 5)], DedupConfig(mode="near"), batch=10)
    assert out[0] is None and out[2] == Duplicate("f:1", "exact")
    assert out[1] == Duplicate("f:1", "near") and out[3] == Duplicate("f:1", "near")


def test_lsh_params_and_describe():
    assert lsh_params(0.8, 128) == (9, 13)
    cfg = DedupConfig(mode="near")
    assert "Jaccard >= 0.8 over 5-grams" in cfg.describe() and "9 bands x 13 rows" in cfg.describe()
    assert DedupConfig(casefold=False).describe() == "same text (whitespace collapsed)"


def test_bad_settings_are_reported_together():
    with pytest.raises(ConfigError) as err:
        DedupConfig(mode="fuzzy", threshold=1.5, ngram=0).check()
    msg = str(err.value)
    assert "--dedup 'fuzzy'" in msg and "exact, near, none" in msg
    assert "--dedup-threshold 1.5" in msg and "--dedup-ngram 0" in msg


def test_kept_rows_locations_are_int32_unless_a_line_needs_more():
    """The dedup index holds a (source, line) per kept row: int32 (half the memory), int64 past 2**31 lines."""
    d = Deduplicator(DedupConfig())
    keys = dedup_keys(["a", "b", "a"], d.cfg)
    d.check(keys, ["x.jsonl"] * 3, [1, 2, 3])
    big = dedup_keys(["c", "a"], d.cfg)
    assert d.check(big, ["y.jsonl"] * 2, [2**31 + 5, 2**31 + 6])[1].of == "x.jsonl:1"
    assert [w.dtype for w in d._where] == [np.int32, np.int64]
    assert d.where(2) == f"y.jsonl:{2**31 + 5}" and d.where(1) == "x.jsonl:2"

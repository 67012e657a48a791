import numpy as np
import pytest

from llmprep.mix.keyindex import KeyIndex


@pytest.mark.parametrize("words", [1, 2])
def test_keyindex_matches_a_dict_across_many_merged_batches(words):
    rng = np.random.default_rng(0)
    pool = rng.integers(0, 2**63, (3000, words), dtype=np.uint64)
    ix, ref, next_id = KeyIndex(words), {}, 0
    for size in [1, 7, 300, 64, 1000, 5, 500, 900]:
        batch = pool[rng.integers(0, len(pool), size)]
        expect = [ref.get(tuple(k), -1) for k in batch.tolist()]
        assert ix.find(batch).tolist() == expect
        new = {}
        for k in batch.tolist():
            if tuple(k) not in ref and tuple(k) not in new:
                new[tuple(k)] = next_id
                next_id += 1
        if new:
            ix.add(np.array(list(new), dtype=np.uint64), np.array(list(new.values())))
            ref.update(new)
    assert ix.size == len(ref) and len(ix._runs) < 8  # merged, not one run per batch


def test_128_bit_keys_with_equal_high_words_are_told_apart():
    ix = KeyIndex(2)
    ix.add(np.array([[5, 1], [5, 3], [5, 9]], dtype=np.uint64), np.array([10, 11, 12]))
    assert ix.find(np.array([[5, 3], [5, 9], [5, 2], [4, 1]], dtype=np.uint64)).tolist() == [11, 12, -1, -1]


def test_keyindex_rejects_other_widths():
    with pytest.raises(ValueError, match="expected 1"):
        KeyIndex(3)


def test_runs_with_equal_high_words_merge_in_order():
    """Many keys share a high word (only 4 values): merging runs must order them by the low word too."""
    rng = np.random.default_rng(1)
    ix, ref = KeyIndex(2), {}
    for size in [50, 50, 100, 200, 30, 400]:
        keys = np.column_stack([rng.integers(0, 4, size), rng.integers(0, 2**40, size)]).astype(np.uint64)
        keys = np.unique(keys, axis=0)
        new = [k for k in map(tuple, keys.tolist()) if k not in ref]
        ix.add(np.array(new, dtype=np.uint64).reshape(-1, 2), np.arange(len(ref), len(ref) + len(new)))
        ref.update({k: len(ref) + j for j, k in enumerate(new)})
        hi, lo, _ = ix._runs[0]
        assert (np.diff(hi.astype(np.float64)) >= 0).all()
        assert all(lo[i] < lo[i + 1] for i in np.flatnonzero(hi[1:] == hi[:-1]))
    probe = np.array(list(ref) + [(1, 2**41), (9, 0)], dtype=np.uint64)
    assert ix.find(probe).tolist() == list(ref.values()) + [-1, -1]


def test_runs_stop_merging_at_the_cap_and_lookups_still_answer(monkeypatch):
    """Capped runs (RUN_KEYS) bound the merge's extra memory; every key is still found, in any run."""
    import llmprep.mix.keyindex as K

    monkeypatch.setattr(K, "RUN_KEYS", 256)
    rng = np.random.default_rng(2)
    ix, ref = KeyIndex(2), {}
    for _ in range(40):
        keys = np.unique(rng.integers(0, 2**63, (60, 2), dtype=np.uint64), axis=0)
        new = [k for k in map(tuple, keys.tolist()) if k not in ref]
        ix.add(np.array(new, dtype=np.uint64).reshape(-1, 2), np.arange(len(ref), len(ref) + len(new)))
        ref.update({k: len(ref) + j for j, k in enumerate(new)})
    sizes = [len(run[0]) for run in ix._runs]
    assert max(sizes) <= 256 and sum(sizes) == len(ref) == ix.size
    assert len(sizes) >= len(ref) // 256  # the cap held: not one merged run
    probe = np.array(list(ref) + [(1, 2)], dtype=np.uint64)
    assert ix.find(probe).tolist() == list(ref.values()) + [-1]

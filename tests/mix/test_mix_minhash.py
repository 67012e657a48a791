import numpy as np
import pytest

from llmprep.mix import minhash as M
from llmprep.mix.text import ngram_hashes


def _jaccard(a: np.ndarray, b: np.ndarray) -> float:
    a, b = set(a.tolist()), set(b.tolist())
    return len(a & b) / len(a | b)


def test_permutations_are_odd_multipliers_and_seeded():
    a, b = M.permutations(128, 1)
    assert (a % 2 == 1).all() and len(set(a.tolist())) == 128
    assert not np.array_equal(M.permutations(128, 2)[0], a)


def test_rensa_gives_the_numpy_signatures_on_real_text(gpl_paragraphs, fortunes):
    pytest.importorskip("rensa")
    flat, off = ngram_hashes(gpl_paragraphs + fortunes + [""], 5, 5, short_runs=True)
    assert M.rensa_verified(128, 1)
    assert np.array_equal(M._signatures_rensa(flat, off, 128, 1), M.signatures_numpy(flat, off, 128, 1))


def test_a_rensa_that_hashes_differently_is_not_used(monkeypatch):
    monkeypatch.setattr(M, "_RENSA", {})
    monkeypatch.setattr(M, "_signatures_rensa", lambda flat, off, p, s: M.signatures_numpy(flat, off, p, s + 1))
    flat, off = ngram_hashes(["one two three four five six"], 5, 5, short_runs=True)
    assert not M.rensa_verified(64, 7)
    assert np.array_equal(M.signatures(flat, off, 64, 7), M.signatures_numpy(flat, off, 64, 7))


def test_signature_agreement_estimates_jaccard_on_real_text(gpl_paragraphs):
    base = " ".join(gpl_paragraphs[:3]).split()
    edited = list(base)
    for i in range(0, len(edited), 25):  # one word in 25 replaced
        edited[i] = "zzz"
    texts = [" ".join(base), " ".join(edited), gpl_paragraphs[5]]
    flat, off = ngram_hashes(texts, 5, 5, short_runs=True)
    sig = M.signatures(flat, off, 256, 1)
    rows = [flat[off[i]:off[i + 1]] for i in range(3)]
    true = _jaccard(rows[0], rows[1])
    assert 0.5 < true < 0.9
    assert abs((sig[0] == sig[1]).mean() - true) < 0.08  # std of the estimate at 256 permutations is ~0.03
    assert (sig[0] == sig[2]).mean() < 0.05


def test_empty_row_signature_is_all_max_and_band_keys_separate_bands():
    sig = M.signatures_numpy(np.array([5, 6], dtype=np.uint64), np.array([0, 2, 2]), 16, 1)
    assert (sig[1] == 0xFFFFFFFF).all() and not (sig[0] == 0xFFFFFFFF).all()
    same = np.tile(np.arange(12, dtype=np.uint32), (2, 1))
    keys = M.band_keys(same, 4, 3)
    assert (keys[0] == keys[1]).all() and len(set(keys[0].tolist())) == 4  # equal bands, distinct per band index
    other = same.copy()
    other[1, 0] += 1  # first band differs only
    k2 = M.band_keys(other, 4, 3)
    assert k2[0, 0] != k2[1, 0] and (k2[0, 1:] == k2[1, 1:]).all()


def _child_signatures(flat, off):
    return M.rensa_verified(128, 1), M.signatures(flat, off, 128, 1)


def test_a_process_forked_after_rensa_ran_uses_numpy_and_does_not_hang(gpl_paragraphs):
    """rayon's pool does not survive fork: a child of a process that used rensa would wait forever in it."""
    import multiprocessing as mp

    pytest.importorskip("rensa")
    flat, off = ngram_hashes(gpl_paragraphs, 5, 5, short_runs=True)
    parent = M.signatures(flat, off, 128, 1)  # rensa ran here (verified), so its thread pool exists
    assert M.rensa_verified(128, 1)
    with mp.get_context("fork").Pool(1) as pool:
        used_rensa, child = pool.apply_async(_child_signatures, (flat, off)).get(timeout=60)
    assert not used_rensa and np.array_equal(child, parent)

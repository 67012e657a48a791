import numpy as np
import pytest

from llmprep.mix.plan import TOLERANCE, plan_mix
from llmprep.mix.recipe import Recipe, Source


@pytest.fixture(scope="module")
def trained(smollm2, sample_rows):
    """Real trained-token counts: each row's assistant replies plus their end-of-turn token, SmolLM2 tokenizer;
    split into an English and a Chinese source."""
    def count(row):
        replies = [m["content"] for m in row["messages"] if m["role"] == "assistant"]
        return sum(len(ids) + 1 for ids in smollm2(replies, add_special_tokens=False)["input_ids"])

    zh = [r for r in sample_rows if "/chinese/" in r.get("source", "")]
    en = [r for r in sample_rows if "/english/" in r.get("source", "")]
    return {"en": np.array([count(r) for r in en]), "zh": np.array([count(r) for r in zh])}


def _recipe(*sources, total=None, seed=42):
    return Recipe("r.yaml", tuple(Source(n, (), a, v) for n, a, v in sources), total, seed)


@pytest.mark.parametrize("shares", [(0.5, 0.5), (0.8, 0.2), (0.3, 0.7)])
def test_shares_of_trained_tokens_within_one_percent(trained, shares):
    total = int(trained["en"].sum())  # en is down-sampled or kept, zh repeated when it must be
    plan = plan_mix(_recipe(("en", "share", shares[0]), ("zh", "share", shares[1]), total=total), trained)
    for p, target in zip(plan.sources, shares):
        assert abs(p.share - target) <= TOLERANCE * target and p.reason is None
        assert p.trained_tokens == int(trained[p.name] @ p.counts) and p.rows == int(p.counts.sum())
        assert p.epochs == pytest.approx(p.trained_tokens / trained[p.name].sum())
    assert plan.total_tokens == pytest.approx(total, rel=TOLERANCE)
    zh = plan.sources[1]
    if zh.epochs > 1:  # repeats: every row at least floor(epochs) times, whole examples only
        assert zh.counts.min() == int(zh.epochs) and zh.counts.max() <= int(zh.epochs) + 1


def test_scarcest_source_is_used_fully_and_the_rest_down_sampled(trained):
    plan = plan_mix(_recipe(("en", "share", 0.5), ("zh", "share", 0.5), total=None), trained)
    en, zh = plan.sources
    assert trained["zh"].sum() < trained["en"].sum()
    assert (zh.counts == 1).all() and zh.epochs == 1.0
    assert en.counts.max() == 1 and en.rows < len(trained["en"])
    assert abs(en.share - 0.5) <= 0.005 and en.summary()["available_rows"] == len(trained["en"])


def test_seeded_deterministic_and_independent_of_other_sources(trained):
    r1 = _recipe(("en", "share", 0.7), ("zh", "share", 0.3), total=40000)
    a, b = plan_mix(r1, trained), plan_mix(r1, trained)
    assert all(np.array_equal(x.counts, y.counts) for x, y in zip(a.sources, b.sources))
    c = plan_mix(_recipe(("en", "share", 0.7), ("zh", "share", 0.3), total=40000, seed=1), trained)
    assert not np.array_equal(a.sources[0].counts, c.sources[0].counts)
    # the zh source's rows change only by its own amount: same tokens target, other source changed
    d = plan_mix(_recipe(("en", "tokens", 5000), ("zh", "tokens", 12000), total=17000), trained)
    e = plan_mix(_recipe(("en", "tokens", 9000), ("zh", "tokens", 12000), total=21000), trained)
    assert np.array_equal(d.sources[1].counts, e.sources[1].counts)


def test_fixed_rows_and_order(trained):
    n = len(trained["zh"])
    plan = plan_mix(_recipe(("zh", "rows", 2 * n + 5)), trained)
    zh = plan.sources[0]
    assert zh.rows == 2 * n + 5 and sorted(np.bincount(zh.counts).nonzero()[0]) == [2, 3]
    order = zh.order()
    assert len(order) == zh.rows and list(order[:n]) == list(range(n))  # first pass in input order


def test_unreachable_targets_say_why(trained):
    tiny = {"a": np.array([1000, 1000, 1000]), "b": trained["zh"]}
    plan = plan_mix(_recipe(("a", "share", 0.001), ("b", "share", 0.999), total=100000), tiny)
    a = plan.sources[0]
    assert a.reason.startswith("whole examples: the closest selection has") and "rows of up to 1,000 tokens" in a.reason
    empty = plan_mix(_recipe(("a", "share", 0.5), ("b", "share", 0.5), total=1000),
                     {"a": np.array([]), "b": trained["zh"]})
    assert empty.sources[0].reason == "no kept rows with trained tokens in this source"
    assert "the other sources give" in empty.sources[1].reason
    assert set(empty.summary()[0]) >= {"name", "target_share", "share", "rows", "trained_tokens", "epochs"}

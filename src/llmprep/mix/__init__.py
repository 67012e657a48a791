"""Compose a training mix: which examples train, and how often.

    recipe (recipe.py)  -> sources with a share of trained tokens, a fixed token or row count, a budget
    text (text.py)      -> one string per example, normalised; units; n-gram hashes (words, CJK characters)
    dedup (dedup.py)    -> per-row keys in the workers, keep-the-first decisions in input order (keyindex.py)
    minhash (minhash.py)-> MinHash signatures and LSH band keys for near duplicates (rensa where identical)
    decontaminate (decontaminate.py) -> rows sharing a 13-gram with a benchmark item
    plan (plan.py)      -> per row: how many times it goes into the output (0: dropped, reason `mix`)
"""

from llmprep.mix.decontaminate import BenchmarkIndex, DecontConfig, item_text
from llmprep.mix.dedup import (
           DedupConfig,
           DedupKeys,
           Deduplicator,
           Duplicate,
           dedup_keys,
)
from llmprep.mix.plan import MixPlan, SourcePlan, plan_mix
from llmprep.mix.recipe import Recipe, RecipeError, Source, load_recipe
from llmprep.mix.text import example_text, normalize_text

__all__ = ["BenchmarkIndex", "DecontConfig", "item_text", "DedupConfig", "Deduplicator", "DedupKeys", "Duplicate",
           "dedup_keys", "MixPlan", "SourcePlan", "plan_mix", "Recipe", "RecipeError", "Source", "load_recipe",
           "example_text", "normalize_text"]

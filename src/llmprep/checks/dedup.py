"""Checks of the examples themselves: duplicates, train/test leakage, control-token text in content.

One pass over the examples (in batches) collects what the three checks need. Text, normalisation and
keys are llmprep.mix's, the ones prepare's --dedup uses: exact matches compare the example's text
(mix.text.example_text) with whitespace collapsed and case folded (xxh3-128); near matches are MinHash
LSH candidates (5-grams of words, of characters in CJK; 128 permutations; 9 bands x 13 rows) whose
signatures agree on at least NEAR_THRESHOLD of their values (the Jaccard estimate), over the first
NEAR_LIMIT distinct examples (exact matches cover every example). On a directory prepare already
deduplicated, report.json says how many rows it removed and the kept rows are not compared again.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field
from itertools import islice
from typing import Iterable, Iterator

import numpy as np

from llmprep.checks.finding import Finding
from llmprep.checks.registry import Skip, check
from llmprep.checks.text import prompt_text
from llmprep.mix.dedup import DedupConfig, dedup_keys
from llmprep.mix.text import example_text

NEAR = DedupConfig(mode="near")
EXACT = DedupConfig(mode="exact")
PROMPT = DedupConfig(mode="near", casefold=False)  # prompts: whitespace-normalised, case kept
NEAR_THRESHOLD = NEAR.threshold
SHINGLE_WORDS = NEAR.ngram
NUM_PERM = NEAR.num_perm
NEAR_LIMIT = 50_000
SHOW = 10
CHAT_SAMPLE = 100  # single-turn and multi-turn conversations kept for the template checks
BATCH = 512  # examples whose keys are computed together


@dataclass
class Scan:
    """What one pass over the examples found."""

    items: int = 0
    splits: Counter = field(default_factory=Counter)
    first: dict = field(default_factory=dict)  # exact key -> where of its first example
    repeats: dict = field(default_factory=dict)  # exact key -> [count, where, ...] of repeated texts (SHOW kept)
    near: list = field(default_factory=list)  # (where, where of the earlier example, estimated Jaccard)
    near_checked: int = 0
    leak_exact: list = field(default_factory=list)  # (test where, train where)
    leak_near: list = field(default_factory=list)  # (test where, train where, estimated Jaccard)
    leak_checked: int = 0
    control: list = field(default_factory=list)  # (where, field, token text)
    control_tokens: Counter = field(default_factory=Counter)
    chats: dict = field(default_factory=lambda: {"single": [], "multi": []})  # (where, messages): samples
    prepared: dict = field(default_factory=dict)  # report.json's "dedup" when prepare removed the duplicates
    error: str | None = None
    total: int | None = None  # examples in the data when the scan stopped at Data.scan_limit, else None

    def scope(self) -> str:
        """How much of the data the findings cover, when not all of it.

        Example: Scan(items=2000, total=20000).scope()
        -> " (prepare checked the first 2,000 of 20,000 examples; `llmprep doctor DIR` checks them all)"
        """
        if self.total is None:
            return ""
        return (f" (prepare checked the first {self.items:,} of {self.total:,} examples; `llmprep doctor DIR` "
                "checks them all)")


class _NearIndex:
    """LSH band keys -> indexed examples, with their signatures for the Jaccard estimate."""

    def __init__(self):
        self.bands: dict[int, list[int]] = {}
        self.where: list[str] = []
        self.sigs: list[np.ndarray] = []

    def add(self, where: str, bands: np.ndarray, sig: np.ndarray) -> None:
        for b in bands.tolist():
            if b:
                self.bands.setdefault(b, []).append(len(self.where))
        self.where.append(where)
        self.sigs.append(sig)

    def closest(self, bands: np.ndarray, sig: np.ndarray) -> tuple[float, str] | None:
        """(estimated Jaccard, where) of the most similar indexed example at or above the threshold."""
        found = sorted({c for b in bands.tolist() if b for c in self.bands.get(b, ())})
        best = None
        for c in found:
            j = float((self.sigs[c] == sig).mean())
            if best is None or j > best[0]:
                best = (j, self.where[c])
        return best if best and best[0] >= NEAR_THRESHOLD else None


def _batches(items: Iterable, n: int) -> Iterator[list]:
    it = iter(items)
    while batch := list(islice(it, n)):
        yield batch


def _texts(item) -> list[tuple[str, str]]:
    """(field, text) of an example's contents. Example: chat -> [("messages[0].content", "Hi"), ...]"""
    if "messages" in item.data:
        from llmprep.messages import message_text  # content may be parts or null, with tool calls and reasoning

        return [(f"messages[{i}].content", message_text(m)) for i, m in enumerate(item.data["messages"])]
    if "text" in item.data:
        return [("text", item.data["text"])] + ([("text_pair", item.data["text_pair"])] if "text_pair" in item.data
                                                else [])
    return []


def control_pattern(tokenizer) -> re.Pattern | None:
    """Regex of the tokenizer's special (control) token texts, longest first."""
    specials = {t.content for t in getattr(tokenizer, "added_tokens_decoder", {}).values() if t.special}
    specials |= {t for t in getattr(tokenizer, "all_special_tokens", []) if t}
    ordered = sorted(specials, key=len, reverse=True)
    return re.compile("|".join(map(re.escape, ordered))) if ordered else None


def scan_data(subject) -> Scan:
    """One pass over the examples: exact and near duplicates, prompts by split, control-token text, and
    a sample of single- and multi-turn chats for the template checks."""
    data = subject.require_data()
    scan = Scan(prepared=data.deduplicated())
    control = control_pattern(subject.tokenizer)
    near, prompts = _NearIndex(), {"train": {}, "test": [], "index": _NearIndex()}
    items = data.items() if data.scan_limit is None else islice(data.items(), data.scan_limit)
    leak = "test" in data.splits  # no test split: no leakage to look for (nor prompts to hash)
    try:
        for batch in _batches(items, BATCH):
            _duplicates(scan, batch, near)
            if leak:
                _collect_prompts(scan, [item for item in batch if item.kind == "chat"], prompts)
            for item in batch:
                scan.items += 1
                scan.splits[item.split] += 1
                if item.kind == "chat":
                    turns = "multi" if sum(m["role"] == "assistant" for m in item.data["messages"]) > 1 else "single"
                    if len(scan.chats[turns]) < CHAT_SAMPLE:
                        scan.chats[turns].append((item.where, item.data["messages"]))
                texts = _texts(item) if control is not None else []
                if texts and not control.search("\x00".join(t for _, t in texts)):  # one search, per text on a hit
                    texts = []
                for name, text in texts:
                    if m := control.search(text):
                        scan.control_tokens[m.group(0)] += 1
                        if len(scan.control) < SHOW:
                            scan.control.append((item.where, name, m.group(0)))
    except Skip as exc:
        scan.error = str(exc)
        return scan
    kept = (data.report.get("records") or {}).get("kept")
    if data.scan_limit is not None and scan.items >= data.scan_limit and kept is not None and kept > scan.items:
        scan.total = int(kept)
    for key, where, keys in prompts["test"]:
        if key in prompts["train"]:
            scan.leak_exact.append((where, prompts["train"][key]))
        elif keys is not None and (best := prompts["index"].closest(*keys)):
            scan.leak_near.append((where, best[1], best[0]))
    return scan


def _duplicates(scan: Scan, batch: list, near: _NearIndex) -> None:
    """Count exact repeats of earlier examples; look the others up among the near ones and index them.
    After prepare's --dedup the kept examples hold no exact (after --dedup near: no near) duplicate."""
    mode = scan.prepared.get("mode")
    if mode == "near":
        return
    need_near = scan.near_checked < NEAR_LIMIT
    keys = dedup_keys([example_text(item.kind, item.data) for item in batch], NEAR if need_near else EXACT,
                      signatures=need_near)
    for i, item in enumerate(batch):
        if mode is None:
            key = keys.exact[i].tobytes()
            first = scan.first.setdefault(key, item.where)
            if first != item.where:
                group = scan.repeats.setdefault(key, [1, first])
                group[0] += 1
                if len(group) <= SHOW:
                    group.append(item.where)
                continue
        if scan.near_checked < NEAR_LIMIT and keys.near is not None:
            if best := near.closest(keys.near[i], keys.signatures[i]):
                scan.near.append((item.where, best[1], best[0]))
            near.add(item.where, keys.near[i], keys.signatures[i])
            scan.near_checked += 1


def _collect_prompts(scan: Scan, chats: list, prompts: dict) -> None:
    """Remember the prompts of chats: train prompts indexed, test prompts looked up at the end."""
    if not chats:
        return
    need_near = scan.leak_checked < NEAR_LIMIT
    keys = dedup_keys([prompt_text(item.data["messages"]) for item in chats],
                      PROMPT if need_near else DedupConfig(casefold=False), signatures=need_near)
    for i, item in enumerate(chats):
        key = keys.exact[i].tobytes()
        near = (keys.near[i], keys.signatures[i]) if need_near and scan.leak_checked < NEAR_LIMIT else None
        scan.leak_checked += near is not None
        if item.split == "test":
            prompts["test"].append((key, item.where, near))
            continue
        prompts["train"].setdefault(key, item.where)
        if near is not None:
            prompts["index"].add(item.where, *near)


def _scan(subject) -> Scan:
    scan = subject.scan
    if scan.error:
        raise Skip(scan.error)
    return scan


def _near_note(checked: int, total: int) -> str:
    limit = f", among the first {NEAR_LIMIT:,} distinct examples of {total:,}" if checked >= NEAR_LIMIT else ""
    return f"MinHash, Jaccard >= {NEAR_THRESHOLD} over word {SHINGLE_WORDS}-grams, {NUM_PERM} permutations{limit}"


@check("duplicates", "exact and near-duplicate conversations (near: MinHash, Jaccard >= 0.8 over word 5-grams)")
def duplicates(subject) -> list[Finding]:
    scan = _scan(subject)
    if scan.prepared:
        return _after_prepare(scan)
    groups = sorted(scan.repeats.values(), key=lambda g: -g[0])
    extra = sum(g[0] - 1 for g in groups)
    if not extra and not scan.near:
        return []
    examples = [" = ".join(g[1:5]) + (f" (x{g[0]})" if g[0] > 4 else "") for g in groups[:SHOW]]
    examples += [f"{a} ~ {b} (Jaccard {j:.2f})" for a, b, j in scan.near[:SHOW]]
    return [Finding(
        "duplicates", "warning",
        f"{extra:,} of {scan.items:,} examples repeat an earlier one exactly ({len(groups):,} groups; text compared "
        f"with whitespace collapsed and case folded), {len(scan.near):,} more are near-duplicates "
        f"({_near_note(scan.near_checked, scan.items)}){scan.scope()}: repeated examples are trained several times "
        "per epoch",
        examples[0] if examples else "",
        "remove the repeats (keep the first copy) unless repeating them is intended", tuple(examples))]


def _after_prepare(scan: Scan) -> list[Finding]:
    """prepare's --dedup removed the duplicates (report.json "dedup"): say how many (info), and warn about the
    near duplicates it did not compare (--dedup exact)."""
    d = scan.prepared
    removed = f"llmprep prepare removed {d['removed']:,} duplicate rows (--dedup {d['mode']}: {d['compared']})"
    examples = [f"{a} ~ {b} (Jaccard {j:.2f})" for a, b, j in scan.near[:SHOW]]
    if examples:
        return [Finding(
            "duplicates", "warning",
            f"{removed}; {len(scan.near):,} of the {scan.items:,} kept examples are near-duplicates of an earlier "
            f"one ({_near_note(scan.near_checked, scan.items)}){scan.scope()}: repeated examples are trained several "
            "times per epoch", examples[0],
            "prepare with --dedup near to remove them too, unless repeating them is intended", tuple(examples))]
    if not d["removed"]:
        return []
    return [Finding("duplicates", "info", f"{removed}; the {scan.items:,} kept examples hold none{scan.scope()}",
                    "report.json: dedup", "nothing to do (--dedup none keeps repeats, if they are intended)")]


@check("leakage", "the same or near-same prompt in train and test")
def leakage(subject) -> list[Finding]:
    scan = _scan(subject)
    if not scan.splits.get("test"):
        raise Skip("the data has no test split")
    if not scan.leak_exact and not scan.leak_near:
        return []
    examples = [f"test {t} = train {r}" for t, r in scan.leak_exact[:SHOW]]
    examples += [f"test {t} ~ train {r} (Jaccard {j:.2f})" for t, r, j in scan.leak_near[:SHOW]]
    return [Finding(
        "leakage", "warning",
        f"{len(scan.leak_exact):,} of {scan.splits['test']:,} test examples have a prompt that also appears in train "
        f"(every message before the last reply, whitespace-normalised), {len(scan.leak_near):,} more a near-same "
        f"one ({_near_note(scan.leak_checked, scan.items)}){scan.scope()}: test metrics overstate how well the model "
        "generalises",
        examples[0],
        "split by prompt (group examples that share a prompt into the same split), or drop the leaked test rows",
        tuple(examples))]


@check("control-text", "content containing the text of control tokens")
def control_text(subject) -> list[Finding]:
    scan = _scan(subject)
    if not scan.control_tokens:
        return []
    counts = ", ".join(f"{t!r} x{n}" for t, n in scan.control_tokens.most_common(5))
    examples = [f"{w} {name}: {tok!r}" for w, name, tok in scan.control]
    return [Finding(
        "control-text", "warning",
        f"example content contains the text of control tokens ({counts}){scan.scope()}; tokenized as-is it would "
        "become control tokens (a user typing '<|im_end|>' ends the turn)",
        examples[0],
        "llmprep prepare keeps such text as plain text by default (control_text_rows in report.json); remove it "
        "from the data if it is an artefact, or pass --allow-control-text if it is meant as markup",
        tuple(examples))]

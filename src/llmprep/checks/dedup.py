"""Checks of the examples themselves: duplicates, train/test leakage, control-token text in content.

One pass over the examples collects what the three checks need. Exact matches compare normalised text
(checks.text.normalize); near matches use MinHash LSH (datasketch): Jaccard similarity of word
5-gram sets at least NEAR_THRESHOLD, estimated with NUM_PERM permutations, over the first NEAR_LIMIT
examples (exact matches cover every example).
"""

from __future__ import annotations

import functools
import hashlib
import re
from collections import Counter
from dataclasses import dataclass, field

from llmprep.checks.finding import Finding
from llmprep.checks.registry import Skip, check
from llmprep.checks.text import conversation_text, normalize, prompt_text, shingles

NEAR_THRESHOLD = 0.8
SHINGLE_WORDS = 5
NUM_PERM = 128
NEAR_LIMIT = 50_000
SHOW = 10
CHAT_SAMPLE = 100  # single-turn and multi-turn conversations kept for the template checks


@dataclass
class Scan:
    """What one pass over the examples found."""

    items: int = 0
    splits: Counter = field(default_factory=Counter)
    first: dict = field(default_factory=dict)  # text digest -> where of its first example
    repeats: dict = field(default_factory=dict)  # text digest -> [count, where, ...] of repeated texts (SHOW kept)
    near: list = field(default_factory=list)  # (where, where of the earlier example, estimated Jaccard)
    near_checked: int = 0
    leak_exact: list = field(default_factory=list)  # (test where, train where)
    leak_near: list = field(default_factory=list)  # (test where, train where, estimated Jaccard)
    leak_checked: int = 0
    control: list = field(default_factory=list)  # (where, field, token text)
    control_tokens: Counter = field(default_factory=Counter)
    chats: dict = field(default_factory=lambda: {"single": [], "multi": []})  # (where, messages): samples
    error: str | None = None


def _digest(text: str) -> bytes:
    return hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=12).digest()


@functools.lru_cache(maxsize=1)
def _permutations():
    """The seeded permutations, made once: building them per MinHash costs ~0.5 ms each."""
    from datasketch import MinHash

    base = MinHash(num_perm=NUM_PERM, seed=1)
    return base.permutations, base.scheme


def _minhash(text: str):
    from datasketch import MinHash

    permutations, scheme = _permutations()
    mh = MinHash(num_perm=NUM_PERM, seed=1, permutations=permutations, scheme=scheme)
    mh.update_batch([s.encode("utf-8", "surrogatepass") for s in sorted(shingles(text, SHINGLE_WORDS))])
    return mh


@functools.lru_cache(maxsize=1)
def _bands() -> tuple[int, int]:
    """LSH bands x rows for NEAR_THRESHOLD, computed once (datasketch integrates numerically for it)."""
    from datasketch import MinHashLSH

    lsh = MinHashLSH(threshold=NEAR_THRESHOLD, num_perm=NUM_PERM)
    return lsh.b, lsh.r


def _lsh():
    from datasketch import MinHashLSH

    return MinHashLSH(num_perm=NUM_PERM, params=_bands())


def _texts(item) -> list[tuple[str, str]]:
    """(field, text) of an example's contents. Example: chat -> [("messages[0].content", "Hi"), ...]"""
    if "messages" in item.data:
        from llmprep.messages import message_text  # content may be parts or null, with tool calls and reasoning

        return [(f"messages[{i}].content", message_text(m)) for i, m in enumerate(item.data["messages"])]
    if "text" in item.data:
        return [("text", item.data["text"])] + ([("text_pair", item.data["text_pair"])] if "text_pair" in item.data
                                                else [])
    return []


def _whole(item) -> str:
    return conversation_text(item.data["messages"]) if "messages" in item.data else \
        "\n".join(t for _, t in _texts(item))


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
    scan = Scan()
    control = control_pattern(subject.tokenizer)
    near, prompts = _Index(), {"train": {}, "test": [], "index": _Index()}
    try:
        for item in data.items():
            scan.items += 1
            scan.splits[item.split] += 1
            _duplicates(scan, item, near)
            if item.kind == "chat":
                _collect_prompt(item, prompts, scan)
                turns = "multi" if sum(m["role"] == "assistant" for m in item.data["messages"]) > 1 else "single"
                if len(scan.chats[turns]) < CHAT_SAMPLE:
                    scan.chats[turns].append((item.where, item.data["messages"]))
            for name, text in _texts(item) if control is not None else ():
                if m := control.search(text):
                    scan.control_tokens[m.group(0)] += 1
                    if len(scan.control) < SHOW:
                        scan.control.append((item.where, name, m.group(0)))
    except Skip as exc:
        scan.error = str(exc)
        return scan
    for key, where, mh in prompts["test"]:
        if key in prompts["train"]:
            scan.leak_exact.append((where, prompts["train"][key]))
        elif mh is not None and (best := prompts["index"].closest(mh)):
            scan.leak_near.append((where, best[1], best[0]))
    return scan


class _Index:
    """MinHash LSH over examples: where each came from, and its MinHash for the exact estimate."""

    def __init__(self):
        self.lsh, self.entries = _lsh(), []

    def add(self, where: str, mh) -> None:
        self.lsh.insert(len(self.entries), mh)
        self.entries.append((where, mh))

    def closest(self, mh) -> tuple[float, str] | None:
        """(estimated Jaccard, where) of the most similar indexed example at or above the threshold."""
        hits = [(mh.jaccard(self.entries[k][1]), self.entries[k][0]) for k in sorted(self.lsh.query(mh))]
        best = max(hits, default=None, key=lambda h: h[0])
        return best if best and best[0] >= NEAR_THRESHOLD else None


def _duplicates(scan: Scan, item, near: _Index) -> None:
    """Count an exact repeat of an earlier example, else look it up among the near ones and index it."""
    whole = _whole(item)
    key = _digest(normalize(whole))
    first = scan.first.setdefault(key, item.where)
    if first != item.where:
        group = scan.repeats.setdefault(key, [1, first])
        group[0] += 1
        if len(group) <= SHOW:
            group.append(item.where)
    elif scan.near_checked < NEAR_LIMIT:
        mh = _minhash(whole)
        if best := near.closest(mh):
            scan.near.append((item.where, best[1], best[0]))
        near.add(item.where, mh)
        scan.near_checked += 1


def _collect_prompt(item, prompts: dict, scan: Scan) -> None:
    """Remember the prompt of a chat: train prompts indexed, test prompts looked up at the end."""
    prompt = prompt_text(item.data["messages"])
    key = _digest(prompt)
    mh = _minhash(prompt) if scan.leak_checked < NEAR_LIMIT else None
    scan.leak_checked += mh is not None
    if item.split == "test":
        prompts["test"].append((key, item.where, mh))
        return
    prompts["train"].setdefault(key, item.where)
    if mh is not None:
        prompts["index"].add(item.where, mh)


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
        f"({_near_note(scan.near_checked, scan.items)}): repeated examples are trained several times per epoch",
        examples[0] if examples else "",
        "remove the repeats (keep the first copy) unless repeating them is intended", tuple(examples))]


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
        f"one ({_near_note(scan.leak_checked, scan.items)}): test metrics overstate how well the model generalises",
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
        f"example content contains the text of control tokens ({counts}); tokenized as-is it would become "
        "control tokens (a user typing '<|im_end|>' ends the turn)",
        examples[0],
        "llmprep prepare keeps such text as plain text by default (control_text_rows in report.json); remove it "
        "from the data if it is an artefact, or pass --allow-control-text if it is meant as markup",
        tuple(examples))]

"""Checks of prepared rows: is every reply's stop token trained, does every row train something, how much
did truncation cut away."""

from __future__ import annotations

import numpy as np

from llmprep.checks.finding import Finding
from llmprep.checks.probe import eot_id
from llmprep.checks.registry import Skip, check
from llmprep.constants import IGNORE_INDEX

TRUNCATION_LOSS = 0.01  # warn when more than 1% of the trained tokens were cut away


def _chat_rows(subject):
    data = subject.require_data()
    splits = data.require_rows()
    if (data.kinds and not data.kinds.get("chat")) or data.wrapped:
        raise Skip("the data holds no chat rows (documents, or --pack wrap blocks)")
    if not data.has_token_labels():
        raise Skip("the rows have no token labels (sentence pairs)")
    return data, splits


def reply_ends(rows, eot: int) -> tuple[np.ndarray, np.ndarray]:
    """Positions where a trained run ends on the stop token, and where it ends just before an untrained one.

    Example: ids [u, a, EOT, n], trained [F, T, T, F] -> ([2], []); trained [F, T, F, F] -> ([], [2])
    """
    trained = rows.trained
    hit = rows.ids == eot
    if not rows.unpadded:
        hit &= rows.real
    pos = np.flatnonzero(hit)
    starts = rows.offsets[:-1]
    pos = pos[starts[np.searchsorted(starts, pos, side="right") - 1] != pos]  # not the first token of its row
    after_reply = trained[pos - 1]
    return pos[after_reply & trained[pos]], pos[after_reply & ~trained[pos]]


def open_ends(rows, eot: int) -> np.ndarray:
    """Rows that end inside a reply: the last real token is trained and the reply it ends holds no stop
    token (truncation cut it off).

    Example: a row truncated inside the answer: [..., "Par", "is"] all trained, no EOT -> that row

    Per row, not per token: a row whose last real token is a trained stop token (nearly every row) is
    decided at once; only the others are walked back over their trained run.
    """
    trained, ids, offsets = rows.trained, rows.ids, rows.offsets
    n = len(rows)
    nonempty = np.flatnonzero(rows.lengths > 0)
    last = np.full(n, -1, np.int64)
    if len(nonempty):
        if rows.unpadded:
            last[nonempty] = offsets[1:][nonempty] - 1
        else:  # padding on either side: the greatest real position of each row (-1: none)
            pos = np.where(rows.real, np.arange(len(ids)), -1)
            last[nonempty] = np.maximum.reduceat(pos, offsets[:-1][nonempty])
    has = last >= 0
    open_rows = np.zeros(n, bool)
    open_rows[has] = trained[last[has]] & (ids[last[has]] != eot)
    out = []
    for r in np.flatnonzero(open_rows).tolist():
        a, end = offsets[r], last[r]
        start = end
        while start > a and trained[start - 1]:
            start -= 1
        if not (ids[start:end + 1] == eot).any():
            out.append(r)
    return np.asarray(out, dtype=np.int64)


@check("eot-untrained", "in prepared data, a reply's end-of-turn/stop token is not trained (or absent)")
def eot_untrained(subject) -> list[Finding]:
    data, splits = _chat_rows(subject)
    eot = eot_id(subject)
    name = subject.probe.eot
    masked, cut, replies = {}, {}, 0
    for split in splits:
        for start, rows in data.chunks(split):
            ok, bad = reply_ends(rows, eot)
            replies += len(ok) + len(bad)
            if len(bad):
                n, first = masked.get(split, (0, start + int(np.searchsorted(rows.offsets, bad[0], side="right")) - 1))
                masked[split] = (n + len(bad), first)
            ends = open_ends(rows, eot)
            if len(ends):
                n, first = cut.get(split, (0, start + int(ends[0])))
                cut[split] = (n + len(ends), first)
    out = []
    if masked:
        n = sum(v[0] for v in masked.values())
        out.append(Finding(
            "eot-untrained", "error",
            f"{n:,} of {replies:,} replies end with an untrained {name!r}: the model never learns to stop",
            "; ".join(f"split {s}: {k:,} replies, first in row {r}" for s, (k, r) in masked.items()),
            f"train the stop token with the reply (llmprep prepare does); never mask labels == pad_token_id "
            f"when pad is {name!r}"))
    if cut:
        n = sum(v[0] for v in cut.values())
        out.append(Finding(
            "eot-untrained", "warning",
            f"{n:,} rows end inside a reply: its {name!r} was cut away (truncation), so these rows teach the "
            "model to keep talking",
            "; ".join(f"split {s}: {k:,} rows, first row {r}" for s, (k, r) in cut.items()),
            "raise --max-length, or use --truncation drop (or left, to keep the end of each conversation)"))
    return out


@check("zero-trained-rows", "rows with no trained token")
def zero_trained_rows(subject) -> list[Finding]:
    data, splits = _chat_rows(subject)
    counts, total, first = {}, 0, {}
    for split in splits:
        for start, rows in data.chunks(split):
            none = np.flatnonzero(rows.per_row(rows.trained) == 0)
            total += len(rows)
            if len(none):
                counts[split] = counts.get(split, 0) + len(none)
                first.setdefault(split, start + int(none[0]))
    if not counts:
        return []
    n = sum(counts.values())
    return [Finding(
        "zero-trained-rows", "error" if n == total else "warning",
        f"{n:,} of {total:,} rows have no trained token (every label is {IGNORE_INDEX}): they cost compute and "
        "teach nothing" + ("; nothing at all would be learned" if n == total else ""),
        "; ".join(f"split {s}: {counts[s]:,} rows, first row {first[s]}" for s in counts),
        "check how labels were made: an assistant mask from a template without {% generation %} is all "
        "zeros; llmprep prepare trains every reply and drops rows left with nothing to train")]


@check("truncation-loss", f"more than {TRUNCATION_LOSS:.0%} of the trained tokens were cut away by truncation")
def truncation_loss(subject) -> list[Finding]:
    data, _ = _chat_rows(subject)
    rep = data.report
    from llmprep.truncate import NO_TRAINED

    lost_rows = [d for d in data.dropped if d.get("reason", "").startswith(NO_TRAINED.split("{")[0])]
    if not rep.get("truncated") and not lost_rows:
        return []
    if "tokens" not in rep or "options" not in rep:
        raise Skip("the report holds no token counts")
    kept = int(rep["tokens"]["trained"])
    cut = rep["tokens"].get("trained_cut")
    # prepare counts what it cut; a report from before it did: encode the chats again without a limit
    full = kept + int(cut) if cut is not None else full_trained_tokens(subject, lost_rows)
    share = (full - kept) / full if full else 0.0
    if share <= TRUNCATION_LOSS:
        return []
    opts = rep["options"]
    return [Finding(
        "truncation-loss", "warning",
        f"truncation cut away {full - kept:,} of {full:,} trained tokens ({share:.1%}): {rep.get('truncated', 0):,} "
        f"rows truncated, {len(lost_rows):,} dropped with nothing left to train",
        f"--max-length {opts.get('max_length')} --truncation {opts.get('truncation')}",
        "raise --max-length (see the length percentiles in report.json), or use --truncation left to keep "
        "the end of long conversations")]


def full_trained_tokens(subject, lost_rows: list[dict]) -> int:
    """Trained tokens of the kept and truncation-dropped chats, encoded again with no length limit
    by the same shard function prepare uses."""
    from llmprep.records import Record
    from llmprep.shard import ShardSettings, process_shard

    opts = subject.data.options
    settings = ShardSettings(
        tokenizer=subject.tokenizer, template_source=subject.template, max_length=2**62,
        truncation=opts.get("truncation", "right"), train_on_prompt=opts.get("train_on_prompt", False),
        train_turns=opts.get("train_turns", "all"), literal_control_text=opts.get("literal_control_text", True),
        engine="tokenizers", format="messages")
    from itertools import chain, islice

    chats = chain((it.data for it in subject.data.items() if it.kind == "chat"), (d["record"] for d in lost_rows))
    total, start = 0, 0
    while batch := list(islice(chats, 2048)):
        records = [Record("kept", i, data=d) for i, d in enumerate(batch, start)]
        result = process_shard(records, {"kept": "messages"}, settings)
        total += int((result.encoded.labels != IGNORE_INDEX).sum())
        start += len(batch)
    return total

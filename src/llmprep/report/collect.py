"""Read a prepared directory into what report.html shows: counts, per-split lengths and trained-token
shares, packing fill, rejects by reason with examples, the doctor's findings, sample rows."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from llmprep.checks.prepared import Rows, read_chunks, split_files, tokenizer_entry
from llmprep.report.plots import Counted

SAMPLE_ROWS = 3  # per split
SAMPLE_TOKENS = 400  # per sample row shown
REASONS = 20
EXAMPLES = 3


@dataclass
class Reason:
    kind: str  # "rejected" or "dropped"
    reason: str
    count: int = 0
    examples: list = field(default_factory=list)  # (file:line, record as JSON, shortened)


def split_stats(chunks: Iterable[tuple[int, Rows]], tokenizer) -> dict:
    """Row lengths and trained-token shares of one split as value counts (plots.Counted), from its rows chunk
    by chunk (read_chunks), plus its first SAMPLE_ROWS rows decoded for display.

    Counts, not per-row arrays: the page only draws their histograms, and a split of 2M rows held ~50 MB of
    per-row arrays (more while numpy binned them); the distinct lengths and (trained, length) pairs are few.

    Example: rows [5 tokens, 2 trained], [3 tokens, 3 trained] -> lengths Counted([3, 5], [1, 1]),
    shares Counted([1.0, 0.4], [1, 1]), tokens 8, trained 5
    """
    lengths, pairs, samples = _Tally(), _Tally(), []
    rows_seen, tokens, trained_total = 0, 0, 0
    labelled = True
    for start, rows in chunks:
        real = rows.real_lengths.astype(np.int64)
        lengths.add(real)
        rows_seen += len(real)
        tokens += int(real.sum())
        labelled = rows.labels is not None
        if labelled:
            trained = rows.per_row(rows.trained).astype(np.int64)
            trained_total += int(trained.sum())
            pairs.add((trained << 32) | real)  # a row's tokens and trained tokens each fit 32 bits
        samples += [(start + r, *sample_pieces(rows, r, tokenizer))
                    for r in range(max(0, min(SAMPLE_ROWS - start, len(rows))))]
    out = {"rows": rows_seen, "lengths": lengths.result(), "tokens": tokens, "samples": samples}
    if labelled:
        keys = pairs.result()
        out["trained"] = trained_total
        # the share each row had as a float64 of its own (trained / max(length, 1)): the same values, counted
        out["shares"] = Counted((keys.values >> 32) / np.maximum(keys.values & 0xFFFFFFFF, 1), keys.counts)
    return out


class _Tally:
    """Value counts of everything added, merged every MERGE parts: memory follows the distinct values, not
    the rows. Example: add([3, 3]); add([5, 3]) -> result() == Counted([3, 5], [3, 1])"""

    MERGE = 16

    def __init__(self):
        self.parts: list[Counted] = []

    def add(self, values: np.ndarray) -> None:
        self.parts.append(Counted.of(values))
        if len(self.parts) >= self.MERGE:
            self.parts = [self.result()]

    def result(self) -> Counted:
        if not self.parts:
            return Counted(np.zeros(0, np.int64), np.zeros(0, np.int64))
        distinct, at = np.unique(np.concatenate([p.values for p in self.parts]), return_inverse=True)
        total = np.zeros(len(distinct), np.int64)
        np.add.at(total, at, np.concatenate([p.counts for p in self.parts]))
        return Counted(distinct, total)


def reasons(path: Path) -> list[Reason]:
    """rejected.jsonl grouped by (kind, reason), most frequent first, a few examples each."""
    groups: dict[tuple[str, str], Reason] = {}
    if path.is_file():
        with open(path, encoding="utf-8") as fh:
            for line in fh:
                row = json.loads(line)
                kind = "dropped" if row.get("dropped") else "rejected"
                g = groups.setdefault((kind, row.get("reason", "")), Reason(kind, row.get("reason", "")))
                g.count += 1
                if len(g.examples) < EXAMPLES:
                    where = f"{row.get('source')}:{row.get('line')}" + (f" {row['field']}" if row.get("field") else "")
                    record = json.dumps(row.get("record"), ensure_ascii=False)
                    g.examples.append((where, record if len(record) <= 300 else record[:297] + "..."))
    return sorted(groups.values(), key=lambda g: (-g.count, g.kind, g.reason))[:REASONS]


def sample_pieces(rows: Rows, r: int, tokenizer) -> tuple[list[tuple[str, bool]], int]:
    """Row r decoded in runs of trained / untrained tokens: [(text, trained), ...], tokens not shown.

    Example: ids of "<|im_start|>user\\nHi<|im_end|>..." with the reply trained
    -> [("<|im_start|>user\\nHi<|im_end|>\\n<|im_start|>assistant\\n", False), ("Hello!<|im_end|>", True), ...]
    """
    a, b = rows.offsets[r], rows.offsets[r + 1]
    keep = rows.real[a:b]
    ids = rows.ids[a:b][keep]
    trained = rows.trained[a:b][keep] if rows.labels is not None else np.zeros(len(ids), bool)
    shown = min(len(ids), SAMPLE_TOKENS)
    pieces: list[tuple[str, bool]] = []
    start = 0
    for end in [i for i in range(1, shown) if trained[i] != trained[i - 1]] + [shown]:
        run = ids[start:end].tolist()
        text = tokenizer.decode(run) if tokenizer is not None else " ".join(map(str, run)) + " "
        pieces.append((text, bool(trained[start])))
        start = end
    return pieces, len(ids) - shown


def load(out_dir: Path, tokenizer, chunks: Callable[[str], Iterable] | None = None) -> tuple[dict, dict[str, dict]]:
    """report.json and the statistics of every split of a prepared directory. `chunks(split)`: its rows
    as a reader already holds them (prepare's doctor pass: checks.prepared.Data.chunks), else read here."""
    report = json.loads((out_dir / "report.json").read_text(encoding="utf-8"))
    return report, {name: split_stats(chunks(name) if chunks is not None else read_chunks(files), tokenizer)
                    for name, files in split_files(out_dir).items()}


def counts(report: dict) -> list[tuple[str, str]]:
    """The summary table: (label, value) rows."""
    rec = report.get("records") or {}
    tok = report.get("tokens") or {}
    out = [("records read", f"{rec.get('read', 0):,}")]
    out += [(f"kept ({name})", f"{n:,}") for name, n in (report.get("kept") or {}).items()]
    dedup = report.get("dedup") or {}
    decont = report.get("decontamination") or {}
    mix = report.get("mix") or {}
    out += [("rejected (bad input, duplicates, benchmark matches)", f"{rec.get('rejected', 0):,}")]
    if dedup.get("mode", "none") != "none":
        out.append((f"of which duplicates (--dedup {dedup['mode']})", f"{dedup['removed']:,}"))
    if decont:
        out.append(("of which benchmark matches (--decontaminate)", f"{decont['removed']:,}"))
    out += [("dropped (truncation, left out by the mix)", f"{rec.get('dropped', 0):,}")]
    if mix:
        out += [("of which left out by the mix", f"{mix['dropped']:,}"),
                ("rows the mix repeats (extra epochs)", f"{mix['repeated_rows']:,}")]
    out += [("rows truncated", f"{report.get('truncated', 0):,}")]
    if tok:
        share = tok.get("trained", 0) / max(tok.get("total", 0), 1)
        out.append(("tokens: total / trained", f"{tok.get('total', 0):,} / {tok.get('trained', 0):,} ({share:.1%})"))
    if report.get("control_text_rows"):
        out.append(("rows with control-token text kept literal", f"{report['control_text_rows']:,}"))
    tmpl = report.get("template") or {}
    if tmpl.get("name"):
        out.append(("template", f"{tmpl['name']} (sha256 {tmpl.get('sha256')})"))
    tk = tokenizer_entry(report)
    if tk:
        out.append(("tokenizer", f"{tk['name']}" + (f" ({tk['vocab_size']:,} tokens)" if "vocab_size" in tk else "")))
    return out

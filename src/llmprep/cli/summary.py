"""The summary table printed at the end of `llmprep prepare`."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table


def print_summary(result, out) -> None:
    """Counts, tokens and lengths of a finished run, and where the rejects went."""
    rep = result.report
    rec = rep["records"]
    table = Table(title=f"llmprep prepare -> {out}", show_header=False)
    table.add_column(style="bold")
    table.add_column(justify="right")
    table.add_row("records read", f"{rec['read']:,}")
    for name, n in rep["kept"].items():
        table.add_row(f"kept ({name})", f"{n:,}")
    table.add_row("rejected", f"{rec['rejected']:,}")
    table.add_row("dropped", f"{rec['dropped']:,}")
    dedup = rep.get("dedup") or {}
    if dedup.get("mode", "none") != "none":
        how = f"{dedup['exact']:,} exact" + (f", {dedup['near']:,} near" if dedup["mode"] == "near" else "")
        table.add_row(f"  of which duplicates (--dedup {dedup['mode']})", f"{dedup['removed']:,} ({how})")
    decont = rep.get("decontamination")
    if decont:
        table.add_row("  of which benchmark matches", f"{decont['removed']:,}")
    table.add_row("truncated", f"{rep['truncated']:,}")
    table.add_row("tokens (total / trained)", f"{rep['tokens']['total']:,} / {rep['tokens']['trained']:,}")
    lengths = rep.get("lengths") or {}
    if lengths:
        table.add_row("length p50 / p95 / max", f"{lengths['p50']:.0f} / {lengths['p95']:.0f} / {lengths['max']}")
    for name, stats in (rep.get("packing") or {}).items():
        if "fill" in stats:
            table.add_row(f"packing fill ({name})", f"{stats['fill']:.2%}")
    cache = result.run_info["cache"]
    if cache["enabled"]:
        table.add_row("cache (shards hit / computed)", f"{cache['hits']:,} / {cache['computed']:,}")
    ex = result.run_info["executor"]
    # local: processes working tasks, the main process among them; ray: its actors
    unit = "processes" if ex["name"] == "local" else "workers"
    table.add_row("executor", f"{ex['name']}, {ex['workers']} {unit}, {ex['tasks']:,} tasks")
    secs = max(result.seconds, 1e-9)
    table.add_row("time", f"{result.seconds:.2f} s ({rep['tokens']['total'] / secs:,.0f} tokens/s)")
    console = Console(stderr=False)
    console.print(table)
    if rep.get("mix"):
        console.print(mix_table(rep["mix"]))
    for f in (decont or {}).get("files", []):
        console.print(f"  benchmark {f['file']}: {f['items']:,} items ({f['too_short']:,} too short to match), "
                      f"{f['rows_removed']:,} rows removed", markup=False, highlight=False, soft_wrap=True)
    for kind, reasons in (("rejected", rep["rejected_reasons"]), ("dropped", rep["dropped_reasons"])):
        for reason, n in list(reasons.items())[:5]:
            console.print(f"  {kind}: {n:,} x {reason}")
    if cache["miss_reasons"]:
        why = ", ".join(f"{n:,} x {reason}" for reason, n in cache["miss_reasons"].items())
        console.print(f"  cache: computed because: {why}")
    if rec["rejected"] or rec["dropped"]:
        console.print(f"  every rejected/dropped record, with file:line and reason: {out}/rejected.jsonl")
    for line in chat_warnings(rep.get("chat")):
        console.print(f"  warning: {line}", markup=False, highlight=False, soft_wrap=True)
    print_findings(console, rep.get("doctor") or {}, out)


def chat_warnings(chat: dict | None) -> list[str]:
    """The chat findings a user must act on, one line each.

    Example: {"no_stop_token": {"count": 3, ...}, ...} -> ["3 rows end with a reply the template
    leaves without an end-of-turn token: the model won't learn to stop (--add-eos appends the eos)"]
    """
    if not chat:
        return []
    out = []
    stop = chat["no_stop_token"]
    if stop["count"]:
        out.append(f"{stop['count']:,} rows end with a reply the template leaves without an end-of-turn "
                   f"token: the model won't learn to stop (--add-eos appends the eos; first: "
                   f"{', '.join(stop['conversations'][:3])})")
    reasoning = sum(n for k, n in chat["not_rendered"].items() if k.endswith(".reasoning"))
    if reasoning:
        out.append(f"the template did not print the reasoning of {reasoning:,} trained turns (it drops reasoning "
                   "from history, or has no place for it): --history per-turn trains every reasoning trace once")
    other = {k: n for k, n in chat["not_rendered"].items() if not k.endswith(".reasoning")}
    if other:
        out.append("the template did not print: " + ", ".join(f"{k} ({n:,} messages)" for k, n in other.items()))
    return out


def mix_table(mix: dict) -> Table:
    """Per source: target and achieved share of trained tokens, rows, tokens, epochs (and why off target)."""
    budget = mix["total_tokens"] if isinstance(mix["total_tokens"], str) else f"{mix['total_tokens']:,}"
    table = Table(title=f"mix {mix['recipe']}: {mix['trained_tokens']:,} {mix['measure']} (budget {budget}), "
                        f"{mix['rows']:,} rows ({mix['repeated_rows']:,} repeats, {mix['dropped']:,} left out)")
    for col in ("source", "target share", "share", "rows", mix["measure"], "epochs"):
        table.add_column(col, justify="left" if col == "source" else "right")
    for s in mix["sources"]:
        table.add_row(s["name"], f"{s['target_share']:.2%}", f"{s['share']:.2%}", f"{s['rows']:,}",
                      f"{s['trained_tokens']:,}", f"{s['epochs']:.3g}")
    reasons = [f"{s['name']}: {s['reason']}" for s in mix["sources"] if s.get("reason")]
    if reasons:
        table.caption = "off target: " + "; ".join(reasons)
    return table


def print_findings(console, doctor: dict, out) -> None:
    """The doctor's cheap checks prepare ran (report.json "doctor"), one line each, and where the page is."""
    for f in doctor.get("findings", []):
        message = f["message"] if len(f["message"]) <= 140 else f["message"][:139].rsplit(" ", 1)[0] + " ..."
        console.print(f"  {f['severity']}: {f['id']}: {message}", markup=False, highlight=False, soft_wrap=True)
    console.print(f"  report for a person: {out}/report.html; every check: llmprep doctor {out}", markup=False,
                  highlight=False, soft_wrap=True)

"""report.html: one self-contained page (plots inline as SVG, no scripts, no network) that shows a
person what `llmprep prepare` made: counts, lengths, trained tokens, truncation, packing, rejects with
examples, duplicates, the doctor's findings and sample rows with the trained tokens highlighted.

    write_report_html("data/sft", tokenizer) -> data/sft/report.html   (`llmprep report DIR` calls it too)
"""

from __future__ import annotations

import functools
import importlib.resources
from pathlib import Path

REPORT_HTML = "report.html"


def build_report_html(out_dir: str | Path, tokenizer=None, chunks=None) -> str:
    """The page for a prepared directory (report.json + rejected.jsonl + the dataset splits); `chunks(split)`:
    the splits' rows as the caller holds them already (collect.load)."""
    from llmprep.report import collect, plots

    out_dir = Path(out_dir)
    report, stats = collect.load(out_dir, tokenizer, chunks)
    opts = report.get("options") or {}
    limit = opts.get("max_length") if opts.get("pack", "none") != "wrap" else None
    doctor = report.get("doctor") or {}
    findings = doctor.get("findings") or []
    packing = report.get("packing") or {}
    if "strategy" in packing:  # a --stream report: one split's packing stats, not keyed by split
        packing = {"train": packing}
    page = {
        "counts": collect.counts(report),
        "options": options_line(opts),
        "inputs": [i["path"] if isinstance(i, dict) else i for i in report.get("inputs") or []],
        "lengths_svg": plots.histograms({n: s["lengths"] for n, s in stats.items()}, xlabel="tokens per row",
                                        limit=limit, limit_label=f"--max-length {limit}"),
        "lengths": stats,
        "percentiles": report.get("lengths") or {},
        "share_svg": plots.histograms({n: s["shares"] for n, s in stats.items() if "shares" in s},
                                      xlabel="trained share of a row's tokens", bins=20)
        if any("shares" in s for s in stats.values()) else None,
        "packing": packing,
        "fill_svg": plots.bars({n: p["fill"] for n, p in packing.items() if "fill" in p},
                               xlabel="packing fill", percent=True) if packing else None,
        "reasons": collect.reasons(out_dir / "rejected.jsonl"),
        "findings": findings,
        "checked": "doctor" in report,
        "skipped": doctor.get("skipped") or [],
        "scope": doctor.get("scope"),
        "duplicates": next((f for f in findings if f["id"] == "duplicates"), None),
        "duplicates_skipped": next((s["reason"] for s in doctor.get("skipped") or [] if s["id"] == "duplicates"),
                                   None),
        "truncation": [f for f in findings if f["id"] in ("truncation-loss", "eot-untrained")],
        "truncated": {"rows": report.get("truncated", 0), "max_length": opts.get("max_length"),
                      "side": opts.get("truncation"), "dropped": (report.get("records") or {}).get("dropped", 0)},
        "mix": report.get("mix"),
        "dedup": report.get("dedup") or {"mode": "none"},
        "decont": report.get("decontamination"),
        "samples": [(name, *sample) for name, s in stats.items() for sample in s["samples"]],
        "report": report,
    }
    return _page_template().render(**page)


@functools.lru_cache(maxsize=1)
def _page_template():
    """The page's own template (our code, not a model's: no sandbox), compiled once per process (~0.05 s)."""
    import jinja2

    source = (importlib.resources.files("llmprep") / "report" / "report.html.jinja").read_text(encoding="utf-8")
    env = jinja2.Environment(autoescape=True, trim_blocks=True, lstrip_blocks=True, undefined=jinja2.StrictUndefined)
    return env.from_string(source)


def options_line(opts: dict) -> str:
    """report.json's options as the flags that set them. Example: {"max_length": 512, "strict": True,
    "literal_control_text": False, "columns": {"q": "question"}}
    -> "--max-length 512 --strict --allow-control-text --column q=question" """
    flags = []
    for key, value in opts.items():
        if key == "literal_control_text":
            flags += [] if value else ["--allow-control-text"]
        elif key == "columns":
            flags += [f"--column {new}={old}" for new, old in (value or {}).items()]
        elif isinstance(value, (list, tuple)):  # a repeatable flag: --decontaminate a.jsonl --decontaminate b.jsonl
            flags += [f"--{key.replace('_', '-')} {v}" for v in value]
        elif value is True:
            flags.append(f"--{key.replace('_', '-')}")
        elif value not in (None, False, "none"):
            flags.append(f"--{key.replace('_', '-')} {value}")
    return " ".join(flags)


def finish_output(out_dir: str | Path, tokenizer) -> dict:
    """The last step of `llmprep prepare`, on the directory it just wrote: the doctor's cheap checks go
    into report.json ("doctor"), then report.html is written. Returns the "doctor" section."""
    import json

    from llmprep.checks import Data, prepared_checks
    from llmprep.store import write_json

    out_dir = Path(out_dir)
    report = json.loads((out_dir / "report.json").read_text(encoding="utf-8"))
    if tokenizer is None:  # a result built without one: the tokenizer the report names
        from llmprep.checks.prepared import tokenizer_entry
        from llmprep.tokenizer import load_tokenizer

        tokenizer = load_tokenizer(tokenizer_entry(report).get("name"))
    data = Data.from_dir(out_dir, verify_inputs=False)  # prepare has just read and hashed the inputs
    doctor = prepared_checks(out_dir, tokenizer, data=data).to_json(examples=True)
    write_json(out_dir / "report.json", {**report, "doctor": doctor})
    write_report_html(out_dir, tokenizer, chunks=data.chunks)  # the rows the checks read (and kept), not again
    return doctor


def write_report_html(out_dir: str | Path, tokenizer=None, chunks=None) -> Path:
    """Write DIR/report.html (atomically: a temp file renamed into place)."""
    import os

    from llmprep.store import record_entry

    out_dir = Path(out_dir)
    html = build_report_html(out_dir, tokenizer, chunks)
    path = out_dir / REPORT_HTML
    tmp = path.with_name(f".{REPORT_HTML}.tmp-{os.getpid()}")
    tmp.write_text(html, encoding="utf-8")
    os.replace(tmp, path)
    record_entry(out_dir, REPORT_HTML)  # a directory that gains report.html stays one llmprep may replace
    return path


__all__ = ["REPORT_HTML", "build_report_html", "finish_output", "options_line", "write_report_html"]

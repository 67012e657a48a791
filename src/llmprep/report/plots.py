"""Plots for report.html: matplotlib figures saved as inline SVG (text kept as text, one path per
histogram), deterministic bytes (fixed hash salt, no date) so a rerun writes the same file."""

from __future__ import annotations

import contextlib
import io
import re

import numpy as np

COLORS = {"train": "#3b6ea8", "test": "#d08a2e"}
STYLE = {"svg.fonttype": "none", "svg.hashsalt": "llmprep", "font.size": 9, "axes.spines.top": False,
         "axes.spines.right": False}


@contextlib.contextmanager
def _style():
    """llmprep's plot settings for the duration of one plot, leaving the caller's matplotlib settings alone."""
    import matplotlib

    with matplotlib.rc_context(STYLE):
        yield


def _figure(n: int, height: float = 2.3):
    from matplotlib.figure import Figure

    width = 3.4 * n + 0.4
    fig = Figure(figsize=(width, height))
    axes = fig.subplots(1, n, squeeze=False)[0]
    # Fixed margins in inches: a "tight" bounding box would draw every figure twice (2-3x slower).
    fig.subplots_adjust(left=0.6 / width, right=1 - 0.2 / width, bottom=0.5 / height, top=1 - 0.3 / height,
                        wspace=0.35)
    return fig, axes


def to_svg(fig) -> str:
    """A figure as an <svg> element: no XML prolog, doctype or metadata block (the page is HTML)."""
    buf = io.StringIO()
    fig.savefig(buf, format="svg", metadata={"Date": None, "Creator": None, "Format": None, "Type": None})
    svg = buf.getvalue()
    svg = svg[svg.index("<svg"):]
    return re.sub(r"\s*<metadata>.*?</metadata>", "", svg, flags=re.S)


def histograms(values: dict[str, np.ndarray], *, xlabel: str, bins: int = 40, limit: float | None = None,
               limit_label: str = "") -> str:
    """One histogram per split, side by side; an optional dashed line at `limit` (e.g. --max-length).

    Example: histograms({"train": lengths, "test": lengths2}, xlabel="tokens per row") -> "<svg ...>"
    """
    with _style():
        return _histograms(values, xlabel=xlabel, bins=bins, limit=limit, limit_label=limit_label)


def _histograms(values, *, xlabel, bins, limit, limit_label) -> str:
    fig, axes = _figure(len(values))
    for ax, (split, v) in zip(axes, values.items()):
        v = np.asarray(v, dtype=float)
        if len(v):
            counts, edges = np.histogram(v, bins=bins)
            ax.stairs(counts, edges, fill=True, color=COLORS.get(split, "#555"), alpha=0.85)
        top = float(v.max()) if len(v) else 1.0
        if limit is not None and limit <= 1.25 * top:  # a limit far right of the data would squash it
            ax.axvline(limit, color="#b03030", linestyle="--", linewidth=1)
            ax.text(limit, ax.get_ylim()[1], f"{limit_label} ", color="#b03030", va="top", ha="right", fontsize=8)
        ax.set_title(f"{split} ({len(v):,} rows)")
        ax.set_xlabel(xlabel)
        ax.set_ylabel("rows")
    return to_svg(fig)


def bars(counts: dict[str, float], *, xlabel: str, percent: bool = False) -> str:
    """Horizontal bars, one per label. Example: bars({"train": 0.93, "test": 0.91}, xlabel="fill", percent=True)"""
    with _style():
        return _bars(counts, xlabel=xlabel, percent=percent)


def _bars(counts, *, xlabel, percent) -> str:
    fig, axes = _figure(1, height=0.9 + 0.3 * len(counts))
    fig.subplots_adjust(left=0.7 / fig.get_figwidth())
    ax = axes[0]
    labels = list(counts)[::-1]
    vals = [counts[k] for k in labels]
    ax.barh(labels, vals, color=[COLORS.get(k, "#3b6ea8") for k in labels])
    for y, v in enumerate(vals):
        ax.text(v, y, f" {v:.1%}" if percent else f" {v:,.0f}", va="center", fontsize=8)
    if percent:
        ax.set_xlim(0, 1.1)
    ax.set_xlabel(xlabel)
    return to_svg(fig)

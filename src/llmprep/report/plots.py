"""Plots for report.html, written directly as small inline SVG: one filled path per histogram, text kept
as text, the same bytes on every rerun.

Why not matplotlib: importing it costs about 0.3-0.7 s, paid by every `llmprep prepare` (the page is
written at the end of each run), and the issue's budget for a 20-record prepare is 2 s whole process.
Two plot kinds (histograms, horizontal bars) need only rectangles, lines and text. The numbers drawn
are numpy's (`np.histogram`), so the figure says exactly what the data says; tests/report/test_plots.py
reads the bars back from the SVG and compares them with np.histogram.
"""

from __future__ import annotations

import html
import math
from dataclasses import dataclass

import numpy as np

COLORS = {"train": "#3b6ea8", "test": "#d08a2e"}
PANEL_W, PANEL_H = 245.0, 165.0  # one panel, in SVG user units (pt), about matplotlib's 3.4 x 2.3 in
MARGIN = {"left": 43.0, "right": 14.0, "top": 22.0, "bottom": 36.0}
FONT = "font-family:sans-serif;font-size:9px"


def nice_ticks(lo: float, hi: float, n: int = 5) -> list[float]:
    """Round tick values from at or below `lo` to at or above `hi`, about `n` steps.

    Example: nice_ticks(0, 97) -> [0, 20, 40, 60, 80, 100]; nice_ticks(0, 1.1) -> [0, 0.25, ..., 1.25]
    """
    span = hi - lo if hi > lo else (abs(hi) or 1.0)
    raw = span / n
    mag = 10.0 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw * (1 - 1e-9))
    first, last = math.floor(lo / step + 1e-9), math.ceil(hi / step - 1e-9)
    # Multiples of the step (not repeated additions): 0.1 * 3 prints as 0.3, not 0.30000000000000004.
    return [round(k * step, 12) for k in range(first, max(last, first + 1) + 1)]


def tick_label(value: float) -> str:
    """A tick as a person writes it. Example: tick_label(2000.0) -> "2,000"; tick_label(0.25) -> "0.25" """
    if float(value).is_integer():
        return f"{int(value):,}"
    return f"{value:.6f}".rstrip("0").rstrip(".")


def _text(x: float, y: float, s: str, *, anchor: str = "middle", extra: str = "", color: str = "#222") -> str:
    return (f'<text x="{x:.1f}" y="{y:.1f}" text-anchor="{anchor}" style="{FONT};fill:{color}"{extra}>'
            f"{html.escape(s)}</text>")


class _Panel:
    """One plot area at horizontal offset `x0`: maps data coordinates to SVG points and draws axes."""

    def __init__(self, x0: float, xlim: tuple[float, float], ylim: tuple[float, float], height: float = PANEL_H,
                 left: float = MARGIN["left"], width: float = PANEL_W):
        self.left, self.top = x0 + left, MARGIN["top"]
        self.width = width - left - MARGIN["right"]
        self.height = height - MARGIN["top"] - MARGIN["bottom"]
        self.xlim, self.ylim = xlim, ylim

    def x(self, v: float) -> float:
        lo, hi = self.xlim
        return self.left + (v - lo) / ((hi - lo) or 1.0) * self.width

    def y(self, v: float) -> float:
        lo, hi = self.ylim
        return self.top + self.height - (v - lo) / ((hi - lo) or 1.0) * self.height

    def frame(self, xticks: list[float], yticks: list[float] | None, *, title: str, xlabel: str,
              ylabel: str = "", xfmt=tick_label) -> list[str]:
        bottom, right = self.top + self.height, self.left + self.width
        out = [f'<path d="M{self.left:.1f} {self.top:.1f}V{bottom:.1f}H{right:.1f}" '
               'style="fill:none;stroke:#222;stroke-width:0.8"/>']
        for t in xticks:
            if self.xlim[0] - 1e-9 <= t <= self.xlim[1] + 1e-9:
                x = self.x(t)
                out += [f'<path d="M{x:.1f} {bottom:.1f}v3.5" style="stroke:#222;stroke-width:0.8"/>',
                        _text(x, bottom + 13, xfmt(t))]
        for t in yticks or []:
            if self.ylim[0] - 1e-9 <= t <= self.ylim[1] + 1e-9:
                y = self.y(t)
                out += [f'<path d="M{self.left:.1f} {y:.1f}h-3.5" style="stroke:#222;stroke-width:0.8"/>',
                        _text(self.left - 6, y + 3, tick_label(t), anchor="end")]
        if title:  # bars have none: no empty <text> element
            out.append(_text(self.left + self.width / 2, self.top - 8, title, extra=' font-size="10"'))
        out.append(_text(self.left + self.width / 2, bottom + 28, xlabel))
        if ylabel:
            cx, cy = self.left - 32, self.top + self.height / 2
            out.append(_text(cx, cy, ylabel, extra=f' transform="rotate(-90 {cx:.1f} {cy:.1f})"'))
        return out


def _svg(width: float, height: float, body: list[str]) -> str:
    return (f'<svg xmlns="http://www.w3.org/2000/svg" version="1.1" width="{width:.1f}pt" height="{height:.1f}pt" '
            f'viewBox="0 0 {width:.1f} {height:.1f}">\n' + "\n".join(body) + "\n</svg>")


def stairs_path(counts: np.ndarray, edges: np.ndarray, panel: _Panel) -> str:
    """The outline of a filled histogram: along the baseline, up and over every bin, back down."""
    base = panel.y(0)
    d = [f"M{panel.x(edges[0]):.2f} {base:.2f}"]
    for c, right in zip(counts, edges[1:]):
        d.append(f"V{panel.y(c):.2f}H{panel.x(right):.2f}")
    d.append(f"V{base:.2f}Z")
    return "".join(d)


@dataclass(frozen=True)
class Counted:
    """Values with how often each occurs: a split's row lengths as (distinct lengths, rows of each), so a
    histogram of 2M rows needs no 2M-entry array. Example: Counted([3, 5], [2, 1]) stands for [3, 3, 5]"""

    values: np.ndarray
    counts: np.ndarray

    @classmethod
    def of(cls, values) -> "Counted":
        """Example: Counted.of([5, 3, 3]) -> Counted(values=[3, 5], counts=[2, 1])"""
        v, c = np.unique(np.asarray(values), return_counts=True)
        return cls(v, c)

    def __len__(self) -> int:
        return int(self.counts.sum())


def histograms(values: dict[str, np.ndarray | Counted], *, xlabel: str, bins: int = 40, limit: float | None = None,
               limit_label: str = "") -> str:
    """One histogram per split, side by side; an optional dashed line at `limit` (e.g. --max-length).
    A split's values are an array, or Counted (the same picture: numpy bins a value's weight as the value).

    Example: histograms({"train": lengths, "test": lengths2}, xlabel="tokens per row") -> "<svg ...>"
    """
    body = [f'<rect width="{PANEL_W * max(len(values), 1):.1f}" height="{PANEL_H:.1f}" style="fill:#fff"/>']
    for i, (split, v) in enumerate(values.items()):
        v = v if isinstance(v, Counted) else Counted.of(v)
        rows = len(v)
        v, weights = np.asarray(v.values, dtype=float), v.counts
        counts, edges = np.histogram(v, bins=bins, weights=weights) if len(v) else (np.zeros(0), np.array([0.0, 1.0]))
        top = float(v.max()) if len(v) else 1.0
        show_limit = limit is not None and limit <= 1.25 * top  # a limit far right of the data would squash it
        hi = max(float(edges[-1]), float(limit)) if show_limit else float(edges[-1])
        pad = 0.05 * ((hi - edges[0]) or 1.0)
        xlim = (float(edges[0]) - pad, hi + pad)
        ymax = float(counts.max()) if len(counts) else 1.0
        yticks = nice_ticks(0, ymax or 1.0)
        panel = _Panel(i * PANEL_W, xlim, (0.0, max(ymax * 1.05, yticks[-1])))
        if len(v):
            body.append(f'<path d="{stairs_path(counts, edges, panel)}" '
                        f'style="fill:{COLORS.get(split, "#555")};fill-opacity:0.85"/>')
        body += panel.frame(nice_ticks(*xlim), yticks, title=f"{split} ({rows:,} rows)", xlabel=xlabel,
                            ylabel="rows")
        if show_limit:
            x = panel.x(limit)
            body += [f'<path d="M{x:.1f} {panel.top:.1f}V{panel.top + panel.height:.1f}" '
                     'style="stroke:#b03030;stroke-width:1;stroke-dasharray:4 2"/>',
                     _text(x - 2, panel.top + 9, limit_label, anchor="end", color="#b03030")]
    return _svg(PANEL_W * max(len(values), 1), PANEL_H, body)


def bars(counts: dict[str, float], *, xlabel: str, percent: bool = False) -> str:
    """Horizontal bars, one per label. Example: bars({"train": 0.93, "test": 0.91}, xlabel="fill", percent=True)"""
    height = 65.0 + 22.0 * len(counts)
    vmax = max(counts.values(), default=1.0)
    xlim = (0.0, 1.1) if percent else (0.0, (vmax or 1.0) * 1.15)
    left = max(MARGIN["left"], 10 + 5.2 * max((len(k) for k in counts), default=0))  # room for the labels
    width = PANEL_W + left - MARGIN["left"]
    panel = _Panel(0.0, xlim, (0.0, float(len(counts))), height=height, left=left, width=width)
    body = [f'<rect width="{width:.1f}" height="{height:.1f}" style="fill:#fff"/>']
    for row, (label, v) in enumerate(counts.items()):  # first label on top, as it reads in a table
        y_top, y_bottom = panel.y(len(counts) - row - 0.1), panel.y(len(counts) - row - 0.9)
        x0, x1 = panel.x(0), panel.x(v)
        body += [f'<path d="M{x0:.2f} {y_bottom:.2f}V{y_top:.2f}H{x1:.2f}V{y_bottom:.2f}Z" '
                 f'style="fill:{COLORS.get(label, "#3b6ea8")}"/>',
                 _text(panel.left - 5, (y_top + y_bottom) / 2 + 3, label, anchor="end"),
                 _text(x1 + 3, (y_top + y_bottom) / 2 + 3, f"{v:.1%}" if percent else f"{v:,.0f}", anchor="start")]
    xticks = [0.0, 0.25, 0.5, 0.75, 1.0] if percent else nice_ticks(*xlim)
    body += panel.frame(xticks, None, title="", xlabel=xlabel, xfmt=(lambda t: f"{t:.0%}") if percent else tick_label)
    return _svg(width, height, body)

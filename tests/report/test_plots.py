"""report.html's SVG plots: the bars drawn are np.histogram's counts, read back from the SVG; valid XML,
escaped text, the --max-length line only where it fits, the same bytes on every call."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET

import numpy as np
import pytest

from llmprep.report.plots import Counted, bars, histograms, nice_ticks, tick_label

SVG = "{http://www.w3.org/2000/svg}"


def shapes(svg: str) -> list[ET.Element]:
    return list(ET.fromstring(svg).iter(f"{SVG}path"))


def filled(svg: str) -> list[str]:
    """The `d` of every filled shape (bars and histograms), in drawing order."""
    return [p.get("d") for p in shapes(svg) if "fill:#" in (p.get("style") or "")]


def heights_from_stairs(d: str) -> tuple[np.ndarray, np.ndarray]:
    """A stairs path "M x0 base V y1 H x1 V y2 H x2 ... V base Z" -> (bar heights above the base, bar widths)."""
    x0, base = map(float, re.match(r"M([\d.]+) ([\d.]+)", d).groups())
    steps = re.findall(r"V([\d.]+)H([\d.]+)", d)
    ys = np.array([float(y) for y, _ in steps])
    xs = np.array([x0] + [float(x) for _, x in steps])
    return base - ys, np.diff(xs)


def test_histogram_bars_are_numpys_counts():
    lengths = np.random.default_rng(0).gamma(2.0, 150.0, size=2000).round()
    svg = histograms({"train": lengths}, xlabel="tokens per row")
    counts, _ = np.histogram(lengths, bins=40)
    (d,) = filled(svg)
    heights, widths = heights_from_stairs(d)
    assert len(heights) == 40
    np.testing.assert_allclose(heights / heights.max(), counts / counts.max(), atol=0.002)
    np.testing.assert_allclose(widths, widths[0], atol=0.02)  # equal bins, equal widths
    assert "train (2,000 rows)" in svg


def test_one_panel_per_split_each_with_its_own_counts():
    train, test = np.arange(100.0), np.full(7, 3.0)
    svg = histograms({"train": train, "test": test}, xlabel="x", bins=10)
    d_train, d_test = filled(svg)
    assert heights_from_stairs(d_train)[0].std() < 0.01  # 10 rows in each of 10 bins: flat
    h = heights_from_stairs(d_test)[0]
    assert (h > 0).sum() == 1  # seven equal values: one bar
    assert "test (7 rows)" in svg and 'width="490.0pt"' in svg


def test_limit_line_only_where_it_does_not_squash_the_data():
    v = np.arange(1.0, 501.0)
    near = histograms({"train": v}, xlabel="x", limit=512, limit_label="--max-length 512")
    far = histograms({"train": v}, xlabel="x", limit=4096, limit_label="--max-length 4096")
    assert "--max-length 512" in near and "stroke-dasharray" in near
    assert "--max-length" not in far and "stroke-dasharray" not in far


def test_text_is_escaped_and_the_svg_is_valid_xml():
    svg = histograms({"<train>": np.arange(5.0)}, xlabel='a & b "c"')
    root = ET.fromstring(svg)  # raises if anything is not escaped
    texts = [t.text for t in root.iter(f"{SVG}text")]
    assert "a & b \"c\"" in texts and "<train> (5 rows)" in texts


def test_empty_split_draws_axes_without_a_histogram():
    svg = histograms({"train": np.arange(10.0), "test": np.zeros(0)}, xlabel="x")
    assert len(filled(svg)) == 1 and "test (0 rows)" in svg
    ET.fromstring(svg)


def test_same_bytes_every_call():
    v = np.random.default_rng(1).integers(1, 900, size=300)
    assert histograms({"train": v}, xlabel="x", limit=1024) == histograms({"train": v}, xlabel="x", limit=1024)


def test_bars_have_lengths_proportional_to_values_and_percent_labels():
    svg = bars({"train": 0.93, "test": 0.465}, xlabel="packing fill", percent=True)
    widths = [float(x1) - float(x0) for x0, x1 in
              (re.match(r"M([\d.]+) [\d.]+V[\d.]+H([\d.]+)", d).groups() for d in filled(svg))]
    assert widths[0] == pytest.approx(2 * widths[1], rel=0.01)
    assert "93.0%" in svg and "46.5%" in svg and "100%" in svg


@pytest.mark.parametrize("lo, hi, expected", [
    (0, 97, [0, 20, 40, 60, 80, 100]),
    (0, 1.1, [0, 0.25, 0.5, 0.75, 1.0, 1.25]),
    (-12.5, 262.5, [-100, 0, 100, 200, 300]),  # step 55 rounds up to 100
    (0, 0.3, [0, 0.1, 0.2, 0.3]),
    (5, 5, [5, 6]),
])
def test_nice_ticks(lo, hi, expected):
    assert nice_ticks(lo, hi) == pytest.approx(expected)


def test_tick_labels():
    assert [tick_label(v) for v in (0.0, 2000.0, 0.25, 0.1 * 3, -50.0)] == ["0", "2,000", "0.25", "0.3", "-50"]


def test_long_bar_labels_get_room_instead_of_being_cut():
    short = ET.fromstring(bars({"train": 1.0}, xlabel="x"))
    long = ET.fromstring(bars({"a-very-long-source-name.jsonl": 1.0}, xlabel="x"))
    label = next(t for t in long.iter(f"{SVG}text") if t.text == "a-very-long-source-name.jsonl")
    assert float(label.get("x")) - 5.2 * len(label.text) >= 0  # right-aligned at x: starts inside the figure
    assert float(long.get("width")[:-2]) > float(short.get("width")[:-2])


def test_counted_values_draw_the_same_bytes_as_the_rows():
    """report.html draws a split's lengths and shares from value counts: the SVG is the rows' own, byte for byte."""
    rng = np.random.default_rng(3)
    lengths = rng.gamma(2.0, 150.0, size=5000).round().astype(np.int64) + 1
    trained = (lengths * rng.random(5000)).astype(np.int64)
    shares = trained / np.maximum(lengths, 1)
    for values, bins in ((lengths, 40), (shares, 20), (np.full(7, 12), 40), (np.zeros(0), 40)):
        rows = histograms({"train": values, "test": values[:3]}, xlabel="x", bins=bins, limit=600)
        counted = histograms({"train": Counted.of(values), "test": Counted.of(values[:3])}, xlabel="x", bins=bins,
                             limit=600)
        assert counted == rows
    assert len(Counted.of([5, 3, 3])) == 3 and Counted.of([5, 3, 3]).counts.tolist() == [2, 1]

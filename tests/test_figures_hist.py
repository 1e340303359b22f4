"""The hand-drawn SVG figures (histograms, heatmaps): valid, escaped, heights and cells true."""
from __future__ import annotations

import re
import xml.etree.ElementTree as ET

import numpy as np
import pytest

from dinoreport.figures import FigureWriter, SvgFigure, hist_figure, nice_ticks

NS = {"s": "http://www.w3.org/2000/svg"}


def _planted():
    edges = np.linspace(-2.0, 2.0, 5)  # 4 bins of width 1
    full = {"A <b>&": np.array([0, 10, 30, 0]), "B": np.array([5, 5, 5, 5])}
    crop = {"A <b>&": np.array([1, 2, 3, 4]), "B": np.array([4, 3, 2, 1])}
    return edges, full, edges, crop


def _stair_heights(d: str) -> list[float]:
    """The V commands' y values of a path, after the first move (heights in pixels)."""
    return [float(v) for v in re.findall(r"V([-0-9.]+)", d)]


def test_svg_parses_with_one_curve_per_model_and_view_and_escaped_labels():
    fig = hist_figure(*_planted(), title="C5 <x>")
    assert isinstance(fig, SvgFigure)
    root = ET.fromstring(fig.svg)  # raises on malformed XML or unescaped '<' / '&'
    groups = root.findall("s:g", NS)
    assert len(groups) == 3
    for g in groups:
        curves = [p for p in g.findall("s:path", NS) if p.find("s:title", NS) is not None]
        assert [p.find("s:title", NS).text for p in curves] == ["A <b>&", "B"]
        assert [p.get("stroke") for p in curves] == ["#1f77b4", "#ff7f0e"]
    texts = [t.text for t in root.iter("{http://www.w3.org/2000/svg}text")]
    assert "C5 <x> · linear" in texts and "C5 <x> · log y" in texts
    assert "share of values" in texts
    assert texts.count("A <b>&") == 1  # one legend, in the first view


def test_linear_heights_are_proportional_to_shares():
    root = ET.fromstring(hist_figure(*_planted(), title="t").svg)
    first = root.findall("s:g", NS)[0]
    axis = [p for p in first.findall("s:path", NS) if p.find("s:title", NS) is None][0].get("d")
    bottom = float(re.search(r"V([-0-9.]+)", axis).group(1))
    a = [p for p in first.findall("s:path", NS) if p.find("s:title", NS) is not None][0].get("d")
    # A's shares are 0, 0.25, 0.75, 0: the path rises to 0.25, then 0.75, then back to the base.
    h = [bottom - y for y in _stair_heights(a)]
    assert h[0] == pytest.approx(h[1] / 3, abs=0.15)
    assert h[-1] == pytest.approx(0.0, abs=1e-9)


def test_log_view_has_decade_ticks_covering_the_data():
    root = ET.fromstring(hist_figure(*_planted(), title="t").svg)
    log = root.findall("s:g", NS)[1]
    sups = [int(t.text.replace("\u2212", "-")) for t in log.iter("{http://www.w3.org/2000/svg}tspan")]
    # Smallest positive share 0.25, largest 0.75: one decade 10^-1 .. 10^0.
    assert sups == [-1, 0]


def test_same_counts_give_the_same_bytes_and_writer_stores_svg(tmp_path):
    a = hist_figure(*_planted(), title="t").svg
    assert a == hist_figure(*_planted(), title="t").svg
    w = FigureWriter(tmp_path)
    rel = w.plot(hist_figure(*_planted(), title="t"), tight=False)
    assert rel.endswith(".svg") and (tmp_path / rel).read_text() == a


@pytest.mark.parametrize("lo,hi", [(0.0, 1.0), (-37.2, 12.9), (0.0, 0.0123), (1e3, 5e4)])
def test_nice_ticks_are_round_inside_and_few(lo, hi):
    t = nice_ticks(lo, hi, 5)
    assert 2 <= len(t) <= 6
    assert all(lo - 1e-12 <= v <= hi + 1e-12 for v in t)
    steps = np.diff(t)
    assert np.allclose(steps, steps[0])
    mant = steps[0] / 10 ** np.floor(np.log10(steps[0]))
    assert any(np.isclose(mant, m) for m in (1, 2, 2.5, 5))


def test_heatmap_cells_show_their_values_in_place():
    # A planted diagonal: each cell's text and tooltip carry its value, in row-major place,
    # the high cells take viridis' top colour with dark ink, the low ones its bottom with light ink.
    from dinoreport.figures import colormap_lut, heatmap_figure

    v = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
    svg = heatmap_figure(v, ["C2", "C3"], ["B3", "B6", "B9"], title="a <b> vs c", xlabel="x", ylabel="y").svg
    root = ET.fromstring(svg)
    ns = {"s": "http://www.w3.org/2000/svg"}
    rects = [r for r in root.iterfind(".//s:g/s:rect", ns) if r.find("s:title", ns) is not None]
    assert [r.find("s:title", ns).text for r in rects][:2] == ["C2 \u00d7 B3: 1.000", "C2 \u00d7 B6: 0.000"]
    top, bottom = ("#%02x%02x%02x" % tuple(int(c) for c in colormap_lut("viridis")[k]) for k in (255, 0))
    fills = [r.get("fill") for r in rects]
    assert fills == [top, bottom, bottom, bottom, top, bottom]
    xs = [(float(r.get("x")), float(r.get("y"))) for r in rects]
    assert xs[4] == (62.0, 34.0)  # row 1, column 1
    assert "a &lt;b&gt; vs c" in svg  # titles are escaped
    with pytest.raises(ValueError, match="2x3"):
        heatmap_figure(v.T, ["C2", "C3"], ["B3", "B6", "B9"], title="t", xlabel="x", ylabel="y")

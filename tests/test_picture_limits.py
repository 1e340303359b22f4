"""Bounds on picture size: one picture (shrunk, with a warning naming the analysis and the
figure) and the self-contained page (a warning naming the analyses that weigh most)."""
from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from dinoreport import figures
from dinoreport.analyses import registry
from dinoreport.analyses.registry import Analysis, FigureKind, SectionOutput
from dinoreport.config import load_config
from dinoreport.figures import MAX_PANEL_PIXELS, MAX_PANEL_SIDE, FigureWriter, fit_panel
from dinoreport.page import Figure, Panel, Row
from dinoreport.pipeline import BuildOptions, build

from conftest import planted_photo, write_project

ONE_MODEL = '[[models]]\nid = "m"\ntimm = "convnext_tiny.fb_in1k"\n'


def test_limits_leave_the_default_reports_pictures_alone():
    assert fit_panel((711, 240)) is None and fit_panel((MAX_PANEL_SIDE, 1)) is None
    assert MAX_PANEL_SIDE >= 4 * 711 and MAX_PANEL_PIXELS >= 16 * 711 * 240


@pytest.mark.parametrize("size, fit", [
    ((6000, 6000), (4000, 4000)),  # the pixel count binds: 16 Mpx
    ((8000, 50), (4096, 25)),      # the long side binds
    ((50, 8000), (25, 4096)),
    ((4097, 1), (4096, 1)),        # never below one pixel
])
def test_fit_panel_keeps_within_both_limits(size, fit):
    got = fit_panel(size)
    assert got == fit
    assert max(got) <= MAX_PANEL_SIDE and got[0] * got[1] <= MAX_PANEL_PIXELS


def _size(path) -> tuple[int, int]:
    with Image.open(path) as im:
        return im.size


def test_writer_shrinks_oversized_pictures_and_says_which(tmp_path):
    w = FigureWriter(tmp_path)
    child = w.fork()
    wide = Image.fromarray(np.tile(np.arange(256, dtype=np.uint8), (40, 24))[..., None].repeat(3, axis=2))
    assert wide.size == (6144, 40)
    png = child.png(wide)
    jpg = child.photographic(wide)
    pal = child.png(wide.convert("P"))
    for rel in (png, jpg, pal):
        assert _size(tmp_path / rel) == (4096, 26)
        assert w.downscaled[rel] == ((6144, 40), (4096, 26))  # shared with the parent writer
    # Within the limits: written as it is, byte for byte, and not noted.
    small = Image.fromarray(planted_photo(64, 96))
    buf = io.BytesIO()
    small.save(buf, format="PNG", compress_level=6)
    rel = w.png(small)
    assert (tmp_path / rel).read_bytes() == buf.getvalue() and rel not in w.downscaled


def _huge(ctx) -> SectionOutput:
    rng = np.random.default_rng(0)
    noise = Image.fromarray(rng.integers(0, 256, (50, 8000, 3), dtype=np.uint8))
    out = SectionOutput()
    out.figures.append(Figure(id="huge-map", kind="huge_map", caption="A map far too wide.",
                              rows=(Row("", (Panel(ctx.writer.png(noise), "noise"),)),)))
    return out


def test_build_warns_naming_the_analysis_the_figure_and_the_page(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(registry._REGISTRY, "huge_map", Analysis(
        "huge_map", 1, _huge, figures=(FigureKind("huge_map", "a picture far too large"),)))
    monkeypatch.setattr(figures, "MAX_PAGE_BYTES", 2**18)  # a page the test can afford: 0.25 MB
    cfg = write_project(tmp_path, {"a": planted_photo(64, 64)}, models=ONE_MODEL, resolution=64, highres=[64])
    out = tmp_path / "site"
    build(load_config(cfg), BuildOptions(out=out, random_init=True, analyses=("huge_map",)))
    err = capsys.readouterr().err
    assert ("warning: analysis huge_map, figure huge-map: a picture of 8000×50 px (0.4 Mpx) was shrunk to "
            "4096×25 px (0.1 Mpx), the most one picture may have (4096 px on the long side, 16 Mpx") in err
    assert "warning: report.html is " in err and "more than 0.25 MB" in err
    assert "Its largest pictures come from huge_map " in err
    (png,) = (out / "assets" / "fig").glob("*.png")
    assert _size(png) == (4096, 25)

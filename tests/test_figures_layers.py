"""Mask overlays drawn by the page: one shared photo, a small transparent mask over it, the same
pixels as the composited overlay the figures carried before."""
from __future__ import annotations

import io
import re

import numpy as np
from PIL import Image

from dinoreport.figures import FigureWriter, composite, mask_layer, overlay


def _photo_and_mask(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    photo = rng.integers(0, 256, size=(96, 144, 3), dtype=np.uint8)
    mask = rng.random((6, 9)) > 0.5
    return photo, mask


def test_layer_over_photo_gives_the_overlay_pixels():
    photo, mask = _photo_and_mask()
    want = np.asarray(overlay(photo, mask), dtype=int)
    got = np.asarray(composite(Image.fromarray(photo), mask_layer(mask)), dtype=int)
    assert got.shape == want.shape
    assert np.abs(got - want).max() <= 1


def test_layer_is_a_tiny_png_with_its_transparency_kept(tmp_path):
    photo, mask = _photo_and_mask(1)
    w = FigureWriter(tmp_path)
    rel = w.png(mask_layer(mask))
    data = (tmp_path / rel).read_bytes()
    assert len(data) < 400
    back = Image.open(io.BytesIO(data)).convert("RGBA")
    assert back.size == (mask.shape[1], mask.shape[0])
    alpha = np.asarray(back)[..., 3]
    assert set(np.unique(alpha[mask])) == {round(0.55 * 255)}
    assert set(np.unique(alpha[~mask])) == {round(0.65 * 255)}


def test_mask_layer_refuses_a_non_2d_mask():
    import pytest

    with pytest.raises(ValueError, match=r"\(h, w\) mask"):
        mask_layer(np.zeros((2, 3, 4), dtype=bool))


def test_layered_panel_renders_photo_and_mask_stacked(tmp_path):
    """A panel with a layer: the photo keeps the alt text, the mask over it has alt="" and a
    size; in report.html both are data: URIs and the photo of two panels is encoded once."""
    from dinoreport.page import Figure, Panel, ReportPage, Row
    from dinoreport.render import render_site

    photo, mask = _photo_and_mask(2)
    site = tmp_path / "site"
    w = FigureWriter(site)
    ph = w.photo(photo)
    layers = [w.png(mask_layer(mask)), w.png(mask_layer(~mask))]
    fig = Figure(id="masks", kind="foreground_mask", caption="Masks.",
                 rows=(Row("a", tuple(Panel(ph, f"mask {k}", "", layer=ly) for k, ly in enumerate(layers))),))
    page = ReportPage(title="t", author="", random_init=True, resolution=224, models=(), figures=(fig,),
                      tables=(), results={}, credits=())
    src = tmp_path / "src"
    src.mkdir()
    (src / "01.md").write_text("# T\n\n::: figure masks\n", encoding="utf-8")
    render_site(page, site_src=src, out=site)
    index = (site / "index.html").read_text(encoding="utf-8")
    stacks = re.findall(r'<span class="layered">(<img[^>]*>)(<img[^>]*>)</span>', index)
    assert len(stacks) == 2
    for (under, over), ly in zip(stacks, layers):
        assert f'src="{ph}"' in under and 'alt="mask' in under
        assert f'src="{ly}"' in over and 'alt=""' in over and 'width="9" height="6"' in over
    report = (site / "report.html").read_text(encoding="utf-8")
    assert report.count('<span class="layered">') == 2
    assert report.count("data:image/avif;base64,") == 1  # the photo once, the second names it

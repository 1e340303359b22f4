"""A figure can leave the page: a permalink on every figure, and a ZIP with its pictures at print
quality (maps enlarged by nearest neighbour, plots as SVG) and its numbers from results.json."""
from __future__ import annotations

import csv
import html
import io
import json
import re
import zipfile

import numpy as np
import pytest
from PIL import Image

from dinoreport.downloads import DOWNLOAD_DIR, PRINT_LONG_SIDE, figure_numbers, figure_zip, write_downloads
from dinoreport.figures import FigureWriter, composite, mask_layer
from dinoreport.page import Figure, Panel, ReportPage, Row

SVG = b'<svg xmlns="http://www.w3.org/2000/svg" width="40" height="30"><rect width="40" height="30"/></svg>'


def _site(tmp_path):
    rng = np.random.default_rng(0)
    site = tmp_path / "site"
    w = FigureWriter(site)
    cells = rng.integers(0, 256, size=(6, 9, 3), dtype=np.uint8)
    photo = rng.integers(0, 256, size=(60, 90, 3), dtype=np.uint8)
    mask = rng.random((6, 9)) > 0.5
    files = {"map": w.png(Image.fromarray(cells, "RGB")), "photo": w.photo(photo),
             "layer": w.png(mask_layer(mask)), "svg": w._write(SVG, "svg")}
    fig = Figure(id="masks-cat", kind="foreground_mask", caption="Masks of cat.", image="cat",
                 rows=(Row("model A", (Panel(files["map"], "PC1 map of cat", "PC1"),
                                       Panel(files["photo"], "mask of cat", "", layer=files["layer"]),
                                       Panel(files["svg"], "histogram", ""))),))
    return site, fig, files, cells, photo


RESULTS = {"masks": [{"image": "cat", "iou": 0.5}, {"image": "dog", "iou": 0.25}, {"model": "a", "share": 0.1}],
           "pairs": [{"image_a": "dog", "image_b": "cat", "n": 3}, {"image_a": "dog", "image_b": "owl", "n": 4}],
           "other": [{"image": "cat", "x": 1}]}
OWNERS = {"masks": "within_pca", "pairs": "within_pca", "other": "norm_maps"}


def test_numbers_are_the_owner_analysis_rows_of_the_figure_image():
    fig = Figure(id="f", kind="k", caption="", rows=(), image="cat")
    got = figure_numbers(fig, RESULTS, OWNERS, "within_pca")
    assert got == {"masks": [{"image": "cat", "iou": 0.5}, {"model": "a", "share": 0.1}],
                   "pairs": [{"image_a": "dog", "image_b": "cat", "n": 3}]}
    assert figure_numbers(fig, RESULTS, OWNERS, None) == {}
    group_fig = Figure(id="g", kind="k", caption="", rows=(), group="dogs")
    rows = [{"group": "dogs", "v": 1}, {"group": "cats", "v": 2}]
    assert figure_numbers(group_fig, {"r": rows}, {"r": "x"}, "x") == {"r": [{"group": "dogs", "v": 1}]}


def test_zip_holds_print_quality_pictures_and_numbers(tmp_path):
    site, fig, files, cells, photo = _site(tmp_path)
    numbers = figure_numbers(fig, RESULTS, OWNERS, "within_pca")
    data = figure_zip(site, fig, numbers)
    assert data == figure_zip(site, fig, numbers)  # same inputs, same bytes (no clock)
    z = zipfile.ZipFile(io.BytesIO(data))
    assert z.namelist() == ["001.png", "002.jpg", "003.svg", "numbers.json", "masks.csv", "pairs.csv",
                            "README.txt"]
    big = np.asarray(Image.open(io.BytesIO(z.read("001.png"))).convert("RGB"))
    k = -(-PRINT_LONG_SIDE // 9)
    assert big.shape == (6 * k, 9 * k, 3) and max(big.shape[:2]) >= PRINT_LONG_SIDE
    assert np.array_equal(big[::k, ::k], cells) and np.array_equal(big[k - 1::k, k - 1::k], cells)
    shown = Image.open(site / files["photo"])
    want = np.asarray(composite(shown, Image.open(site / files["layer"])))
    got = np.asarray(Image.open(io.BytesIO(z.read("002.jpg"))).convert("RGB"), dtype=float)
    assert got.shape == want.shape
    assert 10 * np.log10(255 ** 2 / np.mean((got - want) ** 2)) > 35  # dB PSNR: print quality
    assert z.read("003.svg") == SVG
    assert json.loads(z.read("numbers.json")) == numbers
    rows = list(csv.DictReader(io.StringIO(z.read("masks.csv").decode())))
    assert rows == [{"image": "cat", "iou": "0.5", "model": "", "share": ""},
                    {"image": "", "iou": "", "model": "a", "share": "0.1"}]
    readme = z.read("README.txt").decode()
    assert "Masks of cat." in readme and "001.png: PC1 map of cat [model A] (one cell" in readme
    assert "002.jpg: mask of cat [model A] (mask drawn on the photo)" in readme


def test_site_links_each_figure_and_its_download(tmp_path):
    from dinoreport.render import render_site

    site, fig, _, _, _ = _site(tmp_path)
    odd = Figure(id="Odd_ID", kind="foreground_mask", caption="Odd.", rows=fig.rows)
    assert write_downloads(site, [fig, odd], RESULTS, OWNERS, lambda kind: "within_pca") == 1
    assert sorted(p.name for p in (site / DOWNLOAD_DIR).iterdir()) == ["masks-cat.zip"]
    page = ReportPage(title="t", author="", random_init=True, resolution=224, models=(), figures=(fig,),
                      tables=(), results=RESULTS, credits=())
    src = tmp_path / "src"
    src.mkdir()
    (src / "01.md").write_text("# T\n\n::: figure masks-cat\n", encoding="utf-8")
    render_site(page, site_src=src, out=site)
    index = (site / "index.html").read_text(encoding="utf-8")
    assert re.search(r'<a class="fig-num permalink" href="#masks-cat"[^>]*>Figure 1\.', index)
    size = (site / DOWNLOAD_DIR / "masks-cat.zip").stat().st_size
    link = re.search(r'<a class="fig-download" href="downloads/masks-cat.zip" download>([^<]*)</a>', index)
    assert link and f"{max(1, round(size / 1000))}\u202fkB" in html.unescape(link.group(1))
    # report.html travels alone: the permalink stays, the ZIP (not beside it) is not linked
    report = (site / "report.html").read_text(encoding="utf-8")
    assert 'href="#masks-cat"' in report and 'class="fig-download"' not in report


@pytest.mark.parametrize("fig_id", ["../x", "a/b", "UPPER"])
def test_odd_figure_ids_get_no_file(tmp_path, fig_id):
    site, fig, _, _, _ = _site(tmp_path)
    odd = Figure(id=fig_id, kind=fig.kind, caption="", rows=fig.rows)
    assert write_downloads(site, [odd], {}, {}, lambda kind: None) == 0
    assert not (site / DOWNLOAD_DIR).exists() and not (tmp_path / "x.zip").exists()

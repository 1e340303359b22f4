"""What a reader downloads: index.html carries no bulk data, report.html stays mailable, every
picture has its size (no layout shift), the first screen loads eagerly and the rest lazily."""
from __future__ import annotations

import base64
import re
import zlib
from pathlib import Path

import numpy as np
import pytest

from dinoreport.analyses.explorer_page import EXPLORER_DIR, explorer_blobs
from dinoreport.assets import EAGER_IMAGES, svg_size
from dinoreport.render import render_site

ROOT = Path(__file__).resolve().parents[1]

INDEX_MAX = 1_000_000        # bytes
INLINE_SCRIPT_MAX = 10_000   # characters of one inline <script> in index.html
REPORT_MAX = 8_000_000       # bytes


def page_weight(site: Path) -> dict:
    """Sizes that decide how fast the page opens; see the module docstring."""
    out = {}
    for name in ("index", "report"):
        text = (site / f"{name}.html").read_text(encoding="utf-8")
        imgs = re.findall(r"<img\b[^>]*>", text)
        out[name] = {
            "bytes": (site / f"{name}.html").stat().st_size,
            "largest_inline_script": max((len(s) for s in re.findall(r"<script\b[^>]*>(.*?)</script>", text, re.S)),
                                         default=0),
            "imgs": len(imgs),
            "imgs_without_size": [i[:120] for i in imgs if not (re.search(r"\swidth=\"\d+\"", i)
                                                                and re.search(r"\sheight=\"\d+\"", i))],
            "loading": [re.search(r'loading="(\w+)"', i).group(1) if 'loading="' in i else None for i in imgs
                        if 'id="lightbox-' not in i],
        }
    return out


def _check(site: Path) -> dict:
    w = page_weight(site)
    assert w["index"]["bytes"] <= INDEX_MAX, w["index"]["bytes"]
    assert w["index"]["largest_inline_script"] <= INLINE_SCRIPT_MAX, w["index"]["largest_inline_script"]
    assert w["report"]["bytes"] <= REPORT_MAX, w["report"]["bytes"]
    for name in ("index", "report"):
        assert not w[name]["imgs_without_size"], (name, w[name]["imgs_without_size"][:3])
        loading = w[name]["loading"]
        n = min(EAGER_IMAGES, len(loading))
        assert loading[:n] == ["eager"] * n and set(loading[n:]) <= {"lazy"}, (name, loading[:20])
    return w


def test_demo_build_is_light(demo_site):
    w = _check(demo_site)
    assert w["index"]["imgs"] > EAGER_IMAGES  # there were lazy pictures to check
    html = (demo_site / "index.html").read_text()
    assert 'id="explorer-data"' in html and '"b64"' not in html
    codes = sorted((demo_site / EXPLORER_DIR).glob("*.bin"))
    assert codes, "no explorer codes files"
    for p in codes:
        assert f'"{EXPLORER_DIR}/{p.name}"' in html


def test_sample_page_is_light(tmp_path):
    from sample_page import make_sample_page

    site = tmp_path / "site"
    site.mkdir()
    page = make_sample_page(site, random_init=True)
    render_site(page, site_src=ROOT / "site_src", out=site)
    _check(site)
    # a second render with other codes replaces the files of the first (serve renders in place)
    first = sorted(p.name for p in (site / EXPLORER_DIR).glob("*.bin"))
    for per in page.explorer["features"].values():
        for st in per.values():
            for g in st.values():
                for f in g.values():
                    f["q"] = base64.b64encode(bytes(f["h"] * f["w"] * f["d"])).decode()
    render_site(page, site_src=ROOT / "site_src", out=site)
    second = sorted(p.name for p in (site / EXPLORER_DIR).glob("*.bin"))
    assert second and not set(first) & set(second)


def test_explorer_blobs_hold_the_codes_planar_and_compressed():
    rng = np.random.default_rng(0)
    a = rng.integers(-127, 128, size=(3, 4, 5), dtype=np.int8)
    b = rng.integers(-127, 128, size=(2, 2, 5), dtype=np.int8)
    ex = {"groups": [{"id": "g", "images": ["b", "a"]}],
          "features": {"m": {"s": {"g": {k: {"h": v.shape[0], "w": v.shape[1], "d": 5,
                                              "q": base64.b64encode(v.tobytes()).decode()}
                                          for k, v in (("a", a), ("b", b))}}}}}
    (mid, st, g, blob), = list(explorer_blobs(ex))
    raw = np.frombuffer(zlib.decompress(blob), np.int8)
    want = np.concatenate([b.reshape(-1, 5).T.ravel(), a.reshape(-1, 5).T.ravel()])  # group order, (d, h*w)
    np.testing.assert_array_equal(raw, want)


def test_svg_size_reads_px_pt_and_viewbox():
    assert svg_size('<svg xmlns="x" width="315" height="214">') == (315, 214)
    assert svg_size('<?xml?><svg width="432pt" height="288pt" viewBox="0 0 432 288">') == (576, 384)
    assert svg_size("<svg viewBox='0 0 100.4 50'>") == (100, 50)
    assert svg_size('<svg width="100%" height="100%">') is None


def test_requantize_keeps_directions_and_zeros():
    from dinoreport.analysis import requantize

    q = np.array([[127, -64, 0], [0, 0, 0], [-127, 10, 127]], dtype=np.int8)
    r = requantize(q, 3)
    np.testing.assert_array_equal(r, [[3, -2, 0], [0, 0, 0], [-3, 0, 3]])
    assert requantize(q, 8) is q
    with pytest.raises(ValueError):
        requantize(q, 9)


def test_single_file_codes_are_the_measured_requantization():
    from dinoreport.analysis import requantize

    rng = np.random.default_rng(1)
    a = rng.integers(-127, 128, size=(3, 4, 6), dtype=np.int8)
    ex = {"groups": [{"id": "g", "images": ["a"]}],
          "features": {"m": {"s": {"g": {"a": {"h": 3, "w": 4, "d": 6, "q": base64.b64encode(a.tobytes()).decode()}}}}},
          "single_file": {"m": {"s": {"g": {"bits": 4}}}}}
    (_, _, _, site), = list(explorer_blobs(ex))
    (_, _, _, single), = list(explorer_blobs(ex, single_file=True))
    want = requantize(a.reshape(-1, 6), 4).T.ravel()
    np.testing.assert_array_equal(np.frombuffer(zlib.decompress(single), np.int8), want)
    assert len(single) < len(site)


def test_single_file_encodes_each_picture_once(demo_site):
    """The explorer's photos are the figures' photos: report.html names them, not a second copy."""
    import json

    text = (demo_site / "report.html").read_text(encoding="utf-8")
    uris = re.findall(r"data:image/[\w+.-]+;base64,[A-Za-z0-9+/=]+", text)
    assert uris and len(uris) == len(set(uris)), len(uris) - len(set(uris))
    data = json.loads(re.search(r'<script type="application/json" id="explorer-data">(.*?)</script>', text, re.S)
                      .group(1))
    pics = [im["pic"] for im in data["images"] if "pic" in im]
    assert pics, "no explorer photo named a picture of the page"
    for k in pics:
        assert f'data-pic="{k}"' in text


def test_default_demo_is_light(default_demo_site):
    """The shipped report (the project's own config, random init): index.html carries no bulk
    data (the explorer's codes are files it fetches), report.html fits in an email."""
    import json

    w = _check(default_demo_site)
    html = (default_demo_site / "index.html").read_text(encoding="utf-8")
    data = re.search(r'<script type="application/json" id="explorer-data">(.*?)</script>', html, re.S)
    assert data, "the default demo shows the explorer"
    assert '"b64"' not in data.group(1) and len(re.findall(r"data:[\w/+.-]+;base64,", html)) == 0
    blobs = json.loads(data.group(1))["blobs"]
    for per_stage in blobs.values():
        for per_group in per_stage.values():
            for entry in per_group.values():
                assert (default_demo_site / entry["url"]).is_file()
    assert w["report"]["imgs"] > 500  # every figure is there, only lighter

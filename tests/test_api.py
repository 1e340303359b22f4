"""The Python API (docs/api.md): extract, FeatureMaps, build, metrics, show, compare, and the
notebook example run with random weights."""
from __future__ import annotations

import json
import os
import re
import runpy
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

import dinoreport
from dinoreport import metrics, show
from dinoreport.cli import app
from dinoreport.config import ConfigError

from conftest import PROJECT, planted_photo, write_project

CNX = "convnext_tiny.fb_in1k"
ONE = f'[[models]]\nid = "cnx"\ntimm = "{CNX}"\nlabel = "ConvNeXt-T"\n'
WIDE = {"COLUMNS": "200", "TERMINAL_WIDTH": "200", "NO_COLOR": "1"}


def _features(root: Path) -> set[Path]:
    return set((root / "features").rglob("*.safetensors"))


@pytest.fixture()
def photos(tmp_path) -> Path:
    folder = tmp_path / "photos"
    folder.mkdir()
    Image.fromarray(planted_photo(64, 96)).save(folder / "dog_a.png")
    Image.fromarray(planted_photo(96, 64, "br", 1)).save(folder / "dog_b.png")
    return folder


def test_import_is_light_and_every_public_name_resolves():
    code = ("import sys, dinoreport; assert 'torch' not in sys.modules and 'numpy' not in sys.modules, "
            "sorted(m for m in ('torch', 'numpy') if m in sys.modules); "
            "[getattr(dinoreport, n) for n in dinoreport.__all__]; print('ok')")
    env = {**os.environ, "PYTHONPATH": str(PROJECT / "generator")}
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert r.stdout.strip() == "ok", r.stderr
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        dinoreport.nope  # noqa: B018


def test_extract_gives_the_stages_of_the_model_on_the_crop(photos):
    fm = dinoreport.extract(CNX, photos, resolution=64, random_init=True)
    assert sorted(fm) == ["dog_a", "dog_b"] and fm.stages == ("C2", "C3", "C4", "C5")
    assert fm.multiple == 32 and fm.model.timm == CNX and fm.model.random_init
    for i in fm:
        h, w, _ = fm.images[i].shape
        assert fm.images[i].dtype == np.uint8 and h % 32 == 0 and w % 32 == 0 and min(h, w) == 64
        for s in fm.model.stages:
            assert fm[i][s.name].dtype == np.float32
            assert fm[i][s.name].shape == (s.channels, h // s.stride, w // s.stride)
    assert set(fm.stage("C4")) == {"dog_a", "dog_b"}
    with pytest.raises(KeyError, match="the stages are C2, C3, C4, C5"):
        fm.stage("C6")
    # Arrays and files give the same maps: one preprocessing.
    arrays = {"dog_a": np.asarray(Image.open(photos / "dog_a.png").convert("RGB"))}
    again = dinoreport.extract(CNX, arrays, resolution=64, random_init=True)
    np.testing.assert_array_equal(again["dog_a"]["C5"], fm["dog_a"]["C5"])


def test_extract_and_a_build_share_cache_entries(tmp_path, photos, isolated_cache):
    """A notebook's extraction is a build's: the build after it computes no feature, and an
    extraction after the build writes no new entry."""
    root = tmp_path / "cache"
    cfg = write_project(tmp_path / "proj", {}, models=ONE, resolution=64, highres=[64])
    text = cfg.read_text().replace('dir = "../photos"', f'dir = "{photos}"')
    cfg.write_text(text)
    fm = dinoreport.extract(CNX, photos, resolution=64, random_init=True, id="cnx")
    after_extract = _features(root)
    assert len(after_extract) == 2
    s = dinoreport.build(cfg, out=tmp_path / "site", random_init=True, analyses=["stage_pca"])
    assert (s.computed, s.reused) == (0, 2)
    assert _features(root) == after_extract
    assert dinoreport.extract(CNX, photos, resolution=64, random_init=True, id="cnx").cache_keys == fm.cache_keys
    assert _features(root) == after_extract
    # Another id is another random network (the seed mixes in the id): new entries.
    dinoreport.extract(CNX, photos, resolution=64, random_init=True, id="other")
    assert len(_features(root)) == 4


def test_extract_refuses_an_unknown_model_with_the_closest_names(photos):
    with pytest.raises(ConfigError, match=r"unknown timm model 'convnext_tiny\.fb_in1' — closest timm names: "
                                          r"convnext_tiny\.fb_in1k"):
        dinoreport.extract("convnext_tiny.fb_in1", photos, random_init=True)


def test_build_returns_the_summary_with_its_results(tmp_path, photos):
    s = dinoreport.build(models=[CNX, "resnet18.a1_in1k"], images=photos, out=tmp_path / "site", resolution=64,
                         random_init=True, analyses=["within_pca"])
    assert s.index.is_file() and s.report.is_file() and s.results_path.is_file()
    rows = s.results["within_image_pca"]
    assert {r["model"] for r in rows} == {"convnext_tiny_fb_in1k", "resnet18_a1_in1k"}
    assert s.results == json.loads(s.results_path.read_text())
    with pytest.raises(ValueError, match="config or models, not both"):
        dinoreport.build(PROJECT / "site_src" / "report.toml", models=[CNX, CNX])


def test_metrics_are_the_functions_the_report_uses():
    import dinoreport.analysis as A
    from dinoreport.analysis import parts

    for name in metrics.__all__:
        obj = getattr(metrics, name)
        assert getattr(A, name, None) is obj or getattr(parts, name, None) is obj or obj.__module__.startswith(
            "dinoreport.analysis."), name
    assert metrics.pca_within is A.pca_within and metrics.cosegment is parts.cosegment


def test_show_draws_what_the_report_draws(tmp_path):
    from dinoreport.analysis import pca_within, to_rgb
    from dinoreport.figures import rgb_map

    fmap = np.random.default_rng(0).normal(size=(16, 6, 9)).astype(np.float32)
    pic = show.pca_rgb(fmap, side=None)
    assert np.array_equal(np.asarray(pic.image), np.asarray(rgb_map(to_rgb(pca_within(fmap, k=3).proj))))
    big = show.pca_rgb(fmap)  # enlarged by a whole factor for display: 9 -> 315 px
    assert big.image.size == (9 * 35, 6 * 35)
    assert big._repr_png_().startswith(b"\x89PNG")
    assert Image.open(big.save(tmp_path / "pca.png")).size == big.image.size
    comp = show.components(fmap, k=3, side=None, gap=2)
    assert comp.image.size == (4 * 9 + 3 * 2, 6)  # RGB, PC1, PC2, PC3
    hist = show.histogram({"a": fmap, "b": [fmap * 2, fmap]}, bins=20, title="C5")
    assert hist._repr_svg_().startswith("<svg") and "C5" in hist.svg
    assert hist.save(tmp_path / "h.svg").read_text() == hist.svg


def test_show_histogram_is_the_report_histogram():
    """The picture is hist_svg's, the function feature_stats draws the page's histograms with."""
    from dinoreport import analysis as A
    from dinoreport.analyses.feature_stats import hist_svg

    x = np.random.default_rng(1).normal(size=(4, 5, 5))
    chunks = lambda: iter([x])  # noqa: E731
    assert show.histogram({"m": x}, bins=30, title="C4").svg == hist_svg(
        {"m": (chunks, A.feature_stats(chunks))}, 30, "C4").svg


def test_notebook_example_runs_with_random_weights(tmp_path, monkeypatch):
    pytest.importorskip("skimage")  # the example's photos ship with scikit-image
    monkeypatch.setenv("DINOREPORT_RANDOM_INIT", "1")
    monkeypatch.setenv("DINOREPORT_RESOLUTION", "64")
    monkeypatch.setenv("DINOREPORT_OUT", str(tmp_path / "nb"))
    runpy.run_path(str(PROJECT / "examples" / "notebook.py"), run_name="__main__")
    assert (tmp_path / "nb" / "components.png").is_file()
    assert (tmp_path / "nb" / "site" / "index.html").is_file()


def test_api_doc_names_every_public_name():
    doc = (PROJECT / "docs" / "api.md").read_text()
    for name in [*dinoreport.__all__, *show.__all__, *metrics.__all__]:
        assert re.search(rf"\b{re.escape(name)}\b", doc), name


# --------------------------------------------------------------------------- dinoreport compare

def run(*args: str):
    return CliRunner().invoke(app, list(args), env=WIDE)


def test_compare_builds_a_generic_report_of_timm_names(tmp_path, photos):
    out = tmp_path / "site"
    r = run("compare", CNX, "resnet18.a1_in1k", "--images", str(photos), "--out", str(out), "--random-init",
            "--resolution", "64", "--analyses", "within_pca,stage_pca", "--quiet")
    assert r.exit_code == 0, r.output
    facts = json.loads((out / "data" / "build.json").read_text())
    assert [(m["id"], m["timm"], m["stages"]) for m in facts["models"]] == [
        ("convnext_tiny_fb_in1k", CNX, ["C2", "C3", "C4", "C5"]),
        ("resnet18_a1_in1k", "resnet18.a1_in1k", ["C2", "C3", "C4", "C5"])]
    page = (out / "index.html").read_text()
    assert "What these backbones see" in page and "side by side on the same" in page
    assert "DINOv3 ConvNeXt" not in page  # not the study's narrative


def test_compare_refuses_unknown_names_and_counts_at_once(tmp_path):
    r = run("compare", CNX, "resnt18", "--random-init", "--out", str(tmp_path / "s"))
    assert r.exit_code == 2 and "model 2: unknown timm model 'resnt18' — closest timm names: resnet18." in r.output
    r = run("compare", CNX, "--random-init", "--out", str(tmp_path / "s"))
    assert r.exit_code == 2 and "give 2 to 8 timm names, got 1" in r.output
    r = run("compare", *[CNX] * 9, "--random-init", "--out", str(tmp_path / "s"))
    assert r.exit_code == 2 and "got 9" in r.output
    r = run("compare", CNX, "resnet18.a1_in1k", "--weights", "resnet50=w.safetensors", "--out", str(tmp_path / "s"))
    assert r.exit_code == 2 and "--weights resnet50=...: no model of the list is called that" in r.output
    r = run("compare", CNX, "resnet18.a1_in1k", "--weights", "resnet18.a1_in1k", "--out", str(tmp_path / "s"))
    assert r.exit_code == 2 and "write NAME=FILE" in r.output
    assert not (tmp_path / "s").exists()


def test_compare_gives_two_models_of_one_name_two_ids(tmp_path):
    from dinoreport.api import compare_config

    cfg = compare_config([CNX, CNX], weights={})
    assert [m.id for m in cfg.models] == ["convnext_tiny_fb_in1k", "convnext_tiny_fb_in1k_2"]
    from dinoreport.analyses import resolve_options

    assert cfg.resolution == 448 and "claims" not in cfg.analyses
    assert resolve_options(cfg)["highres"].highres == (448, 896)
    assert compare_config([CNX, "vit_small_patch14_dinov2.lvd142m"]).resolution == 448  # lcm 224
    assert compare_config([CNX, "vit_small_patch14_dinov2.lvd142m"], resolution=224).resolution == 224

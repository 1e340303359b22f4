"""End to end: what a build writes, local weights, offline failure, determinism, faults."""
from __future__ import annotations

import json
from dataclasses import replace
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import timm
from safetensors.torch import save_file

from dinoreport.config import load_config
from dinoreport.outdir import OutDirError
from dinoreport.pipeline import BuildOptions, build
from dinoreport.weights import sha256_file

from conftest import planted_photo, write_project

DESIGN_FILES = ["index.html", "report.html", "data/results.json", "data/figures.json", "data/build.json", ".nojekyll"]
RESULT_KEYS = ["within_image_pca", "feature_stats", "channel_stats", "across_image_pca", "cka", "mask_iou",
               "mask_iou_gt"]
ONE_MODEL = '[[models]]\nid = "in1k_convnext_tiny"\ntimm = "convnext_tiny.fb_in1k"\n'


def cli(*args: str, timeout: float = 300, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "dinoreport.cli", *args], capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, **(env or {})})


def test_demo_build_writes_every_design_file(demo_site):
    for rel in DESIGN_FILES:
        assert (demo_site / rel).is_file(), rel
    assert any((demo_site / "assets").rglob("*.png"))


def test_every_figure_in_figures_json_exists(demo_site):
    figs = json.loads((demo_site / "data" / "figures.json").read_text())
    kinds = {f["kind"] for f in figs}
    assert {"within_pca", "stage_pca", "random_channels", "foreground_mask", "across_pca_naive",
            "across_pca_masked", "feature_hist", "channel_hist", "cka", "highres"} <= kinds
    for f in figs:
        assert (demo_site / f["file"]).is_file(), f
        assert f["caption"] and f["alt"]


def test_results_json_has_every_name(demo_site):
    res = json.loads((demo_site / "data" / "results.json").read_text())
    for key in RESULT_KEYS:
        assert key in res, key
    rows = [r for r in res["within_image_pca"] if r["stage"] in ("C5", "B12")]
    assert {(r["model"], r["image"]) for r in rows} == {
        (m, i) for m in ("dinov3_convnext_tiny", "dinov3_vits16") for i in ("dog_a", "dog_b")}
    for r in rows:
        assert len(r["explained_variance_ratio"]) == 3 and 0 <= r["fg_fraction"] <= 1
        assert r["explained_variance_ratio"][0] >= r["explained_variance_ratio"][1]
    across = res["across_image_pca"]
    assert {r["masked"] for r in across} == {False, True} and all(r["group"] == "dog" for r in across)
    stages = {(r["model"], r["stage"]) for r in res["feature_stats"]}
    assert ("dinov3_convnext_tiny", "C2") in stages and ("dinov3_vits16", "B12") in stages


def test_build_json_records_random_init(demo_site):
    b = json.loads((demo_site / "data" / "build.json").read_text())
    assert b["random_init"] is True
    assert {m["weights_source"] for m in b["models"]} == {"random-init"}
    assert set(b["seconds"]) >= {"decode", "extract", "render"}
    assert "random" in (demo_site / "index.html").read_text().lower()


def test_local_weights_file_builds_offline(tmp_path):
    model = timm.create_model("convnext_tiny.fb_in1k", pretrained=False, num_classes=0)
    weights = tmp_path / "w.safetensors"
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(weights))
    cfg = write_project(tmp_path, {"a": planted_photo(224, 224)},
                        models=ONE_MODEL + f'weights = "{weights}"\n')
    r = cli("build", "--config", str(cfg), "--out", str(tmp_path / "site"), "--quiet",
            env={"HF_HUB_OFFLINE": "1"})
    assert r.returncode == 0, r.stderr
    b = json.loads((tmp_path / "site" / "data" / "build.json").read_text())
    assert b["models"][0]["weights_source"] == "file"
    assert b["models"][0]["weights_sha256"] == sha256_file(weights)


def test_offline_without_weights_fails_fast_naming_the_model(tmp_path):
    cfg = write_project(tmp_path, {"a": planted_photo(224, 224)}, models=ONE_MODEL)
    t = time.perf_counter()
    r = cli("build", "--config", str(cfg), "--out", str(tmp_path / "site"), env={"HF_HUB_OFFLINE": "1"}, timeout=60)
    assert time.perf_counter() - t < 10
    assert r.returncode != 0
    assert "in1k_convnext_tiny" in r.stderr and "convnext_tiny.fb_in1k" in r.stderr
    assert "--random-init" in r.stderr and "weights =" in r.stderr
    assert not (tmp_path / "site").exists()


def _tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_two_builds_are_byte_identical_except_build_json(tmp_path, demo_site):
    cfg_path = demo_site.parent / "site_src" / "report.toml"
    build(load_config(cfg_path), BuildOptions(out=tmp_path / "again", random_init=True, quiet=True))
    a, b = _tree(demo_site), _tree(tmp_path / "again")
    a.pop("data/build.json"), b.pop("data/build.json")
    # The marker lists build.json's hash (it has timings); every other file's hash must agree.
    ma, mb = (json.loads(t.pop("data/.dinoreport-manifest.json"))["files"] for t in (a, b))
    ma.pop("data/build.json"), mb.pop("data/build.json")
    assert ma == mb
    assert sorted(a) == sorted(b)
    assert [k for k in a if a[k] != b[k]] == []


def test_failed_build_leaves_previous_site_intact(tmp_path, demo_site, monkeypatch):
    import dinoreport.pipeline as pipeline

    cfg = load_config(demo_site.parent / "site_src" / "report.toml")
    out = tmp_path / "site"
    build(cfg, BuildOptions(out=out, random_init=True, quiet=True, analyses=("within_pca",)))
    before = _tree(out)

    def crash(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(pipeline, "_json_dump", crash)
    with pytest.raises(KeyboardInterrupt):  # force: an unchanged site would be left alone anyway
        build(cfg, BuildOptions(out=out, random_init=True, quiet=True, analyses=("within_pca",), force=True))
    assert _tree(out) == before
    assert [p.name for p in tmp_path.iterdir()] == ["site"]  # no temp folder left behind


def test_damaged_cache_entry_is_recomputed(tmp_path, demo_site, monkeypatch):
    monkeypatch.setenv("DINOREPORT_CACHE", str(tmp_path / "cache"))
    cfg = load_config(demo_site.parent / "site_src" / "report.toml")
    opts = BuildOptions(out=tmp_path / "s", random_init=True, quiet=True, analyses=("within_pca",), force=True)
    first = build(cfg, opts)
    assert first.computed == 4 and first.reused == 0
    entries = sorted((tmp_path / "cache" / "features").rglob("*.safetensors"))
    assert len(entries) == 4
    data = bytearray(entries[0].read_bytes())
    data[-10] ^= 0xFF  # alter one byte of the tensor data
    entries[0].write_bytes(bytes(data))
    entries[1].write_bytes(entries[1].read_bytes()[:100])  # truncate another
    s = build(cfg, opts)
    assert (s.damaged, s.computed, s.reused) == (2, 2, 2)


def test_out_must_not_replace_inputs_or_foreign_folders(tmp_path, demo_site):
    cfg = load_config(demo_site.parent / "site_src" / "report.toml")
    with pytest.raises(OutDirError, match="would replace the input folder"):
        build(cfg, BuildOptions(out=demo_site.parent, random_init=True, quiet=True))
    foreign = tmp_path / "docs"
    foreign.mkdir()
    (foreign / "keep.txt").write_text("mine")
    with pytest.raises(OutDirError, match="not written by dinoreport"):
        build(cfg, BuildOptions(out=foreign, random_init=True, quiet=True))
    assert (foreign / "keep.txt").read_text() == "mine"


def test_adding_an_image_computes_features_for_that_image_only(tmp_path, monkeypatch):
    monkeypatch.setenv("DINOREPORT_CACHE", str(tmp_path / "cache"))
    cfg_path = write_project(tmp_path, {"a": planted_photo(224, 224), "b": planted_photo(224, 256, "br")},
                             models=ONE_MODEL, highres=[224])
    opts = BuildOptions(out=tmp_path / "site", random_init=True, quiet=True, analyses=("within_pca",))
    first = build(load_config(cfg_path), opts)
    assert (first.computed, first.reused) == (2, 0)
    from PIL import Image

    Image.fromarray(planted_photo(256, 224, "bl")).save(tmp_path / "photos" / "c.png")
    second = build(load_config(cfg_path), opts)
    assert (second.computed, second.reused) == (1, 2)
    assert second.sections_computed == 1  # within_pca depends on every image: recomputed
    assert build(load_config(cfg_path), opts).up_to_date  # nothing changed: nothing done
    third = build(load_config(cfg_path), replace(opts, force=True))
    assert (third.computed, third.sections_computed, third.sections_reused) == (0, 0, 1)


def test_sweep_and_explorer_results(demo_site):
    res = json.loads((demo_site / "data" / "results.json").read_text())
    sweep = res["resolution_sweep"]
    assert {(r["model"], r["resolution"]) for r in sweep} == {
        (m, r) for m in ("dinov3_convnext_tiny", "dinov3_vits16") for r in (224, 448)}
    for r in sweep:
        assert 0 < r["pc1_explained"] <= 1 and 0 <= r["mask_iou_vs_base"] <= 1
        assert r["mask_iou_vs_base"] == 1.0 or r["resolution"] != 224  # 224 is the build's own
    # the explorer covers every stage of both models, within its byte budget
    err = {(r["model"], r["stage"]) for r in res["explorer_error"]}
    assert ("dinov3_convnext_tiny", "C2") in err and ("dinov3_vits16", "B12") in err
    assert all(0 <= r["mean_abs_error"] <= r["max_abs_error"] <= 2 for r in res["explorer_error"])
    assert all(r["bytes_per_image_max"] <= 1_500_000 for r in res["explorer_size"])
    figs = json.loads((demo_site / "data" / "figures.json").read_text())
    assert "resolution_sweep" in {f["kind"] for f in figs}


def test_explorer_shows_at_most_explorer_images_per_group(tmp_path):
    # A group of three with a cap of two: the explorer embeds the first two by id, and only them.
    from dinoreport.config import load_config
    from dinoreport.pipeline import BuildOptions, build

    photos = {f"dog_{c}": planted_photo(224, 224, "tl", i) for i, c in enumerate("cab")}
    cfg = write_project(tmp_path, photos, models=ONE_MODEL, extra="explorer_images = 2\n")
    summary = build(load_config(cfg), BuildOptions(out=tmp_path / "site", random_init=True, quiet=True))
    ex = summary.page.explorer
    assert [g["images"] for g in ex["groups"] if g["id"] == "dog"] == [["dog_a", "dog_b"]]
    for stages in ex["features"].values():
        for groups in stages.values():
            assert sorted(groups["dog"]) == ["dog_a", "dog_b"]

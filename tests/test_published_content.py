"""Issue 20, "wrong or foreign content published": what a site shows was computed for it."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from dinoreport.config import load_config
from dinoreport.pipeline import BuildOptions, build

from conftest import planted_photo, rot_in_place, write_project

ONE_MODEL = '[[models]]\nid = "in1k_convnext_tiny"\ntimm = "convnext_tiny.fb_in1k"\n'

NOT_FINITE = '''
from dinoreport.analyses import SectionOutput, register_analysis


@register_analysis("odd_numbers", order=5)
def odd_numbers(ctx):
    out = SectionOutput()
    out.results["odd_numbers"] = [{"image": i, "nan": float("nan"), "inf": float("inf"), "ok": 1.5}
                                  for i in ctx.image_ids()]
    return out
'''


def _strict(text: str):
    def refuse(name):
        raise ValueError(f"{name} is not JSON")

    return json.loads(text, parse_constant=refuse)


def _project(tmp_path: Path, images: int = 2) -> Path:
    photos = {f"dog_{k}": planted_photo(64, 64, ("tl", "br")[k % 2], k) for k in range(images)}
    return write_project(tmp_path, photos, models=ONE_MODEL, resolution=64, highres=[64])


def _build(cfg: Path, out: Path, **kw):
    return build(load_config(cfg), BuildOptions(out=out, random_init=True, quiet=True, **kw))


def test_results_that_are_not_numbers_are_written_as_null_and_named(tmp_path):
    """Item 5: results.json is strict JSON; the summary says which analysis wrote what."""
    cfg = _project(tmp_path, 1)
    (cfg.parent / "analyses").mkdir()
    (cfg.parent / "analyses" / "odd.py").write_text(NOT_FINITE)
    summary = _build(cfg, tmp_path / "site", analyses=("odd_numbers",))
    res = _strict((tmp_path / "site" / "data" / "results.json").read_text())
    assert res["odd_numbers"] == [{"image": "dog_0", "nan": None, "inf": None, "ok": 1.5}]
    _strict((tmp_path / "site" / "data" / "figures.json").read_text())
    built = _strict((tmp_path / "site" / "data" / "build.json").read_text())
    assert built["not_finite_results"] == ["odd_numbers: odd_numbers[0].nan", "odd_numbers: odd_numbers[0].inf"]
    line = summary.line()
    assert "2 results were not finite" in line and "odd_numbers: odd_numbers[0].inf" in line


def test_feature_bytes_changed_in_place_never_reach_the_results(tmp_path, monkeypatch):
    """Item 1: an entry whose bytes changed while its size and mtime stayed is caught when an
    analysis reads it, computed again, and the results are those of sound features."""
    monkeypatch.setenv("DINOREPORT_CACHE", str(tmp_path / "cache"))
    cfg = _project(tmp_path)
    _build(cfg, tmp_path / "a", analyses=("within_pca", "feature_stats"))
    want = (tmp_path / "a" / "data" / "results.json").read_text()
    entries = sorted((tmp_path / "cache" / "features").rglob("*.safetensors"))
    assert len(entries) == 2
    for p in entries:
        rot_in_place(p, -5, 0x55)
    # --no-cache for the sections only would also do; a fresh section cache is what a shared
    # feature cache with another report's sections looks like.
    for p in (tmp_path / "cache" / "sections").iterdir():
        p.unlink()
    summary = _build(cfg, tmp_path / "b", analyses=("within_pca", "feature_stats"))
    assert (tmp_path / "b" / "data" / "results.json").read_text() == want
    assert summary.damaged == 2 and summary.computed == 2 and summary.reused == 0
    assert "recomputed" in summary.line()


def test_no_cache_computes_everything_again_and_keeps_the_cache(tmp_path, monkeypatch):
    """Item 4's way out: --no-cache recomputes features and sections, refreshing the entries."""
    monkeypatch.setenv("DINOREPORT_CACHE", str(tmp_path / "cache"))
    cfg = _project(tmp_path)
    first = _build(cfg, tmp_path / "site", analyses=("within_pca",))
    assert first.computed == 2 and first.sections_computed == 1
    again = _build(cfg, tmp_path / "site", analyses=("within_pca",), no_cache=True)
    assert not again.up_to_date
    assert again.computed == 2 and again.reused == 0 and again.sections_computed == 1 and again.sections_reused == 0
    later = _build(cfg, tmp_path / "other", analyses=("within_pca",))
    assert later.computed == 0 and later.reused == 2 and later.sections_reused == 1

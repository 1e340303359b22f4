"""A rebuild with nothing changed writes nothing; any change to what the site is built from,
or to the site itself, rebuilds it."""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import planted_photo, write_project

ONE_MODEL = '[[models]]\nid = "m"\ntimm = "convnext_tiny.fb_in1k"\n'


def _mtimes(site: Path) -> dict[str, int]:
    return {p.relative_to(site).as_posix(): p.stat().st_mtime_ns for p in site.rglob("*") if p.is_file()}


@pytest.fixture()
def project(tmp_path):
    cfg = write_project(tmp_path, {"dog_a": planted_photo(224, 224, "tl"), "dog_b": planted_photo(224, 256, "br", 1)},
                        models=ONE_MODEL, highres=[224])
    return cfg, tmp_path / "site"


def _build(cfg: Path, out: Path, **kw):
    from dinoreport.config import load_config
    from dinoreport.pipeline import BuildOptions, build

    opts = dict(out=out, random_init=True, quiet=True, analyses=("within_pca", "stage_pca")) | kw
    return build(load_config(cfg), BuildOptions(**opts))


def test_nothing_changed_nothing_written_and_force_rebuilds(project):
    cfg, site = project
    first = _build(cfg, site)
    assert not first.up_to_date
    before = _mtimes(site)
    again = _build(cfg, site)
    assert again.up_to_date and "up to date" in again.line()
    assert _mtimes(site) == before
    forced = _build(cfg, site, force=True)
    assert not forced.up_to_date and _mtimes(site) != before


@pytest.mark.parametrize("change", ["narrative", "config", "image bytes", "image added", "user analysis",
                                    "site file deleted", "options"])
def test_each_change_rebuilds(project, change):
    cfg, site = project
    _build(cfg, site)
    src, photos = cfg.parent, cfg.parent.parent / "photos"
    kw = {}
    if change == "narrative":
        md = sorted(src.glob("*.md"))[0]
        md.write_text(md.read_text() + "\n\nA planted sentence for the rebuild test.\n")
    elif change == "config":
        cfg.write_text(cfg.read_text().replace('title = "Test report"', 'title = "Planted title"'))
    elif change == "image bytes":  # same name, other pixels
        Image.fromarray(planted_photo(224, 224, "br", 7)).save(photos / "dog_a.png")
    elif change == "image added":
        Image.fromarray(planted_photo(224, 224, "tr", 3)).save(photos / "dog_c.png")
    elif change == "user analysis":
        (src / "analyses").mkdir()
        (src / "analyses" / "noop.py").write_text("# an analysis file the build imports\n")
    elif change == "site file deleted":
        (site / "report.html").unlink()
    elif change == "options":
        kw = {"analyses": ("within_pca",)}
    summary = _build(cfg, site, **kw)
    assert not summary.up_to_date, change
    page = (site / "index.html").read_text()
    if change == "narrative":
        assert "A planted sentence for the rebuild test." in page
    if change == "config":
        assert "Planted title" in page
    if change == "image added":
        assert "dog_c" in json.loads((site / "data" / "build.json").read_text())["groups"]["dog"]
    if change == "site file deleted":
        assert (site / "report.html").is_file()
    # and the rebuilt site is up to date again
    assert _build(cfg, site, **kw).up_to_date


def test_an_edited_site_file_is_still_refused(project):
    from dinoreport.outdir import OutDirError

    cfg, site = project
    _build(cfg, site)
    (site / "index.html").write_text("edited by hand")
    with pytest.raises(OutDirError, match="changed since"):
        _build(cfg, site)
    assert not _build(cfg, site, discard_edits=True).up_to_date
    assert (site / "index.html").read_text() != "edited by hand"


def test_cli_says_up_to_date(project):
    from typer.testing import CliRunner

    from dinoreport.cli import app

    cfg, site = project
    args = ["build", "--config", str(cfg), "--out", str(site), "--random-init"]
    assert CliRunner().invoke(app, args).exit_code == 0
    r = CliRunner().invoke(app, args)
    assert r.exit_code == 0 and "is up to date" in r.output
    r = CliRunner().invoke(app, args + ["--force"])
    assert r.exit_code == 0 and "Built" in r.output

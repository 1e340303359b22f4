"""What the README says about the command line and the outputs matches the code."""
from __future__ import annotations

import re
import tomllib
from pathlib import Path

import typer

from dinoreport.cli import app
from dinoreport.page import Figure, Panel, Row
from dinoreport.pipeline import _figures_json

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def test_the_build_synopsis_names_every_option_of_build():
    build = typer.main.get_command(app).commands["build"]
    flags = {o for p in build.params if p.param_type_name == "option" for o in p.opts if o.startswith("--")}
    assert "--fetch" in flags and "--skip" in flags
    synopsis = README.split(".venv/bin/dinoreport build [", 1)[1].split("\n.venv/bin/dinoreport images", 1)[0]
    missing = sorted(f for f in flags - {"--help"} if f not in synopsis)
    assert not missing, missing


def test_figures_json_keys_are_the_ones_the_readme_lists():
    fig = Figure(id="f", kind="k", caption="c", rows=(Row("r", (Panel("assets/fig/x.png", "alt", "l"),)),))
    keys = set(_figures_json([fig])[0])
    line = next(ln for ln in README.splitlines() if ln.startswith("site/data/figures.json"))
    nxt = README.splitlines()[README.splitlines().index(line) + 1]
    listed = set(re.findall(r"[a-z]+", (line + nxt).split(":", 1)[1])) & keys
    assert listed == keys, sorted(keys - listed)
    assert "model, stage" not in line


def test_the_pages_workflow_does_not_claim_downloads_the_manifest_has_none_of():
    manifest = tomllib.loads((ROOT / "images" / "manifest.toml").read_text())
    if not any("url" in e for e in manifest.get("image", [])):
        assert "fetched from Wikimedia" not in (ROOT / ".github" / "workflows" / "pages.yml").read_text()


def test_make_serve_says_it_uses_random_weights():
    make = (ROOT / "Makefile").read_text()
    line = next(ln for ln in README.splitlines() if ln.startswith("make serve"))
    if "--random-init" in make.split("serve: setup", 1)[1].split("\n\n", 1)[0]:
        assert "random" in line

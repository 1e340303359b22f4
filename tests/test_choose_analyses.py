"""Choosing analyses (--analyses, --skip, `analyses = [...]`), the sweep's default and what a
model can take, checked once at config time."""
from __future__ import annotations

import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from dinoreport.cli import app
from dinoreport.config import load_config
from dinoreport.modelmeta import BackboneError, model_meta
from dinoreport.pipeline import BuildError, BuildOptions, build, choose_analyses

from conftest import planted_photo, write_project

WIDE = {"COLUMNS": "200", "TERMINAL_WIDTH": "200", "NO_COLOR": "1"}
CONVNEXT = '[[models]]\nid = "cnx"\ntimm = "convnext_tiny.fb_in1k"\nlabel = "ConvNeXt-T"\n'


def run(*args: str):
    return CliRunner().invoke(app, list(args), env=WIDE)


def _flat(text: str) -> str:
    return re.sub(r"\s+", " ", re.sub(r"[│╭╮╰╯─]", " ", text))


@pytest.fixture()
def small_cfg(tmp_path):
    return load_config(write_project(tmp_path, {"dog_a": planted_photo(64, 96)}, models=CONVNEXT,
                                     resolution=64, highres=[64]))


# --------------------------------------------------------------------------- choose_analyses

def test_a_needed_analysis_is_added_with_a_note(small_cfg):
    names, notes = choose_analyses(small_cfg, ("across_pca",))
    assert names == ("within_pca", "across_pca")
    assert notes == ("added analysis within_pca: across_pca needs its ForegroundMasks",)


def test_skip_removes_and_keeps_report_order(small_cfg):
    names, notes = choose_analyses(small_cfg, None, ("resolution_sweep", "explorer"))
    assert "resolution_sweep" not in names and "explorer" not in names and not notes
    assert names.index("within_pca") < names.index("across_pca")


def test_skipping_what_another_needs_is_refused_naming_both(small_cfg):
    with pytest.raises(BuildError) as e:
        choose_analyses(small_cfg, ("across_pca",), ("within_pca",))
    msg = str(e.value)
    assert "across_pca needs the ForegroundMasks of within_pca" in msg and "--skip" in msg


def test_unknown_analysis_names_the_flag_and_the_closest(small_cfg):
    with pytest.raises(BuildError, match=r"--skip: unknown analysis 'resolution_swep' — did you mean "
                                         r"'resolution_sweep'\?"):
        choose_analyses(small_cfg, None, ("resolution_swep",))


def test_analyses_of_report_toml_apply_unless_the_flag_is_given(tmp_path):
    path = write_project(tmp_path, {"dog_a": planted_photo(64, 96)}, models=CONVNEXT, resolution=64, highres=[64])
    text = path.read_text().replace('title = ', 'analyses = ["stage_pca", "feature_stats"]\ntitle = ', 1)
    path.write_text(text)
    cfg = load_config(path)
    assert cfg.analyses == ("stage_pca", "feature_stats")
    assert choose_analyses(cfg)[0] == ("stage_pca", "feature_stats")
    assert choose_analyses(cfg, ("within_pca",))[0] == ("within_pca",)
    path.write_text(text.replace('"feature_stats"', '"feature_stat"'))
    with pytest.raises(BuildError, match=r"analyses of .*report.toml: unknown analysis 'feature_stat'"):
        choose_analyses(load_config(path))


def test_a_page_says_which_analyses_were_not_run(tmp_path):
    """The study's narrative, built with one analysis and what it needs: the build does not fail
    and each directive of an analysis left out says so."""
    cfg = load_config(write_project(tmp_path, {"dog_a": planted_photo(64, 96), "dog_b": planted_photo(96, 64, "br", 1)},
                                    models=CONVNEXT, resolution=64, highres=[64]))
    r = run("build", "--config", str(cfg.path), "--out", str(tmp_path / "site"), "--random-init",
            "--analyses", "across_pca", "--skip", "explorer")
    assert r.exit_code == 0, r.output
    assert "added analysis within_pca: across_pca needs its ForegroundMasks" in r.output
    page = (tmp_path / "site" / "index.html").read_text()
    assert "Not in this build: the cka analysis" in page
    assert "Not in this build: the within_pca" not in page and "Not in this build: the across_pca" not in page
    import json

    kinds = {f["kind"] for f in json.loads((tmp_path / "site" / "data" / "figures.json").read_text())}
    from dinoreport.directives import kind_owner

    assert {kind_owner(k) for k in kinds} == {"within_pca", "across_pca"}, kinds


def test_build_and_serve_take_analyses_and_skip():
    for cmd in ("build", "serve"):
        text = _flat(run(cmd, "--help").output)
        assert "--analyses NAME,..." in text and "--skip NAME,..." in text, text
    assert "--skip resolution_sweep" in _flat(run("build", "--help").output)


# --------------------------------------------------------------------------- the sweep's default

def test_sweep_defaults_to_multiples_of_the_resolution(tmp_path):
    from dinoreport.analyses.resolution_sweep import default_sweep

    assert default_sweep(448, 32) == (224, 448, 896)  # the demo's: unchanged
    assert default_sweep(448, 224) == (224, 448, 896)
    assert default_sweep(224, 32) == (128, 224, 448)  # 112 is not on the crop: the nearest multiple
    assert default_sweep(224, 224) == (224, 448)
    cfg = write_project(tmp_path, {"dog_a": planted_photo(64, 96)}, models=CONVNEXT, resolution=320)
    text = cfg.read_text()
    cfg.write_text(re.sub(r"sweep = \[.*\]\n", "", text))
    from dinoreport.analyses import resolve_options
    from dinoreport.analyses.resolution_sweep import sweep_sides

    loaded = load_config(cfg)
    opts = resolve_options(loaded)["resolution_sweep"]
    assert opts.sweep == ()
    assert sweep_sides(loaded, opts) == (160, 320, 640)


# --------------------------------------------------------------------------- what a model can take

def test_maxvit_needs_sides_a_multiple_of_window_times_stride():
    assert model_meta("maxvit_tiny_tf_224").multiple == 224  # 7-cell windows at stride 32
    assert model_meta("convnext_tiny.fb_in1k").multiple == 32
    assert model_meta("vit_small_patch14_dinov2.lvd142m").multiple == 14


def test_a_fixed_size_model_is_refused_by_models_and_build_alike(tmp_path):
    with pytest.raises(BackboneError, match="takes only the input size it was built for"):
        model_meta("hiera_tiny_224")
    cfg = write_project(tmp_path, {"dog_a": planted_photo(64, 96)}, resolution=224, highres=[224],
                        models='[[models]]\nid = "hiera"\ntimm = "hiera_tiny_224"\nlabel = "Hiera-T"\n')
    for args in (("models",), ("build", "--random-init", "--out", str(tmp_path / "site"))):
        r = run(*args, "--config", str(cfg))
        assert r.exit_code == 2, r.output
        assert "models.hiera: Model 'hiera_tiny_224' (Hiera) takes only the input size it was built for" in r.output
        assert "Traceback" not in r.output
    assert not (tmp_path / "site").exists()


def test_models_says_what_maxvit_takes(tmp_path):
    cfg = write_project(tmp_path, {"dog_a": planted_photo(64, 96)}, resolution=224, highres=[224],
                        models='[[models]]\nid = "maxvit"\ntimm = "maxvit_tiny_tf_224"\nlabel = "MaxViT-T"\n')
    r = run("models", "--config", str(cfg))
    assert r.exit_code == 0, r.output
    assert "input:   sides a multiple of 224 px" in r.output


def test_maxvit_builds_with_the_crop_rule(tmp_path):
    """MaxViT beside a ConvNeXt: the crop is 224 (lcm of 224 and 32), every stage tiles it."""
    cfg = write_project(tmp_path, {"dog_a": planted_photo(224, 300)}, resolution=224, highres=[224], sweep=[224],
                        models='[[models]]\nid = "maxvit"\ntimm = "maxvit_tiny_tf_224"\nlabel = "MaxViT-T"\n\n'
                               + CONVNEXT)
    out = tmp_path / "site"
    build(load_config(cfg), BuildOptions(out=out, random_init=True, quiet=True, analyses=("stage_pca",)))
    import json

    facts = json.loads((out / "data" / "build.json").read_text())
    assert facts["crop"] == {"multiple": 224, "needs": {"convnext_tiny.fb_in1k": 32, "maxvit_tiny_tf_224": 224}}
    assert facts["models"][0]["stages"] == ["C2", "C3", "C4", "C5"]

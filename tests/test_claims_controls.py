"""Claims against controls: planted numbers where the truth is known, the free controls'
functions, the narrative-helper hook of the registry, and the end-to-end check that untrained
weights read from local files earn no "supported" training claim."""
from __future__ import annotations

import json

import numpy as np
import pytest

from dinoreport.analysis import claims as C
from dinoreport.analysis.claim_metrics import centre_prior, free_controls, pooled_photo, random_masks, split_halves
from dinoreport.analysis.spatial import edge_following

DENSE, CLS, VIT = "dinov3_convnext_tiny", "in1k_convnext_tiny", "dinov3_vits16"
ROLE_IDS = {"dense_cnn": DENSE, "cls_cnn": CLS, "dense_vit": VIT}
N = 8


def _claim(cid):
    return next(c for c in C.CLAIMS if c.id == cid)


def _noisy(mean, rng, sd=0.02):
    return list(mean + sd * rng.normal(size=N))


def _edges(trained, control):
    """edge_drop of both ConvNeXts, and every one of its controls at ``control``."""
    rng = np.random.default_rng(0)
    meas = {"edge_drop": {DENSE: _noisy(trained, rng), CLS: _noisy(trained, rng)}}
    ctrl = {c: {"edge_drop": {DENSE: _noisy(control, rng), CLS: _noisy(control, rng)}}
            for c in ("untrained", "photo")}
    return meas, ctrl


def test_control_equal_to_trained_is_not_supported():
    meas, ctrl = _edges(0.4, 0.4)
    row = C.evaluate(_claim("edges_to_objects"), meas, ROLE_IDS, random_weights=False, controls=ctrl)
    assert row["verdict"] == "not supported", row["reason"]
    assert "does not beat its untrained control by 0.05" in row["reason"]
    # without controls the same numbers pass the bar: the control is what stops them
    assert C.evaluate(_claim("edges_to_objects"), meas, ROLE_IDS, random_weights=False)["verdict"] == "supported"


def test_trained_clearly_above_every_control_is_supported():
    meas, ctrl = _edges(0.4, 0.2)
    row = C.evaluate(_claim("edges_to_objects"), meas, ROLE_IDS, random_weights=False, controls=ctrl)
    assert row["verdict"] == "supported", row["reason"]
    assert row["reason"].count("beats its untrained control by more than 0.05") == 2
    assert row["reason"].count("beats its photo control by more than 0.05") == 2
    assert row["metrics"]["edge_drop"]["controls"]["photo"][DENSE] == pytest.approx(0.2, abs=0.03)


def test_beating_the_control_by_less_than_the_margin_is_not_enough():
    meas, ctrl = _edges(0.4, 0.37)  # 0.03 above: inside the 0.05 margin, with a tight interval
    row = C.evaluate(_claim("edges_to_objects"), meas, ROLE_IDS, random_weights=False, controls=ctrl)
    assert row["verdict"] == "not supported", row["reason"]


def test_a_control_not_measured_cannot_tell_and_says_which():
    meas, ctrl = _edges(0.4, 0.2)
    del ctrl["photo"]
    row = C.evaluate(_claim("edges_to_objects"), meas, ROLE_IDS, random_weights=False, controls=ctrl)
    assert row["verdict"] == "cannot tell"
    assert f"no photo control of edge_drop was measured for {DENSE}" in row["reason"]


def test_below_part_beats_its_control_downwards_and_pair_metrics_use_the_jackknife():
    part = C.Part("below", "pc23_coherence", "cls_cnn", bound=0.5)
    rng = np.random.default_rng(1)
    meas = {"pc23_coherence": {CLS: _noisy(0.1, rng)}}
    for control, want in ((0.4, "supported"), (0.12, "not supported")):
        ctrl = {"untrained": {"pc23_coherence": {CLS: _noisy(control, rng)}}, "shuffled": {
            "pc23_coherence": {CLS: _noisy(control, rng)}}}
        claim = C.Claim("x", "s", "pc23_coherence", (part,), "within_pca", "training")
        assert C.evaluate(claim, meas, ROLE_IDS, random_weights=False, controls=ctrl)["verdict"] == want
    gain = C.Part("above", "part_colour_gain", "dense_cnn", bound=0.0)
    claim = C.Claim("g", "s", "part_colour_gain", (gain,), "across_pca_masked", "training")
    meas = {"part_colour_gain": {DENSE: _noisy(0.3, rng)}}
    ctrl = {c: {"part_colour_gain": {DENSE: _noisy(0.0, rng)}} for c in ("untrained", "random_masks")}
    row = C.evaluate(claim, meas, ROLE_IDS, random_weights=False, controls=ctrl,
                     unit_groups={"part_colour_gain": ["dogs"] * N})
    assert row["verdict"] == "supported" and "jackknife over images" in row["reason"]


def test_which_parts_get_controls():
    # one network, learnt: the untrained control and the metric's free ones
    assert C.Part("above", "pc1_iou_ref", "dense_cnn", bound=0.5).controls("training") == (
        "untrained", "centre_prior")
    # architecture claims, unlearnt parts and two-network parts (one architecture: the
    # control's difference is exactly zero) take none
    assert C.Part("above", "pc1_iou_ref", "dense_cnn", bound=0.5).controls("architecture") == ()
    assert C.Part("below", "pc23_coherence", "cls_cnn", bound=0.5, learnt=False).controls("training") == ()
    assert C.Part("greater", "pc1_iou_ref", "dense_cnn", "cls_cnn").controls("training") == ()
    arch = [c for c in C.CLAIMS if c.about == "architecture"]
    assert arch and all(not c.control_parts() for c in arch)
    assert all(c.control_parts() for c in C.CLAIMS if c.about == "training" and c.id not in (
        "masks_cleaner", "tails_differ"))  # those two compare the two ConvNeXts only
    assert set(C.FREE_CONTROLS.values()) <= {(k,) for k in C.CONTROLS}
    assert set(C.CONTROL_MARGIN) == set(C.METRICS) - {"pc1_iou_border"}
    assert set(C.METRIC_GLOSS) == set(C.METRICS)


def test_rule_states_the_controls_margins_and_recipe():
    rule = _claim("pc1_subject").rule_text(True, "timm", 3)
    assert "above its untrained control's by more than 0.1" in rule
    assert "above its centre_prior control's by more than 0.1" in rule
    assert "pretrained=False" in rule and "what training starts from" in rule and "3 seeds" in rule
    assert "project's random init" in _claim("pc1_subject").rule_text(True, "every-block", 1)
    assert _claim("pc1_subject").rule_text(False) == _claim("pc1_subject").rule
    assert "−" in C.Part("above", "edge_drop", "dense_cnn", bound=-0.5).text()  # U+2212, as the page


def test_random_weights_give_every_reason_a_claim_cannot_be_judged():
    meas = {"c4_instance_separation": {DENSE: [float("nan")] * 5 + [0.3, 0.4]}}
    row = C.evaluate(_claim("c4_instances"), meas, {"dense_cnn": DENSE}, random_weights=True)
    assert row["reason"].startswith("the weights are random")
    assert "no model in the role of the ImageNet ConvNeXt" in row["reason"]
    assert "too few images with two or more instances for c4_instance_separation: 2" in row["reason"]


# ---- the free controls' functions ----------------------------------------------------------

def test_centre_prior_has_the_cells_and_is_centred():
    m = centre_prior(12, (6, 8))
    assert m.sum() == 12
    ys, xs = np.nonzero(m)
    assert abs(ys.mean() - 2.5) < 0.5 and abs(xs.mean() - 3.5) < 0.5
    assert not m[0].any() and not m[:, 0].any()


def test_split_halves_cuts_one_subject_in_two_equal_parts():
    lab = np.zeros((6, 10), dtype=np.int32)
    lab[1:5, 2:8] = 1
    halves = split_halves(lab)
    assert set(np.unique(halves)) == {0, 1, 2}
    assert (halves == 1).sum() == (halves == 2).sum() == 12
    assert halves[:, :5].max() == 1 and halves[:, 5:].min() in (0, 2)  # cut across the longer side


def test_random_masks_keep_each_size():
    rng = np.random.default_rng(0)
    masks = [np.eye(5, dtype=bool), np.zeros((3, 4), dtype=bool)]
    out = random_masks(masks, rng)
    assert [m.shape for m in out] == [(5, 5), (3, 4)] and [m.sum() for m in out] == [5, 0]


def test_free_controls_on_a_planted_photo():
    rng = np.random.default_rng(0)
    photo = rng.uniform(0, 255, (64, 64, 3))
    ref = np.zeros((64, 64), dtype=bool)
    ref[16:48, 16:48] = True
    stages = [("C2", rng.normal(size=(8, 16, 16)).astype(np.float32)),
              ("C4", rng.normal(size=(8, 4, 4)).astype(np.float32)),
              ("C5", rng.normal(size=(8, 4, 4)).astype(np.float32))]
    out = free_controls(stages, photo=photo, reference=ref, seed=1)
    want = (edge_following(pooled_photo(photo, (16, 16)), photo)
            - edge_following(pooled_photo(photo, (4, 4)), photo))
    assert out["photo"]["edge_drop"] == pytest.approx(want)
    assert out["centre_prior"]["pc1_iou_ref"] == pytest.approx(1.0)  # a centred square subject
    assert np.isnan(out["halves"]["c4_instance_separation"])  # one subject: nothing to separate
    assert -1 <= out["shuffled"]["pc23_coherence"] <= 1


# ---- the registry's narrative helpers ------------------------------------------------------

def test_analyses_contribute_narrative_helpers_and_clashes_are_named(registry_restored):
    from dinoreport.analyses import AnalysisLoadError, SectionOutput, register_analysis
    from dinoreport.analyses.registry import contributed_helpers

    from types import SimpleNamespace

    page = SimpleNamespace(models=(), results={})
    core = {"ref": str, "figures": lambda kind: [], "label": str}
    helpers = contributed_helpers(page, core)
    assert {"claim", "claim_row", "claim_ref", "verdict"} <= set(helpers)
    register_analysis("hello_helpers", 999, helpers=lambda page, core: {"hello": lambda: "hi"})(
        lambda ctx: SectionOutput())
    assert contributed_helpers(page, core)["hello"]() == "hi"
    register_analysis("clash_helpers", 998, helpers=lambda page, core: {"claim": str})(lambda ctx: SectionOutput())
    with pytest.raises(AnalysisLoadError, match="narrative helper 'claim'"):
        contributed_helpers(page, core)


def test_render_knows_no_claim_by_name():
    from pathlib import Path

    import dinoreport.render as render

    src = Path(render.__file__).read_text()
    assert "claim_html" not in src and "analysis.claims" not in src


# ---- end to end ----------------------------------------------------------------------------

UNTRAINED_SEED = 987_654  # timm's own init under a seed no control uses


def _untrained_weights(folder, models):
    """timm's init of each model's architecture (not the controls' seeds) as local files."""
    import torch
    from safetensors.torch import save_file

    from dinoreport.backbones import control_seed
    from dinoreport.modelmeta import create_model

    text = ""
    for mid, name in models:
        assert all(control_seed(name.split(".")[0], 0, k) != UNTRAINED_SEED for k in range(10))
        torch.manual_seed(UNTRAINED_SEED)
        model = create_model(name)
        path = folder / f"{mid}.safetensors"
        save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path))
        text += f'[[models]]\nid = "{mid}"\ntimm = "{name}"\nweights = "{path}"\n\n'
    return text


def test_untrained_weights_from_files_earn_no_training_claim(tmp_path, isolated_cache):
    """Not --random-init: untrained networks read as if trained. No training claim may come out
    "supported"; the two ConvNeXts share one control (one extra pass per image and architecture)."""
    from conftest import square_project
    from dinoreport.config import load_config
    from dinoreport.pipeline import BuildOptions, build

    models = _untrained_weights(tmp_path, [(DENSE, "convnext_tiny.dinov3_lvd1689m"),
                                           (CLS, "convnext_tiny.fb_in1k"),
                                           (VIT, "vit_small_patch16_dinov3.lvd1689m")])
    out = tmp_path / "site"
    summary = build(load_config(square_project(tmp_path / "p", models=models)),
                    BuildOptions(out=out, quiet=True, analyses=("within_pca", "claims")))
    assert summary.computed == (3 + 2) * 4  # 3 models, 2 architectures' controls, 4 photos
    rows = json.loads((out / "data" / "results.json").read_text())["claims"]
    training = [r for r in rows if r["about"] == "training"]
    assert training and all(r["verdict"] != "supported" for r in training), [
        (r["id"], r["verdict"]) for r in training]
    # beside every trained value, its untrained control's (c4_instances has none: one subject each)
    assert all("untrained" in r["metrics"][r["metric"]]["controls"] for r in training
               if r["metrics"][r["metric"]]["values"])
    with_parts = [r for r in training if _claim(r["id"]).control_parts()]
    assert with_parts and all("The untrained control is the same architecture" in r["rule"] for r in with_parts)
    html = (out / "index.html").read_text()
    assert "(untrained " in html  # control values beside the trained ones in the boxes


def test_random_init_builds_extract_no_control(tmp_path, isolated_cache):
    from conftest import square_project
    from dinoreport.config import load_config
    from dinoreport.pipeline import BuildOptions, build

    summary = build(load_config(square_project(tmp_path)),
                    BuildOptions(out=tmp_path / "site", quiet=True, random_init=True,
                                 analyses=("within_pca", "claims")))
    assert summary.computed == 2 * 4  # the two models of the project, no control


def test_control_options_are_checked(tmp_path):
    from conftest import write_project
    from dinoreport.analyses import get_analysis, resolve_options
    from dinoreport.config import ConfigError, load_config

    for bad, msg in (("control_seeds = 0", "analysis.control_seeds"), ("control_init = 'xavier'",
                                                                        "analysis.control_init")):
        cfg = write_project(tmp_path / bad.split()[0], {}, extra=bad + "\n")
        with pytest.raises(ConfigError, match=msg):
            resolve_options(load_config(cfg))
    cfg = write_project(tmp_path / "ok", {}, extra="control_seeds = 3\ncontrol_init = 'every-block'\n")
    loaded = load_config(cfg)
    an = resolve_options(loaded)["claims"]
    assert (an.control_seeds, an.control_init) == (3, "every-block")
    needs = get_analysis("claims").needs(loaded, an)
    assert (needs.controls, needs.control_init) == (3, "every-block")

"""Every backbone a user would put beside DINOv3, by config alone (random init, tiny inputs).

For each architecture: the stages its own metadata announces come back with those shapes; a
planted square lands in the cells that cover it at every stage; and a full build runs. Builds
are shared across models (one per crop multiple) to keep the suite short.
"""
from __future__ import annotations

import functools
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from dinoreport.backbones import BackboneError, create_backbone
from dinoreport.config import ConfigError, ModelSpec, load_config
from dinoreport.modelmeta import crop_multiple, model_meta
from dinoreport.pipeline import BuildOptions, build

from conftest import planted_photo, write_project

# timm name -> (stage names, what the input must be a multiple of, plain ViT?)
MATRIX = {
    "resnet50.a1_in1k": (("C2", "C3", "C4", "C5"), 32, False),
    "efficientnet_b0.ra_in1k": (("C2", "C3", "C4", "C5"), 32, False),
    "convnextv2_tiny.fcmae_ft_in22k_in1k": (("C2", "C3", "C4", "C5"), 32, False),
    "swin_tiny_patch4_window7_224.ms_in1k": (("C2", "C3", "C4", "C5"), 32, False),
    "convnext_tiny.dinov3_lvd1689m": (("C2", "C3", "C4", "C5"), 32, False),
    "vit_small_patch14_dinov2.lvd142m": (("B3", "B6", "B9", "B12"), 14, True),
    "vit_small_patch14_reg4_dinov2.lvd142m": (("B3", "B6", "B9", "B12"), 14, True),
    "vit_base_patch16_clip_224.openai": (("B3", "B6", "B9", "B12"), 16, True),
    "vit_base_patch16_224.augreg_in21k": (("B3", "B6", "B9", "B12"), 16, True),
    "vit_small_patch16_dinov3.lvd1689m": (("B3", "B6", "B9", "B12"), 16, True),
}
NAMES = sorted(MATRIX)


@functools.lru_cache(maxsize=None)
def backbone(name: str, stages: tuple[str, ...] = ()):
    return create_backbone(ModelSpec("m", name, "m", stages=stages), None, seed=0)


def forward(bb, img: np.ndarray) -> dict[str, np.ndarray]:
    with torch.inference_mode():
        out = bb.forward(bb.normalize(torch.from_numpy(img)[None]))
    return {k: v[0].numpy() for k, v in out.items()}


@pytest.mark.parametrize("name", NAMES)
def test_stages_and_input_multiple_from_the_model(name):
    names, multiple, vit = MATRIX[name]
    meta = model_meta(name)
    assert tuple(s.name for s in meta.stages) == names
    assert meta.multiple == multiple and meta.is_vit == vit
    assert [s.stride for s in meta.stages] == ([multiple] * 4 if vit else [4, 8, 16, 32])
    assert backbone(name).multiple == multiple


@pytest.mark.parametrize("name", NAMES)
def test_stage_shapes_nchw(name):
    bb = backbone(name)
    m = bb.multiple
    h, w = 2 * m, 3 * m  # non-square, so a transposed map cannot pass
    out = forward(bb, np.full((h, w, 3), 120, np.uint8))
    assert list(out) == [s.name for s in bb.stages]
    for s in bb.stages:
        assert out[s.name].shape == (s.channels, h // s.stride, w // s.stride), (name, s)
        assert np.isfinite(out[s.name]).all()


@pytest.mark.parametrize("name", NAMES)
def test_planted_square_lands_in_its_cells(name):
    """A square that covers exactly one coarsest cell, in a flat grey input: at every stage the
    cell whose features change most lies in the square's footprint.

    ViT tokens must hit the footprint exactly (any prefix token left in the grid would shift
    it). A CNN's strided 3×3 convolutions with symmetric zero padding centre each cell up to
    half a cell before its nominal box, so for hierarchical models one neighbouring cell is
    accepted; a flipped, transposed or wrongly strided grid still fails.
    """
    bb = backbone(name)
    m = bb.multiple
    h, w, (r, c) = 4 * m, 6 * m, (2, 4)
    flat = np.full((h, w, 3), 120, np.uint8)
    planted = flat.copy()
    planted[r * m:(r + 1) * m, c * m:(c + 1) * m] = (240, 20, 20)
    a, b = forward(bb, flat), forward(bb, planted)
    slack = 0 if bb.is_vit else 1
    for s in bb.stages:
        change = np.abs(b[s.name] - a[s.name]).sum(axis=0)
        i, j = np.unravel_index(int(np.argmax(change)), change.shape)
        k = m // s.stride  # cells per side of the square at this stage
        rows = range(r * k - slack, (r + 1) * k + slack)
        cols = range(c * k - slack, (c + 1) * k + slack)
        assert i in rows and j in cols, (name, s.name, (i, j), (rows, cols))


def test_stages_overridable_in_config():
    meta = model_meta("vit_small_patch14_reg4_dinov2.lvd142m", ("B12", "B6"))
    assert [s.name for s in meta.stages] == ["B6", "B12"]  # the model's order
    assert [s.name for s in meta.available] == [f"B{i}" for i in range(1, 13)]
    bb = backbone("resnet50.a1_in1k", ("C1", "C4"))
    out = forward(bb, np.full((64, 96, 3), 120, np.uint8))
    assert {k: v.shape for k, v in out.items()} == {"C1": (64, 32, 48), "C4": (1024, 4, 6)}


def test_vit_without_its_last_block_has_no_final_norm():
    bb = backbone("vit_small_patch16_dinov3.lvd1689m", ("B4", "B8"))
    img = planted_photo(64, 96)
    out = forward(bb, img)
    with torch.inference_mode():
        raw = bb.model.forward_intermediates(bb.normalize(torch.from_numpy(img)[None]), indices=[7],
                                             norm=False, output_fmt="NCHW", intermediates_only=True)[0]
    np.testing.assert_allclose(out["B8"], raw[0].numpy(), rtol=0, atol=0)


def test_crop_multiple_is_the_least_common_multiple():
    assert crop_multiple({"a": 32, "b": 16}) == 32
    assert crop_multiple({"a": 14, "b": 16, "c": 32}) == 224
    assert crop_multiple({"a": 14}) == 14


# --- what cannot work: one readable paragraph -------------------------------------------------

def _one_paragraph(msg: str, *words: str) -> None:
    assert "\n" not in msg and "Traceback" not in msg, msg
    for w in words:
        assert w in msg, (w, msg)


def test_unknown_model_is_one_paragraph():
    with pytest.raises(BackboneError) as e:
        create_backbone(ModelSpec("m", "convnxet_tiny.fb_in1k", "m"), None)
    _one_paragraph(str(e.value), "convnxet_tiny.fb_in1k", "unknown", "convnext_tiny")


def test_fixed_size_model_is_one_paragraph():
    with pytest.raises(BackboneError) as e:
        model_meta("beit_base_patch16_224")
    _one_paragraph(str(e.value), "beit_base_patch16_224", "only accepts 224×224", "Try")


def test_model_that_fails_on_the_input_is_one_paragraph():
    # MLP-Mixer takes only 224×224: found by probing it once (modelmeta.probe_multiple), before
    # any image reaches it, and said in one paragraph.
    with pytest.raises(BackboneError) as e:
        create_backbone(ModelSpec("m", "mixer_s32_224", "m"), None)
    _one_paragraph(str(e.value), "mixer_s32_224", "224×224", "takes only the input size", "Try")


def test_input_off_the_multiple_is_one_paragraph():
    bb = backbone("vit_small_patch14_dinov2.lvd142m")
    with pytest.raises(BackboneError) as e:
        forward(bb, np.zeros((64, 96, 3), np.uint8))
    _one_paragraph(str(e.value), "vit_small_patch14_dinov2.lvd142m", "multiples of 14", "96×64")


def test_unknown_stage_names_the_choices():
    with pytest.raises(BackboneError) as e:
        model_meta("convnext_tiny.dinov3_lvd1689m", ("C6",))
    _one_paragraph(str(e.value), "no stage C6", "C2, C3, C4, C5", "stages")


def test_cli_build_of_an_unsupported_model_prints_one_paragraph(tmp_path):
    cfg = write_project(tmp_path, {"a": planted_photo(64, 64)}, resolution=64, highres=[64],
                        models='[[models]]\nid = "beit"\ntimm = "beit_base_patch16_224"\n')
    r = subprocess.run([sys.executable, "-m", "dinoreport.cli", "build", "--config", str(cfg), "--random-init",
                        "--out", str(tmp_path / "site"), "--quiet"], capture_output=True, text=True,
                       env=os.environ.copy(), timeout=300)
    assert r.returncode == 2
    err = r.stderr.strip()
    _one_paragraph(err, "models.beit", "beit_base_patch16_224", "only accepts", "Try")
    assert not (tmp_path / "site").exists()


def test_resolution_that_no_crop_fits_names_the_models(tmp_path):
    models = ('[[models]]\nid = "v2"\ntimm = "vit_small_patch14_reg4_dinov2.lvd142m"\n\n'
              '[[models]]\nid = "cn"\ntimm = "convnext_tiny.dinov3_lvd1689m"\n')
    cfg = write_project(tmp_path, {"a": planted_photo(64, 64)}, resolution=256, highres=[256], models=models)
    with pytest.raises(ConfigError) as e:
        build(load_config(cfg), BuildOptions(out=tmp_path / "site", random_init=True, quiet=True))
    _one_paragraph(str(e.value), "resolution: 256 px is not a multiple of 224",
                   "vit_small_patch14_reg4_dinov2.lvd142m needs 14", "convnext_tiny.dinov3_lvd1689m needs 32",
                   "use 224 or 448")


# --- full small builds, shared across models --------------------------------------------------

def _models_toml(names) -> str:
    return "\n".join(f'[[models]]\nid = "m{k}"\ntimm = "{n}"\nlabel = "{n}"\n' for k, n in enumerate(names))


@pytest.mark.parametrize("names, resolution", [
    # Patch 16 and stride 32 share factors: one crop multiple of 32, eight models, one build.
    ([n for n in NAMES if MATRIX[n][1] in (16, 32)], 64),
    ([n for n in NAMES if MATRIX[n][1] == 14], 56),
], ids=["multiple-32", "multiple-14"])
def test_full_small_build(tmp_path, names, resolution):
    photos = {"a": planted_photo(resolution, resolution * 3 // 2), "b": planted_photo(resolution * 2, resolution, "br", 1)}
    cfg = write_project(tmp_path, photos, resolution=resolution, highres=[resolution], models=_models_toml(names))
    out = tmp_path / "site"
    build(load_config(cfg), BuildOptions(out=out, random_init=True, quiet=True))
    info = json.loads((out / "data" / "build.json").read_text())
    multiple = crop_multiple({n: MATRIX[n][1] for n in names})
    assert info["crop"]["multiple"] == multiple
    assert [m["stages"] for m in info["models"]] == [list(MATRIX[n][0]) for n in names]
    figs = json.loads((out / "data" / "figures.json").read_text())
    assert {f["row"] for f in figs if f["kind"] == "within_pca"} >= set(names)  # labels = timm names
    assert all(f"multiples of {multiple} px" in f["caption"] for f in figs if f["kind"] == "within_pca")
    res = json.loads((out / "data" / "results.json").read_text())
    assert {r["model"] for r in res["within_image_pca"]} == {f"m{k}" for k in range(len(names))}


@pytest.mark.parametrize("name", ["swin_tiny_patch4_window7_224.ms_in1k", "vit_small_patch14_reg4_dinov2.lvd142m"])
def test_checkpoint_of_the_fixed_size_model_loads_into_the_dynamic_one(tmp_path, name):
    """Published checkpoints come from the fixed-size classes; created with dynamic sizes, the
    model must take every tensor but the classifier unchanged."""
    import timm
    from safetensors.torch import save_file

    from dinoreport.weights import ResolvedWeights

    torch.manual_seed(1)
    sd = {k: v.contiguous() for k, v in timm.create_model(name, pretrained=False).state_dict().items()}
    path = tmp_path / "w.safetensors"
    save_file(sd, path)
    bb = create_backbone(ModelSpec("m", name, "m"), ResolvedWeights(path, "file", "0" * 64))
    got = bb.model.state_dict()
    assert {k for k in sd if k not in got} <= {"head.weight", "head.bias", "head.fc.weight", "head.fc.bias"}
    for k in got:
        if k in sd:
            assert torch.equal(got[k], sd[k]), k
    out = forward(bb, np.zeros((224, 448, 3), np.uint8))
    assert out[bb.stages[-1].name].shape[1:] == (224 // bb.stages[-1].stride, 448 // bb.stages[-1].stride)


def test_sweep_resolution_off_the_crop_multiple_names_the_key(tmp_path):
    cfg = write_project(tmp_path, {"a": planted_photo(64, 64)}, resolution=64, highres=[64], sweep=[64, 100],
                        models='[[models]]\nid = "cn"\ntimm = "convnext_tiny.dinov3_lvd1689m"\n')
    with pytest.raises(ConfigError) as e:
        build(load_config(cfg), BuildOptions(out=tmp_path / "site", random_init=True, quiet=True))
    _one_paragraph(str(e.value), "analysis.sweep[1]: 100 px is not a multiple of 32", "use 96 or 128")

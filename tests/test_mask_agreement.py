"""Mask agreement in a real build: IoU between models, and against a manifest's ground truth."""
import json

import numpy as np
from PIL import Image

from generator.config import load_config
from generator.pipeline import BuildOptions, build

from conftest import planted_photo, write_project

ENTRY = """
[[image]]
id = "{id}"
subject = "planted square"
groups = ["planted"]
author = "tests"
license = "CC0 1.0"
file = "{id}.png"
{mask}"""


def test_mask_iou_between_models_and_against_ground_truth(tmp_path):
    cfg_path = write_project(tmp_path, {})
    photos = tmp_path / "photos"
    entries = []
    for iid, corner in (("sq_a", "tl"), ("sq_b", "br")):
        img = planted_photo(224, 224, corner)
        Image.fromarray(img).save(photos / f"{iid}.png")
        mask = np.all(img == (230, 30, 30), axis=-1)
        Image.fromarray(mask.astype(np.uint8) * 255).save(photos / f"{iid}_mask.png")
        entries.append(ENTRY.format(id=iid, mask=f'mask = "{iid}_mask.png"' if iid == "sq_a" else ""))
    (photos / "manifest.toml").write_text("".join(entries))
    cfg_path.write_text(cfg_path.read_text().replace('dir = "../photos"', 'manifest = "../photos/manifest.toml"'))
    out = tmp_path / "site"
    build(load_config(cfg_path), BuildOptions(out=out, random_init=True, quiet=True,
                                              analyses=("within_pca", "mask_agreement")))
    res = json.loads((out / "data" / "results.json").read_text())
    pairs = {(r["image"], r["model_a"], r["model_b"]) for r in res["mask_iou"]}
    assert pairs == {(i, "dinov3_convnext_tiny", "dinov3_vits16") for i in ("sq_a", "sq_b")}
    gt = {(r["image"], r["model"]): r["iou"] for r in res["mask_iou_gt"]}
    assert set(gt) == {("sq_a", "dinov3_convnext_tiny"), ("sq_a", "dinov3_vits16")}
    # The planted square is what PC1 separates even with random weights (see test_backbones).
    assert all(v > 0.3 for v in gt.values()), gt
    html = (out / "index.html").read_text()
    assert "Agreement (IoU) of the PC1 foreground masks" in html

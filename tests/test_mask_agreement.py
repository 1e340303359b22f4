"""Mask agreement in a real build: IoU between models, and against a manifest's ground truth."""
import json

import numpy as np
from PIL import Image

from dinoreport.config import load_config
from dinoreport.pipeline import BuildOptions, build

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
    """sq_a: mask file; sq_b: the same photo with the square drawn as mask_polygons (must give
    exactly sq_a's IoU); sq_c: no reference mask (no row)."""
    cfg_path = write_project(tmp_path, {})
    photos = tmp_path / "photos"
    img = planted_photo(224, 224, "tl")
    mask = np.all(img == (230, 30, 30), axis=-1)
    rows, cols = (v.tolist() for v in np.nonzero(mask))
    top, bottom, left, right = min(rows) / 224, (max(rows) + 1) / 224, min(cols) / 224, (max(cols) + 1) / 224
    square = [[left, top], [right, top], [right, bottom], [left, bottom]]
    Image.fromarray(mask.astype(np.uint8) * 255).save(photos / "sq_a_mask.png")
    refs = {"sq_a": 'mask = "sq_a_mask.png"', "sq_b": f"mask_polygons = [{square}]", "sq_c": ""}
    entries = []
    for iid, ref in refs.items():
        photo = img if iid != "sq_c" else planted_photo(224, 224, "br")
        Image.fromarray(photo).save(photos / f"{iid}.png")
        entries.append(ENTRY.format(id=iid, mask=ref))
    (photos / "manifest.toml").write_text("".join(entries))
    cfg_path.write_text(cfg_path.read_text().replace('dir = "../photos"', 'manifest = "../photos/manifest.toml"'))
    out = tmp_path / "site"
    build(load_config(cfg_path), BuildOptions(out=out, random_init=True, quiet=True,
                                              analyses=("within_pca", "mask_agreement")))
    res = json.loads((out / "data" / "results.json").read_text())
    pairs = {(r["image"], r["model_a"], r["model_b"]) for r in res["mask_iou"]}
    assert pairs == {(i, "dinov3_convnext_tiny", "dinov3_vits16") for i in refs}
    gt = {(r["image"], r["model"]): r["iou"] for r in res["mask_iou_gt"]}
    models = ("dinov3_convnext_tiny", "dinov3_vits16")
    assert set(gt) == {(i, m) for i in ("sq_a", "sq_b") for m in models}
    for m in models:
        assert gt[("sq_a", m)] == gt[("sq_b", m)]  # polygon == the mask file, pixel for pixel
        assert 0.0 <= gt[("sq_a", m)] <= 1.0
    # With random weights (every block exercised) PC1 need not follow the square in every
    # model; a mask read flipped or shifted would miss it in all of them.
    assert max(gt.values()) > 0.5, gt
    html = (out / "index.html").read_text()
    assert "Agreement (IoU) of the PC1 foreground masks" in html

"""Backbone matrix: per architecture, its stages, the grid at short side 448 and the time of a
cold single-model build (random init, two planted photos 448×672 and 448×448, no gallery).

    python bench/backbones.py [TIMM_NAME ...]     # default: the matrix of tests/test_backbone_matrix.py

One JSON line per model. Each build gets its own empty cache, so model facts, weights init,
extraction and every analysis are counted.
"""
from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "generator"))

MATRIX = ["resnet50.a1_in1k", "efficientnet_b0.ra_in1k", "convnextv2_tiny.fcmae_ft_in22k_in1k",
          "swin_tiny_patch4_window7_224.ms_in1k", "convnext_tiny.dinov3_lvd1689m",
          "vit_small_patch14_dinov2.lvd142m", "vit_small_patch14_reg4_dinov2.lvd142m",
          "vit_base_patch16_clip_224.openai", "vit_base_patch16_224.augreg_in21k",
          "vit_small_patch16_dinov3.lvd1689m"]


def _photo(h: int, w: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    img = np.clip(120 + rng.integers(-10, 10, (h, w, 3)), 0, 255).astype(np.uint8)
    img[h // 4: h // 2, w // 4: w // 2] = (230, 30, 30)
    return img


def main(names: list[str]) -> None:
    from PIL import Image

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    for name in names:
        root = Path(tempfile.mkdtemp(prefix="bench-backbones-"))
        os.environ["DINOREPORT_CACHE"] = str(root / "cache")
        from dinoreport.config import load_config
        from dinoreport.modelmeta import model_meta
        from dinoreport.pipeline import BuildOptions, build

        (root / "photos").mkdir()
        Image.fromarray(_photo(448, 672, 0)).save(root / "photos" / "a.png")
        Image.fromarray(_photo(448, 448, 1)).save(root / "photos" / "b.png")
        for md in sorted((ROOT / "site_src").glob("*.md")):
            (root / md.name).write_text(md.read_text(encoding="utf-8"), encoding="utf-8")
        cfg = root / "report.toml"
        cfg.write_text(f'resolution = 448\n[[models]]\nid = "m"\ntimm = "{name}"\n'
                       '[images]\ndir = "photos"\n[analysis]\nhighres = [448]\n')
        t = time.perf_counter()
        meta = model_meta(name)
        summary = build(load_config(cfg), BuildOptions(out=root / "site", random_init=True, quiet=True))
        print(json.dumps({
            "timm": name, "multiple": meta.multiple,
            "grid_448x672": {s.name: f"{448 // s.stride}x{672 // s.stride}" for s in meta.stages},
            "build_s": round(time.perf_counter() - t, 1),
            "phases_s": {k: round(v, 1) for k, v in summary.seconds.items()},
        }), flush=True)


if __name__ == "__main__":
    main(sys.argv[1:] or MATRIX)

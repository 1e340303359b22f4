"""The example report in examples/dinov3-vs-dinov2 builds offline with random weights."""
from __future__ import annotations

import json
from dataclasses import replace

from dinoreport.analyses import resolve_options
from dinoreport.config import load_config
from dinoreport.pipeline import PROJECT_ROOT, BuildOptions, build

from conftest import planted_photo

EXAMPLE = PROJECT_ROOT / "examples" / "dinov3-vs-dinov2" / "site_src" / "report.toml"


def test_example_config_is_the_three_models_at_a_common_crop():
    cfg = load_config(EXAMPLE)
    assert [m.timm for m in cfg.models] == ["convnext_tiny.dinov3_lvd1689m", "vit_small_patch16_dinov3.lvd1689m",
                                            "vit_small_patch14_reg4_dinov2.lvd142m"]
    assert cfg.resolution % 224 == 0 and all(r % 224 == 0 for r in resolve_options(cfg)["highres"].highres)


def test_example_builds_offline(tmp_path):
    """Its own narrative and models; two small photos at 224 (the smallest crop all three share)."""
    from PIL import Image

    photos = tmp_path / "photos"
    photos.mkdir()
    Image.fromarray(planted_photo(224, 300)).save(photos / "a.png")
    Image.fromarray(planted_photo(300, 224, "br", 1)).save(photos / "b.png")
    cfg = load_config(EXAMPLE).with_images_dir(photos)
    cfg = replace(cfg, resolution=224, analysis=cfg.analysis.with_values(highres=[224]))
    out = tmp_path / "site"
    build(cfg, BuildOptions(out=out, random_init=True, quiet=True))
    info = json.loads((out / "data" / "build.json").read_text())
    assert info["crop"] == {"multiple": 224, "needs": {"convnext_tiny.dinov3_lvd1689m": 32,
                                                       "vit_small_patch14_reg4_dinov2.lvd142m": 14,
                                                       "vit_small_patch16_dinov3.lvd1689m": 16}}
    html = (out / "index.html").read_text()
    assert "Why put DINOv3 beside DINOv2" in html and "multiples of 224 pixels" in html
    figs = json.loads((out / "data" / "figures.json").read_text())
    assert any("multiples of 224 px = lcm(14, 16, 32)" in f["caption"] for f in figs)

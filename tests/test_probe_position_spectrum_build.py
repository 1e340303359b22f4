"""fg_probe, position_bias and spectrum in real (random-init) builds: every model and stage gets
its numbers, the figures and narrative reach the page, and a build without reference masks says
that there is nothing to train the probe on."""
import json

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
mask_polygons = [{square}]
"""
ANALYSES = ("within_pca", "mask_agreement", "fg_probe", "position_bias", "spectrum")


def _squares_project(tmp_path):
    cfg_path = write_project(tmp_path, {}, highres=[224])
    photos = tmp_path / "photos"
    entries = []
    for n, corner in enumerate(("tl", "tr", "bl", "br")):
        img = planted_photo(224, 224, corner, seed=n)
        s = 224 // 3
        y0 = s // 4 if corner[0] == "t" else 224 - s - s // 4
        x0 = s // 4 if corner[1] == "l" else 224 - s - s // 4
        square = [[x0 / 224, y0 / 224], [(x0 + s) / 224, y0 / 224], [(x0 + s) / 224, (y0 + s) / 224],
                  [x0 / 224, (y0 + s) / 224]]
        Image.fromarray(img).save(photos / f"sq_{corner}.png")
        entries.append(ENTRY.format(id=f"sq_{corner}", square=square))
    (photos / "manifest.toml").write_text("".join(entries))
    cfg_path.write_text(cfg_path.read_text().replace('dir = "../photos"', 'manifest = "../photos/manifest.toml"')
                        .replace("[images]\n", '[images]\nfeatured = ["sq_tl"]\n'))
    return cfg_path


def test_probe_position_and_spectrum_in_a_build(tmp_path):
    out = tmp_path / "site"
    build(load_config(_squares_project(tmp_path)), BuildOptions(out=out, random_init=True, quiet=True,
                                                                analyses=ANALYSES))
    res = json.loads((out / "data" / "results.json").read_text())
    stages = {"dinov3_convnext_tiny": ["C2", "C3", "C4", "C5"], "dinov3_vits16": ["B3", "B6", "B9", "B12"]}
    want = {(m, s) for m, ss in stages.items() for s in ss}
    for key in ("fg_probe", "position_bias", "spectrum"):
        assert {(r["model"], r["stage"]) for r in res[key]} == want, key
    for r in res["fg_probe"]:
        assert 0.0 <= r["average_precision"] <= 1.0 and 0.0 < r["base_rate"] < 1.0
        assert r["n_images"] == 4 and r["folds"] == 4  # fewer images than folds: one per fold
    assert {r["image"] for r in res["fg_probe_images"]} == {"sq_tl", "sq_tr", "sq_bl", "sq_br"}
    for r in res["spectrum"]:
        assert 1.0 <= r["participation_ratio"] <= r["effective_rank"] <= r["channels"]
        assert len(r["explained_variance_ratio"]) == min(64, r["channels"])
    for r in res["position_bias"]:
        assert 0.0 <= r["share"] <= 1.0 and r["n_images"] == 4
    figs = {f["figure"] for f in json.loads((out / "data" / "figures.json").read_text())}
    assert {"fg-probe-sq-tl", "position-bias-maps", "spectrum-curves"} <= figs
    assert "fg-probe-sq-tr" not in figs  # only featured images are drawn
    html = (out / "index.html").read_text()
    for text in ("A linear probe for the subject", "How many directions carry the variance?",
                 "What every image shares at each position", "for the first component"):
        assert text in html, text


def test_probe_without_reference_masks_says_so(tmp_path):
    cfg = write_project(tmp_path, {"a": planted_photo(224, 224, "tl"), "b": planted_photo(224, 224, "br", 1)},
                        highres=[224])
    out = tmp_path / "site"
    build(load_config(cfg), BuildOptions(out=out, random_init=True, quiet=True, analyses=ANALYSES))
    res = json.loads((out / "data" / "results.json").read_text())
    assert res["fg_probe"] == [] and len(res["spectrum"]) == 8
    assert "nothing to train the probe on" in (out / "index.html").read_text()


def test_whiten_and_probe_masks_options(tmp_path):
    """whiten = true changes the within- and across-image RGB pictures (sigmoid colours) and says
    so; across_mask = "probe" fits the masked across-image PCA on the probe's masks."""
    cfg = _squares_project(tmp_path)
    base = tmp_path / "base"
    analyses = ("within_pca", "fg_probe", "across_pca")
    build(load_config(cfg), BuildOptions(out=base, random_init=True, quiet=True, analyses=analyses))
    cfg.write_text(cfg.read_text().replace("[analysis]\n", '[analysis]\nwhiten = true\nacross_mask = "probe"\n'))
    out = tmp_path / "site"
    build(load_config(cfg), BuildOptions(out=out, random_init=True, quiet=True, analyses=analyses))

    def load(site):
        figs = json.loads((site / "data" / "figures.json").read_text())
        res = json.loads((site / "data" / "results.json").read_text())
        return {(f["figure"], f["row"], f["label"]): f for f in figs}, res

    (fa, ra), (fb, rb) = load(base), load(out)
    assert fa.keys() == fb.keys()
    rgb = [k for k in fa if k[0].startswith("within-pca") and k[2] == "RGB"]
    assert rgb and all(fa[k]["file"] != fb[k]["file"] for k in rgb)
    assert all("sigmoid(2 z)" in fb[k]["caption"] for k in rgb)
    masked = [k for k in fa if k[0].startswith("across-masked") and k[1] != "Photo"]
    assert masked and all("linear-probe masks" in fb[k]["caption"] for k in masked)
    # The foreground fit saw other cells: the probe's masks, not PC1's.
    n = {(r["model"], r["stage"], r["masked"]): r["n_pixels"] for r in ra["across_image_pca"]}
    m = {(r["model"], r["stage"], r["masked"]): r["n_pixels"] for r in rb["across_image_pca"]}
    assert {k: v for k, v in n.items() if not k[2]} == {k: v for k, v in m.items() if not k[2]}
    assert any(n[k] != m[k] for k in n if k[2])

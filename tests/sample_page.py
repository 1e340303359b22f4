"""A realistic fake :class:`ReportPage` with small generated PNG panels, for render tests."""
from __future__ import annotations

import base64
import io
from pathlib import Path

import numpy as np
from PIL import Image

from dinoreport.figures import content_name
from dinoreport.modelmeta import ModelFacts, StageInfo
from dinoreport.page import Credit, Figure, Panel, ReportPage, Row, Table

MODELS = ("dinov3_convnext_tiny", "in1k_convnext_tiny")
LABELS = {"dinov3_convnext_tiny": "ConvNeXt-T (DINOv3)", "in1k_convnext_tiny": "ConvNeXt-T (IN-1k)"}
STAGES = ("C2", "C3", "C4", "C5")
IMAGES = ("astronaut", "dog_pug")


def _png(out: Path, rel: str, rng: np.random.Generator, w: int = 48, h: int = 32,
         smooth: bool = True) -> str:
    """Write a small colourful PNG under its content-hash name in the figure store (as
    FigureWriter does: pages show nothing else) and return that path; ``rel`` says what it is."""
    yy, xx = np.mgrid[0:h, 0:w] / max(h, w)
    a, b, c = rng.uniform(2, 8, 3)
    img = np.stack([np.sin(a * xx + b * yy), np.cos(b * xx - c * yy), np.sin(c * (xx + yy))], -1)
    if not smooth:
        img = img + rng.normal(0, .4, img.shape)
    img = ((img - img.min()) / (np.ptp(img) + 1e-9) * 255).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format="PNG", optimize=False)
    rel = f"assets/fig/{content_name(buf.getvalue(), 'png')}"
    p = out / rel
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_bytes(buf.getvalue())
    return rel


def _i8_b64(rng: np.random.Generator, h: int, w: int, d: int) -> str:
    arr = rng.integers(-127, 128, size=(h, w, d)).astype(np.int8)
    return base64.b64encode(arr.tobytes()).decode()


def make_sample_page(out: Path, random_init: bool = True, *, with_explorer: bool = True,
                     skipped: bool = True) -> ReportPage:
    out = Path(out)
    rng = np.random.default_rng(0)
    fig_dir = "assets/fig"

    models = tuple(
        ModelFacts(
            id=m, label=LABELS[m],
            timm="convnext_tiny.dinov3_lvd1689m" if m.startswith("dinov3") else "convnext_tiny.fb_in1k",
            weights_source="random-init" if random_init else "file",
            weights_sha256=None if random_init else ("ab12" * 16 if m.startswith("dinov3") else "cd34" * 16),
            license="dinov3-license" if m.startswith("dinov3") else "apache-2.0",
            stages=tuple(StageInfo(s, 96 * 2 ** k, 4 * 2 ** k) for k, s in enumerate(STAGES)),
            is_vit=False, c5_norm=False,
        )
        for m in MODELS
    )

    figures: list[Figure] = []
    for img in IMAGES:
        rows = tuple(
            Row(LABELS[m], tuple(
                Panel(_png(out, f"{fig_dir}/within-{m}-{img}-{c}.png", rng, smooth=c != "image"),
                      alt=f"{c} of the C5 within-image PCA of {img}, {LABELS[m]}", label=c)
                for c in ("image", "RGB", "PC1", "PC2", "PC3")))
            for m in MODELS)
        figures.append(Figure(
            id=f"within-pca-{img.replace('_', '-')}", kind="within_pca",
            caption=f"Within-image PCA of the C5 features of {img}: RGB and PC1–PC3.",
            rows=rows, column_labels=("Image", "RGB", "PC1", "PC2", "PC3"), image=img))
    figures.append(Figure(
        id="stage-pca-astronaut", kind="stage_pca",
        caption="Within-image PCA as RGB at every stage of astronaut.",
        rows=tuple(Row(LABELS[m], tuple(
            Panel(_png(out, f"{fig_dir}/stage-{m}-{s}.png", rng), alt=f"PCA RGB of {s}, {LABELS[m]}", label=s)
            for s in STAGES)) for m in MODELS),
        column_labels=STAGES, image="astronaut"))
    figures.append(Figure(
        id="random-channels-astronaut-c3", kind="random_channels",
        caption="Five seeded random channels of C3 for astronaut.",
        rows=tuple(Row(LABELS[m], tuple(
            Panel(_png(out, f"{fig_dir}/ch-{m}-{k}.png", rng, smooth=False), alt=f"channel {k} of C3, {LABELS[m]}",
                  label=f"ch {k}") for k in (3, 17, 40, 77, 91))) for m in MODELS),
        image="astronaut"))
    figures.append(Figure(
        id="foreground-mask", kind="foreground_mask", caption="PC1 foreground masks.",
        rows=tuple(Row(LABELS[m], tuple(
            Panel(_png(out, f"{fig_dir}/mask-{m}-{i}.png", rng), alt=f"foreground mask of {i}, {LABELS[m]}", label=i)
            for i in IMAGES)) for m in MODELS),
        column_labels=IMAGES))
    for kind, word in (("across_pca_naive", "naive"), ("across_pca_masked", "masked")):
        figures.append(Figure(
            id=f"across-{word}-dogs", kind=kind, caption=f"Across-image PCA ({word}) over the dogs group.",
            rows=(Row(LABELS[MODELS[0]], tuple(
                Panel(_png(out, f"{fig_dir}/across-{word}-{i}.png", rng), alt=f"across-image PCA {word}, {i}")
                for i in ("dog_pug", "dog_aussie", "dog_lab"))),),
            column_labels=("dog_pug", "dog_aussie", "dog_lab"), group="dogs"))
    figures.append(Figure(
        id="feature-hist", kind="feature_hist", caption="Histograms of all feature values per stage.",
        rows=tuple(Row(s, tuple(
            Panel(_png(out, f"{fig_dir}/hist-{s}-{v}.png", rng, w=96, h=64), alt=f"{v} histogram, stage {s}")
            for v in ("linear", "log", "cropped"))) for s in STAGES[:2]),
        column_labels=("linear", "log y", "p1–p99")))
    figures.append(Figure(
        id="cka", kind="cka", caption="Linear CKA between stages.",
        rows=(Row("", (Panel(_png(out, f"{fig_dir}/cka.png", rng, w=64, h=64), alt="CKA matrix"),)),)))

    stat_rows = []
    results: dict = {"within_image_pca": [], "feature_stats": [], "channel_stats": [],
                     "across_image_pca": [], "cka": [], "mask_iou": [], "mask_iou_gt": []}
    for m in MODELS:
        for i, s in enumerate(STAGES):
            st = dict(model=m, stage=s, mean=float(rng.normal(0, .1)), std=float(1 + i + rng.random()),
                      min=-40.0 - i, max=55.5 + i, p1=-3.2, p99=3.4, skew=float(rng.normal()),
                      kurtosis=float(5 + rng.random() * 20), outlier_fraction=float(rng.random() * 1e-3))
            results["feature_stats"].append(st)
            results["channel_stats"].append({**st, "channel": 17})
            stat_rows.append((LABELS[m], s, st["mean"], st["std"], st["p1"], st["p99"],
                              st["kurtosis"], st["outlier_fraction"]))
            for img in IMAGES:
                ev = sorted(rng.dirichlet([5, 2, 1, 6]).tolist()[:3], reverse=True)
                results["within_image_pca"].append(dict(model=m, stage=s, image=img,
                                                        explained_variance_ratio=ev,
                                                        fg_fraction=float(rng.uniform(.2, .6))))
            for masked in (False, True):
                results["across_image_pca"].append(dict(
                    model=m, stage=s, group="dogs", masked=masked,
                    explained_variance_ratio=sorted(rng.dirichlet([3, 2, 1, 8]).tolist()[:3], reverse=True),
                    n_pixels=int(rng.integers(500, 3000))))
        for s_a in STAGES:
            for s_b in STAGES:
                results["cka"].append(dict(model_a=MODELS[0], stage_a=s_a, model_b=MODELS[1], stage_b=s_b,
                                           value=float(rng.uniform(.2, .95))))
    for img in IMAGES:
        results["mask_iou"].append(dict(image=img, model_a=MODELS[0], model_b=MODELS[1],
                                        iou=float(rng.uniform(.3, .9))))
        for m in MODELS:
            results["mask_iou_gt"].append(dict(image=img, model=m, iou=float(rng.uniform(.3, .9))))

    tables = (
        Table(id="explained-variance", kind="explained_variance",
              caption="Explained variance of the first three within-image components at C5.",
              columns=("model", "image", "PC1", "PC2", "PC3"),
              rows=tuple((LABELS[r["model"]], r["image"], *r["explained_variance_ratio"])
                         for r in results["within_image_pca"] if r["stage"] == "C5")),
        Table(id="feature-stats", kind="feature_stats", caption="Statistics of all feature values.",
              columns=("model", "stage", "mean", "std", "p1", "p99", "kurtosis", "outlier fraction"),
              rows=tuple(stat_rows)),
        Table(id="mask-iou", kind="mask_iou", caption="Foreground mask agreement (IoU).",
              columns=("image", "model A", "model B", "IoU", "pixels"),
              rows=tuple((r["image"], LABELS[r["model_a"]], LABELS[r["model_b"]], r["iou"], 1234567)
                         for r in results["mask_iou"])),
    )

    credits = (
        Credit(id="astronaut", subject="Astronaut Eileen Collins", author="NASA", license="Public domain",
               license_url=None, source_url="https://commons.wikimedia.org/wiki/File:Eileen_Collins.jpg",
               share_alike=False),
        Credit(id="dog_pug", subject="A pug in a sweater", author="Jane Example", license="CC BY-SA 4.0",
               license_url="https://creativecommons.org/licenses/by-sa/4.0/",
               source_url="https://commons.wikimedia.org/wiki/File:Pug.jpg", share_alike=True),
    )

    explorer = None
    if with_explorer:
        h, w, d = 4, 6, 8
        ex_images = []
        for img in IMAGES:
            rel = _png(out, f"assets/explorer/{img}.png", rng, w=w * 16, h=h * 16)
            ex_images.append({"id": img, "photo": rel, "width": w * 16, "height": h * 16})
        # every stage on its own grid: C2 is 4x finer than C5, as in a ConvNeXt
        grids = {st: (h * 2 ** (3 - k) // 2, w * 2 ** (3 - k) // 2) for k, st in enumerate(STAGES)}
        explorer = {
            "models": [{"id": m, "label": LABELS[m], "stages": list(STAGES)} for m in MODELS],
            "images": ex_images,
            "groups": [{"id": "sample", "images": list(IMAGES)}, {"id": "dogs", "images": ["dog_pug"]}],
            "features": {m: {st: {g: {img: {"h": gh, "w": gw, "d": d, "q": _i8_b64(rng, gh, gw, d)}
                                      for img in ids}
                                  for g, ids in (("sample", IMAGES), ("dogs", ("dog_pug",)))}
                             for st, (gh, gw) in grids.items()}
                         for m in MODELS},
            "error": {m: {st: {g: {"dims": d, "max_abs": 0.05, "mean_abs": 0.01} for g in ("sample", "dogs")}
                          for st in STAGES} for m in MODELS},
            "stage": {m: "C5" for m in MODELS},
            "budget_bytes": 1_500_000,
        }

    return ReportPage(
        title="A deeper look at DINOv3 ConvNeXt features",
        author="Test Author",
        random_init=random_init,
        resolution=448,
        models=models,
        figures=tuple(figures),
        tables=tables,
        results=results,
        credits=credits,
        skipped=(("broken.jpg", "cannot identify image file"),) if skipped else (),
        explorer=explorer,
        notes=("ConvNeXt C5 is shown raw (not layer-normed), as timm returns it.",),
    )

"""The report's sections: each turns cached features into results, figures and tables.

A section computes with ``generator.analysis`` (pure functions) and draws with
``generator.figures``; it never reads files other than through the build context.
"""
from __future__ import annotations

from itertools import combinations
from typing import Any

import numpy as np

from . import analysis as A
from .context import BuildContext, ModelFacts
from .figures import heatmap_figure, hist_figure, overlay, rgb_map, signed_map
from .page import Figure, Panel, Row, Table
from .registry import SectionOutput, register_analysis


def _r(x: float) -> float:
    """Round for JSON: 6 significant digits keep results readable and diffable."""
    return float(f"{float(x):.6g}")


def _ratios(v) -> list[float]:
    return [_r(x) for x in v]


def _slug(*parts: str) -> str:
    return "-".join(p.replace("_", "-").lower() for p in parts if p)


# --- within-image PCA (last stage, every image) and foreground masks -----------------------

def _pc_panels(ctx: BuildContext, m: ModelFacts, image: str, res: A.PCAResult) -> tuple[Panel, ...]:
    where = f"{m.label}, {m.last}, image {image}"
    panels = [Panel(ctx.writer.png(rgb_map(A.to_rgb(res.proj))), f"PCA of {where} as RGB", "RGB")]
    for k in range(3):
        pc = res.proj[k]
        vmax = float(np.abs(pc).max())
        panels.append(Panel(
            ctx.writer.png(signed_map(pc, vmax)),
            f"PC{k + 1} of {where}, blue negative, red positive, scale ±{vmax:.3g}",
            f"PC{k + 1} ({res.explained_variance_ratio[k]:.0%})",
        ))
    return tuple(panels)


@register_analysis("within_pca", order=10)
def within_pca(ctx: BuildContext) -> SectionOutput:
    """PCA per image and stage; RGB + PC1..PC3 figures of the last stage; PC1 foreground masks."""
    out = SectionOutput()
    rows: list[dict[str, Any]] = []
    masks: dict[str, dict[str, np.ndarray]] = {m.id: {} for m in ctx.models}
    thr = ctx.cfg.analysis.mask_threshold
    figs: dict[str, list[Row]] = {i: [] for i in ctx.image_ids()}
    for m, image in ctx.each_model_image():
        for st in m.stages:
            res = A.pca_within(ctx.fmap(m.id, image, st.name), k=3)
            row = {"model": m.id, "stage": st.name, "image": image,
                   "explained_variance_ratio": _ratios(res.explained_variance_ratio)}
            if st.name == m.last:
                mask = A.foreground_mask(res.proj[0], threshold=thr)
                masks[m.id][image] = mask
                row["fg_fraction"] = _r(mask.mean())
                figs[image].append(Row(m.label, _pc_panels(ctx, m, image, res)))
            rows.append(row)
    out.results["within_image_pca"] = rows
    for image in ctx.image_ids():
        photo = Panel(ctx.writer.photo(ctx.images[image], 448), f"Photo {image}", "")
        out.figures.append(Figure(
            id=_slug("within-pca", image), kind="within_pca", image=image,
            caption=(f"Within-image PCA of the last stage for image {image}: the first three "
                     f"components as RGB, then each component alone (signed, centred at zero; "
                     f"percent of variance explained in brackets). {ctx.provenance()}"),
            column_labels=("RGB", "PC1", "PC2", "PC3"),
            rows=(Row("Photo", (photo,)),) + tuple(figs[image]),
        ))
    out.shared["masks"] = masks
    # Explained variance table: PC1..PC3 of the last stage, mean over images.
    tab = []
    for m in ctx.models:
        ev = np.array([r["explained_variance_ratio"] for r in rows
                       if r["model"] == m.id and r["stage"] == m.last])
        tab.append((m.label, m.last, *(_r(v) for v in ev.mean(axis=0)), len(ev)))
    out.tables.append(Table(
        id="explained-variance", kind="explained_variance",
        caption="Share of variance of the last stage explained by PC1..PC3, mean over all images.",
        columns=("model", "stage", "PC1", "PC2", "PC3", "images"), rows=tuple(tab)))
    # Mask overlays: one figure, images as rows, models as columns.
    mask_rows = []
    for image in ctx.image_ids():
        panels = tuple(
            Panel(ctx.writer.jpeg(overlay(_shrink(ctx, image), masks[m.id][image])),
                  f"Foreground of image {image} from PC1 of {m.label} {m.last} (tinted)",
                  f"{masks[m.id][image].mean():.0%}")
            for m in ctx.models)
        mask_rows.append(Row(image, panels))
    out.figures.append(Figure(
        id="foreground-masks", kind="foreground_mask",
        caption=(f"Foreground from the first within-image component of the last stage, signed so the "
                 f"border ring is background, thresholded at {thr:g}; tinted cells are foreground "
                 f"(share in the label). {ctx.provenance()}"),
        column_labels=tuple(m.label for m in ctx.models), rows=tuple(mask_rows)))
    return out


def _shrink(ctx: BuildContext, image: str) -> np.ndarray:
    from PIL import Image

    size = ctx.panel_size(image, 320)
    return np.asarray(Image.fromarray(ctx.images[image]).resize(size, Image.BICUBIC))


# --- every stage, featured images ---------------------------------------------------------

@register_analysis("stage_pca", order=20)
def stage_pca(ctx: BuildContext) -> SectionOutput:
    out = SectionOutput()
    n_cols = max(len(m.stages) for m in ctx.models)
    for image in ctx.featured:
        rows = []
        for m in ctx.models:
            panels = []
            for st in m.stages:
                res = A.pca_within(ctx.fmap(m.id, image, st.name), k=3)
                panels.append(Panel(
                    ctx.writer.png(rgb_map(A.to_rgb(res.proj))),
                    f"Within-image PCA as RGB, {m.label}, stage {st.name} (stride {st.stride}), image {image}",
                    f"{st.name} · 1/{st.stride}"))
            rows.append(Row(m.label, tuple(panels)))
        out.figures.append(Figure(
            id=_slug("stage-pca", image), kind="stage_pca", image=image,
            caption=(f"Within-image PCA as RGB at every stage for image {image}; each map is drawn at "
                     f"the image size, one block per feature cell. {ctx.provenance()}"),
            column_labels=tuple(f"stage {i + 1}" for i in range(n_cols)), rows=tuple(rows)))
    return out


@register_analysis("random_channels", order=30)
def random_channels(ctx: BuildContext) -> SectionOutput:
    out = SectionOutput()
    k = ctx.cfg.analysis.random_channels
    chosen: list[dict[str, Any]] = []
    for m in ctx.models:
        for st in m.stages:
            # Keyed by stage and width, so models of one architecture show the same indices.
            ch = A.pick_channels(st.channels, k, ctx.cfg.seed, f"random-channels:{st.name}:{st.channels}")
            chosen.append({"model": m.id, "stage": st.name, "channels": list(ch)})
    out.results["random_channels"] = chosen
    by = {(c["model"], c["stage"]): c["channels"] for c in chosen}
    for image in ctx.featured:
        for m in ctx.models:
            rows = []
            for st in m.stages:
                fmap = ctx.fmap(m.id, image, st.name)
                panels = []
                for c in by[(m.id, st.name)]:
                    x = fmap[c]
                    vmax = float(np.abs(x).max())
                    panels.append(Panel(
                        ctx.writer.png(signed_map(x, vmax)),
                        f"Channel {c} of {m.label} stage {st.name}, image {image}, scale ±{vmax:.3g}",
                        f"ch {c}"))
                rows.append(Row(st.name, tuple(panels)))
            out.figures.append(Figure(
                id=_slug("random-channels", image, m.id), kind="random_channels", image=image,
                caption=(f"{k} seeded random channels per stage of {m.label} for image {image} "
                         f"(seed {ctx.cfg.seed}); diverging colours, symmetric scale per channel. "
                         f"{ctx.provenance(m)}"),
                column_labels=tuple(f"channel {i + 1}" for i in range(k)), rows=tuple(rows)))
    return out


# --- across-image PCA per group -----------------------------------------------------------

@register_analysis("across_pca", order=40)
def across_pca(ctx: BuildContext) -> SectionOutput:
    out = SectionOutput()
    masks = ctx.extras["masks"]
    rows: list[dict[str, Any]] = []
    for group, ids in sorted(ctx.groups.items()):
        if len(ids) < 2:
            continue
        naive_rows, masked_rows, comp_rows = [], [], []
        for m in ctx.models:
            for st in m.stages:
                # One read of each map feeds both fits; the last stage's maps (small) are kept
                # for the projections drawn below.
                accs = {False: A.CovarianceAccumulator(st.channels), True: A.CovarianceAccumulator(st.channels)}
                gmasks, kept = [], []
                for image in ids:
                    fmap = ctx.fmap(m.id, image, st.name)
                    mk = A.resize_nearest(masks[m.id][image], fmap.shape[1:])
                    gmasks.append(mk)
                    accs[False].update(A.pixels(fmap))
                    accs[True].update(A.pixels(fmap, mk))
                    if st.name == m.last:
                        kept.append(fmap)
                for masked, acc in accs.items():
                    if acc.n < 3:
                        continue
                    fit = acc.fit(k=3)
                    rows.append({"model": m.id, "stage": st.name, "group": group, "masked": masked,
                                 "explained_variance_ratio": _ratios(fit.explained_variance_ratio),
                                 "n_pixels": int(fit.n_pixels)})
                    if st.name != m.last:
                        continue
                    projs = [A.project(fit, fmap) for fmap in kept]
                    mlist = gmasks if masked else None
                    rgbs = A.joint_rgb(projs, mlist)
                    panels = tuple(
                        Panel(ctx.writer.png(rgb_map(rgb)),
                              f"Across-image PCA ({'foreground' if masked else 'all pixels'}) of "
                              f"group {group}, {m.label} {st.name}, image {i}", i)
                        for i, rgb in zip(ids, rgbs))
                    (masked_rows if masked else naive_rows).append(Row(m.label, panels))
                    if masked:
                        for k in range(3):
                            comp = [p[k] for p in projs]
                            vmax = A.joint_scale(comp, mlist)
                            cpanels = tuple(
                                Panel(ctx.writer.png(signed_map(_masked(c, mk), vmax)),
                                      f"Across-image PC{k + 1} (foreground fit) of {m.label}, image {i}", i)
                                for i, c, mk in zip(ids, comp, mlist))
                            comp_rows.append(Row(f"{m.label} · PC{k + 1}", cpanels))
        photos = Row("Photo", tuple(Panel(ctx.writer.photo(ctx.images[i], 240), f"Photo {i}", i) for i in ids))
        cols = tuple(ids)
        out.figures.append(Figure(
            id=_slug("across-naive", group), kind="across_pca_naive", group=group,
            caption=(f"Across-image PCA of group '{group}', last stage, fitted once on all pixels of all "
                     f"{len(ids)} images; colours scaled jointly over the group. {ctx.provenance()}"),
            column_labels=cols, rows=(photos,) + tuple(naive_rows)))
        out.figures.append(Figure(
            id=_slug("across-masked", group), kind="across_pca_masked", group=group,
            caption=(f"Across-image PCA of group '{group}', last stage, fitted on foreground pixels only "
                     f"(PC1 masks); background grey; colours scaled jointly. {ctx.provenance()}"),
            column_labels=cols, rows=(photos,) + tuple(masked_rows)))
        out.figures.append(Figure(
            id=_slug("across-components", group), kind="across_pca_components", group=group,
            caption=(f"The three foreground across-image components of group '{group}' one by one, signed, "
                     f"one symmetric scale per component and model. {ctx.provenance()}"),
            column_labels=cols, rows=tuple(comp_rows)))
    out.results["across_image_pca"] = rows
    tab = tuple((r["group"], ctx.label(r["model"]), r["stage"], "foreground" if r["masked"] else "all",
                 *r["explained_variance_ratio"], r["n_pixels"]) for r in rows)
    if tab:
        out.tables.append(Table(
            id="across-pca", kind="across_pca",
            caption="Explained variance of the across-image components per group, model and stage.",
            columns=("group", "model", "stage", "pixels used", "PC1", "PC2", "PC3", "n pixels"), rows=tab))
    return out


def _masked(x: np.ndarray, mask: np.ndarray | None) -> np.ndarray:
    if mask is None:
        return x
    return np.where(mask, x, np.nan)


# --- feature statistics -------------------------------------------------------------------

_STAT_FIELDS = ("mean", "std", "min", "max", "p1", "p99", "skew", "kurtosis", "outlier_fraction")


def _stats_row(s: A.FeatureStats) -> dict[str, float]:
    return {f: _r(getattr(s, f)) for f in _STAT_FIELDS}


def _hist_panel(ctx: BuildContext, stage: str, models: list[ModelFacts], chunks, stats, what: str) -> Panel:
    """Linear, log-y and 1st-99th percentile histograms, models overlaid on shared edges."""
    nb = ctx.cfg.analysis.hist_bins
    full = A.shared_bin_edges(min(stats[m.id].min for m in models), max(stats[m.id].max for m in models), nb)
    crop = A.shared_bin_edges(min(stats[m.id].p1 for m in models), max(stats[m.id].p99 for m in models), nb)
    cf = {m.label: A.histogram(chunks[m.id], full) for m in models}
    cc = {m.label: A.histogram(chunks[m.id], crop) for m in models}
    names = " vs ".join(m.label for m in models)
    return Panel(ctx.writer.plot(hist_figure(full, cf, crop, cc, title=stage), tight=False),
                 f"Histograms of {what} at stage {stage} (linear, log y, 1st-99th percentile): {names}", "")


@register_analysis("feature_stats", order=50)
def feature_stats(ctx: BuildContext) -> SectionOutput:
    out = SectionOutput()
    ids = ctx.image_ids()
    # Stages in model order (C2..C5 of the first ConvNeXt, then B3.. of a ViT), each once.
    stage_names = list(dict.fromkeys(s.name for m in ctx.models for s in m.stages))
    all_rows, ch_rows = [], []
    fig_rows, ch_fig_rows = [], []
    for stage in stage_names:
        models = [m for m in ctx.models if any(s.name == stage for s in m.stages)]
        chunks, ch_chunks, stats, ch_stats, chans = {}, {}, {}, {}, {}
        for m in models:
            st = m.stage(stage)
            c = A.pick_channels(st.channels, 1, ctx.cfg.seed, f"channel-stats:{stage}:{st.channels}")[0]
            chans[m.id] = c
            chunks[m.id] = (lambda mid=m.id, st=stage: (ctx.fmap(mid, i, st) for i in ids))
            ch_chunks[m.id] = (lambda mid=m.id, st=stage, c=c: (ctx.fmap(mid, i, st)[c] for i in ids))
            stats[m.id] = A.feature_stats(chunks[m.id])
            ch_stats[m.id] = A.feature_stats(ch_chunks[m.id])
            all_rows.append({"model": m.id, "stage": stage, **_stats_row(stats[m.id])})
            ch_rows.append({"model": m.id, "stage": stage, "channel": int(c), **_stats_row(ch_stats[m.id])})
        fig_rows.append(Row(stage, (_hist_panel(ctx, stage, models, chunks, stats, "all feature values"),)))
        ch_fig_rows.append(Row(f"{stage} · ch {chans[models[0].id]}",
                               (_hist_panel(ctx, stage, models, ch_chunks, ch_stats, "one random channel"),)))
    out.results["feature_stats"] = all_rows
    out.results["channel_stats"] = ch_rows
    cols = ("linear · log y · 1st-99th percentile",)
    out.figures.append(Figure(
        id="feature-hist", kind="feature_hist",
        caption=(f"Distribution of all feature values (every image, channel and position) per stage; "
                 f"models with the same stage share bin edges; share of values per bin. {ctx.provenance()}"),
        column_labels=cols, rows=tuple(fig_rows)))
    out.figures.append(Figure(
        id="channel-hist", kind="channel_hist",
        caption=(f"The same for one seeded random channel per stage (index in the row label, seed "
                 f"{ctx.cfg.seed}). {ctx.provenance()}"),
        column_labels=cols, rows=tuple(ch_fig_rows)))
    heads = ("model", "stage") + _STAT_FIELDS
    out.tables.append(Table(
        id="feature-stats", kind="feature_stats",
        caption="Statistics of all feature values per model and stage (std: population; kurtosis: excess; "
                "outlier_fraction: share beyond 6 std).",
        columns=heads, rows=tuple((ctx.label(r["model"]), r["stage"], *(r[f] for f in _STAT_FIELDS))
                                  for r in all_rows)))
    out.tables.append(Table(
        id="channel-stats", kind="channel_stats",
        caption="Statistics of one seeded random channel per model and stage.",
        columns=("model", "stage", "channel") + _STAT_FIELDS,
        rows=tuple((ctx.label(r["model"]), r["stage"], r["channel"], *(r[f] for f in _STAT_FIELDS))
                   for r in ch_rows)))
    return out


# --- beyond the post: CKA, mask agreement, explorer ----------------------------------------

@register_analysis("cka", order=60)
def cka(ctx: BuildContext) -> SectionOutput:
    """Linear CKA between every stage of every pair of models, maps resized to each image's
    coarsest grid (the smallest stage grid among all models) and pooled over images."""
    out = SectionOutput()
    ids = ctx.image_ids()
    pooled: dict[tuple[str, str], np.ndarray] = {}
    grid_stride = max(s.stride for m in ctx.models for s in m.stages)
    for m in ctx.models:
        for st in m.stages:
            parts = []
            for i in ids:
                h, w = ctx.images[i].shape[:2]
                fmap = A.resize_map(ctx.fmap(m.id, i, st.name), (h // grid_stride, w // grid_stride))
                parts.append(fmap.reshape(fmap.shape[0], -1).T)
            pooled[(m.id, st.name)] = np.concatenate(parts, axis=0)
    rows = []
    best = []
    models = list(ctx.models)
    for a, b in combinations(models, 2):
        vals = np.array([[A.linear_cka(pooled[(a.id, sa.name)], pooled[(b.id, sb.name)]) for sb in b.stages]
                         for sa in a.stages])
        for (x, sa), (y, sb) in ((p, q) for p in enumerate(a.stages) for q in enumerate(b.stages)):
            rows.append({"model_a": a.id, "stage_a": sa.name, "model_b": b.id, "stage_b": sb.name,
                         "value": _r(vals[x, y])})
        for x, sa in enumerate(a.stages):
            y = int(np.argmax(vals[x]))
            best.append((a.label, sa.name, b.label, b.stages[y].name, _r(vals[x, y])))
        panel = Panel(ctx.writer.plot(heatmap_figure(
            vals, [s.name for s in a.stages], [s.name for s in b.stages],
            title=f"{a.label} vs {b.label}", xlabel=b.label, ylabel=a.label)),
            f"Linear CKA between the stages of {a.label} (rows) and {b.label} (columns)", "")
        out.figures.append(Figure(
            id=_slug("cka", a.id, b.id), kind="cka",
            caption=(f"Linear CKA between every stage of {a.label} and {b.label} over all {len(ids)} "
                     f"images, each map resized to the coarsest grid. {ctx.provenance()}"),
            rows=(Row("", (panel,)),)))
    out.results["cka"] = rows
    if best:
        out.tables.append(Table(
            id="cka-best", kind="cka_best",
            caption="For each stage of one model, the best-matching stage of the other by linear CKA.",
            columns=("model", "stage", "other model", "best stage", "CKA"), rows=tuple(best)))
    return out


@register_analysis("mask_agreement", order=70)
def mask_agreement(ctx: BuildContext) -> SectionOutput:
    from .images import load_mask

    out = SectionOutput()
    masks = ctx.extras["masks"]
    rows, gt_rows, tab = [], [], []
    for a, b in combinations(ctx.models, 2):
        ious = []
        for i in ctx.image_ids():
            iou = A.mask_iou(masks[a.id][i], masks[b.id][i])
            ious.append(iou)
            rows.append({"image": i, "model_a": a.id, "model_b": b.id, "iou": _r(iou)})
        tab.append((a.label, b.label, _r(float(np.mean(ious))), _r(float(np.min(ious))), len(ious)))
    for i in ctx.image_ids():
        gt = load_mask(ctx.entries[i], ctx.images[i].shape[:2], resolution=ctx.cfg.resolution, multiple=ctx.crop[0])
        if gt is None:  # neither a mask file nor mask_polygons in the manifest
            continue
        for m in ctx.models:
            gt_rows.append({"image": i, "model": m.id, "iou": _r(A.mask_iou(masks[m.id][i], gt))})
    out.results["mask_iou"] = rows
    out.results["mask_iou_gt"] = gt_rows
    if tab:
        out.tables.append(Table(
            id="mask-iou", kind="mask_iou",
            caption="Agreement (IoU) of the PC1 foreground masks between models: mean and worst image.",
            columns=("model", "other model", "mean IoU", "min IoU", "images"), rows=tuple(tab)))
    return out


@register_analysis("explorer", order=80)
def explorer(ctx: BuildContext) -> SectionOutput:
    """Compact last-stage features of the featured images and their group mates for the page."""
    import base64

    out = SectionOutput()
    links = {}
    for p in ctx.featured:
        mates = next((ids for _, ids in sorted(ctx.groups.items()) if p in ids), ())
        links[p] = [p] + [i for i in mates if i != p][:3]
    shown = sorted({i for ids in links.values() for i in ids})
    if not shown:
        return out
    feats: dict[str, dict[str, Any]] = {}
    for m in ctx.models:
        codes = A.explorer_codes([ctx.fmap(m.id, i, m.last) for i in shown], dims=ctx.cfg.analysis.explorer_dims)
        feats[m.id] = {}
        for i, c in zip(shown, codes):
            h, w, d = c.shape
            feats[m.id][i] = {"h": h, "w": w, "d": d,
                              "b64": base64.b64encode(c.astype("<f2").tobytes()).decode("ascii")}
    images = []
    for i in shown:
        h, w = ctx.images[i].shape[:2]
        group = next((g for g, ids in sorted(ctx.groups.items()) if i in ids), None)
        images.append({"id": i, "photo": ctx.writer.photo(ctx.images[i], 448), "width": w, "height": h,
                       "group": group})
    out.explorer = {
        "models": [{"id": m.id, "label": m.label} for m in ctx.models],
        "images": images, "probes": list(ctx.featured), "links": links, "features": feats,
        "stage": {m.id: m.last for m in ctx.models},
    }
    return out


@register_analysis("highres", order=90)
def highres(ctx: BuildContext) -> SectionOutput:
    """Last-stage PCA of the featured images at several resolutions, side by side."""
    from .features import load_stage

    out = SectionOutput()
    plan, hr_keys = ctx.extras.get("highres", ({}, {}))
    resolutions = sorted(set(ctx.cfg.analysis.highres) | {ctx.cfg.resolution})
    if len(resolutions) < 2:
        return out
    wanted = set(ctx.cfg.analysis.highres_models) or {m.id for m in ctx.models}
    for image in ctx.featured:
        rows = []
        for m in (m for m in ctx.models if m.id in wanted):
            panels = []
            for res in resolutions:
                if res == ctx.cfg.resolution:
                    fmap = ctx.fmap(m.id, image, m.last)
                elif res in plan and m.id in hr_keys.get(res, {}):
                    fmap = load_stage(ctx.cache, hr_keys[res][m.id][image], m.last)
                else:
                    continue
                res_pca = A.pca_within(fmap, k=3)
                h, w = fmap.shape[1:]
                panels.append(Panel(ctx.writer.png(rgb_map(A.to_rgb(res_pca.proj))),
                                    f"Within-image PCA as RGB of {m.label} {m.last} for image {image} "
                                    f"at short side {res} px ({h}×{w} cells)", f"{res} px · {h}×{w}"))
            rows.append(Row(m.label, tuple(panels)))
        out.figures.append(Figure(
            id=_slug("highres", image), kind="highres", image=image,
            caption=(f"The last stage's within-image PCA of image {image} at short sides "
                     f"{', '.join(map(str, resolutions))} px: more cells, finer maps. {ctx.provenance()}"),
            column_labels=tuple(f"{r} px" for r in resolutions), rows=tuple(rows)))
    return out

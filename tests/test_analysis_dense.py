"""Part co-segmentation, correspondences and norm maps (issue 14) on planted truth.

First the pure functions (generator/dinoreport/analysis/parts.py, matches.py, outliers.py), then the
registered analyses themselves run through the public API on a context whose feature maps
are planted, checking what they write to results.json.
"""
from __future__ import annotations

import dataclasses

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from sklearn.metrics import adjusted_rand_score

from dinoreport.analyses import ForegroundMasks, get_analysis, resolve_options
from dinoreport.analyses.correspondences import MAX_LINES, pair_order
from dinoreport.analysis import norm_outliers
from dinoreport.analysis.matches import chance_cycle_share, match_cells, spread_pick
from dinoreport.analysis.parts import cosegment, image_purity, kmeans
from dinoreport.config import AnalysisSettings, ConfigError, ImagesConfig, ModelSpec, ReportConfig, load_config
from dinoreport.context import BuildContext
from dinoreport.drawing import PART_COLOURS, match_canvas, part_rgb
from dinoreport.figures import FigureWriter
from dinoreport.modelmeta import ModelFacts, StageInfo


def planted_parts(rng: np.random.Generator, k: int, c: int, shape: tuple[int, int], noise: float = 0.1,
                  centres: np.ndarray | None = None):
    """A (C, H, W) map whose cells are one of ``k`` part vectors plus noise, and its (H, W) labels.
    Parts are contiguous blocks of rows so regions are spatial, each block at a random offset."""
    h, w = shape
    bands = np.sort(rng.choice(np.arange(1, h * w), size=k - 1, replace=False))
    flat = np.searchsorted(bands, np.arange(h * w), side="right")  # 0..k-1 in reading order
    labels = np.roll(flat, int(rng.integers(h * w))).reshape(h, w)
    fmap = centres[labels].transpose(2, 0, 1) + noise * rng.standard_normal((c, h, w))
    return fmap.astype(np.float32), labels


# --- part co-segmentation ----------------------------------------------------------------

def test_cosegment_recovers_planted_parts_across_images():
    rng = np.random.default_rng(1)
    k, c = 4, 32
    centres = rng.standard_normal((k, c)) * 2.0
    maps, truth, masks = [], [], []
    for shape in ((9, 12), (12, 9), (10, 10)):
        f, lab = planted_parts(rng, k, c, shape, centres=centres)
        m = np.ones(shape, dtype=bool)
        m[0, :] = False  # a background row: labelled -1, never clustered
        maps.append(f), truth.append(lab), masks.append(m)
    seg = cosegment(maps, masks, k, seed=0)
    got = np.concatenate([lab[m] for lab, m in zip(seg.labels, masks)])
    want = np.concatenate([t[m] for t, m in zip(truth, masks)])
    # One fit for the group: the same planted part has the same label in every image.
    assert adjusted_rand_score(want, got) > 0.99
    assert all((lab[~m] == -1).all() for lab, m in zip(seg.labels, masks))
    assert seg.n_cells == sum(int(m.sum()) for m in masks)
    shares = np.bincount(want, minlength=k) / len(want)
    np.testing.assert_allclose(seg.part_shares, np.sort(shares)[::-1], atol=1e-12)
    assert seg.inertia < 0.05 * seg.n_cells  # tight parts: noise only
    # Every planted image holds several parts: far from one part per image.
    assert image_purity(seg.labels) == pytest.approx(np.mean([np.bincount(t[m]).max() / m.sum()
                                                              for t, m in zip(truth, masks)]), abs=1e-9)
    assert image_purity(seg.labels) < 0.9


def test_cosegment_above_the_fit_cap_samples_then_labels_every_cell():
    # More cells than max_fit_cells: the fit sees a seeded sample, every cell still gets the
    # planted part, shares and inertia count all cells, and each map is read at most twice.
    rng = np.random.default_rng(3)
    k, c = 3, 16
    centres = rng.standard_normal((k, c)) * 2.0
    maps, truth = [], []
    for shape in ((10, 12), (12, 10), (11, 11), (9, 13)):
        f, lab = planted_parts(rng, k, c, shape, centres=centres)
        maps.append(f), truth.append(lab)
    masks = [np.ones(t.shape, bool) for t in truth]
    reads = []

    class Lazy:
        def __len__(self):
            return len(maps)

        def __getitem__(self, i):
            reads.append(i)
            return maps[i]

    seg = cosegment(Lazy(), masks, k, seed=0, max_fit_cells=60)
    assert sorted(set(reads)) == [0, 1, 2, 3] and max(reads.count(i) for i in range(4)) == 2
    got = np.concatenate([lab.ravel() for lab in seg.labels])
    want = np.concatenate([t.ravel() for t in truth])
    assert adjusted_rand_score(want, got) > 0.99
    assert seg.n_cells == want.size
    np.testing.assert_allclose(seg.part_shares, np.sort(np.bincount(want) / want.size)[::-1], atol=1e-12)
    assert seg.inertia < 0.05 * seg.n_cells
    # Under the cap the result is the plain fit on every cell, read once each.
    reads.clear()
    full = cosegment(Lazy(), masks, k, seed=0)
    assert sorted(reads) == [0, 1, 2, 3]
    assert adjusted_rand_score(want, np.concatenate([lab.ravel() for lab in full.labels])) > 0.99


def test_image_purity_is_one_when_parts_are_images():
    assert image_purity([np.zeros((2, 2), int), np.ones((3, 1), int), np.full((1, 1), -1)]) == 1.0
    assert image_purity([np.array([[0, 1], [1, -1]])]) == pytest.approx(2 / 3)


def test_cosegment_finds_no_parts_in_random_features():
    rng = np.random.default_rng(2)
    k, c = 4, 32
    _, truth = planted_parts(rng, k, c, (12, 12), centres=np.zeros((k, c)))
    noise = rng.standard_normal((c, 12, 12)).astype(np.float32)
    seg = cosegment([noise], [np.ones((12, 12), bool)], k, seed=0)
    assert abs(adjusted_rand_score(truth.ravel(), seg.labels[0].ravel())) < 0.1
    assert seg.inertia / seg.n_cells > 0.5  # unit vectors in 32 dimensions share little


def test_cosegment_is_seeded_and_numbers_parts_by_size():
    rng = np.random.default_rng(3)
    x = rng.standard_normal((16, 8, 8)).astype(np.float32)
    m = np.ones((8, 8), bool)
    a, b = cosegment([x], [m], 3, seed=5), cosegment([x], [m], 3, seed=5)
    np.testing.assert_array_equal(a.labels[0], b.labels[0])
    assert a.inertia == b.inertia
    assert list(a.part_shares) == sorted(a.part_shares, reverse=True)
    assert a.part_shares.sum() == pytest.approx(1.0)


def test_kmeans_checks_its_input():
    with pytest.raises(ValueError, match="needs at least 3 rows, got 2"):
        kmeans(np.zeros((2, 4)), 3)
    with pytest.raises(ValueError, match="must be finite, got 1 non-finite"):
        kmeans(np.array([[0.0], [np.nan], [1.0]]), 2)
    with pytest.raises(ValueError, match="fewer than k=5 parts"):
        cosegment([np.ones((4, 2, 2), np.float32)], [np.ones((2, 2), bool)], 5)


def test_kmeans_on_fewer_distinct_rows_than_k_is_defined():
    fit = kmeans(np.ones((6, 3)), 3, seed=0)
    assert fit.inertia == 0.0 and fit.labels.shape == (6,)


# --- correspondences ---------------------------------------------------------------------

def test_matches_follow_a_planted_permutation():
    """B holds A's foreground features at permuted positions (and unrelated ones elsewhere):
    the mutual nearest neighbours are exactly the planted pairs, all of them."""
    rng = np.random.default_rng(4)
    c, (h, w) = 48, (6, 8)
    a = rng.standard_normal((c, h, w)).astype(np.float32)
    mask_a = np.zeros((h, w), bool)
    mask_a[1:5, 2:7] = True
    src = np.argwhere(mask_a)
    dst = np.argwhere(np.ones((7, 9), bool))[rng.permutation(63)[: len(src)]]
    b = rng.standard_normal((c, 7, 9)).astype(np.float32)
    mask_b = np.zeros((7, 9), bool)
    for (ya, xa), (yb, xb) in zip(src, dst):
        b[:, yb, xb] = a[:, ya, xa]
        mask_b[yb, xb] = True
    found = match_cells(a, b, mask_a, mask_b)
    planted = {(tuple(p), tuple(q)) for p, q in zip(src, dst)}
    assert {(tuple(p), tuple(q)) for p, q in zip(found.pos_a, found.pos_b)} == planted
    assert found.n_mutual == len(src) and found.cycle_consistent_share == 1.0
    np.testing.assert_allclose(found.similarity, 1.0, atol=1e-6)
    # Channels out of line: far fewer matches than the planted ones.
    assert chance_cycle_share(a, b, mask_a, mask_b) < 0.8


def test_spread_pick_covers_the_matches_evenly():
    np.testing.assert_array_equal(spread_pick(5, 40), np.arange(5))
    pick = spread_pick(1000, 40)
    assert len(pick) == 40 == len(set(pick.tolist())) and pick[0] < 25 and pick[-1] > 975
    assert len(spread_pick(41, 40)) == 40 and len(spread_pick(3, 0)) == 0


def test_pair_order_puts_neighbours_first():
    assert pair_order(("a", "b", "c", "d"))[:4] == [("a", "b"), ("b", "c"), ("c", "d"), ("a", "c")]
    assert len(pair_order(tuple("abcde"))) == 10


# --- norm outliers -----------------------------------------------------------------------

def test_planted_high_norm_tokens_are_found_where_planted():
    rng = np.random.default_rng(5)
    fmap = rng.standard_normal((64, 20, 20)).astype(np.float32)
    planted = [(0, 0), (3, 17), (11, 5), (19, 19)]
    for y, x in planted:
        fmap[:, y, x] *= 4.0
    res = norm_outliers(fmap)
    assert sorted(map(tuple, np.argwhere(res.mask).tolist())) == planted
    assert res.share == pytest.approx(4 / 400) and res.max_over_median > 3.0


# --- the drawings ------------------------------------------------------------------------

def test_part_colours_are_one_per_part_and_grey_background():
    rgb = part_rgb(np.array([[0, 1], [-1, 8]]))
    np.testing.assert_allclose(rgb[0, 0] * 255, PART_COLOURS[0])
    assert np.isnan(rgb[1, 0]).all()
    with pytest.raises(ValueError, match="at most 9 parts"):
        part_rgb(np.array([[9]]))


def test_match_canvas_draws_lines_between_the_matched_cells():
    photo = np.full((64, 64, 3), 100, np.uint8)
    img = match_canvas(photo, photo, (4, 4), (4, 4), np.array([[0, 0]]), np.array([[3, 3]]), height=64, gap=8)
    assert img.size == (136, 64)
    px = np.asarray(img)
    # Dots at the centre of cell (0, 0) of A and of cell (3, 3) of B, in the first part colour.
    assert tuple(px[8, 8]) == tuple(PART_COLOURS[0]) and tuple(px[56, 72 + 56]) == tuple(PART_COLOURS[0])


# --- the registered analyses on planted maps ---------------------------------------------

@dataclass
class PlantedContext(BuildContext):
    """A build context whose feature maps come from a dict instead of the feature cache."""

    maps: dict = field(default_factory=dict)

    def fmap(self, model: str, image: str, stage: str, resolution: int | None = None) -> np.ndarray:
        return self.maps[(model, image, stage)]


def planted_context(tmp_path: Path, maps: dict, masks: dict, images: dict, groups: dict,
                    featured: tuple[str, ...], **analysis) -> PlantedContext:
    spec = ModelSpec(id="m", timm="convnext_tiny", label="M")
    facts = ModelFacts(id="m", label="M", timm="convnext_tiny",
                       stages=(StageInfo("C4", 32, 16), StageInfo("C5", 32, 32)), weights_source="random-init",
                       weights_sha256=None, license=None, is_vit=False, c5_norm=False)
    cfg = ReportConfig(path=tmp_path / "report.toml", title="t", author="", resolution=224, seed=0,
                       batch_size=1, models=(spec,), images=ImagesConfig(None, None, featured),
                       groups=groups, analysis=AnalysisSettings(values=analysis))
    ctx = PlantedContext(cfg=cfg, images=images, entries={}, models=(facts,), keys={}, cache=None,
                         writer=FigureWriter(tmp_path / "site"), groups=groups, featured=featured,
                         random_init=True, dtype="fp32", maps=maps)
    ctx.artifacts[ForegroundMasks] = ForegroundMasks({"m": masks})
    return ctx


def run(name: str, ctx: PlantedContext):
    """Analysis ``name`` on ``ctx`` with its options from ``ctx.cfg``, as a build runs it."""
    return get_analysis(name).run(dataclasses.replace(ctx, options=resolve_options(ctx.cfg)[name]))


def test_analyses_report_planted_parts_matches_and_outliers(tmp_path):
    rng = np.random.default_rng(6)
    k, c, shape = 3, 32, (7, 7)
    centres = rng.standard_normal((k, c)) * 2.0
    ids = ("i0", "i1", "i2")
    maps, masks, truth = {}, {}, {}
    for i in ids:
        f, lab = planted_parts(rng, k, c, shape, noise=0.05, centres=centres)
        maps[("m", i, "C5")] = f
        g = rng.standard_normal((c, 14, 14)).astype(np.float32)
        maps[("m", i, "C4")] = g
        masks[i], truth[i] = np.ones(shape, bool), lab
    # Image i1 repeats i0's last-stage features, transposed: every cell has a planted match.
    maps[("m", "i1", "C5")] = maps[("m", "i0", "C5")].transpose(0, 2, 1).copy()
    truth["i1"] = truth["i0"].T
    maps[("m", "i2", "C4")][:, 2, 9] *= 5.0  # one high-norm token at C4 of i2
    images = {i: np.full((224, 224, 3), 90, np.uint8) for i in ids}
    ctx = planted_context(tmp_path, maps, masks, images, {"g": ids}, ("i2",), coseg_k=k,
                          correspondence_pairs=2)

    coseg = run("cosegmentation", ctx)
    (row,) = coseg.results["cosegmentation"]
    assert (row["model"], row["stage"], row["group"], row["k"]) == ("m", "C5", "g", k)
    want = np.sort(np.bincount(np.concatenate([truth[i].ravel() for i in ids]), minlength=k))[::-1] / 147
    np.testing.assert_allclose(row["part_shares"], want, atol=1e-5)
    assert row["inertia"] >= 0 and row["n_cells"] == 147
    assert [f.kind for f in coseg.figures] == ["cosegmentation"] and len(coseg.figures[0].rows) == 2

    corr = run("correspondences", ctx)
    rows = {(r["image_a"], r["image_b"]): r for r in corr.results["correspondences"]}
    assert list(rows) == [("i0", "i1"), ("i1", "i2")]
    assert rows[("i0", "i1")]["n_mutual"] == 49 and rows[("i0", "i1")]["cycle_consistent_share"] == 1.0
    assert rows[("i0", "i1")]["chance_share"] < 1.0
    assert set(rows[("i0", "i1")]) >= {"model", "stage", "image_a", "image_b", "n_mutual",
                                       "cycle_consistent_share"}
    panel = corr.figures[0].rows[0].panels[0]
    assert panel.alt.startswith(f"{min(MAX_LINES, 49)} of 49 mutual")
    assert Image.open(tmp_path / "site" / panel.file).size[1] == 240

    norms = run("norm_maps", ctx)
    by = {(r["image"], r["stage"]): r for r in norms.results["norm_outliers"]}
    assert set(by) == {(i, s) for i in ids for s in ("C4", "C5")}
    assert by[("i2", "C4")]["n_outliers"] == 1 and by[("i2", "C4")]["share"] == pytest.approx(1 / 196, rel=1e-4)
    assert by[("i2", "C4")]["max_over_median"] > 3.0
    assert all(by[(i, "C4")]["n_outliers"] == 0 for i in ("i0", "i1"))
    assert [f.id for f in norms.figures] == ["norm-maps-i2"]
    json.dumps([coseg.results, corr.results, norms.results])  # plain JSON values


def test_config_names_the_new_keys(tmp_path):
    base = ('[[models]]\nid = "m"\ntimm = "convnext_tiny"\n[images]\ndir = "imgs"\n[analysis]\n')
    (tmp_path / "imgs").mkdir()
    cfg = tmp_path / "report.toml"
    cfg.write_text(base + "coseg_k = 12\n")
    with pytest.raises(ConfigError, match=r"analysis\.coseg_k: must be an int from 2 to 9 .*got 12"
                                          r".* an option of analysis cosegmentation"):
        resolve_options(load_config(cfg))
    cfg.write_text(base + "correspondence_pairs = -1\n")
    with pytest.raises(ConfigError, match=r"analysis\.correspondence_pairs: must be an int from 0"):
        resolve_options(load_config(cfg))
    cfg.write_text(base + "coseg_k = 3\ncorrespondence_pairs = 2\n")
    a = resolve_options(load_config(cfg))
    assert (a["cosegmentation"].coseg_k, a["correspondences"].correspondence_pairs) == (3, 2)


def test_demo_build_shows_parts_matches_and_norms(demo_site):
    """In a real build (two planted photos, group 'dog', two models) each analysis writes its
    rows, its figures exist, and the narrative places them."""
    res = json.loads((demo_site / "data" / "results.json").read_text())
    models = {"dinov3_convnext_tiny", "dinov3_vits16"}
    assert {(r["model"], r["group"]) for r in res["cosegmentation"]} == {(m, "dog") for m in models}
    for r in res["cosegmentation"]:
        assert len(r["part_shares"]) == r["k"] == 4 and sum(r["part_shares"]) == pytest.approx(1, abs=1e-4)
    assert {(r["model"], r["image_a"], r["image_b"]) for r in res["correspondences"]} == {
        (m, "dog_a", "dog_b") for m in models}
    for r in res["correspondences"]:
        assert 0 < r["cycle_consistent_share"] <= 1 and r["n_mutual"] >= 1
    assert {(r["model"], r["image"]) for r in res["norm_outliers"] if r["stage"] in ("C5", "B12")} == {
        (m, i) for m in models for i in ("dog_a", "dog_b")}
    figs = json.loads((demo_site / "data" / "figures.json").read_text())
    kinds = {f["kind"] for f in figs}
    assert {"cosegmentation", "correspondences", "norm_maps"} <= kinds
    html = (demo_site / "index.html").read_text()
    for heading in ("Parts shared by a group", "Point-to-point matches", "Feature norms"):
        assert heading in html
    assert "Part co-segmentation of group" in html and "L2 norm of every position" in html


def test_an_image_without_foreground_gets_no_match_row_but_keeps_its_panel(tmp_path):
    rng = np.random.default_rng(7)
    maps = {("m", i, s): rng.standard_normal((8, n, n)).astype(np.float32)
            for i in "ab" for s, n in (("C4", 8), ("C5", 4))}
    masks = {"a": np.ones((4, 4), bool), "b": np.zeros((4, 4), bool)}
    ctx = planted_context(tmp_path, maps, masks, {i: np.full((64, 64, 3), 90, np.uint8) for i in "ab"},
                          {"g": ("a", "b")}, ())
    out = run("correspondences", ctx)
    assert out.results["correspondences"] == [] and not out.tables
    (row,) = out.figures[0].rows
    assert [p.label for p in row.panels] == ["no foreground"] and "image b has no foreground" in row.panels[0].alt

"""image_metrics / group_metrics: every metric the claims need, composed as METRICS says."""
import math

import numpy as np
import pytest

from dinoreport.analysis import (edge_following, far_similarity, foreground_mask, group_metrics,
                                image_metrics, instance_labels, instance_separation, local_norm_outliers,
                                neighbour_coherence, norm_outliers, pca_within, speck_share, subject_iou,
                                value_tails)
from dinoreport.analysis.claim_metrics import GROUP_METRICS, IMAGE_METRICS, MIN_INSTANCE_CELLS
from dinoreport.analysis.claims import METRICS


def _stages(rng, g=16, c=16):
    """C2..C5-like maps of shrinking size, with a two-instance subject."""
    out = []
    for name, side in (("C2", g), ("C3", g // 2), ("C4", g // 2), ("C5", g // 4)):
        out.append((name, rng.normal(size=(c, side, side)).astype(np.float32)))
    return out


def _reference(side=64):
    ref = np.zeros((side, side), bool)
    ref[4:28, 4:28] = True     # instance 1: 3 x 3 cells of the 8 x 8 C4 grid
    ref[36:60, 36:60] = True   # instance 2
    return ref


def test_metric_names_match_the_claims_catalogue():
    assert set(IMAGE_METRICS) | set(GROUP_METRICS) == set(METRICS)
    assert not set(IMAGE_METRICS) & set(GROUP_METRICS)


def test_image_metrics_equal_the_metric_functions():
    rng = np.random.default_rng(0)
    stages = _stages(rng)
    photo = rng.random((64, 64, 3))
    ref = _reference()
    out = image_metrics(stages, photo=photo, reference=ref, threshold=0.0)
    assert list(out) == list(IMAGE_METRICS)
    first, c4, last = stages[0][1], stages[2][1], stages[-1][1]
    proj = pca_within(last, 3).proj
    assert out["pc1_iou_ref"] == subject_iou(proj[0], ref, orient="reference")
    assert out["pc1_iou_border"] == subject_iou(proj[0], ref)
    assert out["pc1_speck_share"] == speck_share(foreground_mask(proj[0]))
    assert out["pc23_coherence"] == pytest.approx(
        (neighbour_coherence(proj[1]) + neighbour_coherence(proj[2])) / 2)
    assert out["norm_outlier_share"] == local_norm_outliers(last).share
    assert out["edge_drop"] == pytest.approx(edge_following(first, photo) - edge_following(last, photo))
    assert out["far_similarity_first"] == far_similarity(first)
    # the C4 grid is 8 x 8 over 64 px: a cell is subject when half of its 8 x 8 pixels are
    grid = np.zeros((8, 8), bool)
    for i in range(8):
        for j in range(8):
            grid[i, j] = ref[i * 8:(i + 1) * 8, j * 8:(j + 1) * 8].mean() >= 0.5
    assert out["c4_instance_separation"] == pytest.approx(
        instance_separation(c4, instance_labels(grid, MIN_INSTANCE_CELLS)))
    assert out["tail_log_ratio"] == pytest.approx(
        np.mean([math.log10(value_tails(f).high_tail_ratio) for _, f in stages]))


def test_image_metrics_nan_where_a_metric_does_not_apply():
    rng = np.random.default_rng(1)
    stages = _stages(rng)
    bare = image_metrics(stages)
    for key in ("pc1_iou_ref", "pc1_iou_border", "edge_drop", "c4_instance_separation"):
        assert math.isnan(bare[key])
    assert not math.isnan(bare["pc23_coherence"])
    one = np.zeros((64, 64), bool)
    one[8:56, 8:56] = True  # a single instance
    assert math.isnan(image_metrics(stages, reference=one)["c4_instance_separation"])
    vit = [(f"B{i}", rng.normal(size=(8, 4, 4))) for i in (3, 6, 9, 12)]
    assert math.isnan(image_metrics(vit, reference=_reference(16))["c4_instance_separation"])
    with pytest.raises(ValueError, match="stages must hold at least one"):
        image_metrics([])


def test_given_instances_keep_touching_subjects_apart():
    rng = np.random.default_rng(2)
    stages = _stages(rng)
    ref = np.zeros((64, 64), bool)
    ref[8:40, 8:56] = True  # one connected blob ...
    inst = np.zeros((64, 64), np.int64)
    inst[8:40, 8:32] = 1    # ... drawn as two animals side by side
    inst[8:40, 32:56] = 2
    assert math.isnan(image_metrics(stages, reference=ref)["c4_instance_separation"])
    assert not math.isnan(image_metrics(stages, reference=ref, instances=inst)["c4_instance_separation"])
    with pytest.raises(ValueError, match=r"instances must be an int array of the reference's shape"):
        image_metrics(stages, reference=ref, instances=inst[:10])


def test_group_metrics_needs_two_images_with_foreground():
    rng = np.random.default_rng(3)
    maps = [rng.normal(size=(8, 6, 6)) for _ in range(3)]
    empty = [np.zeros((6, 6), bool)] * 3
    out = group_metrics(maps, empty)
    assert set(out) == set(GROUP_METRICS)
    assert all(math.isnan(v) for vals in out.values() for v in vals)
    masks = [np.ones((6, 6), bool), np.ones((6, 6), bool), np.zeros((6, 6), bool)]
    out = group_metrics(maps, masks)
    assert math.isnan(out["part_match_excess"][2]) and not math.isnan(out["part_match_excess"][0])
    # with two images, each image's value is its one pair's value
    assert out["part_match_excess"][0] == out["part_match_excess"][1]
    # the colour gain fits its PCA on the other images: a third image with foreground is needed
    assert all(math.isnan(v) for v in out["part_colour_gain"])
    out = group_metrics(maps + [rng.normal(size=(8, 6, 6))], masks + [np.ones((6, 6), bool)])
    assert math.isnan(out["part_colour_gain"][2])
    assert all(not math.isnan(out["part_colour_gain"][i]) for i in (0, 1, 3))
    with pytest.raises(ValueError, match="got 3 maps but 2 masks"):
        group_metrics(maps, masks[:2])


# ---- metrics that must read 0 on noise and move with what they name -----------------------

def _texture_photo(rng, side, sigma=2.0):
    """Grey photo with edges everywhere, the border included."""
    from scipy.ndimage import gaussian_filter
    return gaussian_filter(rng.normal(size=(side, side)), sigma)


@pytest.mark.parametrize("g", [5, 7, 14, 28])
def test_edge_following_reads_zero_on_white_noise_at_every_grid_size(g):
    """Unrelated noise maps: the border ring (one-sided gradient, replicated Sobel) made the
    correlation about -0.3 at 14 x 14; over the interior it is 0 up to sampling noise."""
    rng = np.random.default_rng(g)
    vals = [edge_following(rng.normal(size=(32, g, g)), _texture_photo(rng, 8 * g)) for _ in range(60)]
    se = np.std(vals) / math.sqrt(len(vals))
    assert abs(np.mean(vals)) < max(4 * se, 0.03), (g, np.mean(vals), se)


def test_edge_following_positive_when_feature_edges_are_the_photos_edges():
    from scipy.ndimage import zoom
    rng = np.random.default_rng(1)
    for g in (7, 14):
        photo = _texture_photo(rng, 8 * g, sigma=8.0)
        cells = zoom(photo, 1 / 8, order=1)  # the photo itself on the grid, in 32 channels
        fmap = cells[None] * rng.normal(size=(32, 1, 1)) + 0.01 * rng.normal(size=(32, g, g))
        assert edge_following(fmap, photo) > 0.4
    assert math.isnan(edge_following(rng.normal(size=(8, 2, 5)), np.zeros((16, 40))))


def test_norm_outliers_are_local_spikes_not_a_bright_subject():
    """A subject whose features are simply larger than the background's is not an outlier;
    isolated high-norm cells are. The map-wide cut flagged the whole blob."""
    from scipy.ndimage import gaussian_filter
    rng = np.random.default_rng(3)
    c, g = 64, 14
    yy, xx = np.mgrid[:g, :g]
    blob = 1.0 + 4.0 * np.exp(-((yy - 7) ** 2 + (xx - 6) ** 2) / (2 * 2.5 ** 2))  # smooth, up to 5x
    fmap = rng.normal(size=(c, g, g)) * blob[None]
    stages = [("C5", fmap)]
    assert norm_outliers(fmap).share > 0.1  # the global cut: the subject "is" outliers
    assert image_metrics(stages)["norm_outlier_share"] == 0.0
    spiked = fmap.copy()
    idx = [(1, 1), (3, 11), (12, 2), (10, 12)]
    for y, x in idx:
        spiked[:, y, x] *= 6.0
    res = local_norm_outliers(spiked)
    assert {tuple(p) for p in np.argwhere(res.mask)} == set(idx)
    assert image_metrics([("C5", spiked)])["norm_outlier_share"] == pytest.approx(len(idx) / g ** 2)
    smooth = gaussian_filter(rng.normal(size=(c, g, g)), (0, 2, 2))
    assert local_norm_outliers(smooth).share == 0.0


def test_tail_ratio_ignores_the_bulk_and_follows_the_tail():
    rng = np.random.default_rng(4)
    x = rng.normal(size=(32, 32, 32))
    with_zeros = np.concatenate([x, np.zeros((64, 32, 32))])  # two thirds exact zeros
    base = image_metrics([("C5", x)])["tail_log_ratio"]
    assert image_metrics([("C5", with_zeros)])["tail_log_ratio"] == pytest.approx(base, abs=1e-9)
    narrow_bulk = np.where(np.abs(x) < 1.0, 0.1 * x, x)  # bulk squeezed, tail untouched
    assert image_metrics([("C5", narrow_bulk)])["tail_log_ratio"] == pytest.approx(base, abs=0.01)
    assert base == pytest.approx(math.log10(3.291 / 2.576), abs=0.02)  # normal |x|: p99.9 / p99
    heavier = image_metrics([("C5", rng.laplace(size=(32, 32, 32)))])["tail_log_ratio"]
    heaviest = image_metrics([("C5", rng.standard_t(3, size=(32, 32, 32)))])["tail_log_ratio"]
    assert base + 0.05 < heavier < heaviest - 0.1
    assert image_metrics([("C5", np.zeros((4, 3, 3)))])["tail_log_ratio"] == 0.0


def test_pc1_score_is_not_flipped_by_a_subject_that_fills_the_border():
    """The subject covers the border, so the border rule calls it background: the PC1 is a
    perfect subject map, yet its border-oriented mask scores 0. The claim's score takes the
    side of PC1 that is the subject; the figures' mask is kept alongside."""
    rng = np.random.default_rng(5)
    g, c = 8, 16
    subject = np.ones((g, g), bool)
    subject[3:5, 3:5] = False  # background only in the middle
    d = np.linalg.qr(rng.normal(size=(c, c)))[0]
    fmap = 3.0 * subject[None] * d[:, :1, None] + 0.05 * rng.normal(size=(c, g, g))
    ref = np.kron(subject, np.ones((8, 8), bool))
    out = image_metrics([("C5", fmap)], reference=ref)
    assert out["pc1_iou_ref"] == pytest.approx(1.0)
    assert out["pc1_iou_border"] == pytest.approx(0.0)
    # a subject in the middle: both agree
    mid = ~subject
    fmap = 3.0 * mid[None] * d[:, :1, None] + 0.05 * rng.normal(size=(c, g, g))
    out = image_metrics([("C5", fmap)], reference=np.kron(mid, np.ones((8, 8), bool)))
    assert out["pc1_iou_ref"] == out["pc1_iou_border"] == pytest.approx(1.0)


def _noise_group(rng, n=9, c=32, g=8, scales=None):
    maps, masks = [], []
    for _ in range(n):
        f = rng.normal(size=(c, g, g)) * (1.0 if scales is None else scales[:, None, None])
        m = np.zeros((g, g), bool)
        y, x = rng.integers(0, 3, 2)
        m[y:y + 5, x:x + 5] = True
        maps.append(f)
        masks.append(m)
    return maps, masks


def test_part_metrics_read_zero_on_unrelated_noise():
    """Independent noise: the in-sample masked PCA made the colour gain positive (+0.03, 84%
    "supported" at 9 images). Channels sharing their scales across images while no cell
    corresponds: the excess read +0.07. Both are 0 up to noise now."""
    rng = np.random.default_rng(6)
    gain, excess = [], []
    for _ in range(16):
        out = group_metrics(*_noise_group(rng))
        gain.append(np.mean(out["part_colour_gain"]))
        out = group_metrics(*_noise_group(rng, scales=np.exp(1.5 * rng.normal(size=32))))
        excess.append(np.mean(out["part_match_excess"]))
    for vals in (gain, excess):
        se = np.std(vals) / math.sqrt(len(vals))
        assert abs(np.mean(vals)) < max(3 * se, 0.01), (np.mean(vals), se)

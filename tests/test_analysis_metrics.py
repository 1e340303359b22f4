"""Every claim metric on planted truth: the planted structure is found, and it is gone
when the structure is removed (cells shuffled, features replaced by noise)."""
import math

import numpy as np
import pytest
from scipy.ndimage import gaussian_filter

from conftest import blob_photo
from dinoreport.analysis import (colour_agreement, cycle_consistent_share, cycle_share_excess,
                                edge_following,
                                far_similarity, instance_labels, instance_separation, mutual_nn,
                                neighbour_coherence, norm_outliers, pca_within, pool_mean,
                                sobel_magnitude, speck_share, subject_iou, value_tails)
from dinoreport.analysis.outliers import OUTLIER_K


def _smooth(rng, h, w, sigma=2.0):
    f = gaussian_filter(rng.normal(size=(h, w)), sigma, mode="wrap")
    return (f - f.mean()) / f.std()


def _shuffle_cells(fmap, rng):
    """Same values, same channels per cell, positions permuted: spatial structure removed."""
    c, h, w = fmap.shape
    flat = fmap.reshape(c, -1)
    return flat[:, rng.permutation(h * w)].reshape(c, h, w)


def _square(h, w, y0, x0, side):
    m = np.zeros((h, w), bool)
    m[y0:y0 + side, x0:x0 + side] = True
    return m


# ---- pool_mean -----------------------------------------------------------------------------

def test_pool_mean_is_block_average_when_divisible():
    x = np.arange(48, dtype=float).reshape(6, 8)
    np.testing.assert_allclose(pool_mean(x, (3, 2)), x.reshape(3, 2, 2, 4).mean(axis=(1, 3)))


def test_pool_mean_uneven_assigns_each_pixel_once():
    x = np.ones((7, 5))
    x[3, :] = 0.0  # row 3 of 7 has its centre at 3.5/7 = half way: goes to cell row 1 of 2
    out = pool_mean(x, (2, 2))
    assert out.shape == (2, 2)
    np.testing.assert_allclose(out[0], 1.0)
    np.testing.assert_allclose(out[1], 3.0 / 4.0)


def test_pool_mean_errors():
    with pytest.raises(ValueError, match=r"pool_mean only shrinks: grid \(4, 4\) is larger than the array \(2, 8\)"):
        pool_mean(np.zeros((2, 8)), (4, 4))
    with pytest.raises(ValueError, match="x must be finite, got 1 non-finite values"):
        pool_mean(np.array([[np.nan, 0.0]]), (1, 1))


# ---- neighbour coherence -------------------------------------------------------------------

def test_coherence_smooth_vs_noise_vs_checkerboard():
    rng = np.random.default_rng(0)
    assert neighbour_coherence(_smooth(rng, 16, 16)) > 0.8
    assert abs(neighbour_coherence(rng.normal(size=(16, 16)))) < 0.15
    checker = (np.indices((6, 6)).sum(axis=0) % 2).astype(float)
    assert neighbour_coherence(checker) == pytest.approx(-1.0)
    assert neighbour_coherence(np.full((5, 5), 3.0)) == 0.0
    assert neighbour_coherence(np.array([[1.0]])) == 0.0


def test_coherence_of_planted_later_component_and_shuffled():
    """PC2 and PC3 of a map built from smooth fields are smooth; shuffling cells makes them noise."""
    rng = np.random.default_rng(1)
    c, h, w = 24, 14, 14
    dirs = np.linalg.qr(rng.normal(size=(c, c)))[0][:, :3]
    fields = np.stack([3.0 * _smooth(rng, h, w), 2.0 * _smooth(rng, h, w), 1.5 * _smooth(rng, h, w)])
    fmap = np.einsum("ck,khw->chw", dirs, fields) + 0.05 * rng.normal(size=(c, h, w))
    proj = pca_within(fmap, 3).proj
    assert min(neighbour_coherence(proj[1]), neighbour_coherence(proj[2])) > 0.6
    shuffled = pca_within(_shuffle_cells(fmap, rng), 3).proj
    assert max(abs(neighbour_coherence(shuffled[1])), abs(neighbour_coherence(shuffled[2]))) < 0.2


# ---- specks --------------------------------------------------------------------------------

def test_speck_share_known_masks():
    clean = _square(8, 8, 2, 2, 4)
    assert speck_share(clean) == 0.0
    one = np.zeros((8, 8), bool)
    one[4, 4] = True
    assert speck_share(one) == 1 / 36  # over the 6 x 6 interior
    checker = np.indices((4, 4)).sum(axis=0) % 2 == 0
    assert speck_share(checker) == 1.0
    assert math.isnan(speck_share(np.array([[True]]))) and math.isnan(speck_share(np.ones((2, 9), bool)))
    coin = np.random.default_rng(2).random((64, 64)) < 0.5
    assert 0.05 < speck_share(coin) < 0.09


@pytest.mark.parametrize("side", [4, 5, 7, 14])
def test_speck_share_of_a_fair_coin_is_a_sixteenth_at_every_grid_size(side):
    """Border cells have fewer neighbours to disagree with: counting them made a coin's share
    grow as the grid shrinks (0.12 at 5 x 5)."""
    rng = np.random.default_rng(side)
    share = np.mean([speck_share(rng.random((side, side)) < 0.5) for _ in range(4000 // side)])
    assert share == pytest.approx(1 / 16, abs=0.012)


def test_speck_share_counts_salt_and_pepper():
    rng = np.random.default_rng(3)
    clean = _square(16, 16, 4, 4, 8)
    noisy = clean.copy()
    flip = rng.choice(256, 20, replace=False)
    noisy.reshape(-1)[flip] ^= True
    assert speck_share(noisy) > 0.02 and speck_share(clean) == 0.0
    with pytest.raises(ValueError, match="mask must be bool, got dtype float64"):
        speck_share(clean.astype(float))


# ---- subject IoU ---------------------------------------------------------------------------

def _subject_map(rng, h=16, w=16, c=16):
    subj = _square(h, w, 4, 5, 7)
    d = np.linalg.qr(rng.normal(size=(c, c)))[0]
    fmap = 3.0 * subj[None] * d[:, 0, None, None] + 0.3 * _smooth(rng, h, w)[None] * d[:, 1, None, None]
    return fmap + 0.1 * rng.normal(size=(c, h, w)), subj


def test_subject_iou_planted_square_and_shuffled():
    rng = np.random.default_rng(4)
    fmap, subj = _subject_map(rng)
    reference = np.kron(subj, np.ones((4, 4), bool))  # drawn at 4x the grid
    pc1 = pca_within(fmap, 1).proj[0]
    assert subject_iou(pc1, reference) == pytest.approx(1.0)
    assert subject_iou(-pc1, reference) == pytest.approx(1.0)  # sign is set by the border
    shuffled = pca_within(_shuffle_cells(fmap, rng), 1).proj[0]
    assert subject_iou(shuffled, reference) < 0.35


def test_subject_iou_reference_majority_vote():
    pc1 = np.full((2, 2), -1.0)
    pc1[0, 0] = 1.0
    ref = np.zeros((4, 4), bool)
    ref[0, :1] = ref[1, :1] = True  # half of cell (0, 0): counts as subject
    assert subject_iou(pc1, ref) == 1.0
    ref[1, 0] = False  # a quarter: not subject -> empty reference vs one-cell mask
    assert subject_iou(pc1, ref) == 0.0
    with pytest.raises(ValueError, match="reference must be a bool mask, got dtype int64"):
        subject_iou(pc1, ref.astype(np.int64))


# ---- edges ---------------------------------------------------------------------------------


def test_sobel_magnitude_on_a_step():
    img = np.zeros((5, 6))
    img[:, 3:] = 1.0
    mag = sobel_magnitude(np.repeat(img[..., None], 3, axis=2))
    assert mag[:, [0, 5]].max() == 0.0 and mag[:, 2:4].min() > 0.0


def test_edge_following_planted_and_removed():
    rng = np.random.default_rng(5)
    c, g = 16, 16
    img = blob_photo(rng)
    edge_like = pool_mean(img, (g, g))[None] * rng.normal(size=(c, 1, 1))
    edge_like = edge_like + 0.01 * rng.normal(size=(c, g, g))
    assert edge_following(edge_like, img) > 0.6
    unrelated = np.stack([_smooth(rng, g, g) for _ in range(c)])
    assert abs(edge_following(unrelated, img)) < 0.3
    assert edge_following(np.ones((c, g, g)), img) == 0.0


# ---- globality -----------------------------------------------------------------------------

def test_far_similarity_global_vs_local():
    rng = np.random.default_rng(6)
    c = 32
    shared = rng.normal(size=(c, 1, 1)) + 0.3 * rng.normal(size=(c, 16, 16))
    local = np.stack([_smooth(rng, 16, 16, 1.5) for _ in range(c)])
    assert far_similarity(shared) > 0.85
    assert abs(far_similarity(local)) < 0.2
    # subsampling to a regular sub-grid keeps the answer
    big = rng.normal(size=(c, 1, 1)) + 0.3 * rng.normal(size=(c, 64, 64))
    assert far_similarity(big, max_positions=256) == pytest.approx(far_similarity(shared), abs=0.05)


def test_far_similarity_errors():
    with pytest.raises(ValueError, match=r"at least 2 positions for far_similarity, got shape \(3, 1, 1\)"):
        far_similarity(np.ones((3, 1, 1)))
    with pytest.raises(ValueError, match=r"min_dist_frac must be in \(0, 1\], got 0"):
        far_similarity(np.ones((3, 4, 4)), min_dist_frac=0)


# ---- norm outliers -------------------------------------------------------------------------

def test_norm_outliers_found_at_planted_positions():
    rng = np.random.default_rng(7)
    c, h, w = 64, 14, 14
    fmap = rng.normal(size=(c, h, w))
    planted = np.zeros((h, w), bool)
    planted.reshape(-1)[rng.choice(h * w, 6, replace=False)] = True
    fmap[:, planted] *= 10.0
    res = norm_outliers(fmap)
    np.testing.assert_array_equal(res.mask, planted)
    assert res.share == pytest.approx(6 / (h * w))
    assert 8.0 < res.max_over_median < 13.0
    clean = norm_outliers(rng.normal(size=(c, h, w)))
    assert clean.share == 0.0 and clean.max_over_median < 1.5
    assert OUTLIER_K == 5.0


def test_norm_outliers_edge_cases():
    zero = norm_outliers(np.zeros((2, 3, 3)))
    assert zero.share == 0.0 and zero.max_over_median == 1.0
    with pytest.raises(ValueError, match="k must be a finite number > 0, got 0"):
        norm_outliers(np.ones((2, 3, 3)), k=0)


# ---- value tails ---------------------------------------------------------------------------

def test_value_tails_normal_vs_laplace():
    rng = np.random.default_rng(8)
    normal = value_tails(rng.normal(size=400_000))
    laplace = value_tails(rng.laplace(size=400_000))
    assert normal.excess_kurtosis == pytest.approx(0.0, abs=0.05)
    assert normal.tail_ratio == pytest.approx(4.88, rel=0.03)
    assert laplace.excess_kurtosis == pytest.approx(3.0, abs=0.15)
    assert laplace.tail_ratio == pytest.approx(np.log(1000) / np.log(2), rel=0.03)
    # scale-free
    assert value_tails(7.0 * rng.normal(size=400_000)).tail_ratio == pytest.approx(4.88, rel=0.03)
    assert value_tails(np.zeros(5)) == value_tails(np.zeros(5))
    assert value_tails(np.zeros(5)).tail_ratio == 1.0
    with pytest.raises(ValueError, match="value_tails needs at least one value"):
        value_tails(np.zeros(0))


# ---- correspondences -----------------------------------------------------------------------

def test_mutual_nn_recovers_planted_shared_parts():
    """B's cells are A's parts in another order plus noise: every cell closes its cycle."""
    rng = np.random.default_rng(9)
    a = rng.normal(size=(60, 32))
    perm = rng.permutation(60)
    b = a[perm] + 0.05 * rng.normal(size=(60, 32))
    pairs = mutual_nn(a, b)
    assert pairs.shape == (60, 2)
    np.testing.assert_array_equal(perm[pairs[:, 1]], pairs[:, 0])
    assert cycle_consistent_share(a, b) == 1.0
    # unrelated features: only chance matches (about half)
    share = cycle_consistent_share(a, rng.normal(size=(60, 32)))
    assert 0.3 < share < 0.7


def test_cycle_share_excess_shared_vs_unrelated():
    rng = np.random.default_rng(14)
    a = rng.normal(size=(60, 32))
    b = a[rng.permutation(60)] + 0.3 * rng.normal(size=(60, 32))
    assert cycle_share_excess(a, b) > 0.4
    unrelated = [cycle_share_excess(rng.normal(size=(60, 32)), rng.normal(size=(60, 32)))
                 for _ in range(10)]
    assert abs(float(np.mean(unrelated))) < 0.05
    assert cycle_share_excess(a[:, :1], b[:, :1]) == 0.0


def test_mutual_nn_one_to_one_and_sorted():
    rng = np.random.default_rng(10)
    pairs = mutual_nn(rng.normal(size=(40, 8)), rng.normal(size=(25, 8)))
    assert len(set(pairs[:, 0])) == len(pairs) == len(set(pairs[:, 1]))
    assert np.all(np.diff(pairs[:, 0]) > 0)
    with pytest.raises(ValueError, match=r"b must have 8 columns to match, got shape \(3, 4\)"):
        mutual_nn(np.ones((2, 8)), np.ones((3, 4)))


def test_colour_agreement_matched_vs_random():
    rng = np.random.default_rng(11)
    ca = rng.random((50, 3))
    perm = rng.permutation(50)
    cb = ca[perm]
    truth = np.stack([perm, np.arange(50)], axis=1)
    assert colour_agreement(ca, cb, truth) == pytest.approx(1.0)
    random_pairs = np.stack([np.arange(50), rng.permutation(50)], axis=1)
    assert abs(colour_agreement(ca, cb, random_pairs)) < 0.25
    assert colour_agreement(np.full((4, 3), 0.5), np.full((3, 3), 0.5), np.array([[0, 0]])) == 0.0
    with pytest.raises(ValueError, match=r"pairs index outside rgb_a \(4 rows\)"):
        colour_agreement(np.zeros((4, 3)), np.zeros((4, 3)), np.array([[4, 0]]))


# ---- instances -----------------------------------------------------------------------------

def _two_instances(h=12, w=16):
    m = _square(h, w, 2, 1, 5) | _square(h, w, 4, 9, 6)
    return m, instance_labels(m)


def test_instance_labels_raster_order_and_min_cells():
    m, lab = _two_instances()
    assert lab.dtype == np.int32 and lab.max() == 2
    assert lab[2, 1] == 1 and lab[4, 9] == 2
    m[0, 15] = True  # a one-cell component
    assert instance_labels(m).max() == 3
    assert instance_labels(m, min_cells=2).max() == 2


def test_instance_separation_planted_vs_shared():
    rng = np.random.default_rng(12)
    c = 32
    m, lab = _two_instances()
    d = np.linalg.qr(rng.normal(size=(c, c)))[0]
    kind = 3.0 * d[:, 0]  # shared by both: "dog"
    sep = rng.normal(size=(c,) + m.shape) * 0.05
    sep[:, lab == 1] += (kind + d[:, 1])[:, None]
    sep[:, lab == 2] += (kind + d[:, 2])[:, None]
    same = rng.normal(size=(c,) + m.shape) * 0.05
    same[:, m] += (kind + d[:, 1])[:, None]
    assert instance_separation(sep, lab) > 0.8
    assert abs(instance_separation(same, lab)) < 0.1


def test_instance_separation_matches_pairwise_definition():
    rng = np.random.default_rng(13)
    m, lab = _two_instances()
    fmap = rng.normal(size=(5,) + m.shape)
    x = fmap.reshape(5, -1).T[lab.reshape(-1) > 0]
    x = x - x.mean(axis=0)
    u = x / np.linalg.norm(x, axis=1, keepdims=True)
    cos = u @ u.T
    ids = lab.reshape(-1)[lab.reshape(-1) > 0]
    same = ids[:, None] == ids[None, :]
    off = ~np.eye(ids.size, dtype=bool)
    expect = cos[same & off].mean() - cos[~same].mean()
    assert instance_separation(fmap, lab) == pytest.approx(expect)


def test_instance_separation_needs_two_instances():
    with pytest.raises(ValueError, match="needs at least 2 instances, got 1"):
        instance_separation(np.ones((2, 4, 4)), instance_labels(_square(4, 4, 0, 0, 2)))


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.int16])
def test_value_tails_equals_numpy_definition(dtype):
    # The fast path (one partial sort, squared deviations in place) must give the textbook
    # numbers: excess kurtosis of the float64 values and numpy's linear percentiles of |x|.
    rng = np.random.default_rng(3)
    x = (rng.standard_t(3, size=(7, 33, 41)) * 20).astype(dtype)
    v = x.astype(np.float64).ravel()
    d = v - v.mean()
    kurt = np.mean(d ** 4) / np.mean(d ** 2) ** 2 - 3.0
    p50, p999 = np.percentile(np.abs(v), [50.0, 99.9])
    got = value_tails(x)
    assert got.excess_kurtosis == pytest.approx(kurt, rel=1e-10)
    assert got.tail_ratio == pytest.approx(p999 / p50, rel=1e-12)

"""Planted-truth tests of the linear foreground probe, the positional bias, the variance
spectrum and PCA whitening (the pure functions of issue 26, items 3-5)."""
import numpy as np
import pytest
from sklearn.decomposition import PCA

from dinoreport.analysis import (CovarianceAccumulator, PositionAccumulator, common_grid, effective_rank,
                                 image_folds, participation_ratio, pca_within, pixels, probe_images, project,
                                 sigmoid_rgb, spectrum, subsample_cells)

# --- fg_probe -------------------------------------------------------------------------------


def _planted_cells(n_images=12, cells=150, dim=48, strength=6.0, seed=0):
    """Cells whose features are noise plus ``strength`` along one direction where the label
    is subject; the subject share differs per image (10-50 %)."""
    rng = np.random.default_rng(seed)
    d = rng.normal(size=dim)
    d /= np.linalg.norm(d)
    feats, labels = [], []
    for i in range(n_images):
        y = rng.random(cells) < 0.1 + 0.4 * i / n_images
        x = rng.normal(size=(cells, dim)) + strength * np.outer(y, d) + 0.5 * rng.normal(size=dim)  # image offset
        feats.append(x.astype(np.float32))
        labels.append(y)
    return feats, labels


@pytest.mark.parametrize("folds", [0, 4])
def test_probe_finds_a_planted_subject_direction(folds):
    feats, labels = _planted_cells()
    r = probe_images(feats, labels, folds=folds, cells_per_image=64)
    assert r.average_precision > 0.99
    assert float(np.mean(r.iou)) > 0.9
    assert len(r.proba) == len(feats) and all(p.shape == (150,) for p in r.proba)
    assert r.chosen_c.shape == (len(feats) if folds == 0 else folds,)


def test_probe_on_shuffled_labels_scores_the_base_rate():
    feats, labels = _planted_cells()
    rng = np.random.default_rng(5)
    shuffled = [rng.permutation(y) for y in labels]
    r = probe_images(feats, shuffled, folds=4, cells_per_image=64)
    assert abs(r.average_precision - r.base_rate) < 0.06
    assert r.base_rate == pytest.approx(np.concatenate(labels).mean())


def test_probe_never_sees_the_image_it_scores():
    # Each image's label is given away by a feature that only that image has: a probe trained
    # on the image itself would use it; a held-out probe cannot, and scores chance.
    rng = np.random.default_rng(2)
    n, cells = 8, 100
    feats, labels = [], []
    for i in range(n):
        y = rng.random(cells) < 0.3
        x = rng.normal(size=(cells, n))
        x[:, i] += 6.0 * y
        feats.append(x)
        labels.append(y)
    r = probe_images(feats, labels, folds=0, cells_per_image=100)
    assert r.average_precision < 0.6


def test_image_folds_cover_every_image_once():
    for n, k in [(7, 0), (7, 3), (5, 9)]:
        f = image_folds(n, k)
        assert sorted(np.concatenate(f).tolist()) == list(range(n))
        assert len(f) == (n if k in (0, 9) else k)
    with pytest.raises(ValueError, match="folds"):
        image_folds(5, 1)
    with pytest.raises(ValueError, match="at least 2 images"):
        image_folds(1, 0)


def test_probe_rejects_mismatched_inputs():
    feats, labels = _planted_cells(n_images=3)
    with pytest.raises(ValueError, match="2 label arrays"):
        probe_images(feats, labels[:2])
    with pytest.raises(ValueError, match=r"features\[0\]"):
        probe_images([feats[0][:10]] + feats[1:], labels)


# --- position_bias --------------------------------------------------------------------------

def _position_maps(offset: float, n=40, c=16, grid=(6, 8), seed=0):
    rng = np.random.default_rng(seed)
    pattern = rng.normal(size=(c,) + grid)  # a different direction at every position
    return [(rng.normal(size=(c,) + grid) + offset * pattern).astype(np.float32) for _ in range(n)], pattern


def test_planted_position_offset_is_recovered():
    maps, pattern = _position_maps(offset=3.0)
    acc = PositionAccumulator(16, (6, 8))
    for m in maps:
        acc.update(m)
    r = acc.result()
    assert r.share > 0.7 and r.share_adjusted > 0.7
    # The mean map points, at every position, along the planted pattern there.
    mm = r.mean_map.reshape(16, -1)
    pat = pattern.reshape(16, -1)
    cos = np.sum(mm * pat, axis=0) / np.linalg.norm(mm, axis=0) / np.linalg.norm(pat, axis=0)
    assert cos.min() > 0.9
    assert r.offset_norm.shape == (6, 8) and r.mean_norm.max() <= 1.0 + 1e-9


def test_share_is_about_zero_without_a_position_effect():
    maps, _ = _position_maps(offset=0.0)
    acc = PositionAccumulator(16, (6, 8))
    for m in maps:
        acc.update(m)
    r = acc.result()
    assert abs(r.share_adjusted) < 0.02
    # The raw share sits at its chance level (P - 1) / (n P - 1).
    assert r.share == pytest.approx(47 / (40 * 48 - 1), rel=0.25)


def test_border_ratio_sees_a_border_offset():
    rng = np.random.default_rng(3)
    d = rng.normal(size=16)
    ring = np.zeros((6, 8), bool)
    ring[0, :] = ring[-1, :] = ring[:, 0] = ring[:, -1] = True
    acc = PositionAccumulator(16, (6, 8))
    for _ in range(30):
        x = rng.normal(size=(16, 6, 8)) + 2.0 * d[:, None, None] * ring[None]
        acc.update(x)
    assert acc.result().border_ratio > 5


def test_position_accumulator_checks_shapes_and_counts():
    acc = PositionAccumulator(4, (3, 3))
    with pytest.raises(ValueError, match="at least 2 images"):
        acc.result()
    with pytest.raises(ValueError, match=r"\(4, 3, 3\)"):
        acc.update(np.ones((4, 2, 3), np.float32))


def test_common_grid_takes_the_most_frequent_then_the_smallest():
    assert common_grid([(14, 21), (14, 14), (14, 21)]) == (14, 21)
    assert common_grid([(14, 21), (14, 14)]) == (14, 14)


# --- spectrum ---------------------------------------------------------------------------------

def test_known_rank_data_gives_that_rank():
    rng = np.random.default_rng(0)
    basis = np.linalg.qr(rng.normal(size=(32, 32)))[0][:, :5]
    x = rng.normal(size=(4000, 5))
    x = np.linalg.qr(x - x.mean(0))[0]  # centred orthonormal columns: exactly equal variances
    acc = CovarianceAccumulator(32)
    acc.update(x @ basis.T + 7.0)
    s = spectrum(acc)
    assert s.effective_rank == pytest.approx(5.0, abs=1e-6)
    assert s.participation_ratio == pytest.approx(5.0, abs=1e-6)
    assert s.explained_variance_ratio.shape == (32,)
    np.testing.assert_allclose(s.explained_variance_ratio[:5], 0.2, atol=1e-9)
    assert s.explained_variance_ratio[5:].max() < 1e-9


def test_effective_rank_and_participation_ratio_by_hand():
    ev = np.array([4.0, 1.0, 0.0])
    p = np.array([0.8, 0.2])
    assert effective_rank(ev) == pytest.approx(np.exp(-np.sum(p * np.log(p))))
    assert participation_ratio(ev) == pytest.approx(25.0 / 17.0)
    assert effective_rank(np.zeros(3)) == 0.0 and participation_ratio(np.zeros(3)) == 0.0
    with pytest.raises(ValueError, match="1-D"):
        effective_rank(np.zeros((2, 2)))


def test_subsample_cells_is_seeded_and_bounded():
    fm = np.arange(2 * 10 * 10, dtype=np.float32).reshape(2, 10, 10)
    a, b = subsample_cells(fm, 30, seed=1), subsample_cells(fm, 30, seed=1)
    assert a.shape == (30, 2) and np.array_equal(a, b)
    assert np.array_equal(subsample_cells(fm, 500, seed=1), pixels(fm))


# --- whitening ------------------------------------------------------------------------------

def test_whitened_within_pca_matches_sklearn_whiten():
    rng = np.random.default_rng(4)
    fm = (rng.normal(size=(12, 9, 11)) * np.arange(1, 13)[:, None, None]).astype(np.float32)
    r = pca_within(fm, k=3, whiten=True)
    x = fm.reshape(12, -1).T.astype(np.float64)
    sk = PCA(3, whiten=True, svd_solver="full").fit_transform(x).T.reshape(3, 9, 11)
    np.testing.assert_allclose(np.abs(r.proj), np.abs(sk), rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(r.proj.reshape(3, -1).std(axis=1, ddof=1), 1.0, rtol=1e-5)
    plain = pca_within(fm, k=3)
    np.testing.assert_array_equal(plain.explained_variance_ratio, r.explained_variance_ratio)


def test_whitened_projection_of_a_group_fit_has_unit_variance():
    rng = np.random.default_rng(6)
    maps = [(rng.normal(size=(8, 5, 6)) * np.arange(1, 9)[:, None, None]).astype(np.float32) for _ in range(3)]
    acc = CovarianceAccumulator(8)
    for m in maps:
        acc.update(pixels(m))
    fit = acc.fit(3)
    z = np.concatenate([project(fit, m, whiten=True).reshape(3, -1) for m in maps], axis=1)
    np.testing.assert_allclose(z.std(axis=1, ddof=1), 1.0, rtol=1e-5)
    np.testing.assert_allclose(project(fit, maps[0]), project(fit, maps[0], whiten=True)
                               * np.sqrt(fit.explained_variance_ratio * fit.scatter / (fit.n_pixels - 1))[:, None, None],
                               rtol=1e-4, atol=1e-4)


def test_sigmoid_rgb_maps_zero_to_grey_and_keeps_nan():
    z = np.zeros((3, 2, 2))
    z[0, 0, 0] = np.nan
    z[1, 1, 1] = 100.0
    rgb = sigmoid_rgb(z)
    assert rgb.shape == (2, 2, 3)
    assert np.isnan(rgb[0, 0, 0]) and rgb[1, 1, 1] == pytest.approx(1.0) and rgb[0, 1, 2] == 0.5


def test_image_offsets_do_not_push_the_corrected_share_below_zero():
    # Each image has its own offset direction but no position effect: the corrected share
    # stays at 0 (a one-way correction, counting image offsets as noise, gave 0.026 here).
    rng = np.random.default_rng(8)
    acc = PositionAccumulator(16, (6, 8))
    for _ in range(30):
        acc.update(rng.normal(size=(16, 6, 8)) + 2.0 * rng.normal(size=16)[:, None, None])
    assert abs(acc.result().share_adjusted) < 0.01


@pytest.mark.parametrize("grid", [(6, 9), (4, 5), (12, 18), (12, 11), (7, 18)])
def test_resize_map_in_float32_agrees_with_float64(grid):
    from dinoreport.analysis import resize_map

    fm = np.random.default_rng(9).normal(size=(5, 12, 18)).astype(np.float32)
    np.testing.assert_allclose(resize_map(fm, grid, dtype=np.float32), resize_map(fm, grid), rtol=1e-5, atol=1e-5)

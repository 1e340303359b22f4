import numpy as np
import pytest
from sklearn.decomposition import PCA

from dinoreport.analysis import (CovarianceAccumulator, PCAFit, joint_rgb, joint_scale, pixels,
                                project)

C, H, W, SIDE = 32, 12, 12, 6


def _planted_group(seed=0):
    """6 maps: a foreground square whose features move along d_part, on a background
    that varies strongly along d_bg. Returns maps, masks, d_part, d_bg."""
    rng = np.random.default_rng(seed)
    q = np.linalg.qr(rng.normal(size=(C, C)))[0]
    d_part, d_bg, d_off = q[:, 0], q[:, 1], q[:, 2]
    a = 2.0 * d_off  # foreground offset, orthogonal to both
    maps, masks = [], []
    for i, (y0, x0) in enumerate([(0, 0), (3, 5), (6, 6), (2, 1), (5, 0), (1, 6)]):
        s = rng.normal(size=(H, W)) * 5.0  # large background variance
        f = s[None] * d_bg[:, None, None] + 0.05 * rng.normal(size=(C, H, W))
        m = np.zeros((H, W), bool)
        m[y0:y0 + SIDE, x0:x0 + SIDE] = True
        t = np.linspace(-1.0, 1.0, SIDE)[None, :] + 0 * np.arange(SIDE)[:, None]
        fg = a[:, None, None] + t[None] * d_part[:, None, None]
        f[:, m] = fg.reshape(C, -1) + 0.05 * rng.normal(size=(C, SIDE * SIDE))
        maps.append(f.astype(np.float32))
        masks.append(m)
    return maps, masks, d_part, d_bg


def test_masked_pc1_finds_part_direction_naive_does_not():
    maps, masks, d_part, d_bg = _planted_group()
    masked, naive = CovarianceAccumulator(C), CovarianceAccumulator(C)
    for f, m in zip(maps, masks):
        masked.update(pixels(f, m))
        naive.update(pixels(f))
    fm, fn = masked.fit(3), naive.fit(3)
    assert abs(fm.components[0] @ d_part) > 0.95
    assert abs(fn.components[0] @ d_part) < 0.5
    assert abs(fn.components[0] @ d_bg) > 0.9
    assert fm.n_pixels == 6 * SIDE * SIDE and fn.n_pixels == 6 * H * W


def test_accumulator_matches_np_cov_and_sklearn():
    rng = np.random.default_rng(1)
    x = (rng.normal(size=(500, 8)) @ rng.normal(size=(8, 8)) + 1e4).astype(np.float64)
    acc = CovarianceAccumulator(8)
    for part in np.array_split(x, 7):
        acc.update(part)
    acc.update(np.zeros((0, 8)))
    assert acc.n == 500
    np.testing.assert_allclose(acc.covariance(), np.cov(x, rowvar=False), rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(acc.mean(), x.mean(axis=0), rtol=1e-12)
    fit = acc.fit(3)
    sk = PCA(3, svd_solver="full").fit(x)
    assert isinstance(fit, PCAFit)
    np.testing.assert_allclose(fit.explained_variance_ratio, sk.explained_variance_ratio_, rtol=1e-8)
    np.testing.assert_allclose(np.abs(np.sum(fit.components * sk.components_, axis=1)), 1, atol=1e-8)
    for row in fit.components:
        assert row[np.argmax(np.abs(row))] > 0


def test_chunk_order_invariance():
    rng = np.random.default_rng(2)
    parts = [rng.normal(size=(n, 5)) * [5, 3, 2, 1, 0.5] for n in (10, 200, 3, 50)]
    a, b = CovarianceAccumulator(5), CovarianceAccumulator(5)
    for p in parts:
        a.update(p)
    for p in parts[::-1]:
        b.update(p)
    fa, fb = a.fit(), b.fit()
    np.testing.assert_allclose(fa.components, fb.components, atol=1e-10)
    np.testing.assert_allclose(fa.mean, fb.mean, atol=1e-12)
    np.testing.assert_allclose(fa.explained_variance_ratio, fb.explained_variance_ratio, rtol=1e-10)


def test_rank_deficient_and_single_row():
    acc = CovarianceAccumulator(3)
    acc.update(np.array([[1.0, 2.0, 3.0]], np.float32))
    fit = acc.fit(2)
    assert np.all(fit.components == 0) and np.all(fit.explained_variance_ratio == 0)
    acc.update(np.array([[2.0, 2.0, 3.0]], np.float32))
    fit = acc.fit(2)
    np.testing.assert_allclose(fit.components, [[1, 0, 0], [0, 0, 0]])
    np.testing.assert_allclose(fit.explained_variance_ratio, [1, 0])


def test_accumulator_errors():
    with pytest.raises(ValueError, match="dim must be an integer >= 1, got 0"):
        CovarianceAccumulator(0)
    acc = CovarianceAccumulator(4)
    with pytest.raises(ValueError, match=r"x must be \(N, 4\), got shape \(3, 5\)"):
        acc.update(np.zeros((3, 5)))
    with pytest.raises(ValueError, match="got 1 non-finite values"):
        acc.update(np.array([[0, 0, 0, np.nan]]))
    assert acc.n == 0
    with pytest.raises(ValueError, match="cannot fit PCA on 0 rows"):
        acc.fit()
    acc.update(np.ones((1, 4)))
    with pytest.raises(ValueError, match="ddof=1 needs more than 1 rows, got 1"):
        acc.covariance()
    with pytest.raises(ValueError, match="k must be an integer >= 1, got 0"):
        acc.fit(0)


def test_pixels_and_project():
    f = np.arange(2 * 3 * 4, dtype=np.float64).reshape(2, 3, 4)
    rows = pixels(f)
    assert rows.shape == (12, 2) and rows.dtype == np.float32
    np.testing.assert_array_equal(rows[5], f[:, 1, 1])
    m = np.zeros((3, 4), bool)
    m[2, 3] = m[0, 1] = True
    np.testing.assert_array_equal(pixels(f, m), [f[:, 0, 1], f[:, 2, 3]])
    fit = PCAFit(mean=np.array([1.0, 0.0]), components=np.array([[1.0, 0.0]]),
                 explained_variance_ratio=np.array([1.0]), n_pixels=12)
    p = project(fit, f)
    assert p.shape == (1, 3, 4) and p.dtype == np.float32
    np.testing.assert_array_equal(p[0], f[0] - 1)
    with pytest.raises(ValueError, match=r"mask must have shape \(3, 4\) to match the map, got \(4, 3\)"):
        pixels(f, np.zeros((4, 3), bool))
    with pytest.raises(ValueError, match="mask must be bool, got dtype int64"):
        pixels(f, np.zeros((3, 4), np.int64))
    with pytest.raises(ValueError, match="fmap has 3 channels but the fit has 2"):
        project(fit, np.zeros((3, 2, 2)))


def test_project_on_planted_group_separates_parts():
    maps, masks, d_part, _ = _planted_group()
    acc = CovarianceAccumulator(C)
    for f, m in zip(maps, masks):
        acc.update(pixels(f, m))
    fit = acc.fit(3)
    p = project(fit, maps[0])[0][masks[0]].reshape(SIDE, SIDE)
    # projection tracks t: monotone along the square's columns
    col = p.mean(axis=0)
    assert np.all(np.diff(col) > 0) or np.all(np.diff(col) < 0)


def test_joint_rgb_shares_range():
    a = np.zeros((3, 2, 2))
    b = np.zeros((3, 2, 2))
    a[0] = [[0, 1], [2, 3]]
    b[0] = [[4, 5], [6, 8]]
    b[2] = 1.0  # channel 2: zeros in a, ones in b
    ra, rb = joint_rgb([a, b])
    assert ra.shape == (2, 2, 3) and ra.dtype == np.float32
    np.testing.assert_allclose(ra[..., 0], [[0, 1 / 8], [2 / 8, 3 / 8]], rtol=1e-6)
    np.testing.assert_allclose(rb[..., 0], [[4 / 8, 5 / 8], [6 / 8, 1]], rtol=1e-6)
    np.testing.assert_array_equal(ra[..., 1], 0.5)  # constant over the group
    np.testing.assert_array_equal(ra[..., 2], 0.0)
    np.testing.assert_array_equal(rb[..., 2], 1.0)


def test_joint_rgb_masks_background_nan_and_clipped():
    a = np.zeros((3, 2, 2))
    a[0] = [[0, 1], [2, 100]]
    m = np.array([[True, True], [True, False]])
    (r,) = joint_rgb([a], [m])
    assert np.all(np.isnan(r[1, 1]))
    np.testing.assert_allclose(r[..., 0][m], [0, 0.5, 1])
    (r,) = joint_rgb([a], [np.zeros((2, 2), bool)])
    assert np.all(np.isnan(r))


def test_joint_rgb_errors():
    with pytest.raises(ValueError, match=r"projs\[1\] must be \(k >= 3, H, W\), got shape \(2, 2, 2\)"):
        joint_rgb([np.zeros((3, 2, 2)), np.zeros((2, 2, 2))])
    with pytest.raises(ValueError, match="got 1 projs but 2 masks"):
        joint_rgb([np.zeros((3, 2, 2))], [np.ones((2, 2), bool)] * 2)
    with pytest.raises(ValueError, match="at least one map, got 0"):
        joint_rgb([])
    with pytest.raises(ValueError, match=r"projs\[0\] must be finite, got 3 non-finite"):
        joint_rgb([np.full((3, 1, 1), np.nan)])


def test_joint_scale():
    a = np.array([[1.0, -3.0]])
    b = np.array([[2.0, 0.5]])
    assert joint_scale([a, b]) == 3.0
    assert joint_scale([a, b], [np.array([[True, False]]), np.array([[True, True]])]) == 2.0
    assert joint_scale([np.zeros((2, 2))]) == 1.0
    assert joint_scale([a], [np.zeros((1, 2), bool)]) == 1.0
    with pytest.raises(ValueError, match=r"projs\[0\] must be \(H, W\), got shape \(1, 1, 2\)"):
        joint_scale([a[None]])

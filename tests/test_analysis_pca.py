import numpy as np
import pytest
from sklearn.decomposition import PCA

from dinoreport.analysis import PCAResult, check_fmap, minmax, pca_within, to_rgb


def _planted(c=16, h=10, w=12, seed=0):
    """Map whose pixels vary mostly along e0 (scale 5), then e1 (scale 2), then noise."""
    rng = np.random.default_rng(seed)
    basis = np.linalg.qr(rng.normal(size=(c, c)))[0]
    n = h * w
    coef = np.stack([5 * rng.normal(size=n), 2 * rng.normal(size=n),
                     0.5 * rng.normal(size=n)], axis=1)
    x = coef @ basis[:, :3].T + 0.01 * rng.normal(size=(n, c)) + 3.0
    return x.T.reshape(c, h, w).astype(np.float32), basis


def test_check_fmap_shape_message():
    with pytest.raises(ValueError, match=r"fmap must be \(C, H, W\), got shape \(1, 384, 28, 28\)"):
        check_fmap(np.zeros((1, 384, 28, 28)))


def test_check_fmap_empty_and_nonfinite():
    with pytest.raises(ValueError, match=r"C >= 1 and H \* W >= 1, got shape \(0, 2, 2\)"):
        check_fmap(np.zeros((0, 2, 2)))
    x = np.zeros((2, 3, 3))
    x[0, 0, 0] = np.nan
    x[1, 1, 1] = np.inf
    with pytest.raises(ValueError, match="got 2 non-finite values of 18"):
        check_fmap(x)
    with pytest.raises(ValueError, match="real-valued, got dtype complex128"):
        check_fmap(np.zeros((1, 2, 2), complex))


def test_check_fmap_returns_float32():
    out = check_fmap(np.ones((2, 3, 4), dtype=np.float64))
    assert out.dtype == np.float32 and out.shape == (2, 3, 4)


@pytest.mark.parametrize("shape", [(16, 10, 12), (64, 4, 5)])  # eigh path, SVD path
def test_pca_matches_sklearn_up_to_sign(shape):
    fm, _ = _planted(*shape)
    res = pca_within(fm, k=3)
    x = fm.reshape(shape[0], -1).T.astype(np.float64)
    sk = PCA(3, svd_solver="full").fit(x)
    assert isinstance(res, PCAResult)
    np.testing.assert_allclose(res.explained_variance_ratio, sk.explained_variance_ratio_, rtol=1e-6)
    np.testing.assert_allclose(np.abs(np.sum(res.components * sk.components_, axis=1)), 1.0,
                               atol=1e-6)
    np.testing.assert_allclose(res.mean, sk.mean_, rtol=1e-6)
    skproj = sk.transform(x).T.reshape(3, shape[1], shape[2])
    signs = np.sign(np.sum(res.components * sk.components_, axis=1))
    np.testing.assert_allclose(res.proj, skproj * signs[:, None, None], atol=1e-3, rtol=1e-4)


def test_pca_dtypes_shapes_and_sign_rule():
    fm, basis = _planted()
    res = pca_within(fm, k=4)
    assert res.proj.shape == (4, 10, 12) and res.proj.dtype == np.float32
    assert res.components.shape == (4, 16) and res.components.dtype == np.float64
    assert res.explained_variance_ratio.dtype == np.float64
    np.testing.assert_allclose(np.linalg.norm(res.components, axis=1), 1.0)
    for row in res.components:
        assert row[np.argmax(np.abs(row))] > 0
    # planted PC1 is basis[:, 0] (up to sign)
    assert abs(res.components[0] @ basis[:, 0]) > 0.999


def test_pca_sign_is_deterministic_under_negation_of_data():
    fm, _ = _planted()
    a = pca_within(fm)
    b = pca_within(-fm)
    np.testing.assert_allclose(a.components, b.components, atol=1e-8)


def test_pca_rank_deficient_gives_zero_components():
    # rank 1: every pixel is mean + t * v
    v = np.array([0.0, 3.0, 4.0]) / 5.0
    t = np.linspace(-1, 1, 20)
    fm = (np.outer(t, v) + 1.0).T.reshape(3, 4, 5).astype(np.float32)
    res = pca_within(fm, k=3)
    np.testing.assert_allclose(res.components[0], v, atol=1e-6)
    np.testing.assert_allclose(res.explained_variance_ratio, [1.0, 0.0, 0.0], atol=1e-9)
    assert np.all(res.components[1:] == 0) and np.all(res.proj[1:] == 0)


def test_pca_constant_map_and_k_beyond_dims():
    res = pca_within(np.full((4, 3, 3), 7.0, np.float32), k=6)
    assert np.all(res.components == 0) and np.all(res.explained_variance_ratio == 0)
    assert np.all(res.proj == 0) and res.proj.shape == (6, 3, 3)
    np.testing.assert_allclose(res.mean, 7.0)


@pytest.mark.parametrize("k", [0, -1, 1.5, True])
def test_pca_bad_k(k):
    with pytest.raises(ValueError, match=r"k must be an integer >= 1, got"):
        pca_within(np.ones((2, 2, 2)), k=k)


def test_minmax_per_channel_and_constant():
    x = np.stack([np.arange(6.0).reshape(2, 3), np.full((2, 3), 4.0)])
    out = minmax(x)
    assert out.dtype == np.float32
    np.testing.assert_allclose(out[0], np.arange(6.0).reshape(2, 3) / 5)
    np.testing.assert_array_equal(out[1], 0.5)


def test_minmax_global_and_nan():
    x = np.array([[1.0, 3.0], [np.nan, 2.0]])
    out = minmax(x, axis_channels=False)
    np.testing.assert_allclose(out, [[0.0, 1.0], [np.nan, 0.5]])
    allnan = minmax(np.full((1, 2, 2), np.nan))
    assert np.all(np.isnan(allnan))


def test_minmax_errors():
    with pytest.raises(ValueError, match=r"needs \(k, H, W\), got shape \(2, 2\)"):
        minmax(np.zeros((2, 2)))
    with pytest.raises(ValueError, match="got 1 infinite values"):
        minmax(np.array([[[0.0, np.inf]]]))
    with pytest.raises(ValueError, match=r"non-empty array, got shape \(0,\)"):
        minmax(np.zeros(0), axis_channels=False)


def test_to_rgb():
    proj = np.stack([np.arange(4.0).reshape(2, 2), -np.arange(4.0).reshape(2, 2),
                     np.zeros((2, 2)), np.ones((2, 2))]).astype(np.float32)
    rgb = to_rgb(proj)
    assert rgb.shape == (2, 2, 3) and rgb.dtype == np.float32
    np.testing.assert_allclose(rgb[..., 0], [[0, 1 / 3], [2 / 3, 1]], rtol=1e-6)
    np.testing.assert_allclose(rgb[..., 1], [[1, 2 / 3], [1 / 3, 0]], rtol=1e-6)
    np.testing.assert_array_equal(rgb[..., 2], 0.5)
    with pytest.raises(ValueError, match=r"proj must be \(k >= 3, H, W\), got shape \(2, 2, 2\)"):
        to_rgb(np.zeros((2, 2, 2)))

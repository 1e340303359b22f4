import numpy as np
import pytest

from dinoreport.analysis import linear_cka, resize_map


def _xy(n=40, d1=6, d2=9, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, d1))
    y = np.tanh(x @ rng.normal(size=(d1, d2))) + 0.3 * rng.normal(size=(n, d2))
    return x, y


def _hsic_reference(x, y):
    n = x.shape[0]
    h = np.eye(n) - np.ones((n, n)) / n
    k, l = x @ x.T, y @ y.T
    hsic = lambda a, b: np.trace(a @ h @ b @ h)  # noqa: E731
    return hsic(k, l) / np.sqrt(hsic(k, k) * hsic(l, l))


@pytest.mark.parametrize("n", [5, 40, 400])  # Gram and feature-space branches
def test_equals_hsic_formula(n):
    x, y = _xy(n=n)
    assert linear_cka(x, y) == pytest.approx(_hsic_reference(x, y), rel=1e-9)


def test_self_and_symmetry():
    x, y = _xy()
    assert linear_cka(x, x) == pytest.approx(1.0, rel=1e-12)
    assert linear_cka(x, y) == pytest.approx(linear_cka(y, x), rel=1e-12)
    assert 0.0 < linear_cka(x, y) < 1.0


def test_invariances():
    x, y = _xy()
    rng = np.random.default_rng(5)
    q = np.linalg.qr(rng.normal(size=(9, 9)))[0]
    base = linear_cka(x, y)
    assert linear_cka(x, y @ q) == pytest.approx(base, rel=1e-9)
    assert linear_cka(3.5 * x, y) == pytest.approx(base, rel=1e-9)
    assert linear_cka(x + 100.0, y - 7.0) == pytest.approx(base, rel=1e-9)


def test_unrelated_is_small():
    rng = np.random.default_rng(1)
    assert linear_cka(rng.normal(size=(2000, 4)), rng.normal(size=(2000, 4))) < 0.02


def test_constant_input_gives_zero():
    x, _ = _xy()
    assert linear_cka(x, np.ones((40, 3))) == 0.0
    assert linear_cka(np.zeros((40, 2)), np.zeros((40, 2))) == 0.0


def test_cka_errors():
    with pytest.raises(ValueError, match="same N, got 3 and 4"):
        linear_cka(np.zeros((3, 2)), np.zeros((4, 2)))
    with pytest.raises(ValueError, match=r"x must be \(N, D\) with N, D >= 1, got shape \(3,\)"):
        linear_cka(np.zeros(3), np.zeros((3, 2)))
    with pytest.raises(ValueError, match="y must be finite, got 1 non-finite values"):
        linear_cka(np.zeros((2, 2)), np.array([[0.0], [np.inf]]))


def test_resize_area_average():
    f = np.arange(2 * 4 * 6, dtype=np.float32).reshape(2, 4, 6)
    out = resize_map(f, (2, 3))
    assert out.shape == (2, 2, 3) and out.dtype == np.float32
    np.testing.assert_allclose(out[0, 0, 0], f[0, :2, :2].mean())
    np.testing.assert_allclose(out[1, 1, 2], f[1, 2:, 4:].mean())


def test_resize_bilinear_on_linear_ramp():
    # a linear ramp is reproduced exactly away from the clamped borders
    yy, xx = np.mgrid[0:8, 0:8].astype(np.float32)
    f = (2 * yy + xx)[None]
    out = resize_map(f, (5, 12))
    assert out.shape == (1, 5, 12)
    ys = np.clip((np.arange(5) + 0.5) * 8 / 5 - 0.5, 0, 7)
    xs = np.clip((np.arange(12) + 0.5) * 8 / 12 - 0.5, 0, 7)
    np.testing.assert_allclose(out[0], 2 * ys[:, None] + xs[None, :], rtol=1e-6)


def test_resize_identity_and_errors():
    f = np.ones((1, 3, 3), np.float32)
    out = resize_map(f, (3, 3))
    np.testing.assert_array_equal(out, f)
    assert out is not f
    with pytest.raises(ValueError, match=r"shape must be two positive ints, got \(3,\)"):
        resize_map(f, (3,))
    with pytest.raises(ValueError, match=r"fmap must be \(C, H, W\), got shape \(3, 3\)"):
        resize_map(np.ones((3, 3)), (2, 2))


def test_streamed_equals_pooled_with_offsets_and_any_chunking():
    # Three feature sets of the same 600 positions: b is a rotated, rescaled copy of a plus
    # noise (high CKA), c is unrelated (low); a large common offset must not cancel the sums.
    from dinoreport.analysis import CkaAccumulator

    rng = np.random.default_rng(5)
    a = rng.normal(size=(600, 40)) + 1e3
    q, _ = np.linalg.qr(rng.normal(size=(40, 40)))
    b = 3.0 * a @ q + 0.3 * rng.normal(size=(600, 40)) - 500.0
    c = rng.normal(size=(600, 25))
    pairs = [("a", "b"), ("a", "c"), ("b", "c")]
    want = {p: linear_cka({"a": a, "b": b, "c": c}[p[0]], {"a": a, "b": b, "c": c}[p[1]]) for p in pairs}
    assert want[("a", "b")] > 0.9 and want[("a", "c")] < 0.2
    for cuts in ([600], [1, 599], [100, 250, 250], [37] * 16 + [8]):
        acc = CkaAccumulator(pairs)
        start = 0
        for n in cuts:
            sl = slice(start, start + n)
            acc.update({"a": a[sl], "b": b[sl], "c": c[sl]})
            start += n
        assert acc.n == 600
        for p in pairs:
            assert acc.value(*p) == pytest.approx(want[p], abs=1e-9)
        assert acc.value("b", "a") == acc.value("a", "b")


def test_streamed_errors():
    from dinoreport.analysis import CkaAccumulator

    acc = CkaAccumulator([("a", "b")])
    with pytest.raises(ValueError, match="no rows"):
        acc.value("a", "b")
    with pytest.raises(ValueError, match="lacks"):
        acc.update({"a": np.ones((3, 2))})
    with pytest.raises(ValueError, match="same rows"):
        acc.update({"a": np.ones((3, 2)), "b": np.ones((4, 2))})
    with pytest.raises(KeyError):
        acc.value("a", "c")

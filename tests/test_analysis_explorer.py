import numpy as np
import pytest

from dinoreport.analysis import cosine_map, explorer_codes


def _full_cosine(f, y, x, g=None):
    g = f if g is None else g
    a = f[:, y, x].astype(np.float64)
    b = g.reshape(g.shape[0], -1).astype(np.float64)
    cos = (a @ b) / (np.linalg.norm(a) * np.linalg.norm(b, axis=0))
    return cos.reshape(g.shape[1:])


def _rank64_maps(seed=0, c=128):
    rng = np.random.default_rng(seed)
    basis = rng.normal(size=(c, 64))
    return [(basis @ rng.normal(size=(64, h * w))).reshape(c, h, w).astype(np.float32)
            for h, w in ((9, 7), (6, 10))]


def test_codes_preserve_cosines_when_rank_fits():
    maps = _rank64_maps()
    codes = explorer_codes(maps, dims=64)
    assert [c.shape for c in codes] == [(9, 7, 64), (6, 10, 64)]
    assert all(c.dtype == np.float16 for c in codes)
    for y, x in ((0, 0), (4, 3), (8, 6)):
        np.testing.assert_allclose(cosine_map(codes[0], y, x), _full_cosine(maps[0], y, x), atol=2e-3)
        np.testing.assert_allclose(cosine_map(codes[0], y, x, codes[1]),
                                   _full_cosine(maps[0], y, x, maps[1]), atol=2e-3)


def test_probe_is_its_own_maximum():
    codes = explorer_codes(_rank64_maps(1), dims=16)  # lossy codes still give self-similarity 1
    m = cosine_map(codes[1], 2, 5)
    assert m.dtype == np.float32 and m.shape == (6, 10)
    assert m[2, 5] == pytest.approx(1.0, abs=1e-6)
    assert m.max() == m[2, 5]


def test_dims_capped_and_deterministic():
    rng = np.random.default_rng(0)
    f = rng.normal(size=(5, 3, 3)).astype(np.float32)
    a = explorer_codes([f], dims=64)
    assert a[0].shape == (3, 3, 5)
    np.testing.assert_array_equal(a[0], explorer_codes([f], dims=64)[0])


def test_zero_feature_is_zero_similarity():
    f = np.ones((3, 2, 2), np.float32)
    f[:, 0, 1] = 0
    (codes,) = explorer_codes([f], dims=3)
    m = cosine_map(codes, 0, 0)
    assert m[0, 1] == 0.0 and m[1, 1] == pytest.approx(1.0, abs=1e-3)
    assert np.all(cosine_map(codes, 0, 1) == 0.0)


def test_explorer_errors():
    with pytest.raises(ValueError, match="dims must be an integer >= 1, got 0"):
        explorer_codes([np.ones((2, 2, 2))], dims=0)
    with pytest.raises(ValueError, match="at least one map, got 0"):
        explorer_codes([])
    with pytest.raises(ValueError, match=r"fmaps\[1\] has 3 channels, fmaps\[0\] has 2"):
        explorer_codes([np.ones((2, 2, 2)), np.ones((3, 2, 2))])
    with pytest.raises(ValueError, match=r"fmaps\[0\] must be \(C, H, W\), got shape \(2, 2\)"):
        explorer_codes([np.ones((2, 2))])
    codes = np.ones((3, 4, 2), np.float16)
    with pytest.raises(ValueError, match=r"y must be an integer in \[0, 3\), got 3"):
        cosine_map(codes, 3, 0)
    with pytest.raises(ValueError, match=r"x must be an integer in \[0, 4\), got -1"):
        cosine_map(codes, 0, -1)
    with pytest.raises(ValueError, match=r"other must be \(H2, W2, 2\), got shape \(3, 4, 5\)"):
        cosine_map(codes, 0, 0, np.ones((3, 4, 5)))
    with pytest.raises(ValueError, match=r"codes must be \(H, W, d\), got shape \(3, 4\)"):
        cosine_map(np.ones((3, 4)), 0, 0)


def test_int8_codes_keep_cosines_within_quantisation_error():
    from dinoreport.analysis import cosine_error, explorer_int8
    maps = _rank64_maps()
    q = explorer_int8(maps, dims=64)
    assert all(c.dtype == np.int8 and c.shape[2] == 64 for c in q)
    mx, mean = cosine_error(maps, q, pairs=3000)
    assert mx < 0.03 and mean < 0.005  # rank fits: only the int8 rounding is left
    # too few dims for the rank: the error is measured, and it is large
    mx8, mean8 = cosine_error(maps, explorer_int8(maps, dims=8), pairs=3000)
    assert mean8 > 10 * mean


def test_cosine_error_of_exact_codes_is_zero():
    from dinoreport.analysis import cosine_error
    maps = _rank64_maps()
    codes = [np.moveaxis(f, 0, -1) for f in maps]
    mx, mean = cosine_error(maps, codes)
    assert mx < 1e-6 and mean < 1e-7


def test_stage_dims_fit_the_budget():
    from dinoreport.analysis import stage_dims
    positions, channels = [16800, 4200, 1050, 263], [96, 192, 384, 768]
    budget = 1_500_000
    d = stage_dims(positions, channels, 64, budget)
    size = lambda d: sum(-(-p * k // 3) * 4 for p, k in zip(positions, d))  # base64 bytes
    # the finest stage is cut to what the others leave; one more dimension would not fit
    assert d[1:] == [64, 64, 64] and 1 <= d[0] < 64
    assert size(d) <= budget < size([d[0] + 1] + d[1:])
    # when even the finest at one dimension leaves too little, the smaller stages are cut too
    d2 = stage_dims([300_000, 100_000], [96, 768], 64, 1_500_000)
    assert d2[0] == 1 and 1 <= d2[1] < 64
    assert sum(-(-p * k // 3) * 4 for p, k in zip([300_000, 100_000], d2)) <= 1_500_000
    assert stage_dims([10, 10], [4, 100], 64, budget) == [4, 64]  # capped by channels
    with pytest.raises(ValueError, match="do not fit"):
        stage_dims([10_000], [8], 8, 1000)


def test_cosine_error_is_the_error_over_the_drawn_pairs():
    # The sampled-rows shortcut must equal the definition: exact unit cosines of all positions,
    # the same seeded draw of pairs, code cosines of the same pairs (a zero map included).
    from dinoreport.analysis.explorer import _unit_pixels, cosine_error, explorer_int8

    rng = np.random.default_rng(1)
    fms = [rng.normal(size=(24, 9, 11)).astype(np.float32) for _ in range(3)] + [np.zeros((24, 2, 3), np.float32)]
    codes = explorer_int8(fms, 6)
    exact = np.concatenate([_unit_pixels(f) for f in fms])
    approx = np.concatenate([c.reshape(-1, 6).astype(np.float64) for c in codes])
    n = np.linalg.norm(approx, axis=1, keepdims=True)
    approx /= np.where(n > 0, n, 1.0)
    a, b = np.random.default_rng(4).integers(0, exact.shape[0], size=(2, 500))
    err = np.abs((exact[a] * exact[b]).sum(1) - (approx[a] * approx[b]).sum(1))
    assert cosine_error(fms, codes, pairs=500, seed=4) == (float(err.max()), float(err.mean()))

import numpy as np
import pytest
import scipy.stats

import dinoreport.analysis.stats as stats_mod
from dinoreport.analysis import FeatureStats, feature_stats, histogram, shared_bin_edges


def _dists():
    rng = np.random.default_rng(42)
    return {
        "normal": rng.normal(size=20000).astype(np.float32),
        "offset_1e4": (1e4 + rng.normal(size=20000)).astype(np.float64),
        "student_t2": rng.standard_t(2, size=20000).astype(np.float32),
        "lognormal": rng.lognormal(0, 1.5, size=20000),
        "cauchy": rng.standard_cauchy(size=20000),
        "integers": rng.integers(-5, 5, size=20000),
    }


def _chunker(x, n):
    parts = np.array_split(x, n)
    return lambda: iter(parts)


def _reference(x):
    x = np.asarray(x, dtype=np.float64)
    m, s = x.mean(), x.std()
    return dict(count=x.size, mean=m, std=s, min=x.min(), max=x.max(),
                p1=np.percentile(x, 1), p99=np.percentile(x, 99),
                skew=scipy.stats.skew(x, bias=True),
                kurtosis=scipy.stats.kurtosis(x, fisher=True, bias=True),
                outlier_fraction=np.mean(np.abs(x - m) > 6 * s))


@pytest.mark.parametrize("name", list(_dists()))
def test_matches_pooled_numpy_scipy(name):
    x = _dists()[name]
    got = feature_stats(_chunker(x, 7))
    ref = _reference(x)
    assert isinstance(got, FeatureStats)
    assert got.count == ref["count"]
    for f in ("mean", "std", "skew", "kurtosis"):
        assert getattr(got, f) == pytest.approx(ref[f], rel=1e-6, abs=1e-9), f
    # order statistics are exact
    for f in ("min", "max", "p1", "p99"):
        assert getattr(got, f) == ref[f], f
    assert got.outlier_fraction == ref["outlier_fraction"]


def test_heavy_tail_has_outliers():
    x = _dists()["cauchy"]
    assert feature_stats(_chunker(x, 3)).outlier_fraction > 0


def test_chunking_invariance():
    x = _dists()["student_t2"].reshape(20, 10, 100)
    one = feature_stats(lambda: iter([x]))
    many = feature_stats(_chunker(x.reshape(-1), 50))
    for f in ("count", "min", "max", "p1", "p99", "outlier_fraction"):
        assert getattr(one, f) == getattr(many, f), f
    for f in ("mean", "std", "skew", "kurtosis"):
        assert getattr(one, f) == pytest.approx(getattr(many, f), rel=1e-10), f


def test_refinement_when_bins_overflow(monkeypatch):
    # force the multi-level histogram path: tiny budget, and a spike of equal values
    monkeypatch.setattr(stats_mod, "_COLLECT_BUDGET", 50)
    rng = np.random.default_rng(3)
    x = np.concatenate([rng.standard_cauchy(5000), np.full(3000, 0.25), rng.normal(size=2000)])
    rng.shuffle(x)
    got = feature_stats(_chunker(x, 9))
    assert got.p1 == np.percentile(x, 1) and got.p99 == np.percentile(x, 99)
    spike = np.full(1000, 2.0)
    spike[:5] = -1.0
    got = feature_stats(_chunker(spike, 4))
    assert got.p1 == np.percentile(spike, 1) and got.p99 == 2.0


def test_float32_input_percentiles_close_to_float32_numpy():
    x = _dists()["normal"]
    got = feature_stats(_chunker(x, 5))
    np.testing.assert_allclose([got.p1, got.p99], np.percentile(x, [1, 99]), rtol=1e-6)


def test_constant_input_defined():
    got = feature_stats(lambda: iter([np.full((3, 4, 4), 0.1, np.float32), np.full(5, 0.1, np.float32)]))
    assert got.count == 53 and got.std == 0.0 and got.skew == 0.0 and got.kurtosis == 0.0
    assert got.outlier_fraction == 0.0
    assert got.mean == got.min == got.max == got.p1 == got.p99 == np.float32(0.1)


def test_single_value_and_empty_chunks():
    got = feature_stats(lambda: iter([np.zeros(0), np.array([3.0]), np.zeros((0, 2))]))
    assert got.count == 1 and got.p1 == 3.0 and got.std == 0.0


def test_no_data_raises():
    with pytest.raises(ValueError, match="got no data: chunks\\(\\) yielded 0 values"):
        feature_stats(lambda: iter([np.zeros(0)]))
    with pytest.raises(ValueError, match="got no data"):
        feature_stats(lambda: iter([]))


def test_nonfinite_raises_with_count():
    x = np.ones(10)
    x[[1, 4]] = np.nan
    x[7] = np.inf
    with pytest.raises(ValueError, match=r"got 3 non-finite values \(NaN/inf\) in a chunk of 10"):
        feature_stats(lambda: iter([np.ones(4), x]))
    with pytest.raises(ValueError, match="must be real numbers, got dtype complex128"):
        feature_stats(lambda: iter([np.ones(3, complex)]))


def test_changing_iterator_detected():
    calls = []

    def chunks():
        calls.append(1)
        return iter([np.arange(10.0 * len(calls))])
    with pytest.raises(RuntimeError, match="chunks\\(\\) changed between passes"):
        feature_stats(chunks)


def test_memory_does_not_hold_all_chunks():
    # a generator factory: values are produced on demand, never pooled by the caller
    def chunks():
        rng = np.random.default_rng(0)
        for _ in range(30):
            yield rng.normal(size=(4, 16, 16))
    got = feature_stats(chunks)
    pooled = np.concatenate([c.reshape(-1) for c in chunks()])
    assert got.p99 == np.percentile(pooled, 99)
    assert got.mean == pytest.approx(pooled.mean(), abs=1e-12)


def test_shared_bin_edges():
    e = shared_bin_edges(-1.0, 3.0, 4)
    assert e.dtype == np.float64
    np.testing.assert_array_equal(e, [-1, 0, 1, 2, 3])
    np.testing.assert_array_equal(shared_bin_edges(2.0, 2.0, 2), [1.5, 2.0, 2.5])
    assert shared_bin_edges(0, 1).shape == (101,)


def test_shared_bin_edges_errors():
    with pytest.raises(ValueError, match="lo must be <= hi, got lo=2.0, hi=1.0"):
        shared_bin_edges(2.0, 1.0)
    with pytest.raises(ValueError, match="must be finite, got lo=nan"):
        shared_bin_edges(float("nan"), 1.0)
    with pytest.raises(ValueError, match="nbins must be an integer >= 1, got 0"):
        shared_bin_edges(0.0, 1.0, 0)


@pytest.mark.parametrize("name", ["normal", "offset_1e4", "student_t2", "integers"])
def test_histogram_equals_numpy(name):
    x = _dists()[name]
    lo, hi = np.percentile(x, [1, 99])
    uneven = np.unique(np.quantile(x, np.linspace(0.01, 0.99, 20)))
    for edges in (shared_bin_edges(lo, hi, 37), uneven):
        got = histogram(_chunker(x, 11), edges)
        ref, _ = np.histogram(x, bins=edges)
        assert got.dtype == np.int64
        np.testing.assert_array_equal(got, ref)


def test_histogram_edge_values():
    edges = np.array([0.0, 1.0, 2.0])
    x = np.array([-0.1, 0.0, 0.5, 1.0, 2.0, 2.0001])
    got = histogram(lambda: iter([x]), edges)
    np.testing.assert_array_equal(got, [2, 2])  # outside values dropped, last edge counted


def test_histogram_errors():
    with pytest.raises(ValueError, match=r"edges must be 1-D with at least 2 entries, got shape \(1,\)"):
        histogram(lambda: iter([]), np.array([0.0]))
    with pytest.raises(ValueError, match="strictly increasing, got a step <= 0 at index 1"):
        histogram(lambda: iter([]), np.array([0.0, 1.0, 1.0]))
    with pytest.raises(ValueError, match=r"edges must be finite, got \[inf\]"):
        histogram(lambda: iter([]), np.array([0.0, np.inf]))
    with pytest.raises(ValueError, match="histogram got 1 non-finite values"):
        histogram(lambda: iter([np.array([np.nan, 1.0])]), np.array([0.0, 1.0]))


def test_histograms_in_one_walk_equal_numpy_per_edge_set():
    from dinoreport.analysis import histograms

    rng = np.random.default_rng(2)
    parts = [rng.normal(size=(3, 40, 50)).astype(np.float32) for _ in range(4)]
    pooled = np.concatenate([p.ravel() for p in parts]).astype(np.float64)
    walks = []

    def chunks():
        walks.append(1)
        return iter(parts)

    sets = [np.linspace(-5, 5, 101), np.linspace(-1, 1, 7), np.array([-3.0, -1.0, 0.0, 2.5])]
    got = histograms(chunks, sets)
    assert len(walks) == 1
    for e, h in zip(sets, got):
        assert h.tolist() == np.histogram(pooled[(pooled >= e[0]) & (pooled <= e[-1])], e)[0].tolist()

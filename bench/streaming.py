"""Benchmark the streaming accumulations a build runs over many C3-sized maps.

Usage: python bench/streaming.py [--n 100 1000] [--seed 0]

Each N runs in a fresh subprocess so that ru_maxrss (a high-water mark that
never goes down) describes that N alone. Maps are synthetic (C=384, H=W=56,
float32), generated one at a time from a seeded generator and never held
together, exactly as the pipeline streams cached features.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
import tracemalloc

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from dinoreport.analysis import (CovarianceAccumulator, feature_stats, histogram,  # noqa: E402
                                pixels, shared_bin_edges)

C, H, W = 384, 56, 56


def make_map(seed: int, i: int) -> np.ndarray:
    """One synthetic (C, H, W) float32 map: per-channel offset/scale, a few heavy-tailed channels."""
    rng = np.random.default_rng([seed, i])
    x = rng.standard_normal((C, H, W), dtype=np.float32)
    ch = np.random.default_rng([seed, 10**9])  # same channel profile for every map
    scale = ch.uniform(0.2, 3.0, C).astype(np.float32)
    offset = ch.normal(0.0, 2.0, C).astype(np.float32)
    x *= scale[:, None, None]
    x += offset[:, None, None]
    x[:8] = x[:8] ** 3  # heavy tails, like the massive activations of real backbones
    return x


def _stage(fn):
    tracemalloc.start()
    tracemalloc.reset_peak()
    t0 = time.perf_counter()
    out = fn()
    dt = time.perf_counter() - t0
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return out, dt, peak


def child(n: int, seed: int) -> dict:
    def chunks():
        return (make_map(seed, i) for i in range(n))

    def gen_only():
        for m in chunks():
            pass

    def cov():
        acc = CovarianceAccumulator(C)
        for m in chunks():
            acc.update(pixels(m))
        return acc.fit(3)

    res = {"n": n}
    _, res["gen_s"], res["gen_peak"] = _stage(gen_only)
    st, res["stats_s"], res["stats_peak"] = _stage(lambda: feature_stats(chunks))
    edges = shared_bin_edges(st.p1, st.p99, 100)
    _, res["hist_s"], res["hist_peak"] = _stage(lambda: histogram(chunks, edges))
    fit, res["cov_s"], res["cov_peak"] = _stage(cov)
    res["maxrss_kib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    res["p1"], res["p99"], res["pc1_ratio"] = st.p1, st.p99, float(fit.explained_variance_ratio[0])
    return res


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, nargs="+", default=[100, 1000])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--child", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child is not None:
        print(json.dumps(child(args.child, args.seed)))
        return
    rows = []
    for n in args.n:
        out = subprocess.run([sys.executable, os.path.abspath(__file__), "--child", str(n),
                              "--seed", str(args.seed)], check=True, capture_output=True, text=True)
        rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
    mb = 1 / 2**20
    print(f"maps: C={C} H={H} W={W} float32 ({C * H * W * 4 * mb:.1f} MiB each), seed {args.seed}")
    print("times in s (each stage regenerates its maps; 'gen' = generation alone, once through);"
          " peak = tracemalloc MiB")
    hdr = (f"{'N':>6} {'gen s':>7} {'stats s':>8} {'hist s':>7} {'cov s':>7} "
           f"{'stats pk':>9} {'hist pk':>8} {'cov pk':>7} {'maxrss MiB':>10}")
    print(hdr)
    print("-" * len(hdr))
    for r in rows:
        print(f"{r['n']:>6} {r['gen_s']:>7.1f} {r['stats_s']:>8.1f} {r['hist_s']:>7.1f} "
              f"{r['cov_s']:>7.1f} {r['stats_peak'] * mb:>9.1f} {r['hist_peak'] * mb:>8.1f} "
              f"{r['cov_peak'] * mb:>7.1f} {r['maxrss_kib'] / 1024:>10.1f}")


if __name__ == "__main__":
    main()

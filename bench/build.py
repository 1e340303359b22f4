"""Build benchmark: phase timings cold and warm, peak memory, throughput, bf16 drift.

    python bench/build.py [--config site_src/report.toml] [--images DIR] [--skip-bf16]

Prints, for the default report built with ``--random-init``:
- this machine's measured fp32 matmul peak (GFLOP/s, torch, all threads);
- cold build (empty cache), warm rebuild (nothing changed), narrative-only change, one image
  added: wall seconds, seconds per phase (from data/build.json), peak RSS of the build process;
- extraction throughput (model-image pairs per second) and achieved GFLOP/s (FLOPs counted by
  torch's FlopCounterMode at each image size) against the matmul peak;
- bf16 against fp32: extraction time and the largest drift in last-stage PC1 maps and in the
  feature statistics.

Every build runs as its own process, so peak RSS and timings are those a user sees.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]

_RUN = ("import resource, subprocess, sys; r = subprocess.run(sys.argv[1:]); "
        "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, file=sys.stderr); sys.exit(r.returncode)")


def run_build(config: Path, out: Path, env: dict, *extra: str) -> dict:
    """One build in a fresh process: wall seconds, peak RSS (MiB) and its build.json."""
    cmd = [sys.executable, "-c", _RUN, sys.executable, "-m", "generator.cli", "build", "--config", str(config),
           "--out", str(out), "--random-init", "--quiet", *extra]
    t = time.perf_counter()
    r = subprocess.run(cmd, capture_output=True, text=True, env=env)
    wall = time.perf_counter() - t
    if r.returncode != 0:
        raise SystemExit(f"build failed:\n{r.stderr}")
    rss_kib = int(r.stderr.strip().splitlines()[-1])
    info = json.loads((out / "data" / "build.json").read_text())
    return {"wall": wall, "rss_mib": rss_kib / 1024, "build": info}


def matmul_peak(n: int = 2048, repeat: int = 10) -> float:
    """Measured fp32 GEMM GFLOP/s with torch on all its threads (best of ``repeat``)."""
    import torch

    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b  # warm-up
    best = float("inf")
    for _ in range(repeat):
        t = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - t)
    return 2 * n**3 / best / 1e9


def extraction_flops(cfg, images: dict[str, np.ndarray], highres: dict[int, dict[str, np.ndarray]]) -> float:
    """FLOPs of the extract phase: every model over every image, plus the high-resolution
    gallery's featured images for its models (counted once per distinct shape)."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from generator.backbones import create_backbone

    total = 0.0
    hr_models = set(cfg.analysis.highres_models) or {m.id for m in cfg.models}
    for spec in cfg.models:
        shapes: dict[tuple, int] = {}
        sets = [images] + (list(highres.values()) if spec.id in hr_models else [])
        for rgb in (r for imgs in sets for r in imgs.values()):
            shapes[rgb.shape] = shapes.get(rgb.shape, 0) + 1
        bb = create_backbone(spec, None, seed=cfg.seed)
        for shape, count in sorted(shapes.items()):
            x = torch.zeros((1,) + shape, dtype=torch.uint8)
            with torch.inference_mode(), FlopCounterMode(display=False) as fc:
                bb.forward(bb.normalize(x))
            total += fc.get_total_flops() * count
    return total


def bf16_drift(cfg, images: dict[str, np.ndarray]) -> list[dict]:
    """Per model: fp32 and bf16 extraction seconds and the largest PC1 / statistics drift.

    PC1 drift: max |PC1_fp32 - PC1_bf16| over all cells and images, relative to max |PC1_fp32|.
    Statistics drift: mean, std, p1, p99 in units of the fp32 std; skew and kurtosis absolute.
    """
    import torch

    from generator.analysis import feature_stats, orient_by_border, pca_within
    from generator.backbones import create_backbone

    rows = []
    for spec in cfg.models:
        bb = create_backbone(spec, None, seed=cfg.seed)
        last = bb.stages[-1].name
        maps = {"fp32": {}, "bf16": {}}
        secs = {"fp32": 0.0, "bf16": 0.0}
        for dtype in ("fp32", "bf16"):
            for iid, rgb in sorted(images.items()):
                x = bb.normalize(torch.from_numpy(rgb.copy())[None])
                t = time.perf_counter()
                with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=dtype == "bf16"):
                    out = bb.forward(x)
                secs[dtype] += time.perf_counter() - t
                maps[dtype][iid] = out[last][0].float().numpy()
        pc1_drift = 0.0
        for iid in sorted(images):
            a, _ = orient_by_border(pca_within(maps["fp32"][iid]).proj[0])
            b, _ = orient_by_border(pca_within(maps["bf16"][iid]).proj[0])
            pc1_drift = max(pc1_drift, float(np.abs(a - b).max() / max(np.abs(a).max(), 1e-12)))
        sa = feature_stats(lambda m=maps["fp32"]: (m[i] for i in sorted(m)))
        sb = feature_stats(lambda m=maps["bf16"]: (m[i] for i in sorted(m)))
        # Location and scale in units of the fp32 std (a mean near zero makes relative drift
        # meaningless); skew and kurtosis are dimensionless already.
        stat_drift = {f: abs(getattr(sa, f) - getattr(sb, f)) / max(sa.std, 1e-12) for f in ("mean", "std", "p1", "p99")}
        stat_drift |= {f: abs(getattr(sa, f) - getattr(sb, f)) for f in ("skew", "kurtosis")}
        rows.append({"model": spec.id, "stage": last, "fp32_s": secs["fp32"], "bf16_s": secs["bf16"],
                     "pc1_max_rel": pc1_drift, "stats_max_rel": max(stat_drift.values()),
                     "stats_worst": max(stat_drift, key=stat_drift.get)})
    return rows


def phases(b: dict) -> str:
    s = b["build"]["seconds"]
    order = ["resolve", "decode", "load_models", "extract", "analyse_and_figures", "render"]
    return "  ".join(f"{k}={s.get(k, 0):.2f}" for k in order)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", type=Path, default=ROOT / "site_src" / "report.toml")
    ap.add_argument("--skip-bf16", action="store_true", help="Leave out the bf16 comparison.")
    args = ap.parse_args()
    sys.path.insert(0, str(ROOT))
    import torch

    from generator.config import load_config
    from generator.images import available, load_image
    from generator.pipeline import load_image_set

    work = Path(tempfile.mkdtemp(prefix="dinoreport-bench-"))
    try:
        # A copy of site_src with an absolute manifest path, so the narrative can be edited.
        src = work / "site_src"
        shutil.copytree(args.config.parent, src)
        cfg0 = load_config(args.config)
        text = (src / args.config.name).read_text()
        if cfg0.images.manifest is not None:
            text = text.replace('manifest = "../images/manifest.toml"', f'manifest = "{cfg0.images.manifest}"')
        config = src / args.config.name
        config.write_text(text)
        cfg = load_config(config)
        env = {**os.environ, "DINOREPORT_CACHE": str(work / "cache"), "HF_HUB_OFFLINE": "1"}

        peak = matmul_peak()
        print(f"machine: {os.cpu_count()} cores, torch {torch.__version__}, {torch.get_num_threads()} threads")
        print(f"fp32 matmul peak (2048^3, best of 10): {peak:.1f} GFLOP/s\n")

        cold = run_build(config, work / "site", env)
        warm = run_build(config, work / "site", env)
        md = sorted(src.glob("*.md"))[0]
        md.write_text(md.read_text() + "\n\nOne more sentence for the benchmark.\n")
        prose = run_build(config, work / "site", env)

        iset = load_image_set(cfg)
        images = {e.id: load_image(e, cfg.resolution) for e in iset.entries if available(e)}
        n_pairs = len(images) * len(cfg.models)
        featured = [i for i in cfg.images.featured if i in images] or sorted(images)[:2]
        entries = {e.id: e for e in iset.entries}
        highres = {r: {i: load_image(entries[i], r) for i in featured}
                   for r in sorted(set(cfg.analysis.highres) - {cfg.resolution})}
        flops = extraction_flops(cfg, images, highres)

        # One image added: a folder build, then the same folder plus one image.
        folder = work / "photos"
        folder.mkdir()
        from PIL import Image

        ids = sorted(images)
        for iid in ids[:-1]:
            Image.fromarray(images[iid]).save(folder / f"{iid}.png")
        # A cache of its own, so the added image was never seen before.
        env_dir = {**env, "DINOREPORT_CACHE": str(work / "cache_dir")}
        run_build(config, work / "site_dir", env_dir, "--images", str(folder))
        Image.fromarray(images[ids[-1]]).save(folder / f"{ids[-1]}.png")
        added = run_build(config, work / "site_dir", env_dir, "--images", str(folder))

        print(f"{'build':<26}{'wall s':>8}{'peak RSS MiB':>14}  phases (s)")
        for name, b in (("cold (empty cache)", cold), ("warm (nothing changed)", warm),
                        ("narrative-only change", prose), ("one image added", added)):
            print(f"{name:<26}{b['wall']:>8.1f}{b['rss_mib']:>14.0f}  {phases(b)}")
        c = added["build"]["cache"]
        print(f"\none image added: features computed for {c['computed']} model×image pairs "
              f"({len(cfg.models)} models), reused {c['reused']}")
        ext = cold["build"]["seconds"]["extract"]
        print(f"\nextraction (cold): {n_pairs} model×image pairs in {ext:.1f} s = {n_pairs / ext:.2f} pairs/s, "
              f"{len(images) / ext:.2f} images/s through all {len(cfg.models)} models")
        print(f"extraction FLOPs {flops / 1e9:.0f} GFLOP -> {flops / ext / 1e9:.1f} GFLOP/s = "
              f"{100 * flops / ext / 1e9 / peak:.0f}% of the measured fp32 matmul peak "
              f"(extract phase includes the high-resolution gallery and cache writes)")
        if not args.skip_bf16:
            print("\nbf16 (autocast) vs fp32, last stage, in-process, all images:")
            print(f"{'model':<24}{'stage':>6}{'fp32 s':>8}{'bf16 s':>8}{'speedup':>9}{'PC1 max rel':>13}"
                  f"{'stats max drift':>17}")
            for r in bf16_drift(cfg, images):
                print(f"{r['model']:<24}{r['stage']:>6}{r['fp32_s']:>8.2f}{r['bf16_s']:>8.2f}"
                      f"{r['fp32_s'] / r['bf16_s']:>8.2f}x{r['pc1_max_rel']:>13.3g}"
                      f"{r['stats_max_rel']:>11.3g} ({r['stats_worst']})")
            bf = run_build(config, work / "site_bf16", env, "--dtype", "bf16")
            print(f"\nbuild with --dtype bf16 (features recomputed, same cache): wall {bf['wall']:.1f} s, "
                  f"extract {bf['build']['seconds']['extract']:.1f} s vs fp32 {ext:.1f} s")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()

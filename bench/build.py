"""Build benchmark: our cold build side by side with the peer, warm rebuild, peak memory, scaling.

    python bench/build.py [--config site_src/report.toml] [--images DIR] [--peer SCRIPT]
                          [--device cpu|cuda] [--gpu-table] [--floor] [--more] [--skip-bf16]
                          [--scaling 25,100,400] [--scaling-only]

Side by side, in one run and back to back (the machine is shared, so only numbers from the
same run compare): our cold build (empty cache) of the report on the photos of ``--images``
(default ``../shared/images``, the 18 photos the peer uses) and the peer,
``../shared/bench/naive_baseline.py`` (a notebook-style script: features in memory, sklearn
PCA, one matplotlib savefig per figure, no cache) on the same folder. Prints wall seconds of
both and their ratio, our warm no-change rebuild, peak RSS of each process and our seconds
per phase (from data/build.json).

Beside the full report, a *same-work* row: our cold build (its own empty cache) with only the
analyses whose figures the peer draws (:data:`SAME_WORK`: within-image PCA, stage PCA, random
channels, across-image PCA, feature statistics; ``--analyses``), so the ratio compares equal work.

``--more`` adds: a narrative-only change, one image added, extraction throughput and
achieved GFLOP/s against this machine's measured fp32 matmul peak, and bf16 against fp32
(extraction time and the largest drift in last-stage PC1 maps and feature statistics;
``--skip-bf16`` leaves that out).

``--gpu-table`` adds our cold build with ``--dtype bf16`` on ``--device`` (with
``--device cuda`` also ours and the peer's on the CPU) and the drift of every number in
results.json against the CPU fp32 build. On a CPU with bf16 instructions (AVX512-BF16, AMX)
this is how to weigh bf16 there too.

``--scaling N1,N2,..`` builds cold from N images made from the shipped photos by seeded
crops and flips, and prints seconds per image and peak RSS at each size.

Every build runs as its own process, so peak RSS and timings are those a user sees.

How extraction would spread over several machines (Ray or Dask feeding the feature cache),
and what would have to change: docs/distributed-extraction.md.
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


SAME_WORK = ("within_pca", "stage_pca", "random_channels", "across_pca", "feature_stats")
"""The analyses whose figures the peer (naive_baseline.py) also draws: the study's figure set."""


def run_build(config: Path, out: Path, env: dict, *extra: str) -> dict:
    """One build in a fresh process: wall seconds, peak RSS (MiB) and its build.json."""
    cmd = [sys.executable, "-c", _RUN, sys.executable, "-m", "dinoreport.cli", "build", "--config", str(config),
           "--out", str(out), "--random-init", "--quiet", *extra]
    bj = out / "data" / "build.json"
    before = bj.stat().st_mtime_ns if bj.is_file() else None
    run = _measured(cmd, env, "build")
    # A build with nothing changed writes nothing, build.json included: its phases are the old ones.
    up_to_date = before is not None and bj.stat().st_mtime_ns == before
    return {"wall": run["wall"], "rss_mib": run["rss_mib"], "build": json.loads(bj.read_text()),
            "up_to_date": up_to_date}


def _measured(cmd: list[str], env: dict, what: str) -> dict:
    """Run ``cmd`` (wrapped in ``_RUN``): wall seconds, the child's peak RSS (MiB), its stdout."""
    t = time.perf_counter()
    r = subprocess.run(cmd, capture_output=True, text=True, env=env)
    wall = time.perf_counter() - t
    if r.returncode != 0:
        raise SystemExit(f"{what} failed:\n{r.stderr}")
    rss_kib = int(r.stderr.strip().splitlines()[-1])
    return {"wall": wall, "rss_mib": rss_kib / 1024, "stdout": r.stdout}


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

    from dinoreport.backbones import create_backbone

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


def extraction_floor(cfg, sets: list[tuple[set[str], dict[str, np.ndarray]]]) -> list[dict]:
    """Bare forward seconds of the extract phase's work, in this process: per model, every
    distinct input shape it sees is run twice (the second timed) and counted as often as it
    occurs; no decoding, cache, threads or hashing. ``sets``: (model ids, {image id: rgb}) for
    the build's resolution and each extra resolution."""
    import torch

    from dinoreport.backbones import create_backbone

    rows = []
    for spec in cfg.models:
        shapes: dict[tuple, int] = {}
        for models, imgs in sets:
            if spec.id in models:
                for rgb in imgs.values():
                    shapes[rgb.shape] = shapes.get(rgb.shape, 0) + 1
        bb = create_backbone(spec, None, seed=cfg.seed)
        secs = 0.0
        for shape, count in sorted(shapes.items()):
            x = bb.normalize(torch.zeros((1,) + shape, dtype=torch.uint8))
            with torch.inference_mode():
                bb.forward(x)
                t = time.perf_counter()
                bb.forward(x)
                secs += (time.perf_counter() - t) * count
        rows.append({"model": spec.id, "pairs": sum(shapes.values()), "seconds": secs})
    return rows


def bf16_drift(cfg, images: dict[str, np.ndarray]) -> list[dict]:
    """Per model: fp32 and bf16 extraction seconds and the largest PC1 / statistics drift.

    PC1 drift: max |PC1_fp32 - PC1_bf16| over all cells and images, relative to max |PC1_fp32|.
    Statistics drift: mean, std, p1, p99 in units of the fp32 std; skew and kurtosis absolute.
    """
    import torch

    from dinoreport.analysis import feature_stats, orient_by_border, pca_within
    from dinoreport.backbones import create_backbone

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


def _shared() -> Path:
    """../shared beside the checkout, else shared/ inside it (how a device machine gets it)."""
    for cand in (ROOT.parent / "shared", ROOT / "shared"):
        if cand.is_dir():
            return cand
    return ROOT.parent / "shared"


def results_drift(a: dict, b: dict) -> list[tuple[str, int, float, float, int]]:
    """Per top-level key of two results.json: (key, numbers compared, largest absolute and
    relative difference, leaves that differ otherwise, e.g. a verdict)."""
    rows = []
    for key in sorted(set(a) & set(b)):
        stats = {"n": 0, "abs": 0.0, "rel": 0.0, "other": 0}

        def walk(x, y):
            if isinstance(x, dict) and isinstance(y, dict):
                for k in set(x) | set(y):
                    if k in x and k in y:
                        walk(x[k], y[k])
                    else:
                        stats["other"] += 1
            elif isinstance(x, list) and isinstance(y, list) and len(x) == len(y):
                for u, v in zip(x, y):
                    walk(u, v)
            elif isinstance(x, (int, float)) and isinstance(y, (int, float)) and not isinstance(x, bool):
                if x != x and y != y:  # both NaN
                    return
                d = abs(float(x) - float(y))
                stats["n"] += 1
                stats["abs"] = max(stats["abs"], d)
                stats["rel"] = max(stats["rel"], d / max(abs(float(x)), 1e-12))
            elif x != y:
                stats["other"] += 1

        walk(a[key], b[key])
        rows.append((key, stats["n"], stats["abs"], stats["rel"], stats["other"]))
    return rows


def print_drift(name: str, ref: dict, other: dict) -> None:
    print(f"\ndrift of every number in results.json, {name} (largest over the key's numbers):")
    print(f"{'key':<24}{'numbers':>8}{'max abs':>12}{'max rel':>12}{'other diffs':>13}")
    for key, n, da, dr, other_n in results_drift(ref, other):
        print(f"{key:<24}{n:>8}{da:>12.3g}{dr:>12.3g}{other_n:>13}")


def phases(b: dict) -> str:
    if b.get("up_to_date"):
        return "up to date: inputs checked, nothing written"
    s = b["build"]["seconds"]
    order = ["resolve", "decode", "load_models", "extract", "analyse_and_figures", "render"]
    return "  ".join(f"{k}={s.get(k, 0):.2f}" for k in order)


def run_peer(script: Path, images: Path, out: Path, env: dict, device: str = "cpu") -> dict:
    """The peer in a fresh process on the same images: wall seconds and peak RSS (MiB)."""
    cmd = [sys.executable, "-c", _RUN, sys.executable, str(script), str(images), str(out), "--device", device]
    run = _measured(cmd, env, "peer")
    return {"wall": run["wall"], "rss_mib": run["rss_mib"], "says": run["stdout"].strip().splitlines()[-1]}


def make_scaled_images(src: Path, n: int, out: Path, seed: int = 0) -> Path:
    """``n`` images from the photos in ``src``: photo i % P, then seeded crops (70-100% of each
    side) and a horizontal flip every other round, so no two are the same pixels."""
    from PIL import Image, ImageOps

    photos = sorted(p for p in src.iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
    if not photos:
        raise SystemExit(f"--images {src}: no .jpg/.png photos to make the scaling set from")
    rng = np.random.default_rng(seed)
    out.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        p = photos[i % len(photos)]
        rnd = i // len(photos)
        im = ImageOps.exif_transpose(Image.open(p)).convert("RGB")
        if rnd:
            w, h = im.size
            cw, ch = (int(w * rng.uniform(0.7, 1.0)), int(h * rng.uniform(0.7, 1.0)))
            x0, y0 = int(rng.integers(0, w - cw + 1)), int(rng.integers(0, h - ch + 1))
            im = im.crop((x0, y0, x0 + cw, y0 + ch))
            if rnd % 2:
                im = ImageOps.mirror(im)
        im.save(out / f"{p.stem}_v{rnd:03d}.jpg", quality=92)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", type=Path, default=ROOT / "site_src" / "report.toml")
    ap.add_argument("--images", type=Path, default=_shared() / "images",
                    help="Photos for the side-by-side run (ours and the peer's); absent: the config's.")
    ap.add_argument("--device", default="cpu", choices=("cpu", "cuda"),
                    help="Device of our cold/warm builds and of the peer (default cpu).")
    ap.add_argument("--gpu-table", action="store_true",
                    help="Also our cold build with --dtype bf16 on --device (on cuda also ours and the peer's cold "
                         "on the CPU), and the drift of every number in results.json against the CPU fp32 build.")
    ap.add_argument("--peer", type=Path, default=_shared() / "bench" / "naive_baseline.py",
                    help="The peer script; absent: no side-by-side run.")
    ap.add_argument("--more", action="store_true",
                    help="Also: narrative change, one image added, throughput/FLOPs, bf16 drift.")
    ap.add_argument("--skip-bf16", action="store_true", help="With --more: leave out the bf16 comparison.")
    ap.add_argument("--floor", action="store_true",
                    help="Also time the bare forward passes of the cold build's extraction (its compute floor).")
    ap.add_argument("--scaling-only", action="store_true", help="Only the scaling run (no side-by-side builds).")
    ap.add_argument("--scaling", default="", help="Comma-separated image counts for the scaling run, e.g. 25,100,400.")
    args = ap.parse_args()
    sys.path.insert(0, str(ROOT / "generator"))
    import torch

    from dinoreport.config import load_config

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
        env = {**os.environ, "DINOREPORT_CACHE": str(work / "cache"), "HF_HUB_OFFLINE": "1"}
        images = args.images if args.images and args.images.is_dir() else None
        img_args = ("--images", str(images)) if images else ()
        print(f"machine: {os.cpu_count()} cores, torch {torch.__version__}, {torch.get_num_threads()} threads; "
              f"load average {os.getloadavg()[0]:.1f} (shared machine: compare only numbers of one run)")
        print(f"images: {images or 'the config'}\n")

        if not args.scaling_only:
            dev_args = ("--device", args.device)
            cold = run_build(config, work / "site", env, *img_args, *dev_args)
            peer = None
            if images and args.peer.is_file():
                peer = run_peer(args.peer, images, work / "peer", env, args.device)
            warm = run_build(config, work / "site", env, *img_args, *dev_args)
            same = None
            if peer:
                env_same = {**env, "DINOREPORT_CACHE": str(work / "cache-same")}
                same = run_build(config, work / "site-same", env_same, *img_args, *dev_args,
                                 "--analyses", ",".join(SAME_WORK))

            print(f"{'build':<30}{'wall s':>8}{'peak RSS MiB':>14}  phases (s)")
            print(f"{'ours, cold (empty cache)':<30}{cold['wall']:>8.1f}{cold['rss_mib']:>14.0f}  {phases(cold)}")
            if peer:
                print(f"{'peer, cold (' + args.peer.name + ')':<30}{peer['wall']:>8.1f}{peer['rss_mib']:>14.0f}  "
                      f"[{peer['says']}]")
            if same:
                print(f"{'ours, cold, same work as peer':<30}{same['wall']:>8.1f}{same['rss_mib']:>14.0f}  "
                      f"{phases(same)}")
            print(f"{'ours, warm (nothing changed)':<30}{warm['wall']:>8.1f}{warm['rss_mib']:>14.0f}  {phases(warm)}")
            if peer:
                print(f"\ncold build: ours {cold['wall']:.1f} s vs peer {peer['wall']:.1f} s -> "
                      f"{peer['wall'] / cold['wall']:.2f}x faster (goal >= 3x)")
            if same:
                print(f"same work ({', '.join(SAME_WORK)}): ours {same['wall']:.1f} s vs peer "
                      f"{peer['wall']:.1f} s -> {peer['wall'] / same['wall']:.2f}x faster")
            print(f"warm no-change rebuild: {warm['wall']:.2f} s (goal <= 1 s); "
                  f"peak RSS ours {max(cold['rss_mib'], warm['rss_mib']):.0f} MiB (goal <= 2048)")
            c = cold["build"]["cache"]
            print(f"ours computed features for {c['computed']} model x image pairs")
            analysis_secs = cold["build"].get("analysis_seconds", {})
            if analysis_secs:
                print("ours, cold, seconds per analysis (wall, analyses run side by side): " + "  ".join(
                    f"{k}={v:.1f}" for k, v in sorted(analysis_secs.items(), key=lambda kv: -kv[1])))
            if args.floor:
                print_floor(config, images, cold)
            if args.gpu_table:
                gpu_table(config, work, env, img_args, images, args, cold, peer)

        if args.scaling:
            print(f"\nscaling (cold builds from crops/flips of {images or 'the photos'}):")
            print(f"{'images':>7}{'wall s':>9}{'s/image':>9}{'extract s':>11}{'analyse s':>11}{'peak RSS MiB':>14}"
                  "  peak at the end of extract / analyse / render")
            src_photos = images or (ROOT / "images" / "photos")
            for n in (int(v) for v in args.scaling.split(",") if v.strip()):
                folder = make_scaled_images(src_photos, n, work / f"scale{n}")
                env_n = {**env, "DINOREPORT_CACHE": str(work / f"cache{n}")}
                b = run_build(config, work / f"site{n}", env_n, "--images", str(folder))
                s = b["build"]["seconds"]
                print(f"{n:>7}{b['wall']:>9.1f}{b['wall'] / n:>9.2f}{s.get('extract', 0):>11.1f}"
                      f"{s.get('analyse_and_figures', 0):>11.1f}{b['rss_mib']:>14.0f}  "
                      + " / ".join(f"{b['build'].get('peak_rss_mib', {}).get(k, float('nan')):.0f}"
                                   for k in ("extract", "analyse_and_figures", "render")), flush=True)
                shutil.rmtree(work / f"cache{n}", ignore_errors=True)
                shutil.rmtree(work / f"site{n}", ignore_errors=True)

        if args.more:
            more(args, config, work, env)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def gpu_table(config: Path, work: Path, env: dict, img_args: tuple, images: Path | None, args,
              cold: dict, peer: dict | None) -> None:
    """Our cold build with ``--dtype bf16`` on ``--device`` beside the fp32 one of the main run;
    on a GPU also our cold build and the peer's on the CPU. Then the drift of every number in
    results.json of each build against the CPU fp32 build."""
    d = args.device
    runs = {f"ours {d} fp32": cold}
    sites = {f"ours {d} fp32": work / "site"}
    todo = [(f"ours {d} bf16", ("--dtype", "bf16"), d)] + ([("ours cpu fp32", (), "cpu")] if d != "cpu" else [])
    for name, extra, dev in todo:
        sites[name] = work / f"site-{len(runs)}"
        env_n = {**env, "DINOREPORT_CACHE": str(work / f"cache-{dev}-{len(runs)}")}
        runs[name] = run_build(config, sites[name], env_n, *img_args, "--device", dev, *extra)
    peers = {f"peer {d}": peer}
    if d != "cpu" and images and args.peer.is_file():
        peers["peer cpu"] = run_peer(args.peer, images, work / "peer-cpu", env, "cpu")
    print(f"\n{'run':<18}{'wall s':>8}{'extract s':>11}{'analyse s':>11}{'peak RSS MiB':>14}{'peer/ours':>11}")
    for name, r in runs.items():
        sec = r["build"]["seconds"]
        p = peers.get(f"peer {name.split()[1]}")
        print(f"{name:<18}{r['wall']:>8.1f}{sec.get('extract', 0):>11.1f}{sec.get('analyse_and_figures', 0):>11.1f}"
              f"{r['rss_mib']:>14.0f}" + (f"{p['wall'] / r['wall']:>10.2f}x" if p else ""))
    for name, r in peers.items():
        if r:
            print(f"{name:<18}{r['wall']:>8.1f}{'':>11}{'':>11}{r['rss_mib']:>14.0f}")
    ref = json.loads((sites["ours cpu fp32"] / "data" / "results.json").read_text())
    for name, site in sites.items():
        if name != "ours cpu fp32":
            print_drift(f"{name.removeprefix('ours ')} vs cpu fp32", ref,
                        json.loads((site / "data" / "results.json").read_text()))


def print_floor(config: Path, images: Path | None, cold: dict) -> None:
    """The extract phase of the cold build against the bare forward passes of the same work."""
    from dinoreport.cli import _load
    from dinoreport.pipeline import BuildOptions, decode, resolve
    from dinoreport.progress import Progress

    cfg = _load(config, images)
    opts = BuildOptions(out=Path("unused"), random_init=True, quiet=True)
    plan = resolve(cfg, opts)
    with Progress(True) as progress, tempfile.TemporaryDirectory(prefix="dinoreport-bench-floor-") as tmp:
        decoded = decode(cfg, opts, plan, progress, [], Path(tmp))
        sets = [({m.id for m in cfg.models}, decoded.images)]
        sets += [(set(plan.extra[res]), imgs) for res, imgs in sorted(decoded.extra_images.items())]
        rows = extraction_floor(cfg, sets)
    total = sum(r["seconds"] for r in rows)
    ext = cold["build"]["seconds"]["extract"]
    print(f"\nextraction floor (bare forward passes, same shapes and counts, one process): {total:.1f} s; "
          f"the cold build's extract phase took {ext:.1f} s ({ext / total:.2f}x the floor)")
    for r in rows:
        print(f"  {r['model']:<24}{r['pairs']:>4} passes {r['seconds']:>7.1f} s")


def more(args, config: Path, work: Path, env: dict) -> None:
    """Narrative-only change, one image added, throughput and FLOPs, bf16 drift."""
    from dinoreport.config import load_config
    from dinoreport.images import available, load_image
    from dinoreport.pipeline import load_image_set

    cfg = load_config(config)
    src = config.parent
    peak = matmul_peak()
    print(f"\nfp32 matmul peak (2048^3, best of 10): {peak:.1f} GFLOP/s")
    base = run_build(config, work / "site_more", env)
    md = sorted(src.glob("*.md"))[0]
    md.write_text(md.read_text() + "\n\nOne more sentence for the benchmark.\n")
    prose = run_build(config, work / "site_more", env)

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

    print(f"{'build (config images)':<26}{'wall s':>8}{'peak RSS MiB':>14}  phases (s)")
    for name, b in (("cold (config images)", base), ("narrative-only change", prose), ("one image added", added)):
        print(f"{name:<26}{b['wall']:>8.1f}{b['rss_mib']:>14.0f}  {phases(b)}")
    c = added["build"]["cache"]
    print(f"\none image added: features computed for {c['computed']} model×image pairs "
          f"({len(cfg.models)} models), reused {c['reused']}")
    ext = base["build"]["seconds"]["extract"]
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


if __name__ == "__main__":
    main()

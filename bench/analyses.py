"""Seconds each analysis adds to a cold build, from a warm feature cache.

    python bench/analyses.py [--config site_src/report.toml] [--images DIR] [--only NAME ...]
                             [--repeat N] [--profile NAME]

Runs the phases up to the analyses in this process (``--random-init``; the extract phase fills
the feature cache when it is cold, and is not timed), then calls each registered analysis' ``run`` directly,
in report order, without the section cache: the time is what a build spends on that analysis
when its section has to be computed (reading maps from the feature cache, the arithmetic and
writing its pictures). Artifacts one analysis provides to later ones are passed on as in a
build. Prints one line per analysis, best of ``--repeat`` runs; ``--profile NAME`` adds a
cProfile listing (top functions by own time) of that analysis's last run.
"""
from __future__ import annotations

import argparse
import dataclasses
import cProfile
import os
import pstats
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", type=Path, default=ROOT / "site_src" / "report.toml")
    ap.add_argument("--only", nargs="*", default=None, help="Time only these analyses (and what they need).")
    ap.add_argument("--repeat", type=int, default=1, help="Runs per analysis; the best is printed.")
    ap.add_argument("--images", type=Path, default=None, help="Build from this folder of images (as dinoreport build --images).")
    ap.add_argument("--profile", default=None, help="Print a cProfile listing of this analysis.")
    ap.add_argument("--memory", action="store_true",
                    help="Also print each analysis's peak of traced allocations (tracemalloc; numpy arrays "
                         "included; slows the run).")
    args = ap.parse_args()
    sys.path.insert(0, str(ROOT / "generator"))
    os.environ.setdefault("HF_HUB_OFFLINE", "1")

    from dinoreport.context import BuildContext
    from dinoreport.figures import FigureWriter
    from dinoreport.pipeline import BuildOptions
    from dinoreport.progress import Progress
    from _phases import load_cfg, up_to_analyses

    cfg = load_cfg(args.config, args.images)
    with tempfile.TemporaryDirectory(prefix="dinoreport-bench-analyses-") as tmp:
        opts = BuildOptions(out=Path(tmp) / "site", random_init=True, quiet=True)
        with Progress(True) as progress:
            plan, decoded, extracted = up_to_analyses(cfg, opts, Path(tmp), progress)
        ctx = BuildContext(cfg=cfg, images=decoded.images, entries=decoded.entries, models=extracted.models,
                           keys=extracted.keys, cache=extracted.cache, writer=FigureWriter(Path(tmp) / "figs"),
                           groups=decoded.groups, featured=decoded.featured, random_init=True, dtype="fp32",
                           extra_keys=extracted.extra_keys, reference_masks=decoded.reference_masks,
                           crop=plan.crop)
        print(f"feature cache warm ({extracted.cache.stats.computed} model×image pairs computed first); "
              f"{len(decoded.images)} images, "
              f"{len(extracted.models)} models, {sum(len(v) for v in decoded.groups.values())} group members")
        print(f"{'analysis':<20}{'seconds':>9}{'pictures':>10}" + (f"{'peak MiB':>10}" if args.memory else ""))
        total = 0.0
        for a in plan.analyses:
            needed = args.only is None or a.name in args.only or any(k in a.provides for n in args.only
                                                                      for k in _needs(n, cfg))
            if not needed:
                continue
            best, sec = float("inf"), None
            for _ in range(max(1, args.repeat)):
                start = len(ctx.writer.log)
                prof = cProfile.Profile() if a.name == args.profile else None
                if args.memory:
                    tracemalloc.start()
                t = time.perf_counter()
                if prof is not None:
                    prof.enable()
                sec = a.run(dataclasses.replace(ctx, options=plan.options[a.name]))
                if prof is not None:
                    prof.disable()
                best = min(best, time.perf_counter() - t)
                if args.memory:
                    peak = tracemalloc.get_traced_memory()[1] / 2**20
                    tracemalloc.stop()
                pictures = len(ctx.writer.log) - start
            for kind in a.provides:
                ctx.artifacts[kind] = kind(sec.shared[kind.key])
            total += best
            print(f"{a.name:<20}{best:>9.2f}{pictures:>10}" + (f"{peak:>10.0f}" if args.memory else ""), flush=True)
            if prof is not None:
                pstats.Stats(prof).sort_stats("tottime").print_stats(20)
        print(f"{'all of the above':<20}{total:>9.2f}")


def _needs(name: str, cfg) -> tuple:
    from dinoreport.analyses import get_analysis

    return get_analysis(name).needs(cfg).artifacts


if __name__ == "__main__":
    main()

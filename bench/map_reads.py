"""How often the analyses phase reads each cached feature map, and what the phase costs.

    python bench/map_reads.py [--config site_src/report.toml] [--images DIR] [--jobs N]

Runs the phases up to the analyses in this process (``--random-init``; a cold feature cache is
filled first, untimed), then the analyses phase as a build runs it (``pipeline.analyse``,
analyses in parallel) with the section cache off, so every analysis is computed. Every read of
the feature cache (``FeatureCache.stage``) is counted per (entry, stage) and per analysis.
Prints the phase's wall time, the bytes read, how many distinct maps they were, how often
each was read, and per analysis its reads and bytes.
"""
from __future__ import annotations

import argparse
import collections
import dataclasses
import os
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", type=Path, default=ROOT / "site_src" / "report.toml")
    ap.add_argument("--images", type=Path, default=None, help="Build from this folder of images.")
    ap.add_argument("--jobs", type=int, default=0, help="Analyses at once (0: as a build).")
    args = ap.parse_args()
    sys.path.insert(0, str(ROOT / "generator"))
    os.environ.setdefault("HF_HUB_OFFLINE", "1")

    from dinoreport.features import FeatureCache
    from dinoreport.pipeline import BuildOptions, analyse
    from dinoreport.progress import Progress
    from _phases import load_cfg, up_to_analyses

    cfg = load_cfg(args.config, args.images)
    reads: collections.Counter = collections.Counter()  # (key, stage, channel) -> reads
    nbytes: collections.Counter = collections.Counter()  # analysis -> bytes
    count: collections.Counter = collections.Counter()  # analysis -> reads
    seconds: collections.Counter = collections.Counter()  # analysis -> seconds inside stage()
    lock = threading.Lock()
    original = FeatureCache.stage

    def counted(self, key, stage, channel=None):
        t = time.perf_counter()
        arr = original(self, key, stage, channel)
        dt = time.perf_counter() - t
        who = threading.current_thread().name.removeprefix("analysis-")
        with lock:
            reads[(key, stage, channel)] += 1
            nbytes[who] += arr.nbytes
            count[who] += 1
            seconds[who] += dt
        return arr

    with tempfile.TemporaryDirectory(prefix="dinoreport-bench-reads-") as tmp:
        opts = BuildOptions(out=Path(tmp) / "site", random_init=True, quiet=True, jobs=args.jobs)
        with Progress(True) as progress:
            plan, decoded, extracted = up_to_analyses(cfg, opts, Path(tmp), progress)
            FeatureCache.stage = counted
            site = Path(tmp) / "site-tmp"
            site.mkdir()
            load = os.getloadavg()[0]
            t = time.perf_counter()
            # no_cache: every section computed (features still come from the cache filled above).
            analysed = analyse(cfg, dataclasses.replace(opts, no_cache=True), plan, decoded, extracted, site,
                               progress)
            wall = time.perf_counter() - t
            FeatureCache.stage = original
    whole = {k: n for k, n in reads.items() if k[2] is None}
    print(f"analyses phase: {wall:.1f} s wall ({analysed.computed} analyses computed), load average "
          f"{load:.2f} at start, {os.getloadavg()[0]:.2f} at end")
    total = sum(nbytes.values())
    print(f"feature cache reads: {sum(reads.values())} ({sum(whole.values())} whole maps, "
          f"{sum(reads.values()) - sum(whole.values())} single channels), {total / 1e6:.0f} MB; "
          f"{len(whole)} distinct maps")
    hist = collections.Counter(whole.values())
    print("whole-map reads per distinct map: " + ", ".join(f"{n}x: {c}" for n, c in sorted(hist.items())))
    print(f"{'analysis':<20}{'reads':>8}{'MB':>9}{'s in reads':>12}{'s total':>9}")
    for who in sorted(count, key=lambda w: -nbytes[w]):
        print(f"{who:<20}{count[who]:>8}{nbytes[who] / 1e6:>9.0f}{seconds[who]:>12.2f}"
              f"{analysed.seconds.get(who, float('nan')):>9.2f}")


if __name__ == "__main__":
    main()

"""Resident memory of CPU forward passes over changing input shapes, with and without handing
freed heap memory back after each pass (``dinoreport.features.give_back_freed_memory``).

    python bench/memory_trim.py [--passes 40] [--model convnext_tiny]

Each mode runs in its own process (a fresh heap), one after the other: the same seeded
sequence of input shapes (sides multiples of 32 between 320 and 608 px), random weights.
Prints the resident size after every 10 passes, the peak, and the seconds for all passes.
"""
from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

_CHILD = r"""
import resource, sys, time
sys.path.insert(0, sys.argv[1])
import numpy as np, timm, torch
from dinoreport.features import give_back_freed_memory
trim, passes, name = sys.argv[2] == "trim", int(sys.argv[3]), sys.argv[4]
def rss():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096 / 2**20
torch.manual_seed(0)
m = timm.create_model(name, pretrained=False).eval()
rng = np.random.default_rng(0)
seen, t = [], time.perf_counter()
for i in range(passes):
    h, w = 32 * int(rng.integers(10, 20)), 32 * int(rng.integers(10, 20))
    with torch.inference_mode():
        m.forward_features(torch.rand(1, 3, h, w))
    if trim:
        give_back_freed_memory()
    if i % 10 == 9:
        seen.append(round(rss()))
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(f"{sys.argv[2]:<6} RSS every 10 passes (MiB): {seen}  peak {peak:.0f}  {time.perf_counter() - t:.1f} s")
"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--passes", type=int, default=40)
    ap.add_argument("--model", default="convnext_tiny")
    args = ap.parse_args()
    for mode in ("keep", "trim"):
        subprocess.run([sys.executable, "-c", _CHILD, str(ROOT / "generator"), mode, str(args.passes), args.model], check=True)


if __name__ == "__main__":
    main()

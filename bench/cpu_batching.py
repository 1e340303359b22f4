"""Per-image forward time on this machine's CPU: one image vs a batch, default layout vs
channels-last, fp32 vs bf16 autocast (seeded random weights, one 448 x 592 input).

    python bench/cpu_batching.py [--repeat 3]

The numbers behind extraction taking one image at a time in the default layout on a CPU
(generator/dinoreport/features.py). Prints the best of ``--repeat`` runs per setting.
"""
from __future__ import annotations

import argparse
import time


def per_image(name: str, *, batch: int, channels_last: bool, bf16: bool, repeat: int) -> float:
    import timm
    import torch

    torch.manual_seed(0)
    vit = "vit" in name
    model = timm.create_model(name, pretrained=False, **({"dynamic_img_size": True} if vit else {})).eval()
    x = torch.randn(batch, 3, 448, 592)
    if channels_last:
        model, x = model.to(memory_format=torch.channels_last), x.contiguous(memory_format=torch.channels_last)
    indices = [2, 5, 8, 11] if vit else [0, 1, 2, 3]
    best = float("inf")
    for _ in range(repeat):
        t = time.perf_counter()
        with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            model.forward_intermediates(x, indices=indices, intermediates_only=True)
        best = min(best, time.perf_counter() - t)
    return best / batch


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    print(f"{'model':<28}{'batch':>6}{'layout':>15}{'dtype':>7}{'s/image':>10}")
    for name in ("convnext_tiny", "vit_small_patch16_dinov3"):
        settings = [(1, False, False), (4, False, False), (1, False, True)]
        if "vit" not in name:
            settings.insert(2, (1, True, False))
        for batch, cl, bf16 in settings:
            s = per_image(name, batch=batch, channels_last=cl, bf16=bf16, repeat=args.repeat)
            print(f"{name:<28}{batch:>6}{'channels-last' if cl else 'default':>15}{'bf16' if bf16 else 'fp32':>7}"
                  f"{s:>10.3f}", flush=True)


if __name__ == "__main__":
    main()

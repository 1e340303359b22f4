"""Which lossy encoding of the photographic panels (photos, tinted mask overlays) is lightest at
the quality of today's JPEG.

    python bench/photo_encoding.py [PHOTO_DIR]      # default images/photos

Each photo is shrunk to 448 px on its long side (the size of the figures' photos) and drawn
twice: as it is and as :func:`dinoreport.figures.overlay` tints it with a blocky mask (the
foreground-mask figures). Every candidate encoding is compared with those exact pixels: mean
bytes, SSIM and PSNR over the photos. The figure writer's setting (``PHOTO_ENCODING`` in
dinoreport.figures) is the lightest one whose SSIM and PSNR
are both at least those of JPEG quality 88 (the encoding before) on both kinds of picture.
"""
from __future__ import annotations

import io
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "generator"))
from dinoreport.figures import overlay  # noqa: E402

CANDIDATES = (
    ("JPEG", {"quality": 88, "optimize": True}),
    ("JPEG", {"quality": 88, "optimize": True, "progressive": True}),
    ("WEBP", {"quality": 85, "method": 6}),
    ("WEBP", {"quality": 88, "method": 6}),
    ("AVIF", {"quality": 68, "speed": 6, "max_threads": 1}),
    ("AVIF", {"quality": 70, "speed": 6, "max_threads": 1}),
    ("AVIF", {"quality": 72, "speed": 6, "max_threads": 1}),
    ("AVIF", {"quality": 72, "speed": 8, "max_threads": 1}),
    ("AVIF", {"quality": 74, "speed": 8, "max_threads": 1}),
)


def pictures(folder: Path) -> dict[str, list[np.ndarray]]:
    """{"photo": [...], "overlay": [...]}: (H, W, 3) uint8 pictures of every photo in ``folder``."""
    rng = np.random.default_rng(0)
    out: dict[str, list[np.ndarray]] = {"photo": [], "overlay": []}
    for p in sorted(folder.glob("*.jpg")) + sorted(folder.glob("*.png")):
        im = Image.open(p).convert("RGB")
        im.thumbnail((448, 448), Image.BICUBIC)
        a = np.asarray(im)
        yy, xx = np.mgrid[:14, :14]
        mask = (yy - 7) ** 2 + (xx - 7) ** 2 < 20 + rng.integers(0, 20)
        out["photo"].append(a)
        out["overlay"].append(np.asarray(overlay(a, mask)))
    return out


def measure(pics: list[np.ndarray], fmt: str, kw: dict) -> tuple[float, float, float, float]:
    """(mean bytes, mean SSIM, mean PSNR dB, mean encode ms) of ``pics`` in one encoding."""
    size = ssim = psnr = ms = 0.0
    for a in pics:
        buf = io.BytesIO()
        t = time.perf_counter()
        Image.fromarray(a).save(buf, format=fmt, **kw)
        ms += (time.perf_counter() - t) * 1000
        back = np.asarray(Image.open(io.BytesIO(buf.getvalue())).convert("RGB"))
        size += len(buf.getvalue())
        ssim += structural_similarity(a, back, channel_axis=2)
        psnr += peak_signal_noise_ratio(a, back)
    n = len(pics)
    return size / n, ssim / n, psnr / n, ms / n


def main() -> None:
    folder = Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "images" / "photos"
    sets = pictures(folder)
    print(f"{len(sets['photo'])} photos from {folder}, 448 px long side")
    print(f"{'kind':8s} {'encoding':44s} {'kB':>6s} {'SSIM':>7s} {'PSNR':>6s} {'ms':>5s}")
    for kind, pics in sets.items():
        for fmt, kw in CANDIDATES:
            b, s, p, ms = measure(pics, fmt, kw)
            opts = ",".join(f"{k}={v}" for k, v in kw.items())
            print(f"{kind:8s} {fmt + ' ' + opts:44s} {b / 1000:6.1f} {s:7.4f} {p:6.2f} {ms:5.0f}")


if __name__ == "__main__":
    main()

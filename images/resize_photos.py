"""Make the bundled copies in images/photos/ from the full-size photos (run by hand, once).

    python images/resize_photos.py /path/to/shared/images

Long side at most 1024 px (Pillow LANCZOS), baseline JPEG quality 88, no metadata (EXIF, ICC,
comments are dropped). Files already within 1024 px are copied byte for byte. The output depends
only on the input bytes and the Pillow version, so rerunning gives the same files; the manifest
pins each result by sha256.
"""

from __future__ import annotations

import hashlib
import shutil
import sys
from pathlib import Path

from PIL import Image, ImageOps

LONG_SIDE = 1024
QUALITY = 88
# Paths relative to the shared folder, without ".jpg"; the bundled copy keeps the file name.
NAMES = ("dog_aussie", "dog_bostonterrier", "dog_bulldog", "dog_cattledog", "dog_germanshepherd",
         "dog_golden_jump", "dog_greatdane", "dog_poodle_coat", "dog_pug", "cat_mainecoon",
         "scene_waiting_room",
         # Photos with two or more subjects (shared/images/new/SOURCES-addendum.md; issue 22).
         "new/dog_pair_foxhound_lab", "new/dog_pair_chihuahuas", "new/dog_pair_wolfdogs",
         "new/dog_pair_dogpark", "new/dog_pair_labradors", "new/cats_kittens",
         "new/cats_mainecoons", "new/scene_hermit_crabs")


def bundle(src: Path, dst: Path) -> tuple[int, int, bool]:
    """Write the bundled copy of ``src`` to ``dst``; return (width, height, resized)."""
    with Image.open(src) as im:
        im = ImageOps.exif_transpose(im).convert("RGB")
        if max(im.size) <= LONG_SIDE:
            shutil.copyfile(src, dst)
            return im.width, im.height, False
        scale = LONG_SIDE / max(im.size)
        size = (round(im.width * scale), round(im.height * scale))
        small = im.resize(size, Image.Resampling.LANCZOS)
    small.save(dst, "JPEG", quality=QUALITY, optimize=True, progressive=False, exif=b"")
    return size[0], size[1], True


def main(folder: Path) -> None:
    out = Path(__file__).resolve().parent / "photos"
    out.mkdir(exist_ok=True)
    for name in NAMES:
        dst = out / f"{Path(name).name}.jpg"
        w, h, resized = bundle(folder / f"{name}.jpg", dst)
        digest = hashlib.sha256(dst.read_bytes()).hexdigest()
        print(f"{dst.stem:<22} {w}x{h} {'resized' if resized else 'copied '} "
              f"{dst.stat().st_size:>7} {digest}")


if __name__ == "__main__":
    main(Path(sys.argv[1]))

"""Preprocessed images kept on disk during a build and read back on demand.

A build touches each preprocessed image a few times (hashing, extraction, photo panels) but
never needs all of them at once; holding them in a dict made peak memory grow by about
0.8 MB per image. :class:`ImageStore` writes each array once to a ``.npy`` file and loads it
again when asked, so memory holds only the images in use.
"""
from __future__ import annotations

from collections.abc import Iterator, Mapping
from pathlib import Path

import numpy as np

__all__ = ["ImageStore"]


class ImageStore(Mapping[str, np.ndarray]):
    """A read-only mapping ``{image id: (H, W, 3) uint8}`` backed by one ``.npy`` file per image.

    Parameters
    ----------
    folder : Path
        An empty folder that the store alone writes to; its owner removes it (the build does,
        when it ends, see ``dinoreport.outdir.scratch``).

    Notes
    -----
    Each read is a fresh ``np.load`` (no memory map, so nothing stays mapped after the caller
    drops the array, and no cache: a load from the page cache takes well under a millisecond).
    Reads from several threads are therefore safe once writing is done. Keys iterate in the
    order they were added; shapes are kept in memory, so :meth:`shape` and ``in`` read no file.
    """

    def __init__(self, folder: Path):
        self._folder = Path(folder)
        self._folder.mkdir(parents=True, exist_ok=True)
        self._files: dict[str, Path] = {}
        self._shapes: dict[str, tuple[int, ...]] = {}

    def add(self, image: str, rgb: np.ndarray) -> None:
        """Write ``rgb`` (H, W, 3) uint8 as image ``image``; the caller may then drop it.

        The file is named by its position, not the id, so no id can name a path. An id is
        added once: a second write would change pixels that cache keys were made from.
        """
        if image in self._files:
            raise ValueError(f"image {image!r} is already in the store")
        path = self._folder / f"{len(self._files):06d}.npy"
        np.save(path, np.ascontiguousarray(rgb), allow_pickle=False)
        # Registered only once written: a failed write leaves no entry pointing at a partial file.
        self._files[image] = path
        self._shapes[image] = tuple(rgb.shape)

    def shape(self, image: str) -> tuple[int, ...]:
        """(H, W, 3) of ``image`` without reading its pixels; KeyError if absent."""
        return self._shapes[image]

    def __getitem__(self, image: str) -> np.ndarray:
        """(H, W, 3) uint8, a fresh array read from the image's file; KeyError if absent."""
        return np.load(self._files[image], allow_pickle=False)

    def __contains__(self, image: object) -> bool:
        return image in self._files  # Mapping's default would read the file

    def __iter__(self) -> Iterator[str]:
        return iter(self._files)

    def __len__(self) -> int:
        return len(self._files)

    def __repr__(self) -> str:
        return f"ImageStore({len(self)} images in {self._folder})"

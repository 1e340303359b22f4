"""A figure can leave the page: one ZIP per figure with its pictures at print quality and its numbers.

``downloads/<figure id>.zip`` (beside index.html) holds, in panel order:

- the maps (pictures stored at one pixel per cell) as PNG enlarged by nearest neighbour to a
  long side of at least :data:`PRINT_LONG_SIDE` px, with their colormap (the pixels are the
  coloured cells themselves);
- photographs and overlays as JPEG (quality :data:`PHOTO_QUALITY`, no chroma subsampling) at
  their stored size, a mask layer drawn onto its photo (:func:`dinoreport.figures.composite`):
  lossless PNG of a photo is four times the bytes for nothing a print shows;
- histograms, heatmaps and other plots as the SVG the page shows;
- ``numbers.json``: the figure's numbers from ``data/results.json`` (every results key of the
  analysis that made the figure, its rows narrowed to the figure's image or group), and one
  ``<key>.csv`` per key that is a list of rows;
- ``README.txt``: caption and, per file, the panel's description.

Bytes depend only on the inputs (fixed member times, sorted order): a rebuild gives the same
files, so a published URL keeps pointing at the same content.
"""
from __future__ import annotations

import csv
import io
import json
import re
import zipfile
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

from PIL import Image

from .assets import PIXELATED_BELOW
from .figures import composite
from .page import Figure, Panel

__all__ = ["DOWNLOAD_DIR", "PRINT_LONG_SIDE", "figure_numbers", "figure_zip", "write_downloads",
           "download_link"]

#: folder of the site holding the figures' ZIP files
DOWNLOAD_DIR = "downloads"
#: px: a map is enlarged by a whole factor until its long side is at least this (10 cm at 300
#: dpi: wider than one column of a two-column paper, 8.5 cm)
PRINT_LONG_SIDE = 1200

#: JPEG quality of photographic panels in a download
PHOTO_QUALITY = 92

_WHEN = (1980, 1, 1, 0, 0, 0)  # the earliest time a ZIP can hold: no clock in the output
_FILE_ID = re.compile(r"[a-z0-9][a-z0-9-]*")  # figure ids that are safe as file names


def _rows_of(value: Any, fig: Figure) -> Any:
    """A results value narrowed to the figure's image or group: rows naming another image or
    group go, rows naming none stay (the analysis's summary)."""
    if not isinstance(value, list):
        return value

    def keep(row: Any) -> bool:
        if not isinstance(row, dict):
            return True
        if fig.image is not None:
            named = [row[k] for k in ("image", "image_a", "image_b") if k in row]
            if named and fig.image not in named:
                return False
        if fig.group is not None and "group" in row and row["group"] != fig.group:
            return False
        return True

    return [r for r in value if keep(r)]


def figure_numbers(fig: Figure, results: Mapping[str, Any], owners: Mapping[str, str],
                   owner: str | None) -> dict[str, Any]:
    """The figure's numbers: each results key that ``owner`` (the analysis that declares the
    figure's kind) wrote, narrowed by :func:`_rows_of`; sorted by key. Empty when the owner is
    unknown or wrote no results."""
    if owner is None:
        return {}
    return {k: _rows_of(results[k], fig) for k in sorted(results) if owners.get(k) == owner}


def _csv(rows: list[Any]) -> str | None:
    """Rows of dicts as CSV (columns: every key, sorted; lists and dicts as JSON), None when
    they are not rows of dicts."""
    if not rows or not all(isinstance(r, dict) for r in rows):
        return None
    cols = sorted({k for r in rows for k in r})
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(cols)
    for r in rows:
        w.writerow(["" if r.get(c) is None else json.dumps(r[c]) if isinstance(r.get(c), (list, dict)) else r[c]
                    for c in cols])
    return buf.getvalue()


def _print_raster(site: Path, p: Panel) -> tuple[bytes, str, str]:
    """(bytes, file extension, how it was made) of a raster panel at print quality: maps and
    other PNG panels as PNG, photographic ones (AVIF, JPEG, layered) as JPEG."""
    with Image.open(site / p.file) as im:
        im.load()
        img = im.convert("RGBA" if im.mode in ("RGBA", "LA", "PA") or "transparency" in im.info else "RGB")
    how, photographic = "as shown", not p.file.endswith(".png")
    if p.layer:
        with Image.open(site / p.layer) as top:
            top.load()
            img = composite(img, top)
        how, photographic = "mask drawn on the photo", True
    elif max(img.size) < PIXELATED_BELOW:  # a map at one pixel per cell
        k = -(-PRINT_LONG_SIDE // max(img.size))  # ceil: at least PRINT_LONG_SIDE
        img = img.resize((img.width * k, img.height * k), Image.NEAREST)
        how = f"one cell = {k}×{k} px"
    buf = io.BytesIO()
    if photographic:
        img.convert("RGB").save(buf, format="JPEG", quality=PHOTO_QUALITY, subsampling=0, optimize=True)
        return buf.getvalue(), "jpg", how
    img.save(buf, format="PNG", compress_level=6)
    return buf.getvalue(), "png", how


def _member(z: zipfile.ZipFile, name: str, data: bytes, compress: bool) -> None:
    info = zipfile.ZipInfo(name, date_time=_WHEN)
    info.compress_type = zipfile.ZIP_DEFLATED if compress else zipfile.ZIP_STORED
    info.external_attr = 0o644 << 16
    z.writestr(info, data)


def figure_zip(site: Path, fig: Figure, numbers: Mapping[str, Any]) -> bytes:
    """The bytes of ``fig``'s ZIP (see the module docstring); ``site`` holds its picture files."""
    buf = io.BytesIO()
    lines = [fig.caption, ""]
    with zipfile.ZipFile(buf, "w") as z:
        k = 0
        for r in fig.rows:
            for p in r.panels:
                k += 1
                if p.file.endswith(".svg"):
                    name, data, how, compress = f"{k:03d}.svg", (site / p.file).read_bytes(), "as shown", True
                else:
                    data, ext, how = _print_raster(site, p)
                    name, compress = f"{k:03d}.{ext}", False
                _member(z, name, data, compress)
                lines.append(f"{name}: {p.alt}" + (f" [{r.label}]" if r.label else "") + f" ({how})")
        if numbers:
            _member(z, "numbers.json", (json.dumps(numbers, indent=1, sort_keys=True, ensure_ascii=False,
                                                   allow_nan=False) + "\n").encode(), True)
            lines += ["", "numbers.json: the figure's numbers from data/results.json"]
            for key, rows in numbers.items():
                text = _csv(rows) if isinstance(rows, list) else None
                if text is not None:
                    _member(z, f"{key}.csv", text.encode(), True)
                    lines.append(f"{key}.csv: results.json's {key}, one row each")
        _member(z, "README.txt", ("\n".join(lines) + "\n").encode(), True)
    return buf.getvalue()


def write_downloads(site: Path, figures: Iterable[Figure], results: Mapping[str, Any],
                    owners: Mapping[str, str], kind_owner: Callable[[str], str | None]) -> int:
    """Write ``<site>/downloads/<figure id>.zip`` for every figure whose id is a plain
    ``[a-z0-9-]`` name (another id gets no download rather than an odd file name); returns how
    many were written.

    ``owners`` maps each results key to the analysis that wrote it, ``kind_owner`` a figure
    kind to the analysis that declares it (:func:`dinoreport.directives.kind_owner`)."""
    site = Path(site)
    folder = site / DOWNLOAD_DIR
    n = 0
    for fig in figures:
        if not _FILE_ID.fullmatch(fig.id):
            continue
        data = figure_zip(site, fig, figure_numbers(fig, results, owners, kind_owner(fig.kind)))
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"{fig.id}.zip").write_bytes(data)
        n += 1
    return n


def download_link(site: Path) -> Callable[[str], dict[str, Any] | None]:
    """The template helper ``download(figure id)``: ``{"href", "bytes"}`` of the figure's ZIP
    when the site has one, else None."""
    folder = Path(site) / DOWNLOAD_DIR

    def download(fig_id: str) -> dict[str, Any] | None:
        p = folder / f"{fig_id}.zip"
        if not _FILE_ID.fullmatch(fig_id) or not p.is_file():
            return None
        return {"href": f"{DOWNLOAD_DIR}/{fig_id}.zip", "bytes": p.stat().st_size}

    return download

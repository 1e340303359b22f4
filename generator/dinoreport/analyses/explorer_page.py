"""The similarity explorer on the page: the ``::: explorer`` directive, its codes and its data.

The explorer analysis (:mod:`dinoreport.analyses.explorer`) contributes the directive through
the registry (``register_analysis(..., directives=directives)``), so the renderer knows no
explorer by name. ``page.explorer`` (``SectionOutput.explorer`` of the analysis) is::

    {"models": [{"id", "label", "stages": [stage names]}],
     "images": [{"id", "photo" (site-relative path), "width", "height"}],
     "groups": [{"id", "images": [image ids]}],
     "features": {model id: {stage: {group id: {image id: {"h", "w", "d", "q": base64 int8, (y, x, d)}}}}},
     "error": {model id: {stage: {group id: {"dims", "max_abs", "mean_abs"}}}},
     "single_file": {model id: {stage: {group id: {"dims", "bits", "max_abs", "mean_abs"}}}},
     "stage": {model id: last stage}, "budget_bytes": int, ...}

The first ``::: explorer`` block shows the widget (the theme's ``explorer.html.j2``), later ones
point to it. The data is embedded as JSON in ``<script type="application/json"
id="explorer-data">`` (both pages), which the theme's report.js parses, without the codes
themselves: index.html points to one compressed file per (model, stage, group) under
``assets/codes/`` that report.js fetches when the explorer is first used (``connect-src
'self'``), report.html carries the same bytes inline as base64 (see :func:`explorer_blobs`).
"""
from __future__ import annotations

import base64
import hashlib
import json
import os
import zlib
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator

import numpy as np
from markupsafe import Markup

from ..analysis.explorer import requantize
from ..csp import json_for_script
from ..directives import Block, BlockDirective, PageOutput
from ..page import RenderError

if TYPE_CHECKING:
    from ..assets import Assets
    from ..page import ReportPage

__all__ = ["EXPLORER_DIR", "explorer_blobs", "ExplorerDirective", "directives"]


#: where the multi-file site keeps the explorer's codes, one file per (model, stage, group)
EXPLORER_DIR = "assets/codes"


def explorer_blobs(explorer: dict, single_file: bool = False) -> Iterator[tuple[str, str, str, bytes]]:
    """The explorer's codes as one byte string per (model, stage, group), sorted by key.

    Parameters
    ----------
    explorer : ``page.explorer`` (see the module docstring); ``features[m][st][g][img]["q"]``
        is base64 of an (h, w, d) int8 array.
    single_file : the lighter codes of report.html: each group's codes cut to
        ``single_file[m][st][g]["dims"]`` dimensions and rounded to its ``"bits"`` by
        :func:`~dinoreport.analysis.requantize`, exactly what the explorer analysis measured the
        error of (all dimensions at 8 bits where it has no entry).

    Yields
    ------
    (model, stage, group, blob) : blob is zlib-compressed (``DecompressionStream("deflate")``
        undoes it) int8 codes of the group's images in group order, each laid out (d, h, w):
        one plane per code dimension, which deflate packs about 5% tighter than (h, w, d)
        because each plane's values share one spread.
    """
    groups = {g["id"]: g["images"] for g in explorer.get("groups", [])}
    for mid in sorted(explorer.get("features", {})):
        for st in sorted(explorer["features"][mid]):
            for g in sorted(explorer["features"][mid][st]):
                per = explorer["features"][mid][st][g]
                bits, dims = 8, None
                if single_file:
                    lite = (explorer.get("single_file") or {}).get(mid, {}).get(st, {}).get(g) or {}
                    bits, dims = int(lite.get("bits", 8)), lite.get("dims")
                planes = []
                for img in groups.get(g, sorted(per)):
                    f = per[img]
                    raw = base64.b64decode(f["q"])
                    if len(raw) != f["h"] * f["w"] * f["d"]:
                        raise RenderError(f"explorer codes of {mid}/{st}/{g}/{img}: {len(raw)} bytes, "
                                          f"expected {f['h']}x{f['w']}x{f['d']}; rebuild with --force")
                    d = f["d"]
                    if bits < 8 or (dims is not None and dims < d):
                        raw = requantize(np.frombuffer(raw, np.int8).reshape(-1, d), bits, dims).tobytes()
                        d = min(d, dims) if dims is not None else d
                    # (h*w, d) -> (d, h*w): plane j is every d-th byte from j
                    planes.append(b"".join(raw[j::d] for j in range(d)) if d > 1 else raw)
                yield mid, st, g, zlib.compress(b"".join(planes), 9)


def _explorer_payload(page: "ReportPage", assets: "Assets",
                      blob_url: Callable[[str, str, str, bytes], str] | None,
                      shown: dict[str, int] | None = None) -> Markup:
    """The explorer's data for the page, photos as URLs of this output.

    The codes leave the JSON: ``features[m][st][g]`` becomes ``{"d": code length, "hw": [h, w
    of each image of the group, in group order, flat]}`` and ``blobs[m][st][g]`` says where
    the group's codes are (:func:`explorer_blobs`): ``url`` of
    a file that report.js fetches when the explorer is first used (``blob_url`` writes it; the
    multi-file site), or ``b64`` inline (report.html, ``blob_url`` None); ``bytes`` is the
    compressed size, ``raw`` the decompressed one. In report.html a photo that the page
    already carries (``shown[rel]`` is its ``data-pic`` number) is named by ``"pic": k``
    instead of a second copy; the multi-file site gives every photo's URL.
    """
    ex = json.loads(json.dumps(page.explorer))
    for im in ex.get("images", []):
        if im.get("photo") and assets.inline and im["photo"] in (shown or {}):
            im["pic"] = str(shown[im.pop("photo")])
        elif im.get("photo"):
            im["photo"] = assets.url(im["photo"])
    groups = {g["id"]: g["images"] for g in ex.get("groups", [])}
    blobs: dict[str, Any] = {}
    lite = ex.pop("single_file", None) if blob_url is None else None
    if lite:
        # the status line of report.html gives the length and error of the codes it carries
        ex["error"] = lite
    ex.pop("single_file", None)
    for mid, st, g, blob in explorer_blobs(page.explorer, single_file=blob_url is None):
        per = ex["features"][mid][st][g]
        raw = sum(f["h"] * f["w"] * f["d"] for f in per.values())
        d = per[next(iter(per))]["d"] if per else 0
        if lite and "dims" in lite.get(mid, {}).get(st, {}).get(g, {}):
            d = min(d, int(lite[mid][st][g]["dims"]))
            raw = sum(f["h"] * f["w"] * d for f in per.values())
        entry: dict[str, Any] = {"bytes": len(blob), "raw": raw}
        if blob_url is None:
            entry["b64"] = base64.b64encode(blob).decode("ascii")
        else:
            entry["url"] = blob_url(mid, st, g, blob)
        blobs.setdefault(mid, {}).setdefault(st, {})[g] = entry
        # index.html keeps this JSON inline: per image only its grid, the length once per group
        order = groups.get(g, sorted(per))
        ex["features"][mid][st][g] = {"d": d if order else 0,
                                      "hw": [v for i in order for v in (per[i]["h"], per[i]["w"])]}
    ex["blobs"] = blobs
    return json_for_script(ex)


def _blob_writer(out: Path, written: set[str]) -> Callable[[str, str, str, bytes], str]:
    """``blob_url(model, stage, group, blob)``: writes the blob under :data:`EXPLORER_DIR` by
    content hash (stable URLs that caches may keep) and returns its site-relative URL."""
    folder = out / EXPLORER_DIR

    def blob_url(mid: str, st: str, g: str, blob: bytes) -> str:
        name = hashlib.sha256(blob).hexdigest()[:20] + ".bin"
        folder.mkdir(parents=True, exist_ok=True)
        target = folder / name
        if not (target.is_file() and target.read_bytes() == blob):
            tmp = folder / f".{name}.part-{os.getpid()}"
            tmp.write_bytes(blob)
            os.replace(tmp, target)
        written.add(name)
        return f"{EXPLORER_DIR}/{name}"

    return blob_url


def _prune_blobs(out: Path, written: set[str]) -> None:
    """Remove codes files of earlier renders into the same folder (``serve``)."""
    folder = out / EXPLORER_DIR
    if folder.is_dir():
        for p in sorted(folder.glob("*.bin")):
            if p.name not in written:
                p.unlink()


class ExplorerDirective(BlockDirective):
    """``::: explorer`` (no arguments): the similarity explorer widget of ``page.explorer``."""

    reserved_ids = frozenset({"explorer-data", "similarity-explorer", "explorer-caption"})

    def __init__(self, page: "ReportPage") -> None:
        self.page = page
        self.written: set[str] = set()  # codes files of this render (index.html's)

    def parse(self, pos: list[str], kw: dict[str, str], where: str) -> Block:
        if pos or kw:
            raise RenderError(f"{where}: '::: explorer' takes no arguments")
        return Block("explorer", [], "The similarity explorer was not built for this report.")

    def html(self, block: Block, first: bool, out: PageOutput) -> Iterator[str]:
        if not first and self.page.explorer:
            yield ('<p class="see-also">(See the '
                   '<a href="#similarity-explorer">explorer</a> above.)</p>')
        else:
            yield out.env.get_template("explorer.html.j2").render(explorer=self.page.explorer, note=block.note,
                                                                  **out.common)

    def data_script(self, blocks: list[Block]) -> str | None:
        return "explorer-data" if blocks and self.page.explorer else None

    def data(self, blocks: list[Block], out: PageOutput) -> Markup:
        blob_url = None if out.inline else _blob_writer(out.site, self.written)
        return _explorer_payload(self.page, out.assets, blob_url, out.img_attrs.first_use)

    def finish(self, site: Path) -> None:
        _prune_blobs(site, self.written)


def directives(page: "ReportPage") -> dict[str, BlockDirective]:
    """The explorer's narrative directive (``register_analysis(directives=...)``)."""
    return {"explorer": ExplorerDirective(page)}

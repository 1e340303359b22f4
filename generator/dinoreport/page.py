"""What the pipeline hands to the renderer: figures, tables and facts, already computed.

Nothing here computes or reads files; these are plain values. ``render.py`` turns a
:class:`ReportPage` into ``site/``; ``pipeline.py`` is the only producer.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .modelmeta import ModelFacts


class RenderError(ValueError):
    """A problem in the narrative or the page; the message names the .md file and line."""


@dataclass(frozen=True)
class Panel:
    """One picture file inside a figure.

    file : path relative to the site root, e.g. ``assets/fig/3fa2c1.png``.
    alt : full alternative text (what the picture shows, which model/stage/image).
    label : short label shown with the panel (``PC1``, ``C3``, ``ch 17``), may be empty.
    layer : a second picture drawn over ``file``, stretched to its box, or empty: a partly
        transparent mask at one pixel per cell (:func:`dinoreport.figures.mask_layer`), so that
        a photo shown under several masks is one file and each mask a few hundred bytes.
    """

    file: str
    alt: str
    label: str = ""
    layer: str = ""


@dataclass(frozen=True)
class Row:
    """A row of panels in a figure grid, labelled (usually by model)."""

    label: str
    panels: tuple[Panel, ...]


@dataclass(frozen=True)
class Figure:
    """A numbered figure: a grid of panels with a caption.

    id : unique, usable as an HTML id (``[a-z0-9-]+``), stable across builds.
    kind : a figure kind its analysis declares (``dinoreport.analyses``); narrative directives
        select by kind.
    caption : plain text; carries provenance (model labels, stage, resolution, weights).
    column_labels : header of each column (may be empty).
    image / group : the image id or group the figure is about, when it is about one.
    """

    id: str
    kind: str
    caption: str
    rows: tuple[Row, ...]
    column_labels: tuple[str, ...] = ()
    image: str | None = None
    group: str | None = None


@dataclass(frozen=True)
class Table:
    """A numbered table. Cells are str, int or float; floats are formatted by the renderer."""

    id: str
    kind: str
    caption: str
    columns: tuple[str, ...]
    rows: tuple[tuple[Any, ...], ...]


@dataclass(frozen=True)
class Credit:
    id: str
    subject: str
    author: str
    license: str
    license_url: str | None
    source_url: str | None
    share_alike: bool
    modified: str | None = None  # how the bundled copy differs, e.g. "resized to 1024x682"
    original_url: str | None = None  # the full-resolution original of a resized copy


@dataclass(frozen=True)
class ReportPage:
    """Everything the report shows. ``results`` is the content of ``data/results.json``."""

    title: str
    author: str
    random_init: bool
    resolution: int
    models: tuple[ModelFacts, ...]
    figures: tuple[Figure, ...]
    tables: tuple[Table, ...]
    results: dict[str, Any]
    credits: tuple[Credit, ...]
    skipped: tuple[tuple[str, str], ...] = ()  # (image id or file, reason)
    explorer: dict[str, Any] | None = None  # see dinoreport.analyses.explorer_page for the format
    notes: tuple[str, ...] = field(default=())  # build facts worth a sentence (c5 norm etc.)
    featured: tuple[str, ...] = ()  # image ids the narrative shows in full (``image=featured``)
    multiple: int = 32  # image sides are multiples of this (dinoreport.modelmeta.crop_multiple)
    analyses: tuple[str, ...] | None = None  # the analyses the build ran; None: every registered one
    data_files: bool = False  # data/results.json, figures.json, build.json are beside the pages

"""The view of a build that every analysis works from.

It holds what earlier phases produced (preprocessed images, feature cache keys, model facts,
reference masks) and answers "give me stage S of model M for image I" from the feature cache;
it computes nothing itself. The pipeline adds the artifacts each analysis provides (e.g. the
PC1 foreground masks) as the analyses run, in report order; nothing else changes it.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Iterator, Sequence, TypeVar

import numpy as np

from .config import ReportConfig
from .features import FeatureCache
from .figures import FigureWriter
from .images import ImageEntry, ImageStore
from .modelmeta import CropRule, ModelFacts


T = TypeVar("T")


class StageMaps(Sequence[np.ndarray]):
    """Feature maps of several images at one stage, read from the cache when indexed: a
    sequence an analysis can walk (more than once) without holding every map at once."""

    def __init__(self, ctx: "BuildContext", model: str, ids: Sequence[str], stage: str):
        self._ctx, self._model, self._ids, self._stage = ctx, model, tuple(ids), stage

    def __len__(self) -> int:
        return len(self._ids)

    def __getitem__(self, i):  # type: ignore[override]
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(len(self)))]
        return self._ctx.fmap(self._model, self._ids[i], self._stage)


@dataclass
class BuildContext:
    """cfg; images ``{id: (H, W, 3) uint8}`` preprocessed at ``cfg.resolution`` (in a build an
    :class:`ImageStore`: each lookup reads the file, so ask :meth:`size` or :meth:`grid` for sizes);
    keys ``{model id: {image id: cache key}}``; entries ``{image id: ImageEntry}``;
    groups ``{group: ids}`` restricted to images that decoded; featured ids;
    extra_keys ``{short side: {model id: {image id: cache key}}}`` for the extra resolutions
    the analyses declared; reference_masks ``{image id: (H, W) bool}`` at the build's
    resolution (loaded when an analysis needs them); artifacts ``{type: value}`` that earlier
    analyses provided; options: the running analysis's own options (an instance of the
    dataclass it registered with ``options=``, filled from ``[analysis]`` of report.toml; None
    for an analysis without)."""

    cfg: ReportConfig
    images: Mapping[str, np.ndarray]
    entries: dict[str, ImageEntry]
    models: tuple[ModelFacts, ...]
    keys: dict[str, dict[str, str]]
    cache: FeatureCache
    writer: FigureWriter
    groups: dict[str, tuple[str, ...]]
    featured: tuple[str, ...]
    random_init: bool
    dtype: str
    extra_keys: dict[int, dict[str, dict[str, str]]] = field(default_factory=dict)
    reference_masks: dict[str, np.ndarray] = field(default_factory=dict)
    artifacts: dict[type, object] = field(default_factory=dict)
    crop: CropRule = CropRule(32, {})
    options: Any = None
    # Per control seed {model id: {image id: cache key}} of the untrained controls (Needs.controls);
    # empty when no analysis asked for them or the build has random weights.
    control_keys: tuple[dict[str, dict[str, str]], ...] = ()

    def fmap(self, model: str, image: str, stage: str, resolution: int | None = None,
             channel: int | None = None) -> np.ndarray:
        """(C, h, w) float32 feature map from the cache, at the build's resolution or at an
        extra ``resolution`` (short side, px) that an analysis declared in its needs; with
        ``channel``, only that channel (h, w), read alone from the file."""
        if resolution is None or resolution == self.cfg.resolution:
            return self.cache.stage(self.keys[model][image], stage, channel)
        return self.cache.stage(self.extra_keys[resolution][model][image], stage, channel)

    def control_fmap(self, model: str, image: str, stage: str, k: int = 0) -> np.ndarray:
        """(C, h, w) float32 map of control ``k`` of ``model`` (its architecture untrained, see
        :class:`dinoreport.analyses.Needs`), aligned cell by cell with :meth:`fmap`."""
        return self.cache.stage(self.control_keys[k][model][image], stage)

    def stage_maps(self, model: str, ids: Sequence[str], stage: str) -> StageMaps:
        """The maps of ``ids`` at ``stage`` as a lazy sequence (:class:`StageMaps`)."""
        return StageMaps(self, model, ids, stage)

    def _hw(self, image: str) -> tuple[int, int]:
        """(H, W) of the preprocessed image, without reading its pixels from a store."""
        if isinstance(self.images, ImageStore):
            return self.images.shape(image)[:2]
        return self.images[image].shape[:2]

    def grid(self, image: str, stride: int) -> tuple[int, int]:
        """(h, w) cells of a stage with this stride for an image at the build's resolution."""
        h, w = self._hw(image)
        return h // stride, w // stride

    def has_resolution(self, resolution: int, model: str) -> bool:
        """Whether ``model``'s features were extracted at the extra ``resolution``."""
        return model in self.extra_keys.get(resolution, {})

    def artifact(self, kind: type[T]) -> T:
        """The artifact of type ``kind`` that an earlier analysis provided."""
        if kind not in self.artifacts:
            raise LookupError(f"no {kind.__name__} in this build: the analysis that provides it did "
                              "not run before (check the analyses' order and needs)")
        return self.artifacts[kind]  # type: ignore[return-value]

    def image_ids(self) -> list[str]:
        return sorted(self.images)

    def size(self, image: str) -> tuple[int, int]:
        """(W, H) of the preprocessed image: the size every map is drawn at."""
        h, w = self._hw(image)
        return w, h

    def panel_size(self, image: str, max_side: int = 448) -> tuple[int, int]:
        """Drawing size for grid panels: the image size shrunk so the long side <= max_side."""
        w, h = self.size(image)
        s = min(1.0, max_side / max(w, h))
        return max(1, round(w * s)), max(1, round(h * s))

    def provenance(self, model: ModelFacts | None = None) -> str:
        """Caption tail: resolution and crop rule, weights source, dtype."""
        bits = [f"short side {self.cfg.resolution} px, sides cropped to multiples of {self.crop.multiple} px"
                + self.crop.explained()]
        if model is not None:
            src = model.weights_source
            if model.weights_sha256:
                src += f" {model.weights_sha256[:8]}"
            bits.append(f"weights: {src}")
        elif self.random_init:
            bits.append("weights: random-init")
        if self.dtype != "fp32":
            bits.append(self.dtype)
        return "(" + ", ".join(bits) + ")"

    def label(self, model: str) -> str:
        return next(m.label for m in self.models if m.id == model)

    def each_model_image(self) -> Iterator[tuple[ModelFacts, str]]:
        for m in self.models:
            for i in self.image_ids():
                yield m, i

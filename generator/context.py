"""The read-only view of a build that every report section works from.

It holds what earlier steps produced (preprocessed images, feature cache keys, model facts)
and answers "give me stage S of model M for image I" from the feature cache; it computes
nothing itself.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterator

import numpy as np

from .config import ReportConfig
from .features import FeatureCache, load_stage
from .figures import FigureWriter
from .images import ImageEntry
from .modelmeta import StageInfo


@dataclass(frozen=True)
class ModelFacts:
    id: str
    label: str
    timm: str
    stages: tuple[StageInfo, ...]
    weights_source: str
    weights_sha256: str | None
    license: str | None
    is_vit: bool
    c5_norm: bool

    @property
    def last(self) -> str:
        return self.stages[-1].name

    def stage(self, name: str) -> StageInfo:
        return next(s for s in self.stages if s.name == name)


@dataclass
class BuildContext:
    """cfg; images ``{id: (H, W, 3) uint8}`` preprocessed at ``cfg.resolution``;
    keys ``{model id: {image id: cache key}}``; entries ``{image id: ImageEntry}``;
    groups ``{group: ids}`` restricted to images that decoded; featured ids."""

    cfg: ReportConfig
    images: dict[str, np.ndarray]
    entries: dict[str, ImageEntry]
    models: tuple[ModelFacts, ...]
    keys: dict[str, dict[str, str]]
    cache: FeatureCache
    writer: FigureWriter
    groups: dict[str, tuple[str, ...]]
    featured: tuple[str, ...]
    random_init: bool
    dtype: str
    extras: dict[str, object] = field(default_factory=dict)
    # (crop multiple, {timm name: what it needs}): see generator.modelmeta.crop_multiple.
    crop: tuple[int, dict[str, int]] = (32, {})

    def fmap(self, model: str, image: str, stage: str) -> np.ndarray:
        """(C, h, w) float32 feature map from the cache."""
        return load_stage(self.cache, self.keys[model][image], stage)

    def image_ids(self) -> list[str]:
        return sorted(self.images)

    def size(self, image: str) -> tuple[int, int]:
        """(W, H) of the preprocessed image: the size every map is drawn at."""
        h, w = self.images[image].shape[:2]
        return w, h

    def panel_size(self, image: str, max_side: int = 448) -> tuple[int, int]:
        """Drawing size for grid panels: the image size shrunk so the long side <= max_side."""
        w, h = self.size(image)
        s = min(1.0, max_side / max(w, h))
        return max(1, round(w * s)), max(1, round(h * s))

    def provenance(self, model: ModelFacts | None = None) -> str:
        """Caption tail: resolution and crop rule, weights source, dtype."""
        multiple, needs = self.crop
        bits = [f"short side {self.cfg.resolution} px, sides cropped to multiples of {multiple} px"]
        if len(set(needs.values())) > 1:
            bits[0] += f" = lcm({', '.join(map(str, sorted(set(needs.values()))))})"
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

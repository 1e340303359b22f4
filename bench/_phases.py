"""What the per-analysis benches share: the report's config from ``--config``/``--images``, and
the phases up to the analyses (resolve, decode, extract into the feature cache) run in this
process with random weights. Import after ``generator/`` is on ``sys.path``."""
from __future__ import annotations

from pathlib import Path
from typing import Any


def load_cfg(config: Path, images: Path | None) -> Any:
    """The ReportConfig of ``config``, or of a folder of images as ``dinoreport build --images``."""
    if images is not None:
        from dinoreport.cli import _load

        return _load(config, images)
    from dinoreport.config import load_config

    return load_config(config)


def up_to_analyses(cfg: Any, opts: Any, tmp: Path, progress: Any) -> tuple[Any, Any, Any]:
    """``(plan, decoded, extracted)``: the build's plan, decoded images (under ``tmp/images``) and
    the models' features, extracted into the user's feature cache when it is cold."""
    from dinoreport.cachedir import cache_dir
    from dinoreport.features import FeatureCache
    from dinoreport.pipeline import decode, extract, resolve

    plan = resolve(cfg, opts)
    decoded = decode(cfg, opts, plan, progress, [], Path(tmp) / "images")
    extracted = extract(cfg, opts, plan, decoded, progress, FeatureCache(cache_dir() / "features"))
    return plan, decoded, extracted

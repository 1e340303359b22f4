"""The Python API: feature maps in a notebook, and a whole build from one call.

:func:`extract` goes through the same steps as a build (decoding, the crop rule, the model's
stages, the content-addressed feature cache), so a notebook and a build with the same model,
weights, images and crop share their cache entries. :func:`build` is ``dinoreport build`` (or,
given ``models``, ``dinoreport compare``) as a function.
"""
from __future__ import annotations

import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .config import ConfigError, ModelSpec, ReportConfig, check_timm_name, load_config
from .modelmeta import ModelFacts

__all__ = ["FeatureMaps", "extract", "build", "compare_config", "model_id", "COMPARE_FOLDER",
           "MIN_COMPARE", "MAX_COMPARE"]

#: The generic report `dinoreport compare` builds: its report.toml (defaults) and narrative.
COMPARE_FOLDER = Path(__file__).with_name("compare")
MIN_COMPARE, MAX_COMPARE = 2, 8  # models of one `dinoreport compare`


def model_id(timm_name: str) -> str:
    """A config id from a timm name: ``convnext_tiny.fb_in1k`` -> ``convnext_tiny_fb_in1k``."""
    return re.sub(r"[^a-z0-9]+", "_", timm_name.lower()).strip("_") or "model"


@dataclass(frozen=True)
class FeatureMaps(Mapping[str, dict[str, np.ndarray]]):
    """Feature maps of one model: ``maps[image id][stage]`` is a ``(C, H, W)`` float32 array.

    Attributes
    ----------
    model : ModelFacts
        The model's id, label, timm name, stages (names, channels, strides) and weights source.
    images : dict of str to ndarray
        The preprocessed photos, ``(H, W, 3)`` uint8, exactly what the model saw; a stage of
        stride ``s`` has ``H / s`` × ``W / s`` cells.
    resolution : int
        Short side in pixels the photos were resized to.
    multiple : int
        Both sides were centre-cropped to multiples of this (the crop rule).
    cache_keys : dict of str to str
        The feature cache key of each image (the same as a build's for the same inputs).
    """

    model: ModelFacts
    images: dict[str, np.ndarray]
    resolution: int
    multiple: int
    cache_keys: dict[str, str]
    maps: dict[str, dict[str, np.ndarray]] = field(repr=False)

    def __getitem__(self, image: str) -> dict[str, np.ndarray]:
        return self.maps[image]

    def __iter__(self) -> Iterator[str]:
        return iter(self.maps)

    def __len__(self) -> int:
        return len(self.maps)

    @property
    def stages(self) -> tuple[str, ...]:
        """The stage names, shallow to deep."""
        return self.model.stage_names

    def stage(self, name: str) -> dict[str, np.ndarray]:
        """``{image id: (C, H, W)}`` of one stage."""
        if name not in self.stages:
            raise KeyError(f"no stage {name!r}; the stages are {', '.join(self.stages)}")
        return {i: m[name] for i, m in self.maps.items()}


def _photos(images: Any, resolution: int, multiple: int) -> dict[str, np.ndarray]:
    """``{id: (H, W, 3) uint8}`` preprocessed as a build does, from a folder (ids as a build
    gives them), a sequence of files (ids from their names) or ``{id: file or RGB array}``."""
    from .images import decode, load_image, preprocess, scan_folder

    if isinstance(images, (str, Path)):
        folder = Path(images)
        iset = scan_folder(folder)
        return {e.id: load_image(e, resolution, multiple=multiple) for e in iset.entries}
    if isinstance(images, Mapping):
        items = list(images.items())
    elif isinstance(images, Sequence):
        items = [(model_id(Path(p).stem), p) for p in images]
    else:
        raise TypeError(f"images must be a folder, a list of files or {{id: file or array}}, got "
                        f"{type(images).__name__}")
    out: dict[str, np.ndarray] = {}
    for iid, item in sorted(items, key=lambda kv: str(kv[0])):
        if isinstance(item, np.ndarray):
            rgb = item
        else:
            rgb = decode(Path(item).read_bytes(), name=str(item))
        out[str(iid)] = preprocess(rgb, resolution, multiple, name=str(iid))
    if not out:
        raise ValueError("images: no images given")
    return out


def extract(model: str, images: Any, *, resolution: int = 448, stages: Sequence[str] | None = None,
            weights: str | Path | None = None, random_init: bool = False, device: str = "auto",
            dtype: str = "fp32", multiple: int | None = None, id: str | None = None,
            seed: int = 0) -> FeatureMaps:
    """Feature maps of one timm model for a set of photos, through the build's feature cache.

    Parameters
    ----------
    model : str
        timm name, e.g. ``"convnext_tiny.dinov3_lvd1689m"``.
    images : folder, sequence of files, or mapping of id to file or (H, W, 3) uint8 array
        A folder is read as a build reads it (a ``manifest.toml`` in it is used; ids are file
        names otherwise).
    resolution : int
        Short side in pixels (default 448, as a build).
    stages : sequence of str, optional
        Stage names (``"C4"``, ``"B6"``...); default: the family default a build shows.
    weights : path, optional
        A local weights file; otherwise the Hugging Face cache, then the hub.
    random_init : bool
        Seeded random weights (offline; what ``--random-init`` builds).
    device : str
        ``"auto"``, ``"cpu"``, ``"cuda"`` or ``"mps"``.
    dtype : str
        ``"fp32"`` or ``"bf16"`` (autocast; maps are float32 either way).
    multiple : int, optional
        Crop sides to multiples of this; default: what this model needs. A build of several
        models crops to their least common multiple: pass that build's ``multiple`` (in
        ``data/build.json``, ``crop.multiple``) to share its cache entries.
    id : str, optional
        The model's id; default :func:`model_id` of ``model``. Under ``random_init`` the
        weights are seeded by the id, so pass the id of a report's model to get its features.
    seed : int
        The random-init seed (a report's ``seed``).

    Returns
    -------
    FeatureMaps
        ``maps[image][stage]`` of shape ``(C, H / stride, W / stride)``, float32.

    Raises
    ------
    BackboneError, WeightsError, ImageError, ConfigError
        An unknown or unusable model, no weights, an unreadable image; each message says what
        to do.
    """
    from .features import FeatureCache, extract_all, model_identity
    from .images import cache_dir
    from .modelmeta import model_meta
    from .pipeline import _model_loader
    from .weights import resolve_all

    check_timm_name(model, "model", Path("extract()"))
    spec = ModelSpec(id=id or model_id(model), timm=model, label=model,
                     weights=Path(weights).resolve() if weights is not None else None,
                     stages=tuple(stages or ()))
    meta = model_meta(spec.timm, spec.stages)
    multiple = multiple or meta.multiple
    if multiple % meta.multiple:
        raise ValueError(f"multiple={multiple}: {model} needs sides that are multiples of {meta.multiple} px; "
                         f"use a multiple of it")
    w = None if random_init else resolve_all((spec,))[spec.id]
    photos = _photos(images, resolution, multiple)
    cache = FeatureCache(cache_dir() / "features")
    identity = model_identity(spec, meta, w.sha256 if w else None, seed, dtype)
    keys = extract_all(identity, photos, cache, make_backbone=_model_loader(spec, w, seed),
                       device=device, dtype=dtype)
    maps = {i: {s.name: cache.stage(keys[i], s.name) for s in meta.stages} for i in sorted(photos)}
    return FeatureMaps(model=ModelFacts.of(spec, meta, w), images=photos, resolution=resolution,
                       multiple=multiple, cache_keys=keys, maps=maps)


def compare_config(models: Sequence[str], *, images: str | Path | None = None,
                   weights: Mapping[str, str | Path] | None = None, resolution: int | None = None,
                   where: str = "dinoreport compare") -> ReportConfig:
    """The config of a report comparing timm models, without a report.toml of one's own.

    Parameters
    ----------
    models : sequence of str
        2 to 8 timm names (:data:`MIN_COMPARE`, :data:`MAX_COMPARE`); ids and labels come from
        the names, stages from each model's own facts (the family default).
    images : folder, optional
        The photos; default: the three scikit-image photos of ``dinoreport new``.
    weights : mapping of timm name (or id) to file, optional
        Local weights files.
    resolution : int, optional
        Short side; default 448 snapped to the models' crop rule.
    where : str
        How errors name the source (the command, or ``build()``).

    Raises
    ------
    ConfigError
        Too few or too many models, an unknown timm name (with the closest real ones), a
        weights file that is missing or names no model of the list.
    """
    from dataclasses import replace

    from .modelmeta import BackboneError, crop_multiple, model_meta

    names = list(models)
    if not MIN_COMPARE <= len(names) <= MAX_COMPARE:
        raise ConfigError(f"{where}: give {MIN_COMPARE} to {MAX_COMPARE} timm names, got {len(names)}")
    for i, name in enumerate(names):
        check_timm_name(name, f"model {i + 1}", Path(where))
    base = load_config(COMPARE_FOLDER / "report.toml")
    ids: list[str] = []
    for name in names:
        mid = model_id(name)
        mid = mid if mid not in ids else f"{mid}_{sum(i.startswith(mid) for i in ids) + 1}"
        ids.append(mid)
    files = dict(weights or {})
    unknown = sorted(set(files) - set(names) - set(ids))
    if unknown:
        raise ConfigError(f"{where}: --weights {unknown[0]}=...: no model of the list is called that; "
                          f"use one of {', '.join(names)}")
    specs = []
    for mid, name in zip(ids, names):
        file = files.get(name, files.get(mid))
        path = Path(file).resolve() if file is not None else None
        if path is not None and not path.is_file():
            raise ConfigError(f"{where}: --weights {name}={file}: file not found")
        specs.append(ModelSpec(id=mid, timm=name, label=name, weights=path))
    try:
        need = {s.timm: model_meta(s.timm).multiple for s in specs}
    except BackboneError as e:
        raise ConfigError(f"{where}: {e}") from None
    m = crop_multiple(need)
    res = resolution or max(m, round(base.resolution / m) * m)
    cfg = replace(base, models=tuple(specs), resolution=res,
                  analysis=base.analysis.with_values(highres=[res, 2 * res]))
    return cfg.with_images_dir(Path(images)) if images is not None else cfg


def build(config: str | Path | ReportConfig | None = None, *, out: str | Path = "site",
          images: str | Path | None = None, models: Sequence[str] | None = None,
          analyses: Sequence[str] | None = None, skip: Sequence[str] = (), random_init: bool = False,
          weights: Mapping[str, str | Path] | None = None, resolution: int | None = None,
          device: str = "auto", dtype: str = "fp32", force: bool = False, quiet: bool = True,
          jobs: int = 0) -> Any:
    """Build a report, as ``dinoreport build`` (or ``dinoreport compare`` given ``models``).

    Parameters
    ----------
    config : path or ReportConfig, optional
        A report.toml; default: ``./report.toml`` if there is one, else the project's report.
        With ``models`` it is not used (the generic comparison report is).
    out : path
        The site folder (replaced atomically).
    images : folder, optional
        Build from this folder instead of the config's images.
    models : sequence of str, optional
        timm names to compare (2 to 8), as ``dinoreport compare``.
    analyses, skip : sequence of str
        ``--analyses`` and ``--skip`` (:func:`dinoreport.pipeline.choose_analyses`).
    random_init : bool
        Seeded random weights.
    weights : mapping of timm name (or id) to file, optional
        With ``models``: local weights files.
    resolution : int, optional
        Short side in px instead of the config's (with ``models``: default 448 on the crop rule).
    device, dtype, force, quiet, jobs
        As the command's flags.

    Returns
    -------
    BuildSummary
        Timings and counts; ``.index``, ``.report``, ``.results_path`` and ``.results`` (the
        loaded ``data/results.json``).
    """
    from .cli import DEFAULT_CONFIG
    from .pipeline import BuildOptions
    from .pipeline import build as run_build

    if models is not None:
        if config is not None:
            raise ValueError("build(): give config or models, not both")
        cfg = compare_config(models, images=images, weights=weights, resolution=resolution,
                             where="build(models=...)")
    else:
        from dataclasses import replace

        cfg = config if isinstance(config, ReportConfig) else load_config(Path(config or DEFAULT_CONFIG))
        if images is not None:
            cfg = cfg.with_images_dir(Path(images))
        if resolution is not None:
            cfg = replace(cfg, resolution=int(resolution))
    opts = BuildOptions(out=Path(out), random_init=random_init, device=device, dtype=dtype, quiet=quiet,
                        force=force, jobs=jobs, analyses=tuple(analyses) if analyses is not None else None,
                        skip=tuple(skip))
    return run_build(cfg, opts)

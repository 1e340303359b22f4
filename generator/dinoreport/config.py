"""``site_src/report.toml`` -> frozen dataclasses, validated with errors that name the key.

Relative paths resolve against the config file's folder (as MkDocs does). Every problem
is reported with its dotted key, e.g. ``models.dinov3_vits16.timm``.
"""
from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Mapping

from .suggest import closest, did_you_mean
from .textfile import NotUTF8, read_utf8

__all__ = [
    "ConfigError",
    "ModelSpec",
    "ImagesConfig",
    "AnalysisSettings",
    "ReportConfig",
    "load_config",
]


class ConfigError(ValueError):
    """A problem in report.toml; the message starts with the file and the dotted key."""


ID_RE = re.compile(r"^[a-z0-9][a-z0-9_]*$")

# Bounds on what one config can ask for. Memory and time grow with the square of the
# resolution (and attention with the square of the tokens), and linearly with models and
# images: past these a build does not finish on any machine this tool is meant for.
MAX_RESOLUTION = 1024
MAX_MODELS = 32
MAX_BATCH = 256
MAX_SEED = 2**32 - 1
DEFAULT_MAX_IMAGES = 1000
MAX_TIMEOUT_S = 7 * 24 * 3600  # analysis.timeout_s: longer is a typo (0 turns the limit off)


@dataclass(frozen=True)
class ModelSpec:
    """One backbone of the report.

    id : short name used in files, JSON and captions (``[a-z0-9_]+``).
    timm : timm model name with pretrained tag (``convnext_tiny.dinov3_lvd1689m``).
    label : human label for captions.
    weights : optional local weights file (safetensors or a torch checkpoint).
    convnext_c5_norm : apply the head LayerNorm to C5 per position (ConvNeXt only).
    stages : stage names to show (``B6``, ``C4``, ...); empty: the family default
        (see :mod:`dinoreport.backbones`). Checked against the model when the build starts.
    """

    id: str
    timm: str
    label: str
    weights: Path | None = None
    convnext_c5_norm: bool = False
    stages: tuple[str, ...] = ()


@dataclass(frozen=True)
class ImagesConfig:
    manifest: Path | None
    dir: Path | None
    featured: tuple[str, ...]
    max_pixels: int = 64_000_000
    max_images: int = DEFAULT_MAX_IMAGES  # time, results and the page grow with every image


@dataclass(frozen=True)
class AnalysisSettings:
    """The ``[analysis]`` table.

    timeout_s : seconds every analysis may run, over what each declares
        (:func:`dinoreport.runner.deadline`); 0: no limit; None: each analysis's own. The
        build's own key, part of no cache key.
    values : every other key as written, ``{key: TOML value}`` sorted by key: the options of the
        analyses, checked against what the registered analyses declare once they are loaded
        (:func:`dinoreport.analyses.resolve_options`; each analysis reads its own as
        ``ctx.options``).
    """

    timeout_s: float | None = None
    values: Mapping[str, Any] = field(default_factory=dict)

    def with_values(self, **values: Any) -> "AnalysisSettings":
        """The same table with ``values`` set (as report.toml would give them)."""
        return replace(self, values=dict(sorted({**self.values, **values}.items())))


@dataclass(frozen=True)
class ReportConfig:
    path: Path
    title: str
    author: str
    resolution: int
    seed: int
    batch_size: int
    models: tuple[ModelSpec, ...]
    images: ImagesConfig
    groups: dict[str, tuple[str, ...]] = field(default_factory=dict)
    analysis: AnalysisSettings = field(default_factory=AnalysisSettings)
    # The analyses to run (and what they need); empty: every registered one. Names are checked
    # when the build starts, once the report's own analyses are loaded.
    analyses: tuple[str, ...] = ()
    # `theme`: a folder (relative to report.toml) over the default theme; None: the default alone.
    theme: Path | None = None

    @property
    def root(self) -> Path:
        return self.path.parent

    def with_images_dir(self, folder: Path) -> "ReportConfig":
        """The same config reading images from ``folder`` (``--images DIR``)."""
        return replace(
            self, images=replace(self.images, manifest=None, dir=folder.resolve(), featured=()),
            groups={},
        )


class _Reader:
    """Reads one TOML table, remembering its dotted key for messages."""

    def __init__(self, path: Path, table: Any, key: str):
        self.path, self.key = path, key
        if not isinstance(table, dict):
            self.fail(key, f"must be a table, got {type(table).__name__}")
        self.table = table

    def fail(self, key: str, what: str):
        raise ConfigError(f"{self.path}: {key}: {what}")

    def dotted(self, name: str) -> str:
        return f"{self.key}.{name}" if self.key else name

    def check_keys(self, allowed: set[str]) -> None:
        for name in sorted(self.table):
            if name not in allowed:
                self.fail(self.dotted(name), "unknown key" + did_you_mean(name, allowed))

    def get(self, name: str, typ: type | tuple, default: Any = ..., *, required: bool = False):
        if name not in self.table:
            if required or default is ...:
                self.fail(self.dotted(name), "is required")
            return default
        value = self.table[name]
        # bool is an int in Python; a flag given as 1 is a mistake worth naming.
        bad_bool = isinstance(value, bool) and bool not in (typ if isinstance(typ, tuple) else (typ,))
        if bad_bool or not isinstance(value, typ):
            want = typ.__name__ if isinstance(typ, type) else " or ".join(t.__name__ for t in typ)
            self.fail(self.dotted(name), f"must be {want}, got {type(value).__name__} {value!r}")
        return value

    def str_list(self, name: str, default: tuple = ()) -> tuple[str, ...]:
        value = self.get(name, list, list(default))
        for i, item in enumerate(value):
            if not isinstance(item, str):
                self.fail(f"{self.dotted(name)}[{i}]", f"must be a string, got {item!r}")
        return tuple(value)

    def file_path(self, name: str, root: Path) -> Path | None:
        value = self.get(name, str, None)
        return None if value is None else (root / value).resolve()


def check_timm_name(name: str, key: str, path: Path) -> None:
    """Raise ConfigError for a timm name that timm does not know, with the closest real names."""
    from .modelmeta import timm_names

    archs, pretrained = timm_names()
    arch = name.split(".", 1)[0]
    if arch in archs and ("." not in name or name in pretrained):
        return
    if arch in archs:
        tags = sorted(n for n in pretrained if n.startswith(arch + "."))
        hint = closest(name, tags) or tags[:5]
    else:
        hint = closest(name, sorted(pretrained))
    hint_s = f" — closest timm names: {', '.join(hint)}" if hint else ""
    raise ConfigError(f"{path}: {key}: unknown timm model '{name}'{hint_s}")


def _models(path: Path, raw: Any, root: Path) -> tuple[ModelSpec, ...]:
    if not isinstance(raw, list) or not raw:
        raise ConfigError(f"{path}: models: give at least one [[models]] table")
    if len(raw) > MAX_MODELS:
        raise ConfigError(f"{path}: models: {len(raw)} [[models]] tables; at most {MAX_MODELS} fit in one "
                          "report (each adds a row to every figure) — split them into several reports")
    out: list[ModelSpec] = []
    seen: set[str] = set()
    for i, table in enumerate(raw):
        r = _Reader(path, table, f"models[{i}]")
        mid = r.get("id", str, required=True)
        r.key = f"models.{mid}"
        r.check_keys({"id", "timm", "label", "weights", "convnext_c5_norm", "stages"})
        if not ID_RE.match(mid):
            r.fail(r.key, "id must be lowercase letters, digits and '_' (e.g. dinov3_vits16)")
        if mid in seen:
            r.fail(r.key, "duplicate model id")
        seen.add(mid)
        name = r.get("timm", str, required=True)
        check_timm_name(name, r.dotted("timm"), path)
        weights = r.file_path("weights", root)
        if weights is not None and not weights.is_file():
            r.fail(r.dotted("weights"), f"file not found: {weights}")
        out.append(
            ModelSpec(
                id=mid,
                timm=name,
                label=r.get("label", str, mid),
                weights=weights,
                convnext_c5_norm=r.get("convnext_c5_norm", bool, False),
                stages=r.str_list("stages"),
            )
        )
    return tuple(out)


def _theme(top: _Reader, root: Path) -> Path | None:
    """``theme = "DIR"``: the folder relative to the config's, which must exist."""
    folder = top.file_path("theme", root)
    if folder is not None and not folder.is_dir():
        what = "is not a folder" if folder.exists() else "does not exist"
        top.fail("theme", f"the theme folder {folder} {what}; give a folder (relative to this file) holding "
                          "the templates and static files it overrides, see docs/themes.md")
    return folder


def load_config(path: Path) -> ReportConfig:
    """Read and validate ``report.toml``.

    Raises
    ------
    ConfigError
        Naming the file and the dotted key, and what to do.
    """
    path = Path(path).resolve()
    if not path.is_file():
        raise ConfigError(f"{path}: config file not found (pass --config FILE)")
    try:
        raw = tomllib.loads(read_utf8(path))  # a byte order mark is accepted, UTF-16 is not
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{path}: not valid TOML: {e}") from None
    except NotUTF8 as e:
        raise ConfigError(f"{path}: not UTF-8 text ({e}); save it as UTF-8") from None
    except OSError as e:
        raise ConfigError(f"{path}: cannot read the config ({e.strerror or e}); check its permissions") from None
    root = path.parent
    top = _Reader(path, raw, "")
    top.check_keys(
        {"title", "author", "resolution", "seed", "batch_size", "models", "images", "groups", "analysis",
         "analyses", "theme"}
    )
    resolution = top.get("resolution", int, 448)
    # Whether it suits the models (a multiple of their patch/stride) is checked when the build
    # starts, once their facts are known (dinoreport.modelmeta.crop_multiple).
    if not 14 <= resolution <= MAX_RESOLUTION:
        top.fail("resolution", f"must be from 14 (one ViT/14 patch) to {MAX_RESOLUTION} (memory grows with "
                               f"its square), got {resolution}")
    batch_size = top.get("batch_size", int, 4)
    if not 1 <= batch_size <= MAX_BATCH:
        top.fail("batch_size", f"must be from 1 to {MAX_BATCH}, got {batch_size}")
    seed = top.get("seed", int, 0)
    if not 0 <= seed <= MAX_SEED:
        top.fail("seed", f"must be from 0 to {MAX_SEED} (a seed for numpy and torch), got {seed}")

    im = _Reader(path, top.get("images", dict, {}), "images")
    im.check_keys({"manifest", "dir", "featured", "max_pixels", "max_images"})
    manifest, folder = im.file_path("manifest", root), im.file_path("dir", root)
    if manifest is not None and folder is not None:
        im.fail("images", "give either 'manifest' or 'dir', not both")
    if manifest is None and folder is None:
        im.fail("images.manifest", "is required (or images.dir)")
    max_pixels = im.get("max_pixels", int, 64_000_000)
    if max_pixels < 1:
        im.fail("images.max_pixels", f"must be >= 1, got {max_pixels}")
    max_images = im.get("max_images", int, DEFAULT_MAX_IMAGES)
    if max_images < 1:
        im.fail("images.max_images", f"must be >= 1, got {max_images}")
    images = ImagesConfig(manifest, folder, im.str_list("featured"), max_pixels, max_images)

    gr = _Reader(path, top.get("groups", dict, {}), "groups")
    groups = {name: gr.str_list(name) for name in sorted(gr.table)}

    an = _Reader(path, top.get("analysis", dict, {}), "analysis")
    timeout_s = an.get("timeout_s", (int, float), None)
    if timeout_s is not None and not 0 <= timeout_s <= MAX_TIMEOUT_S:
        an.fail("analysis.timeout_s", f"must be seconds from 0 (no limit) to {MAX_TIMEOUT_S} (a week), "
                f"got {timeout_s!r}")
    analysis = AnalysisSettings(timeout_s=None if timeout_s is None else float(timeout_s),
                                values={k: v for k, v in sorted(an.table.items()) if k != "timeout_s"})
    models = _models(path, raw.get("models"), root)
    return ReportConfig(
        path=path,
        title=top.get("title", str, "Feature maps"),
        author=top.get("author", str, ""),
        resolution=resolution,
        seed=seed,
        batch_size=batch_size,
        models=models,
        images=images,
        groups=groups,
        analysis=analysis,
        analyses=top.str_list("analyses"),
        theme=_theme(top, root),
    )

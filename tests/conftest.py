"""Shared fixtures: an isolated cache, no network, and one small demo build reused by many tests."""
from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

PROJECT = Path(__file__).resolve().parents[1]
SHARED_IMAGES = PROJECT.parent / "shared" / "images"


@pytest.fixture(autouse=True, scope="session")
def _isolated_env(tmp_path_factory):
    """Every test runs offline with its own cache and an empty Hugging Face cache."""
    root = tmp_path_factory.mktemp("env")
    old = {k: os.environ.get(k) for k in ("DINOREPORT_CACHE", "HF_HOME", "HF_HUB_OFFLINE")}
    os.environ["DINOREPORT_CACHE"] = str(root / "cache")
    os.environ["HF_HOME"] = str(root / "hf")
    os.environ["HF_HUB_OFFLINE"] = "1"
    yield
    for k, v in old.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


def planted_photo(h: int, w: int, corner: str = "tl", seed: int = 0) -> np.ndarray:
    """A grey noisy photo with a distinct red square in one corner (uint8, (h, w, 3))."""
    rng = np.random.default_rng(seed)
    img = np.clip(120 + rng.integers(-10, 10, (h, w, 3)), 0, 255).astype(np.uint8)
    s = min(h, w) // 3
    ys = slice(s // 4, s // 4 + s) if corner[0] == "t" else slice(h - s - s // 4, h - s // 4)
    xs = slice(s // 4, s // 4 + s) if corner[1] == "l" else slice(w - s - s // 4, w - s // 4)
    img[ys, xs] = (230, 30, 30)
    return img


def write_project(folder: Path, images: dict[str, np.ndarray], *, models: str | None = None,
                  resolution: int = 224, extra: str = "", highres: list[int] | None = None,
                  sweep: list[int] | None = None) -> Path:
    """A config + narrative + image folder under ``folder``; returns the config path.

    ``highres``: the gallery resolutions (default ``[resolution, 2 * resolution]``); pass
    ``[resolution]`` for a faster build without a second extraction. ``sweep``: the resolution
    sweep's short sides (default: the same as ``highres``, so no further extraction).
    """
    highres = list(highres or [resolution, resolution * 2])
    src = folder / "site_src"
    src.mkdir(parents=True)
    for md in sorted((PROJECT / "site_src").glob("*.md")):
        shutil.copy(md, src / md.name)
    imgdir = folder / "photos"
    imgdir.mkdir()
    for name, arr in images.items():
        Image.fromarray(arr).save(imgdir / f"{name}.png")
    models = models or (
        '[[models]]\nid = "dinov3_convnext_tiny"\ntimm = "convnext_tiny.dinov3_lvd1689m"\nlabel = "ConvNeXt-T (DINOv3)"\n\n'
        '[[models]]\nid = "dinov3_vits16"\ntimm = "vit_small_patch16_dinov3.lvd1689m"\nlabel = "ViT-S/16 (DINOv3)"\n'
    )
    cfg = src / "report.toml"
    cfg.write_text(
        f'title = "Test report"\nauthor = "tests"\nresolution = {resolution}\nseed = 0\n\n{models}\n'
        f'[images]\ndir = "../photos"\n\n[analysis]\nhighres = {highres}\nsweep = {list(sweep or highres)}\n{extra}'
    )
    return cfg


@pytest.fixture(scope="session")
def demo_site(tmp_path_factory) -> Path:
    """A --random-init build of two small planted images at resolution 224 (built once)."""
    from dinoreport.config import load_config
    from dinoreport.pipeline import BuildOptions, build

    root = tmp_path_factory.mktemp("demo")
    cfg = write_project(root, {"dog_a": planted_photo(224, 288, "tl"), "dog_b": planted_photo(256, 224, "br", 1)})
    out = root / "site"
    build(load_config(cfg), BuildOptions(out=out, random_init=True, quiet=True))
    return out


@pytest.fixture(scope="session")
def default_demo_site(tmp_path_factory) -> Path:
    """The default demo: the project's own config and images, random init (built once per
    session, a few minutes; every test of the shipped report shares it)."""
    from dinoreport.config import load_config
    from dinoreport.pipeline import BuildOptions, build

    out = tmp_path_factory.mktemp("default-demo") / "site"
    root = Path(__file__).resolve().parents[1]
    build(load_config(root / "site_src" / "report.toml"), BuildOptions(out=out, random_init=True, quiet=True))
    return out


@pytest.fixture()
def isolated_cache(tmp_path, monkeypatch):
    """A cache folder of this test's own."""
    monkeypatch.setenv("DINOREPORT_CACHE", str(tmp_path / "cache"))


@pytest.fixture()
def local_network_only(monkeypatch):
    """Any download to a host other than 127.0.0.1 fails the test."""
    import dinoreport.images.fetching as fetching

    real = fetching._download

    def guarded(url: str, *args, **kwargs):
        assert url.startswith("http://127.0.0.1:"), f"test tried to reach the network: {url}"
        return real(url, *args, **kwargs)

    monkeypatch.setattr(fetching, "_download", guarded)


def image_entry(**kw):
    """An ImageEntry with placeholder credits; ``kw`` sets or overrides fields."""
    from dinoreport.images import ImageEntry

    base = dict(id="x", subject="x", groups=(), author="a", license="CC0 1.0")
    base.update(kw)
    return ImageEntry(**base)


def blob_photo(rng: np.random.Generator, side: int = 64) -> np.ndarray:
    """(side, side) float grey photo: four flat rectangles of random brightness on black."""
    img = np.zeros((side, side))
    for _ in range(4):
        y, x = rng.integers(0, side - 16, 2)
        hh, ww = rng.integers(8, 24, 2)
        img[y:y + hh, x:x + ww] = rng.uniform(0.3, 1.0)
    return img


SQUARE_CORNERS = ("tl", "tr", "bl", "br")
_SQUARE_ENTRY = """
[[image]]
id = "{id}"
subject = "planted square"
groups = ["dogs"]
author = "tests"
license = "CC0 1.0"
file = "{id}.png"
mask_polygons = [{square}]
"""


def square_project(tmp_path: Path, models: str | None = None) -> Path:
    """Four 96 px photos, each a red square in another corner, outlined by mask_polygons, in
    the group "dogs"; resolution 64 (2 x 2 cells at C5)."""
    cfg_path = write_project(tmp_path, {}, models=models, resolution=64, highres=[64])
    photos = tmp_path / "photos"
    entries = []
    for n, corner in enumerate(SQUARE_CORNERS):
        img = planted_photo(96, 96, corner, seed=n)
        s = 96 // 3
        y0 = s // 4 if corner[0] == "t" else 96 - s - s // 4
        x0 = s // 4 if corner[1] == "l" else 96 - s - s // 4
        square = [[x0 / 96, y0 / 96], [(x0 + s) / 96, y0 / 96], [(x0 + s) / 96, (y0 + s) / 96],
                  [x0 / 96, (y0 + s) / 96]]
        iid = f"sq_{corner}"
        Image.fromarray(img).save(photos / f"{iid}.png")
        entries.append(_SQUARE_ENTRY.format(id=iid, square=square))
    (photos / "manifest.toml").write_text("".join(entries))
    cfg_path.write_text(cfg_path.read_text().replace('dir = "../photos"', 'manifest = "../photos/manifest.toml"'))
    return cfg_path


def rot_in_place(p: Path, offset: int = -3, flip: int = 0xFF) -> None:
    """Flip bits of one byte of ``p`` keeping its size and modification time (bit rot, a
    restored backup)."""
    st = os.stat(p)
    data = bytearray(p.read_bytes())
    data[offset] ^= flip
    p.write_bytes(bytes(data))
    os.utime(p, ns=(st.st_atime_ns, st.st_mtime_ns))


@pytest.fixture()
def registry_restored():
    """Analyses registered by a test (they register globally) are gone after it."""
    from dinoreport.analyses import registry

    saved = dict(registry._REGISTRY)
    yield
    registry._REGISTRY.clear()
    registry._REGISTRY.update(saved)


def git(*args: str, cwd: Path) -> str:
    """Run git (its output, stdout); a failure fails the test."""
    return subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, check=True).stdout


@pytest.fixture()
def bare(tmp_path) -> Path:
    """An empty bare repository to publish to."""
    repo = tmp_path / "pages.git"
    git("init", "-q", "--bare", str(repo), cwd=tmp_path)
    return repo


def publish_cli(site: Path, remote: Path, *extra: str):
    """``dinoreport publish --site SITE --remote REMOTE ...`` through typer's test runner."""
    from typer.testing import CliRunner

    from dinoreport.cli import app

    return CliRunner().invoke(app, ["publish", "--site", str(site), "--remote", str(remote), *extra])

"""Bad input and faults, end to end: what the user sees in the terminal and in the report.

Determinism lives in test_build.py, offline-ness in conftest (HF_HUB_OFFLINE=1 for the whole
suite); the decoder's own failure messages in test_images_decode.py.
"""
from __future__ import annotations

import errno
import io
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from dinoreport.cli import app
from dinoreport.config import ConfigError, load_config
from dinoreport.images import ImageError
from dinoreport.pipeline import BuildOptions, build

from conftest import planted_photo, write_project

ONE_MODEL = '[[models]]\nid = "m"\ntimm = "convnext_tiny.fb_in1k"\n'


def cli(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "dinoreport.cli", *args], capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, "COLUMNS": "200"})


def _tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _truncated_jpeg() -> bytes:
    rng = np.random.default_rng(0)
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 255, (128, 128, 3), dtype=np.uint8)).save(buf, "JPEG", quality=90)
    data = buf.getvalue()
    return data[: len(data) // 2]


@pytest.fixture
def bad_folder_project(tmp_path) -> Path:
    cfg = write_project(tmp_path, {"dog_a": planted_photo(224, 224, "tl"), "dog_b": planted_photo(240, 224, "br", 1)},
                        models=ONE_MODEL, highres=[224])
    photos = tmp_path / "photos"
    (photos / "cut.jpg").write_bytes(_truncated_jpeg())
    (photos / "empty.jpg").write_bytes(b"")
    (photos / "notes.jpg").write_text("this is not an image\n")
    return cfg


# --------------------------------------------------------------------------- --keep-going

def test_bad_image_stops_the_build_naming_file_and_reason(bad_folder_project, tmp_path):
    out = tmp_path / "site"
    r = cli("build", "--random-init", "--config", str(bad_folder_project), "--out", str(out), timeout=120)
    assert r.returncode != 0
    # files are decoded in id order: the truncated JPEG is the first bad one
    assert "cut.jpg" in r.stderr and "truncated" in r.stderr, r.stderr
    assert "Traceback" not in r.stderr
    assert not out.exists()


def test_keep_going_skips_bad_images_and_lists_them(bad_folder_project, tmp_path):
    out = tmp_path / "site"
    r = cli("build", "--random-init", "--keep-going", "--config", str(bad_folder_project), "--out", str(out))
    assert r.returncode == 0, r.stderr
    # "<id> (<path>): <reason>"
    expected = {"cut": r"cut\.jpg\): cannot decode JPEG .*truncated",
                "empty": r"empty\.jpg\): empty file \(0 bytes\)",
                "notes": r"notes\.jpg\): not a recognised image file"}

    for image_id, why in expected.items():
        assert re.search(rf"skipped image {image_id}: .*{why}", r.stderr), (image_id, r.stderr)
    assert "3 images skipped" in r.stderr
    index = (out / "index.html").read_text()
    section = index[index.index('id="skipped-images"'):]
    section = section[: section.index("</section>")]
    for image_id, why in expected.items():
        assert re.search(rf"<code>{image_id}</code>: .*{why}", section), (image_id, section)
    # the good images made it into the report, the bad ones into no figure
    assert "<code>dog_a</code>" in index and "<code>dog_b</code>" in index


# --------------------------------------------------------------------------- config groups

def test_group_naming_a_missing_image(tmp_path):
    cfg_path = write_project(tmp_path, {"dog_a": planted_photo(224, 224)}, models=ONE_MODEL, highres=[224])
    text = cfg_path.read_text().replace("[images]", '[groups]\ndogs = ["dog_a", "dog_aa"]\n\n[images]')
    cfg_path.write_text(text)
    cfg = load_config(cfg_path)
    with pytest.raises(ConfigError, match=r"groups\.dogs\[1\]: no image 'dog_aa' in .*did you mean 'dog_a'\?"):
        build(cfg, BuildOptions(out=tmp_path / "site", random_init=True, quiet=True))
    r = cli("build", "--random-init", "--config", str(cfg_path), "--out", str(tmp_path / "site"), timeout=120)
    assert r.returncode != 0
    assert "groups.dogs[1]: no image 'dog_aa'" in r.stderr and "did you mean 'dog_a'?" in r.stderr
    assert not (tmp_path / "site").exists()


# --------------------------------------------------------------------------- disk full

def test_disk_full_keeps_previous_site_and_says_so(tmp_path, demo_site, monkeypatch):
    import dinoreport.pipeline as pipeline

    out = tmp_path / "site"
    shutil.copytree(demo_site, out)
    before = _tree(out)

    # The disk fills up while the site's data files are written, after the figures and pages
    # (figures may come from the section cache, so this is the seam every build goes through).
    def full(obj, path):
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    monkeypatch.setattr(pipeline, "_json_dump", full)
    cfg = demo_site.parent / "site_src" / "report.toml"
    r = CliRunner().invoke(app, ["build", "--random-init", "--quiet", "--config", str(cfg), "--out", str(out), "--force"])
    assert r.exit_code != 0
    assert "could not write the report" in r.output and "No space left on device" in r.output, r.output
    assert "free disk space" in r.output
    assert _tree(out) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["site"]  # no .site.tmp-* left


# --------------------------------------------------------------------------- HTML escaping

MANIFEST = """
[[image]]
id = "{id}"
subject = "A <i>planted</i> square"
file = "a.png"
author = "<b>Mallory</b> & co"
license = "CC0 1.0"
"""


def _manifest_project(tmp_path: Path, title: str, manifest: str, images: dict[str, np.ndarray]) -> Path:
    pics = tmp_path / "pics"
    pics.mkdir()
    for name, arr in images.items():
        Image.fromarray(arr).save(pics / name)
    (pics / "manifest.toml").write_text(manifest)
    src = tmp_path / "site_src"
    src.mkdir()
    for md in sorted((Path(__file__).resolve().parents[1] / "site_src").glob("*.md")):
        shutil.copy(md, src / md.name)
    cfg = src / "report.toml"
    cfg.write_text(f"title = {title}\nauthor = \"<b>me</b>\"\nresolution = 224\n\n{ONE_MODEL}\n"
                   '[images]\nmanifest = "../pics/manifest.toml"\n\n[analysis]\nhighres = [224]\n')
    return cfg


def test_title_and_credits_are_html_escaped(tmp_path):
    title = r'"<script>alert(1)</script> & \"quotes\""'
    cfg = _manifest_project(tmp_path, title, MANIFEST.format(id="planted"), {"a.png": planted_photo(224, 224)})
    out = tmp_path / "site"
    build(load_config(cfg), BuildOptions(out=out, random_init=True, quiet=True, analyses=("within_pca",)))
    for name in ("index.html", "report.html"):
        page = (out / name).read_text()
        assert "<script>alert" not in page, name
        assert "&lt;script&gt;alert(1)&lt;/script&gt; &amp; &#34;quotes&#34;" in page, name
        assert "<b>Mallory</b>" not in page and "&lt;b&gt;Mallory&lt;/b&gt; &amp; co" in page, name
        assert "<b>me</b>" not in page and "&lt;b&gt;me&lt;/b&gt;" in page, name
        assert "<i>planted</i>" not in page, name


# --------------------------------------------------------------------------- paths escaping

def test_manifest_file_outside_its_folder_is_refused_by_the_cli(tmp_path):
    manifest = MANIFEST.format(id="planted").replace('file = "a.png"', 'file = "../../etc/passwd"')
    cfg = _manifest_project(tmp_path, '"t"', manifest, {"a.png": planted_photo(224, 224)})
    r = cli("build", "--random-init", "--config", str(cfg), "--out", str(tmp_path / "site"), timeout=120)
    assert r.returncode != 0
    assert "images.planted.file" in r.stderr and "points outside the manifest's folder" in r.stderr, r.stderr
    assert not (tmp_path / "site").exists()


def test_images_dir_or_flag_naming_a_file_is_refused(tmp_path):
    cfg = write_project(tmp_path, {"a": planted_photo(224, 224)}, models=ONE_MODEL, highres=[224])
    cfg.write_text(cfg.read_text().replace('dir = "../photos"', 'dir = "/etc/passwd"'))
    with pytest.raises(ConfigError, match=r"images\.dir: folder not found: /etc/passwd"):
        build(load_config(cfg), BuildOptions(out=tmp_path / "site", random_init=True, quiet=True))
    r = cli("build", "--random-init", "--images", "/etc/passwd", "--config", str(cfg),
            "--out", str(tmp_path / "site"), timeout=120)
    assert r.returncode != 0 and "--images /etc/passwd: not a folder" in r.stderr, r.stderr


# --------------------------------------------------------------------------- URL images not fetched

def test_url_image_not_fetched_is_skipped_and_listed(tmp_path):
    manifest = """
[[image]]
id = "astronaut"
package = "skimage:astronaut"
author = "NASA"
license = "Public domain"

[[image]]
id = "dog_pug"
url = "https://example.org/pug.jpg"
author = "someone"
license = "CC0 1.0"
"""
    cfg = _manifest_project(tmp_path, '"t"', manifest, {})
    out = tmp_path / "site"
    summary = build(load_config(cfg), BuildOptions(out=out, random_init=True, quiet=True, analyses=("within_pca",)))
    assert [i for i, _ in summary.skipped] == ["dog_pug"]
    assert "not fetched yet: run `dinoreport images fetch`" in summary.skipped[0][1]
    index = (out / "index.html").read_text()
    assert 'id="skipped-images"' in index
    assert "<code>dog_pug</code>: not fetched yet: run `dinoreport images fetch`" in index
    assert "<code>astronaut</code>" in index


# --------------------------------------------------------------------------- local files that are not there

_LOCAL = """
[[image]]
id = "good"
file = "good.png"
author = "tests"
license = "CC0 1.0"

[[image]]
id = "gone"
file = "{file}"
author = "tests"
license = "CC0 1.0"
"""


def _local_project(tmp_path: Path, file: str) -> Path:
    cfg = _manifest_project(tmp_path, '"t"', _LOCAL.format(file=file), {"good.png": planted_photo(224, 224)})
    if file == "pipe":
        os.mkfifo(tmp_path / "pics" / "pipe")
    return cfg


@pytest.mark.parametrize("file, problem", [
    ("missing.jpg", "file not found; put the file there or correct the path"),
    ("pipe", "not a regular file: it is a named pipe; point it at an image file"),
    (".", "not a regular file: it is a folder; point it at an image file"),
])
def test_local_file_that_cannot_be_read_stops_the_build(tmp_path, file, problem):
    """A local file has no URL: "run `dinoreport images fetch`" would be wrong advice. The build
    stops naming the manifest, the entry and the file (and never opens a named pipe)."""
    if file == "pipe" and not hasattr(os, "mkfifo"):
        pytest.skip("no named pipes here")
    cfg = _local_project(tmp_path, file)
    manifest = tmp_path / "pics" / "manifest.toml"
    with pytest.raises(ImageError, match=re.escape(f"{manifest}: images.gone.file '{file}' (")
                       + r".*" + re.escape(f"): {problem} (it is a local file: there is nothing to fetch), "
                                           "or pass --keep-going")):
        build(load_config(cfg), BuildOptions(out=tmp_path / "site", random_init=True, quiet=True,
                                             analyses=("within_pca",)))
    r = CliRunner().invoke(app, ["build", "--config", str(cfg), "--out", str(tmp_path / "site"),
                                 "--random-init", "--quiet"], env={"COLUMNS": "200"})
    assert r.exit_code == 2 and "images.gone.file" in r.output and "Traceback" not in r.output, r.output
    assert not (tmp_path / "site").exists()


def test_keep_going_lists_a_missing_local_file_with_its_reason(tmp_path):
    cfg = _local_project(tmp_path, "missing.jpg")
    out = tmp_path / "site"
    summary = build(load_config(cfg), BuildOptions(out=out, random_init=True, quiet=True, keep_going=True,
                                                   analyses=("within_pca",)))
    assert summary.skipped == [("gone", "missing.jpg: file not found")]
    index = (out / "index.html").read_text()
    assert "<code>gone</code>: missing.jpg: file not found" in index
    assert "images fetch" not in index and str(tmp_path) not in index


def test_images_list_says_missing_not_unfetched(tmp_path):
    cfg = _local_project(tmp_path, "missing.jpg")
    r = CliRunner().invoke(app, ["images", "list", "--config", str(cfg)], env={"COLUMNS": "200"})
    assert r.exit_code == 0, r.output
    assert re.search(r"^gone .* missing: file not found$", r.output, re.M), r.output
    assert "not fetched" not in r.output


def test_images_fetch_says_a_local_file_has_nothing_to_fetch(tmp_path):
    from dinoreport.images import fetch

    from conftest import image_entry

    os.mkfifo(tmp_path / "pipe")
    got = fetch([image_entry(id="gone", file=tmp_path / "missing.jpg"), image_entry(id="fifo", file=tmp_path / "pipe")])
    assert got == [("gone", f"failed: {tmp_path / 'missing.jpg'}: file not found (a local file: nothing to fetch)"),
                   ("fifo", f"failed: {tmp_path / 'pipe'}: not a regular file: it is a named pipe "
                            "(a local file: nothing to fetch)")]

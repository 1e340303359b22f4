"""Bytes, cache and fetch (against a local http.server), load_image and load_mask."""

from __future__ import annotations

import hashlib
import http.server
import os
import threading
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import image_entry
from dinoreport.images import (
    ImageError,
    available,
    cache_dir,
    cached_path,
    fetch,
    image_bytes,
    load_image,
    load_mask,
    scan_folder,
)

SHARED_IMAGES = Path(__file__).resolve().parents[2] / "shared" / "images"

pytestmark = pytest.mark.usefixtures("isolated_cache", "local_network_only")


def _png_bytes(size=(64, 48), color=(255, 0, 0)) -> bytes:
    import io

    buf = io.BytesIO()
    Image.new("RGB", size, color).save(buf, format="PNG")
    return buf.getvalue()


@pytest.fixture()
def server(tmp_path):
    """A local HTTP server on 127.0.0.1 serving tmp_path/'www'; yields (base_url, folder, hits)."""
    www = tmp_path / "www"
    www.mkdir()
    hits: list[str] = []

    class Handler(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, directory=str(www), **kwargs)

        def do_GET(self):  # noqa: N802
            hits.append(self.path)
            super().do_GET()

        def log_message(self, *args):  # quiet
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}", www, hits
    finally:
        httpd.shutdown()
        httpd.server_close()


# --------------------------------------------------------------------------- cache_dir


def test_cache_dir_precedence(monkeypatch, tmp_path):
    monkeypatch.setenv("DINOREPORT_CACHE", str(tmp_path / "explicit"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_dir() == tmp_path / "explicit"
    monkeypatch.delenv("DINOREPORT_CACHE")
    assert cache_dir() == tmp_path / "xdg" / "dinoreport"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert cache_dir() == tmp_path / "home" / ".cache" / "dinoreport"


def test_cached_path_names(tmp_path):
    url = "https://commons.wikimedia.org/wiki/Special:FilePath/Pug_close_up.jpg?width=1280"
    by_url = cached_path(image_entry(url=url))
    assert by_url == tmp_path / "cache" / "images" / (hashlib.sha256(url.encode()).hexdigest() + ".jpg")
    sha = "ab" * 32
    assert cached_path(image_entry(url=url, sha256=sha)).name == sha + ".jpg"
    assert cached_path(image_entry(url="https://example.org/get?id=3")).suffix == ".img"


# --------------------------------------------------------------------------- image_bytes


def test_image_bytes_file_and_sha(tmp_path):
    data = _png_bytes()
    path = tmp_path / "a.png"
    path.write_bytes(data)
    good = hashlib.sha256(data).hexdigest()
    assert image_bytes(image_entry(file=path, sha256=good)) == data
    with pytest.raises(ImageError) as err:
        image_bytes(image_entry(id="pic", file=path, sha256="0" * 64))
    msg = str(err.value)
    assert "image 'pic'" in msg and "expected " + "0" * 64 in msg and f"got {good}" in msg


def test_image_bytes_missing_file(tmp_path):
    with pytest.raises(ImageError, match=r"image 'x': .*gone\.png: file not found; check images\.x\.file"):
        image_bytes(image_entry(file=tmp_path / "gone.png"))
    assert not available(image_entry(file=tmp_path / "gone.png"))
    os.mkfifo(tmp_path / "pipe.png")  # checked before reading: reading a named pipe would wait forever
    with pytest.raises(ImageError, match=r"pipe\.png: not a regular file: it is a named pipe"):
        image_bytes(image_entry(file=tmp_path / "pipe.png"))


def test_image_bytes_packages():
    astro = image_entry(package="skimage:astronaut")
    data = image_bytes(astro)
    assert hashlib.sha256(data).hexdigest() == "88431cd9653ccd539741b555fb0a46b61558b301d4110412b5bc28b5e3ea6cb5"
    assert available(astro)
    assert image_bytes(image_entry(package="sklearn:china.jpg"))[:2] == b"\xff\xd8"
    missing = image_entry(package="skimage:no_such_picture")
    assert not available(missing)
    with pytest.raises(ImageError, match=r"package image 'skimage:no_such_picture': no file"):
        image_bytes(missing)


def test_url_not_cached_says_fetch():
    entry = image_entry(id="dog_pug", url="https://example.org/pug.jpg")
    assert not available(entry)
    with pytest.raises(ImageError, match=r"image 'dog_pug' .* is not in the cache .*run `dinoreport images fetch`"):
        image_bytes(entry)


# --------------------------------------------------------------------------- fetch


def test_fetch_downloads_atomically_then_caches(server, monkeypatch):
    base, www, hits = server
    data = _png_bytes()
    (www / "pic.png").write_bytes(data)
    entry = image_entry(id="pic", url=f"{base}/pic.png", sha256=hashlib.sha256(data).hexdigest())
    target = cached_path(entry)

    renames: list[tuple[Path, Path]] = []
    real_replace = os.replace

    def spy(src, dst):
        # the temp file sits in the cache folder and the target does not exist yet
        assert Path(src).parent == Path(dst).parent == target.parent
        assert Path(src).read_bytes() == data and not Path(dst).exists()
        renames.append((Path(src), Path(dst)))
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", spy)
    lines: list[str] = []
    assert fetch([entry], progress=lines.append) == [("pic", "fetched")]
    assert lines == ["pic: fetched"]
    assert renames and renames[0][1] == target
    assert target.read_bytes() == data
    assert sorted(p.name for p in target.parent.iterdir()) == [target.name]  # no temp left
    assert available(entry) and image_bytes(entry) == data

    assert fetch([entry]) == [("pic", "cached")]
    assert hits == ["/pic.png"]  # second call did not download


def test_fetch_without_sha_uses_url_hash(server):
    base, www, _ = server
    (www / "a.jpg").write_bytes(_png_bytes())
    entry = image_entry(id="a", url=f"{base}/a.jpg")
    assert fetch([entry]) == [("a", "fetched")]
    assert cached_path(entry).name == hashlib.sha256(entry.url.encode()).hexdigest() + ".jpg"


def test_fetch_sha_mismatch_leaves_nothing(server):
    base, www, _ = server
    (www / "pic.png").write_bytes(_png_bytes())
    entry = image_entry(id="pic", url=f"{base}/pic.png", sha256="1" * 64)
    [(image_id, status)] = fetch([entry])
    assert image_id == "pic"
    assert status.startswith("failed: sha256 mismatch: expected " + "1" * 64 + ", got ")
    folder = cache_dir() / "images"
    assert not folder.exists() or list(folder.iterdir()) == []
    assert not available(entry)


def test_fetch_http_error_and_unreachable(server):
    base, _, _ = server
    missing = image_entry(id="missing", url=f"{base}/missing.png")
    dead = image_entry(id="dead", url="http://127.0.0.1:9/x.png")  # discard port: nothing listens
    results = dict(fetch([missing, dead], timeout=5))
    assert results["missing"].startswith("failed: HTTP 404")
    assert results["dead"].startswith("failed: ")
    folder = cache_dir() / "images"
    assert not folder.exists() or list(folder.iterdir()) == []


def test_fetch_local_entries_reported(tmp_path):
    path = tmp_path / "a.png"
    path.write_bytes(_png_bytes())
    result = fetch([image_entry(id="a", file=path), image_entry(id="b", file=tmp_path / "b.png"),
                    image_entry(id="c", package="skimage:coffee")])
    assert result[0] == ("a", "cached") and result[2] == ("c", "cached")
    assert result[1][0] == "b" and result[1][1].startswith("failed: ")


# --------------------------------------------------------------------------- load_image / load_mask


def test_load_image_names_file_on_decode_error(tmp_path):
    path = tmp_path / "broken.jpg"
    path.write_text("not an image")
    with pytest.raises(ImageError, match=r"broken\.jpg.*not a recognised image file"):
        load_image(image_entry(id="broken", file=path), 448)


def test_load_image_too_small_names_file(tmp_path):
    path = tmp_path / "tiny.png"
    path.write_bytes(_png_bytes(size=(20, 20)))
    with pytest.raises(ImageError, match=r"tiny\.png.*too small \(20x20 pixels\)"):
        load_image(image_entry(id="tiny", file=path), 448)


def test_load_image_max_pixels(tmp_path):
    path = tmp_path / "big.png"
    path.write_bytes(_png_bytes(size=(64, 48)))
    with pytest.raises(ImageError, match=r"big\.png.*too large.*max_pixels=1,000"):
        load_image(image_entry(file=path), 448, max_pixels=1000)


def _image_and_mask(tmp_path: Path, size=(1280, 853), exif_orientation: int | None = None):
    w, h = size
    arr = np.zeros((h, w, 3), np.uint8)
    mask = np.zeros((h, w), np.uint8)
    mask[h // 4 : h // 2, w // 4 : w // 2] = 255
    arr[mask > 0] = (255, 0, 0)
    img_path, mask_path = tmp_path / "img.png", tmp_path / "img_mask.png"
    kw = {}
    if exif_orientation:
        exif = Image.Exif()
        exif[0x0112] = exif_orientation
        kw["exif"] = exif
    Image.fromarray(arr).save(img_path, **kw)
    Image.fromarray(mask).save(mask_path, **kw)
    return image_entry(file=img_path, mask=mask_path)


def test_load_mask_matches_image_geometry(tmp_path):
    entry = _image_and_mask(tmp_path)
    rgb = load_image(entry, 448)
    assert rgb.shape == (448, 672, 3)
    mask = load_mask(entry, rgb.shape[:2])
    assert mask.dtype == bool and mask.shape == (448, 672)
    red = (rgb[..., 0] > 128) & (rgb[..., 1] < 128)
    assert (mask != red).mean() < 0.01  # same place, up to resampling at the edges
    np.testing.assert_array_equal(load_mask(entry, (448, 672), resolution=448), mask)


def test_load_mask_follows_exif(tmp_path):
    entry = _image_and_mask(tmp_path, size=(200, 100), exif_orientation=6)
    rgb = load_image(entry, 64)
    assert rgb.shape == (128, 64, 3)
    mask = load_mask(entry, rgb.shape[:2])
    red = (rgb[..., 0] > 128) & (rgb[..., 1] < 128)
    assert (mask != red).mean() < 0.02


def test_load_mask_none_and_size_mismatch(tmp_path):
    assert load_mask(image_entry(file=tmp_path / "x.png"), (32, 32)) is None
    entry = _image_and_mask(tmp_path, size=(64, 64))
    Image.new("L", (32, 32)).save(entry.mask)
    with pytest.raises(ImageError, match=r"mask is 32x32 but the image is 64x64"):
        load_mask(entry, (64, 64))


def test_share_alike():
    assert image_entry(license="CC BY-SA 4.0").share_alike
    assert not image_entry(license="CC BY 2.0").share_alike
    assert not image_entry(license="Public domain").share_alike


# --------------------------------------------------------------------------- real photos (optional)


@pytest.mark.skipif(not SHARED_IMAGES.is_dir(), reason="shared development images not present")
def test_shared_photos_load():
    set_ = scan_folder(SHARED_IMAGES)
    aussie = replace(
        set_["dog_aussie"], sha256="5fdeca88928cd4f62f3f6c77c5ad39f6d0664e46afa06f9cb53cc849c92cea48"
    )
    assert load_image(aussie, 448).shape == (448, 672, 3)  # 1280x853
    assert load_image(set_["dog_bostonterrier"], 448).shape == (608, 448, 3)  # 1280x1792 portrait
    gray = load_image(set_["person_cameraman"], 448)  # grayscale PNG -> 3 equal channels
    assert gray.shape == (448, 448, 3) and (gray[..., 0] == gray[..., 2]).all()

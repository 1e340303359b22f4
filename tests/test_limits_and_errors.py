"""Clear errors instead of tracebacks, bounded work, a careful preview server (issue 10, C-E)."""
from __future__ import annotations

import errno
import http.client
import json
import os
import re
import socket
import threading
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from dinoreport.cli import app
from dinoreport.analyses import resolve_options
from dinoreport.config import ConfigError, load_config
from dinoreport.images import ImageError, load_manifest, preprocess
from dinoreport.progress import Progress
from dinoreport.serve import ServeError, make_server

from conftest import planted_photo, write_project

ONE_MODEL = '[[models]]\nid = "m"\ntimm = "convnext_tiny.fb_in1k"\n'


def _invoke(*args: str):
    return CliRunner().invoke(app, list(args), env={"COLUMNS": "200"})


# --------------------------------------------------------------------------- config values

@pytest.mark.parametrize("line, key, what", [
    ("resolution = 100000", "resolution", "from 14 .one ViT/14 patch. to 1024"),
    ("seed = -1", "seed", "from 0 to 4294967295"),
    ("batch_size = 100000", "batch_size", "from 1 to 256"),
])
def test_absurd_numbers_name_their_key(tmp_path, line, key, what):
    cfg = write_project(tmp_path, {"a": planted_photo(224, 224)}, models=ONE_MODEL, highres=[224])
    text = cfg.read_text().replace("resolution = 224\n", "").replace("seed = 0\n", "")
    cfg.write_text(f"{line}\n" + text)
    with pytest.raises(ConfigError, match=rf"report\.toml: {key}: must be {what}"):
        load_config(cfg)
    r = _invoke("build", "--random-init", "--config", str(cfg), "--out", str(tmp_path / "site"))
    assert r.exit_code == 2 and f"{key}: must be" in r.output and "Traceback" not in r.output


def test_highres_has_an_upper_bound(tmp_path):
    cfg = write_project(tmp_path, {"a": planted_photo(224, 224)}, models=ONE_MODEL, highres=[224, 65536])
    with pytest.raises(ConfigError, match=r"analysis\.highres\[1\]: must be an int from 14 to 2048"):
        resolve_options(load_config(cfg))


def test_ten_thousand_models_are_refused_at_once(tmp_path):
    many = "".join(f'[[models]]\nid = "m{i}"\ntimm = "convnext_tiny.fb_in1k"\n' for i in range(10_000))
    cfg = write_project(tmp_path, {"a": planted_photo(224, 224)}, models=many, highres=[224])
    with pytest.raises(ConfigError, match=r"models: 10000 \[\[models\]\] tables; at most 32"):
        load_config(cfg)


def test_too_many_images_are_refused_naming_the_setting(tmp_path):
    from dinoreport.pipeline import load_image_set

    imgs = {f"dog_{i}": planted_photo(64, 64, seed=i) for i in range(3)}
    path = write_project(tmp_path, imgs, models=ONE_MODEL, highres=[224])
    path.write_text(path.read_text().replace('dir = "../photos"', 'dir = "../photos"\nmax_images = 2'))
    with pytest.raises(ConfigError, match=r"3 images, more than images\.max_images = 2 .*raise images\.max_images"):
        load_image_set(load_config(path))


def test_utf8_bom_is_accepted_in_config_and_manifest(tmp_path):
    cfg = write_project(tmp_path, {"a": planted_photo(224, 224)}, models=ONE_MODEL, highres=[224])
    cfg.write_bytes(b"\xef\xbb\xbf" + cfg.read_bytes())
    assert load_config(cfg).resolution == 224
    (tmp_path / "photos" / "manifest.toml").write_bytes(
        b'\xef\xbb\xbf[[image]]\nid = "a"\nfile = "a.png"\nsubject = "s"\nauthor = "me"\nlicense = "CC0 1.0"\n')
    assert [e.id for e in load_manifest(tmp_path / "photos" / "manifest.toml").entries] == ["a"]



@pytest.mark.parametrize("codec, why", [("utf-16", "UTF-16 text"), ("utf-16-le", "NUL byte"),
                                        ("utf-32", "UTF-32 text"), ("cp1252", "invalid")])
def test_config_and_manifest_not_in_utf8_name_the_file(tmp_path, codec, why):
    """UTF-16 (with or without a byte order mark) or a legacy code page: the file, the reason
    and the fix, not a codec message or a TOML error about NUL characters."""
    cfg = write_project(tmp_path, {"a": planted_photo(224, 224)}, models=ONE_MODEL, highres=[224])
    cfg.write_bytes(cfg.read_text().replace('"tests"', '"Zoë"').encode(codec))
    with pytest.raises(ConfigError, match=rf"^{re.escape(str(cfg.resolve()))}: not UTF-8 text \(.*{why}.*\); "
                                          "save it as UTF-8$"):
        load_config(cfg)
    manifest = tmp_path / "photos" / "manifest.toml"
    manifest.write_bytes('[[image]]\nid = "a"\nfile = "a.png"\nauthor = "Zoë"\nlicense = "CC0 1.0"\n'.encode(codec))
    with pytest.raises(ImageError, match=rf"^{re.escape(str(manifest))}: the image manifest is not UTF-8 text "
                                         rf"\(.*{why}.*\); save it as UTF-8$"):
        load_manifest(manifest)

# --------------------------------------------------------------------------- cache faults

def _cold_cache_project(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("DINOREPORT_CACHE", str(tmp_path / "cache"))
    return write_project(tmp_path, {"a": planted_photo(224, 224)}, models=ONE_MODEL, highres=[224])


def test_cold_read_only_cache_is_named(tmp_path, monkeypatch):
    import dinoreport.atomic as atomic

    cfg = _cold_cache_project(tmp_path, monkeypatch)

    def read_only(*a, dir=None, **k):  # what mkstemp does on a read-only file system
        raise OSError(errno.EROFS, "Read-only file system", str(Path(dir) / ".part-x"))

    monkeypatch.setattr(atomic.tempfile, "mkstemp", read_only)
    r = _invoke("build", "--random-init", "--quiet", "--config", str(cfg), "--out", str(tmp_path / "site"))
    assert r.exit_code == 2, r.output
    assert f"could not write the cache {tmp_path / 'cache'}" in r.output and "Read-only file system" in r.output
    assert "DINOREPORT_CACHE" in r.output and "Traceback" not in r.output
    assert not (tmp_path / "site").exists()


def test_full_disk_under_the_cache_is_named(tmp_path, monkeypatch):
    import safetensors.numpy

    cfg = _cold_cache_project(tmp_path, monkeypatch)

    def full(*a, **k):  # a failed write carries no file name
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(safetensors.numpy, "save_file", full)
    r = _invoke("build", "--random-init", "--quiet", "--config", str(cfg), "--out", str(tmp_path / "site"))
    assert r.exit_code == 2, r.output
    assert "could not write the cache" in r.output and "No space left on device" in r.output
    assert "free some space" in r.output and str(tmp_path / "cache" / "features") in r.output
    assert not (tmp_path / "site").exists()
    assert not list((tmp_path / "cache").rglob(".part-*"))


@pytest.mark.parametrize("content", ["[]", '{"timm": 3}', '{"timm": "convnext_tiny.fb_in1k", "stages": 1}', "\xff"])
def test_cache_metadata_of_the_wrong_shape_is_recomputed(tmp_path, monkeypatch, content):
    from dinoreport.modelmeta import model_meta, timm_names

    monkeypatch.setenv("DINOREPORT_CACHE", str(tmp_path / "cache"))
    model_meta("convnext_tiny.fb_in1k"), timm_names()
    for p in (tmp_path / "cache" / "models").glob("*.json"):
        p.write_text(content, encoding="latin-1")
    assert [s.name for s in model_meta("convnext_tiny.fb_in1k").stages] == ["C2", "C3", "C4", "C5"]
    assert "convnext_tiny.fb_in1k" in timm_names()[1]


# --------------------------------------------------------------------------- bounded work

def test_extreme_aspect_ratio_is_refused_before_resizing():
    thin = np.zeros((64, 64 * 200, 3), np.uint8)  # 200:1; at 448 this would be 448 x 89600 pixels
    with pytest.raises(ImageError, match=r"strip: aspect ratio 200:1 \(12800x64 pixels\) is beyond the limit 4:1"):
        preprocess(thin, 448, name="strip")
    assert preprocess(np.zeros((100, 400, 3), np.uint8), 64).shape == (64, 256, 3)  # 4:1 is fine


def test_plain_progress_lines_off_a_terminal(capsys):
    with Progress(quiet=False) as p:
        with p.phase("decode images", 40) as advance:
            for _ in range(40):
                advance(1)
    lines = capsys.readouterr().err.splitlines()
    assert lines[0] == "decode images: 0/40"
    assert "decode images: 4/40" in lines and "decode images: 36/40" in lines
    assert lines[-1].startswith("decode images: 40/40 done in ")
    assert len(lines) == 11
    with Progress(quiet=True) as p:
        with p.phase("x", 3) as advance:
            advance(3)
    assert capsys.readouterr().err == ""


# --------------------------------------------------------------------------- serve

@pytest.fixture
def served(tmp_path):
    site = tmp_path / "site"
    (site / "assets").mkdir(parents=True)
    (site / "index.html").write_text("<p>home</p>")
    (tmp_path / "secret.txt").write_text("SECRET")
    os.symlink(tmp_path / "secret.txt", site / "leak.txt")
    os.symlink(tmp_path, site / "up")
    srv = make_server(site, 0)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    yield srv
    srv.shutdown()
    srv.server_close()


def _get(srv, path: str) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection(*srv.server_address, timeout=10)
    try:
        conn.putrequest("GET", path, skip_accept_encoding=True)
        conn.endheaders()
        r = conn.getresponse()
        return r.status, r.read()
    finally:
        conn.close()


def test_serve_does_not_follow_symlinks_out_of_the_site(served):
    for path in ("/leak.txt", "/up/secret.txt"):
        status, body = _get(served, path)
        assert status == 404 and b"SECRET" not in body


def test_serve_does_not_list_folders(served):
    status, body = _get(served, "/assets/")
    assert status == 404 and b"Directory listing" not in body
    assert _get(served, "/")[0] == 200


def test_serve_answers_nul_with_400(served):
    assert _get(served, "/index.html%00.png")[0] == 400


def test_serve_on_a_busy_port_says_so(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        with pytest.raises(ServeError, match=rf"cannot listen on 127\.0\.0\.1:{port}.*--port"):
            make_server(tmp_path, port)
        cfg = write_project(tmp_path, {"a": planted_photo(224, 224)}, models=ONE_MODEL, highres=[224])
        r = _invoke("serve", "--random-init", "--config", str(cfg), "--port", str(port))
        assert r.exit_code == 2 and f"cannot listen on 127.0.0.1:{port}" in r.output, r.output



@pytest.mark.parametrize("fault", ["bad image", "unknown directive"])
def test_serve_whose_first_build_fails_says_why_and_leaves_no_folder(tmp_path, monkeypatch, fault):
    """Nothing to serve yet: the build's message as `build` prints it, exit 1, and the
    temporary folder removed (it was left behind on every try)."""
    import tempfile

    import dinoreport.serve as serve
    from dinoreport.page import RenderError

    temp = tmp_path / "tmp"
    temp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(temp))
    cfg = write_project(tmp_path, {"a": planted_photo(64, 64)}, models=ONE_MODEL, resolution=64, highres=[64])
    if fault == "bad image":
        (tmp_path / "photos" / "bad.png").write_bytes(b"this is not an image\n")
        expected = "bad.png"
    else:  # what a narrative with '::: sparkle' gives once the build reaches the page
        def failing_build(cfg, opts):
            raise RenderError("02-bad.md, line 3: unknown directive '::: sparkle'")

        monkeypatch.setattr(serve, "build", failing_build)
        expected = "error: 02-bad.md, line 3: unknown directive '::: sparkle'"
    r = _invoke("serve", "--random-init", "--config", str(cfg), "--port", "0")
    assert r.exit_code == 1 and isinstance(r.exception, SystemExit), r.output
    assert expected in r.output and "nothing to serve" in r.output and "Traceback" not in r.output, r.output
    assert list(temp.iterdir()) == []

# --------------------------------------------------------------------------- privacy

def test_build_json_records_the_config_path_relative(demo_site):
    b = json.loads((demo_site / "data" / "build.json").read_text())
    assert not os.path.isabs(b["config"]) and b["config"].endswith("report.toml")
    assert str(demo_site.parent) not in (demo_site / "data" / "build.json").read_text()


@pytest.mark.parametrize("text", ["Error while serializing: IoError(Os { code: 28, kind: StorageFull, "
                                  'message: "No space left on device" })',
                                  "I/O error: No space left on device (os error 28)"])
def test_full_disk_inside_the_safetensors_writer_is_named(tmp_path, monkeypatch, text):
    """Issue 20 item 11: the Rust writer's own error (not an OSError) on a full disk."""
    import safetensors.numpy
    from safetensors import SafetensorError

    cfg = _cold_cache_project(tmp_path, monkeypatch)

    def full(*a, **k):
        raise SafetensorError(text)

    monkeypatch.setattr(safetensors.numpy, "save_file", full)
    r = _invoke("build", "--random-init", "--quiet", "--config", str(cfg), "--out", str(tmp_path / "site"))
    assert r.exit_code == 2, r.output
    assert "could not write the cache" in r.output and "No space left on device" in r.output
    assert "Traceback" not in r.output and "SafetensorError" not in r.output
    assert not (tmp_path / "site").exists()
    assert not list((tmp_path / "cache").rglob(".part-*"))

"""``dinoreport serve`` (local HTTP, re-render on prose changes) and ``dinoreport publish``."""
from __future__ import annotations

import http.client
import shutil
import threading
from pathlib import Path

import pytest

from dinoreport.config import load_config
from dinoreport.pipeline import BuildOptions, build
from dinoreport.render import render_site
from dinoreport.serve import make_server

from conftest import git, publish_cli


# --------------------------------------------------------------------------- serve: HTTP

@pytest.fixture
def server(demo_site):
    srv = make_server(demo_site, 0)
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    try:
        yield srv
    finally:
        srv.shutdown()
        srv.server_close()


def _get(srv, path: str) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection(*srv.server_address, timeout=10)
    try:
        conn.putrequest("GET", path, skip_host=False, skip_accept_encoding=True)
        conn.endheaders()
        r = conn.getresponse()
        return r.status, r.read()
    finally:
        conn.close()


def test_server_binds_localhost_only(server):
    assert server.server_address[0] == "127.0.0.1"
    assert server.server_address[1] > 0


def test_server_serves_the_site(server, demo_site):
    status, body = _get(server, "/index.html")
    assert status == 200 and body == (demo_site / "index.html").read_bytes()
    status, body = _get(server, "/")
    assert status == 200 and body == (demo_site / "index.html").read_bytes()
    status, body = _get(server, "/data/results.json")
    assert status == 200 and body == (demo_site / "data" / "results.json").read_bytes()


@pytest.mark.parametrize("path", [
    "/../../../../../../etc/passwd",
    "/%2e%2e/%2e%2e/%2e%2e/%2e%2e/etc/passwd",
    "/%2E%2E%2F%2E%2E%2F%2E%2E%2Fetc%2Fpasswd",
    "/assets/../../../../etc/passwd",
    "/..%5c..%5c..%5cetc%5cpasswd",
    "//etc/passwd",
    "/../" + "demo0/site_src/report.toml",
])
def test_server_never_leaves_the_site(server, demo_site, path):
    status, body = _get(server, path)
    inside = {p.read_bytes() for p in demo_site.rglob("*") if p.is_file()}
    assert b"root:" not in body
    assert b"[[models]]" not in body  # the config beside the site
    if status == 200:
        assert body in inside, (path, body[:200])
    else:
        assert status in (400, 403, 404), (path, status)


def test_serve_forever_keeps_images_override_on_config_reload(tmp_path, monkeypatch):
    """A report.toml change rebuilds with the same --images folder (not the config's)."""
    import dinoreport.serve as serve
    from dinoreport.pipeline import BuildSummary

    from conftest import planted_photo, write_project

    cfg_path = write_project(tmp_path, {"a": planted_photo(64, 64)},
                             models='[[models]]\nid = "m"\ntimm = "convnext_tiny.fb_in1k"\n')
    other = tmp_path / "other"
    other.mkdir()
    seen = []

    def fake_build(cfg, opts):
        seen.append(cfg.images.dir)
        opts.out.mkdir(parents=True, exist_ok=True)
        return BuildSummary(out=opts.out)

    ticks = iter(range(3))

    def fake_sleep(_):
        n = next(ticks)
        if n == 0:
            cfg_path.write_text(cfg_path.read_text() + "\n# edited\n")
            import os
            os.utime(cfg_path, (1, 1))  # a different mtime even on coarse clocks
        elif n == 2:
            raise KeyboardInterrupt

    monkeypatch.setattr(serve, "build", fake_build)
    monkeypatch.setattr(serve.time, "sleep", fake_sleep)
    cfg = load_config(cfg_path).with_images_dir(other)
    serve.serve_forever(cfg, port=0, images=other)
    assert seen == [other.resolve(), other.resolve()]


# --------------------------------------------------------------------------- serve: re-render

def test_narrative_change_rerenders_without_recomputing(tmp_path, demo_site):
    cfg = load_config(demo_site.parent / "site_src" / "report.toml")
    site = tmp_path / "site"
    summary = build(cfg, BuildOptions(out=site, random_init=True, quiet=True, analyses=("within_pca", "cka")))
    assert summary.page is not None
    figs = {p.name: p.read_bytes() for p in (site / "assets" / "fig").iterdir()}
    assert figs

    src = tmp_path / "site_src"
    shutil.copytree(cfg.root, src)
    intro = sorted(src.glob("*.md"))[0]
    intro.write_text(intro.read_text() + "\n\nA sentence added while serving: zebra-quokka.\n")
    render_site(summary.page, site_src=src, out=site)

    assert "zebra-quokka" in (site / "index.html").read_text()
    assert "zebra-quokka" in (site / "report.html").read_text()
    assert {p.name: p.read_bytes() for p in (site / "assets" / "fig").iterdir()} == figs


# --------------------------------------------------------------------------- publish

def test_publish_to_a_local_bare_repository(tmp_path, demo_site, bare):
    site = tmp_path / "site"
    shutil.copytree(demo_site, site)
    r = publish_cli(site, bare)
    assert r.exit_code == 0, r.output
    assert "published" in r.output and "gh-pages" in r.output

    clone = tmp_path / "clone"
    git("clone", "-q", "--branch", "gh-pages", str(bare), str(clone), cwd=tmp_path)
    for rel in ("index.html", ".nojekyll", "data/results.json", "data/build.json", "report.html"):
        assert (clone / rel).is_file(), rel
    assert (clone / "index.html").read_bytes() == (site / "index.html").read_bytes()
    assert git("rev-list", "--count", "HEAD", cwd=clone).strip() == "1"

    # a second publish after a change keeps the history and drops removed files
    (site / "index.html").write_text((site / "index.html").read_text().replace("</body>", "<!-- v2 --></body>"))
    (site / "report.html").unlink()
    r = publish_cli(site, bare, "-m", "Second version")
    assert r.exit_code == 0, r.output
    git("pull", "-q", "origin", "gh-pages", cwd=clone)
    assert git("rev-list", "--count", "HEAD", cwd=clone).strip() == "2"
    assert "<!-- v2 -->" in (clone / "index.html").read_text()
    assert not (clone / "report.html").exists()
    assert git("log", "-1", "--format=%s", cwd=clone).strip() == "Second version"


def test_publish_refuses_a_folder_that_is_not_a_site(tmp_path, bare):
    folder = tmp_path / "notes"
    folder.mkdir()
    (folder / "index.html").write_text("<p>hand-written</p>")
    r = publish_cli(folder, bare)
    assert r.exit_code != 0
    assert "is not a built site (no index.html / data/build.json)" in r.output
    assert "dinoreport build" in r.output
    assert git("branch", "--list", cwd=bare).strip() == ""  # nothing pushed


def test_publish_to_an_unknown_remote_name(tmp_path, demo_site, monkeypatch):
    monkeypatch.chdir(tmp_path)
    r = publish_cli(demo_site, Path("nosuchremote"))
    assert r.exit_code != 0
    assert "no git remote named 'nosuchremote'" in r.output and "--remote URL" in r.output

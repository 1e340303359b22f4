"""Hostile servers on 127.0.0.1: HTML for an image, drip feed, huge body, short body, not HTTP.

Every reply must end in one ``failed: <reason>`` line for that image, nothing in the cache,
and the rest of the list still fetched.
"""

from __future__ import annotations

import hashlib
import io
import socket
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import dinoreport.images.fetching as fetching
from conftest import image_entry
from dinoreport.images import available, cache_dir, cached_path, fetch

pytestmark = pytest.mark.usefixtures("isolated_cache", "local_network_only")


def _png() -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (40, 30), (0, 128, 255)).save(buf, format="PNG")
    return buf.getvalue()


@pytest.fixture()
def raw_server():
    """A TCP server on 127.0.0.1 answering each connection by path with a scripted reply.

    Yields (base_url, routes): routes maps a request path to a function(conn) that writes
    whatever it likes to the socket.
    """
    routes: dict[str, object] = {}
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(8)
    stop = threading.Event()

    def handle(conn: socket.socket) -> None:
        with conn:
            try:
                head = b""
                while b"\r\n\r\n" not in head:
                    chunk = conn.recv(4096)
                    if not chunk:
                        return
                    head += chunk
                path = head.split(b" ")[1].decode()
                routes[path](conn)
            except OSError:
                pass

    def serve() -> None:
        sock.settimeout(0.2)
        while not stop.is_set():
            try:
                conn, _ = sock.accept()
            except (TimeoutError, socket.timeout):
                continue
            except OSError:
                return
            threading.Thread(target=handle, args=(conn,), daemon=True).start()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}", routes
    finally:
        stop.set()
        thread.join(2)
        sock.close()


def _reply(body: bytes, ctype: str = "image/png", length: int | None = None):
    def write(conn: socket.socket) -> None:
        n = len(body) if length is None else length
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: " + ctype.encode()
                     + f"\r\nContent-Length: {n}\r\nConnection: close\r\n\r\n".encode() + body)
    return write


def _cache_files() -> list[Path]:
    folder = cache_dir() / "images"
    return sorted(folder.iterdir()) if folder.exists() else []


def test_html_page_for_an_image_is_not_cached(raw_server):
    """Item 8: a 200 HTML page (login wall, error page) for a URL without sha256."""
    base, routes = raw_server
    routes["/a.jpg"] = _reply(b"<!doctype html><html><body>Please log in</body></html>", "text/html")
    entry = image_entry(id="a", url=f"{base}/a.jpg")
    [(iid, status)] = fetch([entry], timeout=5)
    assert iid == "a"
    assert status.startswith("failed: ") and "not an image" in status and "text/html" in status
    assert _cache_files() == [] and not available(entry)


def test_undecodable_cached_file_is_fetched_again(raw_server):
    """Item 8: a garbage file already in the cache (from an older version) is not 'cached'."""
    base, routes = raw_server
    png = _png()
    routes["/a.png"] = _reply(png)
    entry = image_entry(id="a", url=f"{base}/a.png")
    target = cached_path(entry)
    target.parent.mkdir(parents=True)
    target.write_bytes(b"<html>old login page</html>")
    assert fetch([entry], timeout=5) == [("a", "fetched")]
    assert target.read_bytes() == png


def test_drip_feed_hits_the_total_deadline(raw_server):
    """Item 9: one byte every 0.3 s never trips a per-read timeout; the total deadline does."""
    base, routes = raw_server
    png = _png()

    def drip(conn: socket.socket) -> None:
        conn.sendall(f"HTTP/1.1 200 OK\r\nContent-Length: {len(png)}\r\n\r\n".encode())
        for byte in png:
            conn.sendall(bytes([byte]))
            time.sleep(0.3)

    routes["/slow.png"] = drip
    routes["/ok.png"] = _reply(png)
    slow, ok = image_entry(id="slow", url=f"{base}/slow.png"), image_entry(id="ok", url=f"{base}/ok.png")
    start = time.monotonic()
    results = dict(fetch([slow, ok], timeout=2.0))
    assert time.monotonic() - start < 8
    assert results["slow"].startswith("failed: ") and "2" in results["slow"] and "s" in results["slow"]
    assert "deadline" in results["slow"] or "took longer" in results["slow"]
    assert results["ok"] == "fetched"
    assert [p.name for p in _cache_files()] == [cached_path(ok).name]


def test_size_cap_streams_and_stops(raw_server, monkeypatch):
    """Item 9: a body over the cap is refused (by its Content-Length, or while streaming when
    the server does not announce it), and it is streamed to a .part file, never held whole."""
    base, routes = raw_server
    monkeypatch.setattr(fetching, "MAX_DOWNLOAD_BYTES", 100_000)
    big = b"\xff" * 300_000
    routes["/announced.png"] = _reply(big)

    def unannounced(conn: socket.socket) -> None:
        conn.sendall(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n")
        for i in range(0, len(big), 10_000):
            conn.sendall(big[i:i + 10_000])

    routes["/unannounced.png"] = unannounced
    results = dict(fetch([image_entry(id="a", url=f"{base}/announced.png"),
                          image_entry(id="u", url=f"{base}/unannounced.png")], timeout=5))
    for iid in ("a", "u"):
        assert results[iid].startswith("failed: ") and "100,000" in results[iid], results[iid]
    assert _cache_files() == []


def test_download_streams_to_a_part_file(raw_server):
    """Item 9: the body goes to disk as it arrives (a .part file beside the target, then
    renamed), so a large download is not held in memory."""
    base, routes = raw_server
    noise = np.random.default_rng(0).integers(0, 256, (300, 300, 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(noise).save(buf, format="PNG")
    png = buf.getvalue()
    half = len(png) // 2
    seen: list[tuple[str, int]] = []

    def halves(conn: socket.socket) -> None:
        conn.sendall(f"HTTP/1.1 200 OK\r\nContent-Length: {len(png)}\r\n\r\n".encode() + png[:half])
        folder = cache_dir() / "images"
        for _ in range(100):  # wait until the first half is on disk
            parts = [(p.name, p.stat().st_size) for p in folder.glob(".part-*")] if folder.exists() else []
            if parts and parts[0][1] >= half - 8192:  # less a write buffer
                seen.extend(parts)
                break
            time.sleep(0.05)
        conn.sendall(png[half:])

    routes["/a.png"] = halves
    entry = image_entry(id="a", url=f"{base}/a.png", sha256=hashlib.sha256(png).hexdigest())
    assert fetch([entry], timeout=10) == [("a", "fetched")]
    assert seen and half - 8192 <= seen[0][1] <= half
    assert [p.name for p in _cache_files()] == [cached_path(entry).name]


def test_short_body_and_non_http_reply_fail_per_image(raw_server):
    """Item 10: IncompleteRead / BadStatusLine / a closed connection are reported for that
    image, and the list goes on."""
    base, routes = raw_server
    png = _png()
    routes["/short.png"] = _reply(png[:20], length=len(png))
    routes["/nothttp.png"] = lambda conn: conn.sendall(b"SSH-2.0-OpenSSH_9.6\r\n\r\n")
    routes["/closed.png"] = lambda conn: None
    routes["/ok.png"] = _reply(png)
    entries = [image_entry(id=i, url=f"{base}/{i}.png") for i in ("short", "nothttp", "closed", "ok")]
    results = dict(fetch(entries, timeout=5))
    assert results["ok"] == "fetched"
    assert results["short"].startswith("failed: ") and "20 of" in results["short"]
    assert results["nothttp"].startswith("failed: ") and "HTTP" in results["nothttp"]
    assert results["closed"].startswith("failed: ")
    assert [p.name for p in _cache_files()] == [cached_path(entries[3]).name]


def test_build_fetch_names_a_sha_mismatch(tmp_path):
    """Item 10: `build --fetch` with a URL whose bytes changed says "sha256 mismatch" for that
    image, not "not fetched yet (needs internet)"."""
    import http.server

    from conftest import planted_photo, write_project
    from dinoreport.config import load_config
    from dinoreport.pipeline import NOT_FETCHED, BuildOptions, decode, resolve
    from dinoreport.progress import Progress

    www = tmp_path / "www"
    www.mkdir()
    (www / "moved.png").write_bytes(_png())

    class Handler(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, directory=str(www), **kwargs)

        def log_message(self, *args):
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        cfg_path = write_project(tmp_path / "p", {"a": planted_photo(224, 224), "b": planted_photo(224, 224, "br")},
                                 highres=[224])
        photos = tmp_path / "p" / "photos"
        manifest = photos / "manifest.toml"
        lines = []
        for iid in ("a", "b"):
            lines.append(f'[[image]]\nid = "{iid}"\nfile = "{iid}.png"\nsubject = "dog"\ngroups = ["dogs"]\n'
                         'author = "t"\nlicense = "CC0 1.0"\n')
        lines.append(f'[[image]]\nid = "moved"\nurl = "http://127.0.0.1:{httpd.server_address[1]}/moved.png"\n'
                     f'sha256 = "{"2" * 64}"\nsubject = "dog"\ngroups = ["dogs"]\nauthor = "t"\nlicense = "CC0 1.0"\n')
        manifest.write_text("\n".join(lines))
        cfg_path.write_text(cfg_path.read_text().replace('dir = "../photos"', 'manifest = "../photos/manifest.toml"'))
        cfg = load_config(cfg_path)
        opts = BuildOptions(out=tmp_path / "site", random_init=True, quiet=True, fetch=True)
        plan = resolve(cfg, opts)
        skipped: list[tuple[str, str]] = []
        with Progress(quiet=True) as progress:
            decode(cfg, opts, plan, progress, skipped, tmp_path / "scratch")
    finally:
        httpd.shutdown()
        httpd.server_close()
    [(iid, why)] = skipped
    assert iid == "moved"
    assert "sha256 mismatch" in why and NOT_FETCHED not in why

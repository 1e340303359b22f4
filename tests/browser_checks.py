"""Headless-Chromium checks of a rendered site, reusable against any build.

    from tests.browser_checks import check_site
    check_site(Path("site"), Path("screenshots"))   # raises AssertionError on a problem

Serves ``index.html`` from a local http.server on 127.0.0.1 and opens ``report.html`` from
file://. Checks: no console errors, no failed requests, no request to a non-local host, every
<img> decoded, dark scheme renders dark, the lightbox opens and closes, and (when present) the
similarity explorer answers probes, clicks, arrow keys and model switches. Writes light and dark
screenshots (full page and phone width) into ``screenshots``.
"""
from __future__ import annotations

import functools
import http.server
import shutil
import threading
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlparse

CHROMIUM = "/usr/bin/chromium"
LAUNCH_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
               "--disable-component-update", "--disable-sync", "--no-first-run"]


def browser_available() -> bool:
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return False
    return Path(CHROMIUM).exists() or shutil.which("chromium") is not None


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):  # noqa: D401
        pass


@contextmanager
def serve(folder: Path):
    handler = functools.partial(_QuietHandler, directory=str(folder))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    t = threading.Thread(target=httpd.serve_forever, daemon=True)
    t.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}/"
    finally:
        httpd.shutdown()
        httpd.server_close()


def _is_local(url: str) -> bool:
    u = urlparse(url)
    if u.scheme in ("data", "file", "about", "blob"):
        return True
    return u.hostname in ("127.0.0.1", "localhost")


class _Recorder:
    def __init__(self, page):
        self.console_errors: list[str] = []
        self.failed: list[str] = []
        self.requests: list[str] = []
        page.on("console", lambda m: self.console_errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: self.console_errors.append(f"pageerror: {e}"))
        page.on("requestfailed", lambda r: self.failed.append(f"{r.url[:120]} {r.failure}"))
        page.on("request", lambda r: self.requests.append(r.url))

        def on_response(resp):
            if resp.status >= 400:
                self.failed.append(f"{resp.url[:120]} HTTP {resp.status}")
        page.on("response", on_response)

    def check(self, where: str) -> None:
        assert not self.console_errors, f"{where}: console errors: {self.console_errors}"
        assert not self.failed, f"{where}: failed requests: {self.failed}"
        remote = [u for u in self.requests if not _is_local(u)]
        assert not remote, f"{where}: requests to non-local hosts: {remote}"


def _check_images(page, where: str) -> None:
    # lazy images: scroll everything into view, then wait for decode
    page.evaluate("""async () => {
        const imgs = [...document.images];
        imgs.forEach(i => { i.loading = 'eager'; });
        await Promise.all(imgs.map(i => i.decode().catch(() => null)));
    }""")
    bad = page.evaluate("""() => [...document.images]
        .filter(i => i.id !== 'lightbox-img' && i.id !== 'lightbox-layer' && !(i.naturalWidth > 0)).map(i => i.src.slice(0, 80))""")
    assert not bad, f"{where}: images that did not load: {bad}"
    no_alt = page.evaluate("() => [...document.images].filter(i => !i.hasAttribute('alt')).length")
    assert no_alt == 0, f"{where}: {no_alt} images without alt"


def _luminance(rgb: str) -> float:
    nums = [float(x) for x in rgb[rgb.index("(") + 1: rgb.index(")")].split(",")[:3]]
    return (0.2126 * nums[0] + 0.7152 * nums[1] + 0.0722 * nums[2]) / 255


def _check_lightbox(page, where: str) -> None:
    if page.locator("button.zoom").count() == 0:
        return
    btn = page.locator("button.zoom").first
    btn.scroll_into_view_if_needed()
    btn.click()
    assert page.evaluate("document.getElementById('lightbox').open"), f"{where}: lightbox did not open"
    page.keyboard.press("Escape")
    page.wait_for_function("!document.getElementById('lightbox').open")


def _check_explorer(page, where: str) -> None:
    if not page.evaluate("!!window.dinoExplorer"):
        return
    info = page.evaluate("""() => {
        const d = JSON.parse(document.getElementById('explorer-data').textContent);
        const g = d.groups[0], pid = g.images[0], m = d.models[0];
        // features[m][stage][group].hw: h, w of each image of the group in order (flat)
        const last = d.stage[m.id], f = d.features[m.id][last][g.id].hw;
        const other = m.stages.find(s => s !== last) || null;
        const fo = other ? d.features[m.id][other][g.id].hw : null;
        return {pid, group: g.id, models: d.models.map(m => m.id), h: f[0], w: f[1], last, other,
                oh: fo ? fo[0] : 0, ow: fo ? fo[1] : 0};
    }""")
    pid, m0, h, w = info["pid"], info["models"][0], info["h"], info["w"]
    y, x = h // 2, max(w // 2 - 1, 0)

    def argmax(image):
        return page.evaluate("""(id) => { const m = window.dinoExplorer.map(id);
            let b = 0; for (let i = 1; i < m.length; i++) if (m[i] > m[b]) b = i; return [b, m.length]; }""", image)

    page.evaluate("([p, m, y, x]) => window.dinoExplorer.probe(p, m, y, x)", [pid, m0, y, x])
    best, n = argmax(pid)
    assert n == h * w, f"{where}: explorer map has {n} cells, expected {h * w}"
    assert best == y * w + x, f"{where}: probed cell {(y, x)} is not the max of its own map ({best})"

    canvas = page.locator(f'canvas[data-image="{pid}"]')
    assert canvas.count() == 1, f"{where}: no canvas for {pid}"
    assert canvas.get_attribute("data-model") == m0
    canvas.scroll_into_view_if_needed()
    box = canvas.bounding_box()
    ty, tx = h - 1, w - 1
    page.mouse.click(box["x"] + (tx + .5) * box["width"] / w, box["y"] + (ty + .5) * box["height"] / h)
    page.evaluate("window.dinoExplorer.ready()")
    best, _ = argmax(pid)
    assert best == ty * w + tx, f"{where}: clicking cell {(ty, tx)} did not probe it ({best})"

    page.evaluate("([p, m]) => window.dinoExplorer.probe(p, m, 0, 0)", [pid, m0])
    page.locator(".xp-view", has=canvas).focus()
    page.keyboard.press("ArrowRight")
    page.evaluate("window.dinoExplorer.ready()")
    st = page.evaluate("window.dinoExplorer.state()")
    assert (st["y"], st["x"]) == (0, min(1, w - 1)), f"{where}: ArrowRight gave {st}"
    status = page.locator(".xp-status").text_content()
    assert "row 1" in status and "column 2" in status, f"{where}: aria-live says {status!r}"

    # another stage than the last: its button, then a click on a cell, must redraw the heatmap
    if info["other"]:
        def pixels():
            return page.evaluate("""(id) => { const c = document.querySelector(`canvas[data-image="${id}"]`);
                return [c.width, c.height, Array.from(c.getContext('2d').getImageData(0, 0, c.width, c.height).data)]; }""",
                                 pid)
        last_px = pixels()
        page.locator(f'button[data-stage="{info["other"]}"]').click()
        page.evaluate("window.dinoExplorer.ready()")
        assert canvas.get_attribute("data-stage") == info["other"], f"{where}: stage button did not switch"
        oh, ow = info["oh"], info["ow"]
        before = pixels()
        assert before[:2] == [ow, oh] and before != last_px, f"{where}: stage {info['other']} not drawn"
        box = canvas.bounding_box()
        for ty, tx in ((0, 0), (oh - 1, ow - 1)):
            page.mouse.click(box["x"] + (tx + .5) * box["width"] / ow, box["y"] + (ty + .5) * box["height"] / oh)
            page.evaluate("window.dinoExplorer.ready()")
            st = page.evaluate("window.dinoExplorer.state()")
            assert (st["stage"], st["y"], st["x"]) == (info["other"], ty, tx), f"{where}: click gave {st}"
            best, n = argmax(pid)
            assert n == oh * ow and best == ty * ow + tx, f"{where}: stage {info['other']} map wrong ({best}, {n})"
            after = pixels()
            assert after != before, f"{where}: clicking ({ty}, {tx}) on {info['other']} left the heatmap unchanged"
            before = after
        page.locator(f'button[data-stage="{info["last"]}"]').click()
        page.evaluate("window.dinoExplorer.ready()")
        page.evaluate("([p, m]) => window.dinoExplorer.probe(p, m, 0, 0)", [pid, m0])

    if len(info["models"]) > 1:
        before = page.evaluate("(p) => Array.from(window.dinoExplorer.map(p))", pid)
        page.locator(f'button[data-model="{info["models"][1]}"]').click()
        page.evaluate("window.dinoExplorer.ready()")
        after = page.evaluate("(p) => Array.from(window.dinoExplorer.map(p))", pid)
        assert before != after, f"{where}: switching model did not change the map"
        assert canvas.get_attribute("data-model") == info["models"][1]
        page.locator(f'button[data-model="{m0}"]').click()
        page.evaluate("window.dinoExplorer.ready()")


def _canvas_pixels(page, image: str) -> list:
    return page.evaluate("""(id) => { const c = document.querySelector(`canvas[data-image="${id}"]`);
        return [c.width, c.height, Array.from(c.getContext('2d').getImageData(0, 0, c.width, c.height).data)]; }""",
                         image)


def _check_explorer_as_reader(page, rec, where: str) -> None:
    """What a reader does: nothing of the explorer's codes loads before it is near the screen;
    scrolled to, it draws a map by itself; two clicks on two cells draw two different maps."""
    if page.locator("#similarity-explorer canvas").count() == 0:
        return
    early = [u for u in rec.requests if "/assets/codes/" in u]
    assert not early, f"{where}: explorer codes fetched before the explorer was in view: {early}"
    page.locator("#similarity-explorer").scroll_into_view_if_needed()
    page.wait_for_function("() => { const s = window.dinoExplorer.state(); "
                           "return !!window.dinoExplorer.map(s.image); }", timeout=15000)
    canvas = page.locator("#similarity-explorer canvas").first
    box = canvas.bounding_box()
    drawn = []
    for fx, fy in ((0.1, 0.1), (0.9, 0.85)):
        page.mouse.click(box["x"] + fx * box["width"], box["y"] + fy * box["height"])
        page.evaluate("window.dinoExplorer.ready()")
        drawn.append(_canvas_pixels(page, canvas.get_attribute("data-image")))
    assert drawn[0][0] > 1 and drawn[0] != drawn[1], f"{where}: two clicks on two cells drew the same map"
    if "/index.html" in page.url:
        fetched = [u for u in rec.requests if "/assets/codes/" in u]
        assert len(fetched) == 1, f"{where}: the first map should need one codes file, fetched {fetched}"


def check_index_from_file(site_dir: Path) -> str:
    """index.html opened from file:// cannot fetch the codes: the explorer says so and points
    to report.html. Returns the status line."""
    from playwright.sync_api import sync_playwright

    exe = CHROMIUM if Path(CHROMIUM).exists() else shutil.which("chromium")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=exe, args=LAUNCH_ARGS)
        try:
            page = browser.new_page()
            page.goto((Path(site_dir).resolve() / "index.html").as_uri(), wait_until="load")
            page.locator("#similarity-explorer").scroll_into_view_if_needed()
            page.wait_for_function("() => document.querySelector('.explorer').classList.contains('is-failed')",
                                   timeout=15000)
            link = page.locator(".xp-status a").get_attribute("href")
            assert link == "report.html", link
            return page.locator(".xp-status").text_content()
        finally:
            browser.close()


# A full-page capture of the whole report at phone width and scale 2 is a bitmap
# of about 780 x 100,000 pixels: Chromium needs longer than Playwright's 30 s
# on a busy two-core machine (it failed CI that way).  The top of the page is
# what a reader sees first and what the screenshots are looked at for.
SCREENSHOT_MAX_CSS_PX = 6000


def _screenshot(page, path: Path) -> None:
    """Save the top of the page, at most SCREENSHOT_MAX_CSS_PX tall."""
    width, height = page.evaluate(
        "[document.documentElement.clientWidth, document.documentElement.scrollHeight]")
    clip = {"x": 0, "y": 0, "width": width, "height": min(height, SCREENSHOT_MAX_CSS_PX)}
    page.screenshot(path=str(path), full_page=True, clip=clip, timeout=120_000)


def check_site(site_dir: Path, screenshots: Path) -> dict:
    """Run every browser check on ``site_dir``; write screenshots; return a small summary."""
    from playwright.sync_api import sync_playwright

    site_dir, screenshots = Path(site_dir).resolve(), Path(screenshots)
    screenshots.mkdir(parents=True, exist_ok=True)
    summary: dict = {}
    exe = CHROMIUM if Path(CHROMIUM).exists() else shutil.which("chromium")
    with sync_playwright() as p, serve(site_dir) as base:
        browser = p.chromium.launch(executable_path=exe, args=LAUNCH_ARGS)
        try:
            targets = [("index", base + "index.html"), ("report", (site_dir / "report.html").as_uri())]
            for name, url in targets:
                for scheme in ("light", "dark"):
                    ctx = browser.new_context(viewport={"width": 1280, "height": 900},
                                              color_scheme=scheme, device_scale_factor=1)
                    page = ctx.new_page()
                    rec = _Recorder(page)
                    page.goto(url, wait_until="load")
                    where = f"{name} ({scheme})"
                    _check_explorer_as_reader(page, rec, where)
                    _check_images(page, where)
                    bg = page.evaluate("getComputedStyle(document.body).backgroundColor")
                    lum = _luminance(bg)
                    if scheme == "dark":
                        assert lum < 0.3, f"{where}: body background {bg} is not dark"
                    else:
                        assert lum > 0.7, f"{where}: body background {bg} is not light"
                    ids = page.evaluate("""() => { const s = new Set(), d = [];
                        document.querySelectorAll('[id]').forEach(e => { if (s.has(e.id)) d.push(e.id); s.add(e.id); });
                        return d; }""")
                    assert not ids, f"{where}: duplicate ids {ids}"
                    _check_lightbox(page, where)
                    _check_explorer(page, where)
                    if name == "index" or scheme == "light":
                        _screenshot(page, screenshots / f"{name}-{scheme}.png")
                    rec.check(where)
                    summary[where] = {"requests": len(rec.requests), "background": bg,
                                      "files": sorted({u for u in rec.requests if not u.startswith("data:")})}
                    ctx.close()
            # phone width, light
            ctx = browser.new_context(viewport={"width": 390, "height": 844}, device_scale_factor=2,
                                      is_mobile=True, has_touch=True)
            page = ctx.new_page()
            rec = _Recorder(page)
            page.goto(base + "index.html", wait_until="load")
            _check_images(page, "index (phone)")
            overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
            assert overflow <= 1, f"index (phone): page scrolls sideways by {overflow}px"
            _screenshot(page, screenshots / "index-phone.png")
            rec.check("index (phone)")
            ctx.close()
        finally:
            browser.close()
    return summary

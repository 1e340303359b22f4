"""How fast a built site opens for a reader on a slow line (headless Chromium, CDP throttling).

    python bench/page_load.py SITE [SITE ...]     # e.g. site/ of `make demo`

Serves each site over loopback (http.server: no compression, as the worst case of a static
host), emulates each line with CDP ``Network.emulateNetworkConditions`` and prints, per site
and line: bytes transferred before the first figure is painted, time to the first figure,
``DOMContentLoaded``, ``load``, bytes transferred before the reader scrolls (at ``load``) and
the time from a click on the explorer (scrolled to after ``load``) to its first similarity map.
Times are milliseconds from navigation start, cold (a fresh browser context, cache off): one
visit scrolls straight to the first figure, another waits for ``load`` without scrolling and
then scrolls to the explorer and clicks it. Needs playwright and /usr/bin/chromium (never downloads a browser).
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from browser_checks import CHROMIUM, LAUNCH_ARGS, serve  # noqa: E402

#: (name, download bit/s, round trip ms)
LINES = (("fast 4G", 9_000_000, 150), ("50 Mbit/s", 50_000_000, 20))

FIRST_FIGURE = """() => { const i = document.querySelector('figure.fig img');
    return !!(i && i.complete && i.naturalWidth > 0); }"""


def _open(browser, line: tuple[str, int, int]):
    """A fresh context and page behind the emulated line; returns (ctx, page, responses) where
    responses collects (monotonic s, bytes on the wire) of every finished response."""
    _, bps, rtt = line
    ctx = browser.new_context(viewport={"width": 1280, "height": 900})
    page = ctx.new_page()
    cdp = ctx.new_cdp_session(page)
    cdp.send("Network.enable")
    cdp.send("Network.setCacheDisabled", {"cacheDisabled": True})
    cdp.send("Network.emulateNetworkConditions", {"offline": False, "latency": rtt,
                                                  "downloadThroughput": bps / 8, "uploadThroughput": bps / 8})
    got: list[tuple[float, int]] = []
    cdp.on("Network.loadingFinished", lambda e: got.append((time.monotonic(), int(e["encodedDataLength"]))))
    return ctx, page, got


def measure(base: str, browser, line: tuple[str, int, int]) -> dict:
    """Two cold visits: one that scrolls straight to the first figure (time and bytes until it
    is painted), one that reads the top until ``load`` and then uses the explorer."""
    ctx, page, got = _open(browser, line)
    t_nav = time.monotonic()
    page.goto(base + "index.html", wait_until="commit")
    page.wait_for_selector("figure.fig img", state="attached", timeout=120_000)
    page.locator("figure.fig img").first.scroll_into_view_if_needed()
    page.wait_for_function(FIRST_FIGURE, polling=20, timeout=120_000)
    t_fig = time.monotonic()
    out = {"line": line[0], "first_figure_ms": round((t_fig - t_nav) * 1000),
           "bytes_before_first_figure": sum(b for t, b in got if t <= t_fig)}
    ctx.close()

    ctx, page, got = _open(browser, line)
    page.goto(base + "index.html", wait_until="load", timeout=120_000)
    t_load = time.monotonic()
    nav = page.evaluate("""() => { const n = performance.getEntriesByType('navigation')[0];
        return [n.domContentLoadedEventEnd, n.loadEventEnd]; }""")
    out.update({"dcl_ms": round(nav[0]), "load_ms": round(nav[1]),
                "bytes_before_scroll": sum(b for t, b in got if t <= t_load)})
    if page.locator("#similarity-explorer canvas").count():
        canvas = page.locator("#similarity-explorer canvas").first
        t0 = time.monotonic()
        canvas.scroll_into_view_if_needed()
        canvas.click()
        page.wait_for_function("() => { const s = window.dinoExplorer.state(); "
                               "return !!window.dinoExplorer.map(s.image); }", polling=20, timeout=120_000)
        out["explorer_click_to_map_ms"] = round((time.monotonic() - t0) * 1000)
    ctx.close()
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("sites", nargs="+", type=Path)
    args = ap.parse_args(argv)
    from playwright.sync_api import sync_playwright

    cols = ("line", "bytes_before_first_figure", "first_figure_ms", "dcl_ms", "load_ms",
            "bytes_before_scroll", "explorer_click_to_map_ms")
    print("| site | index.html | report.html | " + " | ".join(cols) + " |")
    print("|" + "---|" * (len(cols) + 3))
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=LAUNCH_ARGS)
        try:
            for site in args.sites:
                with serve(site) as base:
                    for line in LINES:
                        r = measure(base, browser, line)
                        sizes = [f"{(site / n).stat().st_size:,}" for n in ("index.html", "report.html")]
                        cells = [f"{r[c]:,}" if isinstance(r.get(c), int) else str(r.get(c, "—")) for c in cols]
                        print(f"| {site} | " + " | ".join(sizes + cells) + " |", flush=True)
        finally:
            browser.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""axe-core's WCAG 2.1 AA rules on the demo build's index.html and report.html, in the light and
the dark colour scheme (headless Chromium; axe-core is vendored under tests/vendor/axe-core)."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from browser_checks import CHROMIUM, LAUNCH_ARGS, browser_available, serve

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not browser_available(), reason="needs /usr/bin/chromium and playwright"),
]

AXE = Path(__file__).resolve().parent / "vendor" / "axe-core" / "axe.min.js"
#: axe-core's tags for WCAG 2.0 and 2.1, levels A and AA
WCAG_AA = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa"]


def axe_violations(page) -> list[dict]:
    """axe-core's WCAG 2.1 AA violations of the page as it is now: [{id, impact, nodes: [...]}].

    The script is evaluated through the devtools protocol, which the pages' strict CSP does not
    govern (it would refuse an injected <script>), so the page is checked with its CSP on."""
    page.evaluate(AXE.read_text(encoding="utf-8") + "\n;0")
    res = page.evaluate("""async (tags) => {
        const r = await axe.run(document, {runOnly: {type: 'tag', values: tags}, resultTypes: ['violations']});
        return r.violations.map(v => ({id: v.id, impact: v.impact, help: v.help,
            nodes: v.nodes.slice(0, 5).map(n => n.target.join(' ') + ': ' + n.failureSummary.slice(0, 200)),
            count: v.nodes.length}));
    }""", WCAG_AA)
    return res


def _shoot(page, shots: Path, name: str) -> None:
    shots.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(shots / name), full_page=False)


def test_demo_pages_pass_axe_wcag_aa_in_both_schemes(demo_site, tmp_path):
    from playwright.sync_api import sync_playwright

    shots = Path(os.environ.get("DINOREPORT_SCREENSHOTS") or tmp_path / "screenshots") / "axe"
    found = {}
    with serve(demo_site) as base, sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=LAUNCH_ARGS)
        try:
            for scheme in ("light", "dark"):
                ctx = browser.new_context(color_scheme=scheme, viewport={"width": 1280, "height": 900})
                page = ctx.new_page()
                for name, url in (("index", base + "index.html"), ("report", (demo_site / "report.html").resolve().as_uri())):
                    page.goto(url, wait_until="load")
                    page.wait_for_timeout(300)
                    _shoot(page, shots, f"{name}-{scheme}.png")
                    found[(name, scheme)] = axe_violations(page)
                ctx.close()
        finally:
            browser.close()
    bad = {k: v for k, v in found.items() if v}
    assert not bad, "\n".join(f"{k}: {v['id']} ({v['impact']}, {v['count']} nodes): {v['help']}; {v['nodes']}"
                              for k, vs in bad.items() for v in vs)

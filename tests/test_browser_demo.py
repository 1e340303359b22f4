"""Headless Chromium against the real --random-init demo build (checks live in browser_checks.py)."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from browser_checks import browser_available, check_site

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not browser_available(), reason="needs /usr/bin/chromium and playwright"),
]


def test_demo_build_in_browser(demo_site, tmp_path):
    shots = Path(os.environ.get("DINOREPORT_SCREENSHOTS") or tmp_path / "screenshots") / "demo"
    summary = check_site(demo_site, shots)
    for name in ("index-light.png", "index-dark.png", "report-light.png", "index-phone.png"):
        assert (shots / name).is_file(), name
    # the explorer and the lightbox were there to be checked
    html = (demo_site / "index.html").read_text()
    assert 'id="explorer-data"' in html and 'class="zoom"' in html
    # report.html is self-contained: the page itself is the only file it loads
    assert summary["report (light)"]["files"] == [(demo_site.resolve() / "report.html").as_uri()]
    files = summary["index (light)"]["files"]  # served over http by the checks
    for rel in ("/index.html", "/assets/style.css", "/assets/report.js"):
        assert any(u.endswith(rel) for u in files), rel
    assert any(u.endswith(".png") for u in files)  # the figure files

"""Headless Chromium against a rendered sample site (checks live in browser_checks.py)."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from browser_checks import browser_available, check_site

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not browser_available(), reason="needs /usr/bin/chromium and playwright"),
]

ROOT = Path(__file__).resolve().parents[1]


def test_sample_site_in_browser(tmp_path):
    from dinoreport.render import render_site
    from sample_page import make_sample_page

    site = tmp_path / "site"
    site.mkdir()
    page = make_sample_page(site, random_init=True)
    render_site(page, site_src=ROOT / "site_src", out=site)
    shots = Path(os.environ.get("DINOREPORT_SCREENSHOTS") or tmp_path / "screenshots")
    summary = check_site(site, shots)
    assert (shots / "index-light.png").is_file() and (shots / "index-dark.png").is_file()
    # report.html is self-contained: the page itself is the only file it loads
    assert summary["report (light)"]["files"] == [(site.resolve() / "report.html").as_uri()]


def test_index_from_file_says_the_explorer_needs_report_html(tmp_path):
    from browser_checks import check_index_from_file
    from dinoreport.render import render_site
    from sample_page import make_sample_page

    site = tmp_path / "site"
    site.mkdir()
    page = make_sample_page(site, random_init=True)
    render_site(page, site_src=ROOT / "site_src", out=site)
    status = check_index_from_file(site)
    assert "file://" in status and "report.html" in status

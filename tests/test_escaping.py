"""Config and manifest text never becomes markup or script (issue 10, item 6).

A hostile model label, group name and credit reach both pages through the templates, the
narrative's Jinja, hand-built links and the explorer's JSON. Nothing of them may execute, break
out of an attribute or break the JSON; the CSP allows no inline script but the page's own.
"""
from __future__ import annotations

import base64
import dataclasses
import hashlib
import html
import json
import re
from html.parser import HTMLParser
from pathlib import Path

import pytest

from browser_checks import CHROMIUM, LAUNCH_ARGS, browser_available, serve
from dinoreport.render import render_site
from sample_page import make_sample_page

ROOT = Path(__file__).resolve().parents[1]
LABEL = "<script>alert(1)</script>ViT\"' [x](javascript:alert(2))"
GROUP = "d\"o'g<!--s</script>"


class _Doc(HTMLParser):
    def __init__(self, text: str):
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict]] = []
        self.scripts: list[tuple[dict, str]] = []
        self._in_script: dict | None = None
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        a = {k: (v or "") for k, v in attrs}
        self.tags.append((tag, a))
        if tag == "script":
            self._in_script = a
            self.scripts.append((a, ""))

    handle_startendtag = handle_starttag

    def handle_data(self, data):
        if self._in_script is not None:
            a, text = self.scripts[-1]
            self.scripts[-1] = (a, text + data)

    def handle_endtag(self, tag):
        if tag == "script":
            self._in_script = None


def _hostile_page(out: Path):
    page = make_sample_page(out)
    models = tuple(dataclasses.replace(m, label=LABEL + m.id) for m in page.models)
    figures = tuple(dataclasses.replace(f, id=f.id.replace("dogs", GROUP), group=GROUP) if f.group else f
                    for f in page.figures)
    explorer = json.loads(json.dumps(page.explorer))
    for m in explorer["models"]:
        m["label"] = LABEL
    for g in explorer["groups"]:
        if g["id"] == "dogs":
            g["id"] = GROUP
    for per_stage in explorer["features"].values():
        for groups in per_stage.values():
            if "dogs" in groups:
                groups[GROUP] = groups.pop("dogs")
    credits = tuple(dataclasses.replace(c, author=LABEL) for c in page.credits)
    return dataclasses.replace(page, models=models, figures=figures, explorer=explorer, credits=credits,
                               title=LABEL)


@pytest.fixture(scope="module")
def hostile_site(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("hostile")
    src = out.parent / (out.name + "-src")
    src.mkdir()
    for md in sorted((ROOT / "site_src").glob("*.md")):
        (src / md.name).write_text(md.read_text(encoding="utf-8"), encoding="utf-8")
    # the narrative shows labels through both helpers and through links to group figures
    (src / "99-hostile.md").write_text(
        "## Hostile\n\n{% for m in models %}{{ m.label }} and {{ label(m.id) }}; {% endfor %}\n\n"
        "See {{ refs('across_pca_naive') }}.\n\n::: figures kind=across_pca_naive\n\n"
        "::: figures kind=across_pca_naive\n\n::: explorer\n", encoding="utf-8")
    page = _hostile_page(out)
    render_site(page, site_src=src, out=out)
    return out


@pytest.mark.parametrize("name", ["index.html", "report.html"])
def test_hostile_text_is_escaped(hostile_site, name):
    text = (hostile_site / name).read_text(encoding="utf-8")
    doc = _Doc(text)
    assert "<script>alert" not in text and "javascript:" not in text.replace("javascript:alert(2))", "")
    assert not [a for _, a in doc.tags if any(v.startswith("javascript:") for v in a.values())]
    # every in-page link points at an element that exists (a quote cannot end an href early)
    ids = {a["id"] for _, a in doc.tags if "id" in a}
    hrefs = [a["href"] for t, a in doc.tags if t == "a" and a.get("href", "").startswith("#")]
    assert any(GROUP in h for h in hrefs)
    assert [h for h in hrefs if h[1:] not in ids] == []
    assert any(a.get("id", "").endswith(GROUP) for _, a in doc.tags)
    # the explorer's JSON parses and carries the names unchanged
    [(_, data)] = [(a, s) for a, s in doc.scripts if a.get("type") == "application/json"]
    ex = json.loads(data)
    assert ex["models"][0]["label"] == LABEL and GROUP in {g["id"] for g in ex["groups"]}


def _csp(text: str) -> dict[str, list[str]]:
    m = re.search(r'<meta http-equiv="Content-Security-Policy" content="([^"]*)">', text)
    assert m, "no CSP meta"
    policy = html.unescape(m.group(1))
    return {d.split()[0]: d.split()[1:] for d in policy.split(";") if d.strip()}


def test_csp_allows_no_inline_script_but_the_pages_own(hostile_site):
    index = (hostile_site / "index.html").read_text(encoding="utf-8")
    csp = _csp(index)
    assert csp["script-src"] == ["'self'"]
    runnable = [(a, s) for a, s in _Doc(index).scripts if a.get("type") != "application/json"]
    assert runnable == [({"src": "assets/report.js"}, "")]

    report = (hostile_site / "report.html").read_text(encoding="utf-8")
    csp = _csp(report)
    assert "'unsafe-inline'" not in csp["script-src"]
    runnable = [s for a, s in _Doc(report).scripts if a.get("type") != "application/json"]
    assert len(runnable) == 1
    digest = base64.b64encode(hashlib.sha256(runnable[0].encode("utf-8")).digest()).decode()
    assert csp["script-src"] == [f"'sha256-{digest}'"]


@pytest.mark.browser
@pytest.mark.skipif(not browser_available(), reason="needs /usr/bin/chromium and playwright")
def test_hostile_label_does_not_run_in_chromium(hostile_site):
    from playwright.sync_api import sync_playwright

    with serve(hostile_site) as base, sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=LAUNCH_ARGS)
        try:
            for url in (base + "index.html", (hostile_site / "report.html").resolve().as_uri()):
                page = browser.new_page()
                dialogs: list[str] = []
                errors: list[str] = []
                page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
                page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
                page.on("pageerror", lambda e: errors.append(str(e)))
                page.goto(url)
                page.wait_for_load_state("load")
                page.wait_for_timeout(300)
                assert dialogs == [], f"{url}: script from config ran: {dialogs}"
                assert errors == [], f"{url}: {errors}"
                # the page's own script ran (CSP lets it) and read the explorer's data
                assert page.evaluate("!!window.dinoExplorer"), url
                assert page.locator("[data-model]").first.inner_text().startswith("<script>alert(1)")
                page.close()
        finally:
            browser.close()

"""Every sentence of the narrative that states a number or a comparison is bound to the data.

The narrative's helpers (dinoreport.wording) print each number, and each "above"/"below"/"at"
word, in a ``<span class="bound" data-bound=...>`` that says where it comes from. These tests
recompute every such span from results.json / build.json with code of their own, check that
the printed text is that value (and the word the right one), that two compared numbers never
read alike when they differ, and that no other digits are left in the prose than sourced
facts (model names, stage names, figure numbers, the build's settings, the rules' constants).
"""
from __future__ import annotations

import html
import json
import math
import re
import shutil
from pathlib import Path

import pytest

from dinoreport.analysis.claims import REL_TOL
from dinoreport.render import render_site
from dinoreport.wording import compare, num, pct

from conftest import PROJECT
from sample_page import make_sample_page

SPAN = re.compile(r'<span class="bound" data-bound="([^"]*)">([^<]*)</span>')


# --------------------------------------------------------------------------- recompute

def _match(row: dict, where: dict) -> bool:
    return all((row.get(k) in v) if isinstance(v, list) else row.get(k) == v for k, v in where.items())


def _pick(v, index):
    if index is None or v is None:
        return v
    if isinstance(v, dict):
        return v.get(index)
    return v[index] if index < len(v) else None


def resolve(src: dict, results: dict, build: dict | None):
    """The number ``src`` names (see dinoreport.wording), read from the data files."""
    if "const" in src:
        return src["const"]
    if "facts" in src:
        assert build is not None, src
        if src["facts"] == "models":
            return len(build["models"])
        m = next(m for m in build["models"] if m["id"] == src["model"])
        return m["channels"][m["stages"].index(src["stage"])]
    rows = results[src["key"]]
    if "row" in src:
        return _pick(rows[src["row"]][src["field"]], src.get("index"))
    sel = [r for r in rows if _match(r, src["where"])]
    if src["how"] == "count":
        fields = src["fields"]
        return len({tuple(json.dumps(r.get(f)) for f in fields) for r in sel}) if fields else len(sel)
    vals = [_pick(r.get(src["field"]), src["index"]) for r in sel]
    vals = [float(v) for v in vals if isinstance(v, (int, float)) and not isinstance(v, bool)]
    assert vals, src
    return {"mean": sum(vals) / len(vals), "max": max(vals), "min": min(vals)}[src["how"]]


def _parse(text: str) -> tuple[float, float]:
    """(value, half a unit of its last shown digit) of a printed number such as '0.60',
    '11.1%', '451,584' or '2.31e−6%'."""
    t = text.replace("−", "-").replace(",", "").rstrip("%")
    mant, _, exp = t.partition("e")
    value = float(t)
    decimals = len(mant.split(".")[1]) if "." in mant else 0
    return value, 0.5 * 10.0 ** (-decimals + (int(exp) if exp else 0))


def bound_spans(html_text: str) -> list[tuple[dict, str, int]]:
    """(record, shown text, offset) of every bound span of the article."""
    return [(json.loads(html.unescape(m.group(1))), html.unescape(m.group(2)), m.start())
            for m in SPAN.finditer(article(html_text))]


def article(html_text: str) -> str:
    """The narrative: from the article's start to the appendices the page adds itself."""
    a = html_text.index('id="article"')
    ends = [html_text.find(m, a) for m in ('id="more-figures"', 'id="about-models"', "</main>")]
    end = min(e for e in ends if e > 0)
    return html_text[a:html_text.rfind("<", a, end) if end != ends[-1] else end]


def check_bound(html_text: str, results: dict, build: dict | None) -> dict[str, int]:
    """Assert every bound span against the data; returns counts of what was checked."""
    spans = bound_spans(html_text)
    seen = {"num": 0, "compare": 0}
    for rec, text, _ in spans:
        if "compare" in rec:
            a, b = (float(resolve(s, results, build)) for s in rec["compare"])
            tol, (gt, eq, lt) = rec["tol"], rec["words"]
            assert tol == REL_TOL
            want = eq if abs(a - b) <= tol * max(abs(a), abs(b)) else (gt if a > b else lt)
            assert text == want, (rec, text, a, b)
            seen["compare"] += 1
            continue
        v = resolve(rec["src"], results, build)
        assert v is not None, rec
        if rec["as"] == "int":
            assert text.replace(",", "").replace("−", "-") == str(int(v)), (rec, text, v)
        else:
            shown, half = _parse(text)
            want = 100.0 * v if rec["as"] == "pct" else v
            assert abs(shown - want) <= half * 1.0001 + 1e-12, (rec, text, v)
        seen["num"] += 1
    return seen


def check_compared_apart(html_text: str, results: dict, build: dict | None) -> int:
    """Two numbers a comparison word is about, printed in the same sentence, read differently
    whenever their values differ."""
    body = article(html_text)
    checked = 0
    for block in re.findall(r"<(?:p|li)\b.*?</(?:p|li)>", body, re.S):
        spans = bound_spans(f'<main id="article">{block}</main>')
        shown = {json.dumps(r["src"], sort_keys=True): t for r, t, _ in spans if "src" in r}
        for rec, _, _ in spans:
            if "compare" not in rec or any("const" in s for s in rec["compare"]):
                continue
            keys = [json.dumps(s, sort_keys=True) for s in rec["compare"]]
            texts = [shown.get(k) for k in keys]
            if None in texts:
                continue
            a, b = (resolve(s, results, build) for s in rec["compare"])
            if a != b:
                assert texts[0] != texts[1], (block[:300], texts, a, b)
            checked += 1
    return checked


def loose_digits(html_text: str, build: dict) -> list[str]:
    """Digits left in the prose outside bound spans, figures, tables, claim boxes, links,
    code and headings, once the sourced facts are taken out."""
    body = article(html_text)
    for pat in (r"<figure\b.*?</figure>", r"<table\b.*?</table>", r"<(section|aside|div) class=\"claim\b.*?</\1>",
                r"<div class=\"[^\"]*(?:figure|table|explorer)[^\"]*\".*?</div>", SPAN.pattern,
                r"<a\b.*?</a>", r"<code>.*?</code>", r"<h[1-6]\b.*?</h[1-6]>"):
        body = re.sub(pat, " ", body, flags=re.S)
    text = html.unescape(re.sub(r"<[^>]+>", " ", body))
    facts = set()
    for m in build["models"]:
        facts |= set(m["stages"]) | {m["timm"], m["id"]}
    facts |= {m.get("label", "") for m in build["models"]}
    facts |= set(build.get("featured", [])) | {i for ids in build["groups"].values() for i in ids}
    # labels are not in build.json: the known ones and their pieces
    facts |= {"ConvNeXt-T", "ViT-S/16", "ImageNet-1k", "DINOv3", "DINOv2", "IN-1k"}
    for f in sorted(facts, key=len, reverse=True):
        if f:
            text = text.replace(f, " ")
    # the build's settings and the rules' own constants
    consts = [str(build["resolution"]), str(build["crop"]["multiple"]), f"{REL_TOL:.0%}",
              "1×1", "0–1", "L2", "1.4826", "2024", "1st", "99th", "98%"]
    for c in consts:
        text = text.replace(c, " ")
    return [t for t in re.findall(r"\S*\d\S*", text)]


# --------------------------------------------------------------------------- builds

def _load(site: Path) -> tuple[str, dict, dict]:
    return ((site / "index.html").read_text(encoding="utf-8"),
            json.loads((site / "data" / "results.json").read_text()),
            json.loads((site / "data" / "build.json").read_text()))


def test_demo_prose_is_bound_to_results(demo_site):
    """The small random-init demo: every bound number and word matches results.json."""
    page, results, build = _load(demo_site)
    seen = check_bound(page, results, build)
    assert seen["num"] >= 30 and seen["compare"] >= 3, seen
    assert check_compared_apart(page, results, build) >= 1
    assert loose_digits(page, build) == []


@pytest.mark.slow
def test_default_demo_prose_is_bound_to_results(default_demo_site):
    """The default demo (the project's own config, random init): the same checks, on the
    sentences the issue named among them (mask agreement against chance, matches against
    chance per model, channel counts)."""
    page, results, facts = _load(default_demo_site)
    seen = check_bound(page, results, facts)
    assert seen["num"] >= 80, seen
    assert check_compared_apart(page, results, facts) >= 4
    assert loose_digits(page, facts) == []
    text = html.unescape(re.sub(r"<[^>]+>", "", article(page)))
    assert "chance agreement" not in text and "hundreds of" not in text and "local texture" not in text
    assert "garble" in text  # what the study saw of the ImageNet ConvNeXt's last stage
    assert "the models agree" in text and "chance" in text
    for m in facts["models"]:
        for w in m["channels"]:
            assert f"{w:,}" in text


# --------------------------------------------------------------------------- planted

def _planted_page(out: Path, iou: float, chance: float, share: float, chance_share: float):
    """The sample page with mask agreement and matches planted at the given levels."""
    page = make_sample_page(out)
    res = page.results
    for r in res["mask_iou"]:
        r["iou"], r["chance_iou"] = iou, chance
    res["correspondences"] = [
        {"group": "dogs", "image_a": "a", "image_b": "b", "model": m, "stage": "C5", "n_a": 10, "n_b": 10,
         "n_mutual": 1, "cycle_consistent_share": share, "chance_share": chance_share}
        for m in ("dinov3_convnext_tiny", "in1k_convnext_tiny")]
    return page


def _facts(page) -> dict:
    """What build.json records of the page's models (the sample page has no build)."""
    return {"models": [{"id": m.id, "stages": [s.name for s in m.stages],
                        "channels": [s.channels for s in m.stages]} for m in page.models]}


def _render(out: Path, page) -> str:
    """Render ``page`` into ``out``, the folder its panels were written to."""
    render_site(page, site_src=PROJECT / "site_src", out=out)
    return (out / "index.html").read_text(encoding="utf-8")


def _line(page_html: str, phrase: str) -> str:
    """The line of the article's text that holds ``phrase``."""
    text = html.unescape(re.sub(r"<[^>]+>", "", article(page_html)))
    i = text.index(phrase)
    return text[text.rfind("\n", 0, i) + 1:text.index("\n", i)]


@pytest.mark.parametrize("case", ["below", "above", "at"])
def test_planted_levels_flip_the_words(tmp_path, case):
    """Moving the measured value across its chance level flips the word, and the numbers
    keep enough digits to tell 0.1065 from 0.1109."""
    low, high = 0.1065, 0.1109
    iou, chance = {"below": (0.30, 0.33), "above": (0.60, 0.33), "at": (0.330, 0.331)}[case]
    share, cshare = {"below": (low, high), "above": (high, low), "at": (0.1100, 0.1101)}[case]
    page = _planted_page(tmp_path, iou, chance, share, cshare)
    out = _render(tmp_path, page)
    check_bound(out, page.results, _facts(page))
    masks = _line(out, "foreground masks of two models")
    want = {"below": "less than chance", "above": "more than chance", "at": "as much as chance"}[case]
    assert want in masks, masks
    matches = _line(out, "ConvNeXt-T (DINOv3): on average over")
    assert f"{case} the chance level" in matches, matches
    if case != "at":
        assert "10.7%" in matches and "11.1%" in matches, matches


def test_wording_helpers():
    """compare picks the word by the tie tolerance; num/pct add digits only to separate."""
    assert str(compare(1.0, 0.5)).endswith(">above</span>")
    assert str(compare(0.5, 1.0)).endswith(">below</span>")
    assert str(compare(1.0, 1.005)).endswith(">at</span>")
    assert str(compare(2.0, 1.0, words=("more", "as much", "less"))).endswith(">more</span>")
    assert pct(0.1065, 2) == "11%" and pct(0.1065, 2, against=[0.1109]) == "10.7%"
    assert pct(0.1109, 2, against=[0.1065]) == "11.1%"
    assert num(0.6003, 2, against=[0.6003]) == "0.60"  # equal values need no more digits
    assert num(451584) == "451,584" and num(-3) == "−3"
    assert num(0.12345, 2, against=[0.12344]) == "0.1235"  # 0.1234 beside it


def test_altered_results_fail_the_check(tmp_path):
    """The checker is not a formality: a result changed after rendering is caught."""
    page = _planted_page(tmp_path, 0.60, 0.33, 0.1109, 0.1065)
    out = _render(tmp_path, page)
    check_bound(out, page.results, _facts(page))
    for r in page.results["mask_iou"]:
        r["chance_iou"] = 0.9
    with pytest.raises(AssertionError):
        check_bound(out, page.results, _facts(page))

"""render.py: two outputs, anchors, numbering, notices, determinism, narrative errors."""
from __future__ import annotations

import dataclasses
import re
from html.parser import HTMLParser
from pathlib import Path

import pytest

from dinoreport.cells import format_cell
from dinoreport.directives import BlockDirective
from dinoreport.narrative import narrative_sources
from dinoreport.page import RenderError
from dinoreport.render import render_site
from sample_page import make_sample_page

ROOT = Path(__file__).resolve().parents[1]
SITE_SRC = ROOT / "site_src"


class _Doc(HTMLParser):
    def __init__(self, text: str):
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict]] = []
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, {k: (v or "") for k, v in attrs}))

    handle_startendtag = handle_starttag

    def all(self, tag: str) -> list[dict]:
        return [a for t, a in self.tags if t == tag]

    def ids(self) -> list[str]:
        return [a["id"] for _, a in self.tags if "id" in a]


def _render(out: Path, page=None, site_src: Path = SITE_SRC, **kw) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    page = page or make_sample_page(out, **kw)
    render_site(page, site_src=site_src, out=out)
    return out


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    return _render(tmp_path_factory.mktemp("site"))


@pytest.fixture(scope="module")
def docs(site) -> dict[str, tuple[str, _Doc]]:
    out = {}
    for name in ("index.html", "report.html"):
        text = (site / name).read_text(encoding="utf-8")
        out[name] = (text, _Doc(text))
    return out


def test_writes_all_outputs(site):
    for rel in ("index.html", "report.html", "assets/style.css", "assets/report.js", ".nojekyll"):
        assert (site / rel).is_file(), rel


def test_narrative_sources_sorted():
    names = [p.name for p in narrative_sources(SITE_SRC)]
    assert names == sorted(names) and names[0].startswith("01") and len(names) >= 10


def test_index_images_exist_and_relative(site, docs):
    text, doc = docs["index.html"]
    imgs = doc.all("img")
    assert len(imgs) > 20
    for a in imgs:
        src = a["src"]
        assert "alt" in a, src
        if src.startswith("data:"):
            continue
        assert not src.startswith(("/", "http:", "https:", "//")), src
        assert (site / src).is_file(), src
    # explorer photos are site-relative files as well
    for photo in re.findall(r'"photo":"([^"]+)"', text):
        assert (site / photo).is_file(), photo


def test_report_is_self_contained(docs):
    text, doc = docs["report.html"]
    pics = {a["data-pic"] for a in doc.all("img") if "data-pic" in a}
    for a in doc.all("img"):
        # a picture shown again names its first copy instead of carrying it twice
        assert a["src"].startswith("data:") if "src" in a else a.get("data-same") in pics, a
        assert "alt" in a
    assert not doc.all("link") or all(l["href"].startswith("data:") for l in doc.all("link"))
    assert all("src" not in s for s in doc.all("script"))
    assert "<style>" in text
    assert re.search(r'"photo":"data:image/(png|webp);base64,', text)


@pytest.mark.parametrize("name", ["index.html", "report.html"])
def test_no_remote_loads(docs, name):
    text, doc = docs[name]
    for tag, attrs in doc.tags:
        for key in ("src", "srcset", "poster", "data"):
            if key in attrs:
                assert not re.match(r"^(https?:)?//", attrs[key]), (tag, attrs[key])
        if "href" in attrs:
            href = attrs["href"]
            if re.match(r"^(https?:)?//", href):
                assert tag == "a", (tag, href)
                assert "noopener" in attrs.get("rel", "").split(), href
    assert "@import" not in text
    assert not re.search(r"url\(\s*['\"]?(https?:)?//", text)
    csp = [a for a in doc.all("meta") if a.get("http-equiv", "").lower() == "content-security-policy"]
    assert len(csp) == 1 and "default-src 'none'" in csp[0]["content"]


@pytest.mark.parametrize("name", ["index.html", "report.html"])
def test_ids_unique_and_anchors_resolve(docs, name):
    _, doc = docs[name]
    ids = doc.ids()
    dupes = {i for i in ids if ids.count(i) > 1}
    assert not dupes
    targets = {a["href"][1:] for a in doc.all("a") if a.get("href", "").startswith("#")}
    assert targets, "expected internal links (contents, cross-references)"
    assert targets <= set(ids), targets - set(ids)


def test_figures_and_tables_numbered_in_order(docs):
    text, _ = docs["index.html"]
    for word in ("Figure", "Table"):
        # a figure's number is its permalink (<a class="fig-num permalink">), a table's plain text
        nums = [int(n) for n in re.findall(rf'<(?:span|a) class="fig-num[^"]*"[^>]*>{word} (\d+)\.', text)]
        assert nums and nums == list(range(1, len(nums) + 1)), (word, nums)
    page_figs = 9  # every sample figure appears exactly once
    assert len(re.findall(r'<figure class="fig ', text)) == page_figs


def test_every_figure_shown_even_if_narrative_omits_it(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    (src / "01.md").write_text("## Only one\n\n::: figure cka\n", encoding="utf-8")
    out = _render(tmp_path / "out", site_src=src)
    text = (out / "index.html").read_text(encoding="utf-8")
    assert 'id="cka"' in text and 'id="more-figures"' in text
    assert 'id="within-pca-astronaut"' in text


def test_tables_format_numbers(docs):
    text, _ = docs["index.html"]
    assert re.search(r'<td class="num">\d+\.\d%</td>', text)  # explained variance as percent
    assert '<th scope="col" class="num">mean</th>' in text
    assert format_cell(0.123456) == ("0.123", True)
    assert format_cell(1234.5678) == ("1,230", True)
    assert format_cell(-0.000012345)[0] == "−1.23e−5"
    assert format_cell(0.4321, percent=True) == ("43.2%", True)
    assert format_cell(1234567) == ("1,234,567", True)
    assert format_cell("C5") == ("C5", False)


@pytest.mark.parametrize("random_init", [True, False])
def test_banner_iff_random_init(tmp_path, random_init):
    out = _render(tmp_path, random_init=random_init)
    for name in ("index.html", "report.html"):
        text = (out / name).read_text(encoding="utf-8")
        assert ('class="banner"' in text) == random_init
        assert ("Random weights" in text) == random_init


def test_dinov3_notice_rule(tmp_path):
    # random-init: no notice even though the license says dinov3
    out = _render(tmp_path / "a", random_init=True)
    assert 'class="notice dinov3"' not in (out / "index.html").read_text(encoding="utf-8")
    # real weights: notice
    out = _render(tmp_path / "b", random_init=False)
    text = (out / "index.html").read_text(encoding="utf-8")
    assert 'class="notice dinov3"' in text and "DINOv3 License" in text
    assert "sha256 ab12ab12ab12" in text
    # real weights but no dinov3 license: no notice
    page = make_sample_page(tmp_path / "c", random_init=False)
    page = dataclasses.replace(page, models=tuple(
        dataclasses.replace(m, license="apache-2.0") for m in page.models))
    out = _render(tmp_path / "c", page=page)
    assert 'class="notice dinov3"' not in (out / "index.html").read_text(encoding="utf-8")


def test_share_alike_notice_rule(tmp_path):
    out = _render(tmp_path / "a")
    assert 'class="notice share-alike"' in (out / "index.html").read_text(encoding="utf-8")
    page = make_sample_page(tmp_path / "b")
    page = dataclasses.replace(page, credits=tuple(
        dataclasses.replace(c, share_alike=False) for c in page.credits))
    out = _render(tmp_path / "b", page=page)
    assert 'class="notice share-alike"' not in (out / "index.html").read_text(encoding="utf-8")


def test_skipped_and_models_sections(docs):
    text, _ = docs["index.html"]
    assert 'id="skipped-images"' in text and "broken.jpg" in text
    assert 'id="about-models"' in text and "convnext_tiny.fb_in1k" in text
    assert "Generated by dinoreport" in text


def test_byte_identical(tmp_path):
    a = _render(tmp_path / "a")
    b = _render(tmp_path / "b")
    for name in ("index.html", "report.html", "assets/style.css", "assets/report.js"):
        assert (a / name).read_bytes() == (b / name).read_bytes(), name


def test_no_dates(docs):
    text, _ = docs["index.html"]
    assert not re.search(r"\b20\d\d-\d\d-\d\d\b", text)


def _write_src(tmp_path: Path, body: str) -> Path:
    src = tmp_path / "src"
    src.mkdir(exist_ok=True)
    (src / "01-a.md").write_text("## Fine\n\nText.\n", encoding="utf-8")
    (src / "02-bad.md").write_text(body, encoding="utf-8")
    return src


@pytest.mark.parametrize("body, line", [
    ("## Oops\n\nSome text.\n\n::: figure no-such-figure\n", 5),
    ("## Oops\n\n::: figures kind=not_a_kind\n", 3),
    ("## Oops\n\n::: table nope\n", 3),
    ("## Oops\n\n::: sparkle\n", 3),
])
def test_bad_directive_names_file_and_line(tmp_path, body, line):
    src = _write_src(tmp_path, body)
    with pytest.raises(RenderError, match=rf"02-bad\.md, line {line}"):
        _render(tmp_path / "out", site_src=src)


def test_jinja_errors_name_file(tmp_path):
    src = _write_src(tmp_path, "## Oops\n\n{% if %}\n")
    with pytest.raises(RenderError, match=r"02-bad\.md, line 3"):
        _render(tmp_path / "out", site_src=src)
    src = _write_src(tmp_path, "## Oops\n\nline\n{{ no_such_name.attr }}\n")
    with pytest.raises(RenderError, match=r"02-bad\.md, line 4"):
        _render(tmp_path / "out2", site_src=src)
    src = _write_src(tmp_path, "## Oops\n\n{{ ref('nope') }}\n")
    with pytest.raises(RenderError, match=r"02-bad\.md.*nope"):
        _render(tmp_path / "out3", site_src=src)


def test_kind_without_figures_is_a_note(tmp_path):
    src = _write_src(tmp_path, "## Res\n\n::: figures kind=highres\n\n::: tables kind=cka_best\n")
    out = _render(tmp_path / "out", site_src=src)
    text = (out / "index.html").read_text(encoding="utf-8")
    assert text.count('class="no-figure"') >= 2


def test_explorer_absent_is_a_note(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    page = make_sample_page(out, with_explorer=False)
    _render(out, page=page)
    text = (out / "index.html").read_text(encoding="utf-8")
    assert "explorer was not built" in text and 'id="explorer-data"' not in text


def test_helpers_and_refs(tmp_path):
    src = _write_src(tmp_path, (
        "## Numbers\n\n"
        "{{ pct(mean('within_image_pca', 'explained_variance_ratio', 0, model='in1k_convnext_tiny')) }} "
        "{{ num(mean('feature_stats', 'std', stage='C5')) }} {{ label('dinov3_convnext_tiny') }} "
        "{{ mean('feature_stats', 'std', model='nobody') is none }} {{ ref('cka') }} {{ refs('within_pca') }}\n\n"
        "::: figure cka\n\n::: figures kind=within_pca\n"))
    out = _render(tmp_path / "out", site_src=src)
    text = (out / "index.html").read_text(encoding="utf-8")
    assert re.search(r"\d+\.\d%", text)
    assert "ConvNeXt-T (DINOv3) True" in text
    assert '<a class="xref" href="#cka">Figure&nbsp;1</a>' in text
    assert '<a class="xref" href="#within-pca-astronaut">Figures&nbsp;2–3</a>' in text


def test_heading_ids_do_not_clash(tmp_path):
    src = _write_src(tmp_path, "## Models\n\n## CKA\n\n## Models\n\n::: figure cka\n")
    out = _render(tmp_path / "out", site_src=src)
    doc = _Doc((out / "index.html").read_text(encoding="utf-8"))
    ids = doc.ids()
    assert len(ids) == len(set(ids))
    assert "models" in ids and "models-2" in ids and "cka-2" in ids


def test_real_narrative_with_real_weights_page(tmp_path):
    """The narrative renders for trained weights too, with no random-weight caveats."""
    out = _render(tmp_path, random_init=False)
    text = (out / "index.html").read_text(encoding="utf-8")
    assert "random weights" not in text.lower()
    # the guarded DINOv3 vs IN-1k sentence, a comparison or a tie
    assert "the first component carries" in text or "share is a tie" in text


def test_image_featured_filter_places_only_featured_figures(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    (src / "01.md").write_text("## Featured\n\n::: figures kind=within_pca image=featured\n", encoding="utf-8")
    out = tmp_path / "out"
    out.mkdir()
    page = dataclasses.replace(make_sample_page(out), featured=("dog_pug",))
    _render(out, page=page, site_src=src)
    text = (out / "index.html").read_text(encoding="utf-8")
    body, appendix = text.split('id="more-figures"', 1)
    assert 'id="within-pca-dog-pug"' in body and 'id="within-pca-astronaut"' not in body
    assert 'id="within-pca-astronaut"' in appendix


# --------------------------------------------------------------------------- narrative vs markers

@pytest.mark.parametrize("name", ["index.html", "report.html"])
def test_text_like_the_internal_markers_stays_text(tmp_path, name):
    """The renderer's markers carry a per-render token: text that looks like the old markers
    (an unknown ref, a block number past the end, a real block's number) is printed as text."""
    src = _write_src(tmp_path, (
        "## Markers\n\nSee @@REF:nope@@ and @@REFS:within-pca@@ here.\n\nDRBLOCK00099\n\nDRBLOCK00000\n\n"
        "::: figure cka\n"))
    out = _render(tmp_path / "out", site_src=src)
    text = (out / name).read_text(encoding="utf-8")
    assert "See @@REF:nope@@ and @@REFS:within-pca@@ here." in text
    assert "<p>DRBLOCK00099</p>" in text and "<p>DRBLOCK00000</p>" in text
    assert text.count('id="cka"') == 1  # the directive's block, once


def test_unknown_ref_names_file_line_and_the_closest_id(tmp_path):
    src = _write_src(tmp_path, "## Oops\n\nSome text.\n\nAs {{ ref('ckaa') }} shows.\n")
    with pytest.raises(RenderError, match=r"^02-bad\.md, line 5: ref\(\): no figure or table with id 'ckaa'"
                                          r" — did you mean 'cka'\?$"):
        _render(tmp_path / "out", site_src=src)


def test_ref_in_a_heading_is_resolved_in_the_contents_too(tmp_path):
    src = _write_src(tmp_path, "## About {{ ref('cka') }}\n\n::: figure cka\n")
    pages = []
    for n in range(2):
        out = _render(tmp_path / f"out{n}", site_src=src)
        pages.append([(out / p).read_bytes() for p in ("index.html", "report.html")])
    assert pages[0] == pages[1]  # the random marker token never reaches the page
    text = pages[0][0].decode()
    assert "@@" not in text and "\x00" not in text
    toc = text.split('id="contents"', 1)[1].split("</nav>", 1)[0]
    assert "About Figure&nbsp;1" in toc and 'class="xref"' not in toc  # text, not a link in a link
    assert '<a class="xref" href="#cka">Figure&nbsp;1</a>' in text


# --------------------------------------------------------------------------- narrative encodings

def test_byte_order_mark_does_not_hide_the_first_directive(tmp_path):
    src = _write_src(tmp_path, "")
    (src / "02-bad.md").write_bytes("::: figure cka\n\nText.\n".encode("utf-8-sig"))
    out = _render(tmp_path / "out", site_src=src)
    text = (out / "index.html").read_text(encoding="utf-8")
    assert ":::" not in text and "\ufeff" not in text
    assert text.index('id="cka"') < text.index('id="more-figures"')  # placed by the directive


@pytest.mark.parametrize("codec, why", [("utf-16", "UTF-16 text"), ("utf-16-le", "NUL byte"),
                                        ("latin-1", "invalid")])
def test_narrative_not_in_utf8_is_named(tmp_path, codec, why):
    src = _write_src(tmp_path, "")
    (src / "02-bad.md").write_bytes("## Café\n\nText.\n".encode(codec))
    with pytest.raises(RenderError, match=rf"^02-bad\.md: not UTF-8 text \(.*{why}.*\); save it as UTF-8$"):
        _render(tmp_path / "out", site_src=src)


# --------------------------------------------------------------------------- contributed directives

class _Hello(BlockDirective):
    """A directive a user analysis contributes: its blocks, its data after the article, its
    reserved id and its finish are what the renderer gives any analysis (the explorer's too)."""

    reserved_ids = frozenset({"hello-data", "greeting"})

    def __init__(self, finished: list):
        self.finished = finished

    def parse(self, pos, kw, where):
        from dinoreport.directives import Block

        if pos:
            raise RenderError(f"{where}: '::: hello' takes only to=<name>")
        return Block("hello", [], kw.get("to", "world"))

    def html(self, block, first, out):
        yield f'<p class="hello">{"hello" if first else "again"} {block.note}</p>'

    def data_script(self, blocks):
        return "hello-data" if blocks else None

    def data(self, blocks, out):
        from dinoreport.csp import json_for_script

        return json_for_script({"inline": out.inline, "to": [b.note for b in blocks]})

    def finish(self, site):
        self.finished.append(site)


def test_an_analysis_contributes_a_directive(tmp_path, registry_restored):
    from dinoreport.analyses import SectionOutput, register_analysis

    finished: list = []
    register_analysis("hello_directive", 999, directives=lambda page: {"hello": _Hello(finished)})(
        lambda ctx: SectionOutput())
    src = _write_src(tmp_path, "## Greeting\n\n::: hello to=you\n\nText.\n\n::: hello\n")
    out = _render(tmp_path / "out", site_src=src)
    index, report = ((out / n).read_text(encoding="utf-8") for n in ("index.html", "report.html"))
    for text, inline in ((index, "false"), (report, "true")):
        assert text.index('<p class="hello">hello you</p>') < text.index('<p class="hello">again world</p>')
        assert (f'<script type="application/json" id="hello-data">{{"inline":{inline},"to":["you","world"]}}'
                "</script>") in text
        assert 'id="greeting-2"' in text  # the heading steps aside for the directive's id
    assert finished == [out]
    with pytest.raises(RenderError, match=r"02-bad\.md, line 3: '::: hello' takes only"):
        _render(tmp_path / "bad", site_src=_write_src(tmp_path, "## X\n\n::: hello there\n"))


def test_a_directive_name_is_taken_once(tmp_path, registry_restored):
    from dinoreport.analyses import AnalysisLoadError, SectionOutput, register_analysis

    register_analysis("figures_again", 999, directives=lambda page: {"figures": _Hello([])})(
        lambda ctx: SectionOutput())
    with pytest.raises(AnalysisLoadError, match=r"analysis figures_again .*'::: figures', which the renderer"):
        _render(tmp_path / "out")

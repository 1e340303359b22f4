"""The claims in a real build: a row per catalogue claim, forced to "cannot tell" under
--random-init, judged on the numbers with local weights; the claim text and the data link on
the page; the reference-mask overlay figure."""
from __future__ import annotations

import json
import math

import pytest
from safetensors.torch import save_file

from dinoreport.analysis import claims as C
from dinoreport.backbones import create_backbone
from dinoreport.config import ModelSpec, load_config
from dinoreport.pipeline import BuildOptions, build

from conftest import SQUARE_CORNERS as CORNERS
from conftest import square_project as _project

RANDOM = "the weights are random, and the claim is about trained networks"
ROW_KEYS = {"id", "statement", "about", "metric", "values", "metrics", "rule", "verdict", "reason", "figure",
            "groups"}


def _results(out):
    return json.loads((out / "data" / "results.json").read_text())


@pytest.fixture(scope="module")
def random_site(tmp_path_factory):
    root = tmp_path_factory.mktemp("claims-random")
    out = root / "site"
    build(load_config(_project(root)), BuildOptions(out=out, random_init=True, quiet=True))
    return out


def test_random_init_claims_are_cannot_tell_with_the_reason(random_site):
    rows = _results(random_site)["claims"]
    assert [r["id"] for r in rows] == [c.id for c in C.CLAIMS]
    for r in rows:
        assert set(r) == ROW_KEYS, r
        assert r["verdict"] == "cannot tell" and r["reason"].startswith(RANDOM), r
        # No control is measured under random weights: a random-init build judges nothing.
        assert all(not d["controls"] for d in r["metrics"].values()), r
        assert r["about"] == next(c.about for c in C.CLAIMS if c.id == r["id"])
        assert set(r["values"]) <= {"dinov3_convnext_tiny", "dinov3_vits16"}
        assert all(math.isfinite(v) for v in r["values"].values())
    # The numbers are there all the same: the subject IoU of both models on every photo.
    per_image = {(d["model"], d["unit"]) for d in _results(random_site)["claim_metrics"]
                 if d["metric"] == "pc1_iou_ref"}
    assert per_image == {(m, f"sq_{c}") for m in ("dinov3_convnext_tiny", "dinov3_vits16") for c in CORNERS}


def test_page_states_claims_links_data_and_shows_the_overlays(random_site):
    html = (random_site / "index.html").read_text()
    assert 'href="data/results.json"' in html
    assert 'id="claims"' in html  # the claims table, with what each claim is about
    table = html[html.index('id="claims"'):]
    table = table[:table.index("</table>")]
    assert '<th scope="col">about</th>' in table and ">architecture<" in table and ">training<" in table
    # The figures column links figure numbers, not internal kind names
    last_cells = [row.rsplit("<td>", 1)[1] for row in table.split("<tr>")[2:]]
    assert last_cells and all(c.startswith('<a class="xref" href="#') and "Figure&nbsp;" in c
                              for c in last_cells), last_cells
    assert "foreground_mask" not in table and "foreground mask</td>" not in table
    # every metric of a claim is in its box, with a gloss: part_colours shows both of its own
    box = html[html.index('id="claim-part-colours"'):]
    box = box[:box.index("</div>")]
    assert "<code>part_colour_gain</code> (" in box and "<code>part_match_excess</code> (" in box
    box = html[html.index('id="claim-masks-cleaner"'):]
    assert "<code>pc1_speck_share</code>" in box[:box.index("</div>")]
    assert 'class="claim verdict-cannot-tell" id="claim-pc1-subject"' in html
    assert 'class="claim verdict-cannot-tell" id="claim-c4-instances"' in html
    figs = json.loads((random_site / "data" / "figures.json").read_text())
    overlays = [f for f in figs if f["kind"] == "reference_mask"]
    assert sorted(f["label"] for f in overlays) == sorted(f"sq_{c}" for c in CORNERS)
    assert all((random_site / f["file"]).is_file() for f in overlays)
    assert "data/results.json" in (random_site / "report.html").read_text()  # named, not linked


def test_local_random_weights_get_verdicts_from_their_numbers(tmp_path):
    """Not --random-init: the same exercised random init read from local files. The verdicts
    must be what the catalogue's rules give on the per-image numbers in results.json."""
    models = ""
    for mid, timm_name in (("dinov3_convnext_tiny", "convnext_tiny.dinov3_lvd1689m"),
                           ("dinov3_vits16", "vit_small_patch16_dinov3.lvd1689m")):
        spec = ModelSpec(id=mid, timm=timm_name, label=mid)
        path = tmp_path / f"{mid}.safetensors"
        sd = create_backbone(spec, None, seed=0).model.state_dict()
        save_file({k: v.contiguous() for k, v in sd.items()}, str(path))
        models += f'[[models]]\nid = "{mid}"\ntimm = "{timm_name}"\nweights = "{path}"\n\n'
    out = tmp_path / "site"
    build(load_config(_project(tmp_path / "p", models=models)), BuildOptions(out=out, quiet=True))
    res = _results(out)
    rows = {r["id"]: r for r in res["claims"]}
    assert list(rows) == [c.id for c in C.CLAIMS]
    assert all(not r["reason"].startswith(RANDOM) for r in rows.values())
    # No ImageNet ConvNeXt in this build: claims that need it cannot be told, and say why.
    assert rows["imagenet_outliers"]["verdict"] == "cannot tell"
    assert "no model in the role of the ImageNet ConvNeXt" in rows["imagenet_outliers"]["reason"]
    # The subject claim needs only the two DINOv3 models: it is judged on four photos.
    assert "over 4 images with a reference mask" in rows["pc1_subject"]["reason"]
    # Recompute every verdict from the per-image numbers the page publishes.
    ids = sorted({d["unit"] for d in res["claim_metrics"] if "/" not in d["unit"]})
    units = {k: [f"dogs/{i}" if k in ("part_colour_gain", "part_match_excess") else i for i in ids]
             for k in C.METRICS}
    value = {(d["control"], d["metric"], d["model"], d["unit"]): d["value"] for d in res["claim_metrics"]}
    models = ("dinov3_convnext_tiny", "dinov3_vits16")

    def series(control):
        return {k: {m: [value.get((control, k, m, u), float("nan")) for u in units[k]] for m in models}
                for k in C.METRICS}

    # Trained weights: every control was measured, the untrained one and each free one (but
    # "halves", which needs a photo with two subjects: these have one each).
    assert {d["control"] for d in res["claim_metrics"]} == {""} | set(C.CONTROLS) - {"halves"}
    roles = {"dense_cnn": "dinov3_convnext_tiny", "dense_vit": "dinov3_vits16"}
    groups = {k: ["dogs"] * len(ids) for k in C.PAIR_METRICS}
    again = C.evaluate_all(series(""), roles, random_weights=False, unit_groups=groups,
                           controls={c: series(c) for c in C.CONTROLS})
    assert [r["verdict"] for r in again] == [rows[r["id"]]["verdict"] for r in again]
    assert [r["reason"] for r in again] == [rows[r["id"]]["reason"] for r in again]


def test_claim_html_escapes_every_field_and_styles_by_verdict():
    from dinoreport.analyses.claimhtml import claim_html

    row = {"id": "pc1_subject", "statement": "<script>x</script>", "metric": "m<1>", "rule": "a & b",
           "verdict": "not supported", "reason": '"r"', "values": {"m1": 0.51234, "m2": -2.0}}
    html = str(claim_html(row, {"m1": "<b>One</b>", "m2": "Two"}.get, '<a href="#f">Figure 3</a>'))
    assert "<script>" not in html and "&lt;script&gt;" in html and "&lt;b&gt;One&lt;/b&gt; 0.512" in html
    assert "Two −2" in html and "a &amp; b" in html and "&quot;r&quot;" in html
    assert html.startswith('<div class="claim verdict-not-supported" id="claim-pc1-subject">')
    assert '<a href="#f">Figure 3</a>' in html and "\n" not in html  # one line: Markdown keeps it whole
    with pytest.raises(ValueError, match="unknown verdict 'maybe'"):
        claim_html({**row, "verdict": "maybe"}, str, "")

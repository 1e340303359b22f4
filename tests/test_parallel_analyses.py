"""Analyses run side by side in threads: dependencies wait, undeclared ones never overlap, and
the site is the same whatever the number of jobs."""
from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest

from conftest import planted_photo, write_project

ONE_MODEL = '[[models]]\nid = "m"\ntimm = "convnext_tiny.fb_in1k"\n'

ANALYSES = '''
import json, os, time
from dinoreport.analyses import ForegroundMasks, Needs, SectionOutput, register_analysis

LOG = os.environ["PARALLEL_TEST_LOG"]


def _timed(name, fn):
    def run(ctx):
        start = time.monotonic()
        time.sleep(0.4)
        out = fn(ctx)
        with open(LOG, "a") as f:
            f.write(json.dumps([name, start, time.monotonic()]) + "\\n")
        return out
    return run


def _result(name):
    def fn(ctx):
        out = SectionOutput()
        out.results[name] = {"images": ctx.image_ids()}
        return out
    return fn


def _masks(ctx):
    out = SectionOutput()
    masks = ctx.artifact(ForegroundMasks).by_model  # raises if within_pca has not finished
    out.results["zz_masks"] = {m: sorted(v) for m, v in masks.items()}
    return out


register_analysis("zz_plain_a", order=101)(_timed("zz_plain_a", _result("zz_plain_a")))
register_analysis("zz_plain_b", order=102)(_timed("zz_plain_b", _result("zz_plain_b")))
register_analysis("zz_safe", order=103, thread_safe=True)(_timed("zz_safe", _result("zz_safe")))
register_analysis("zz_masks", order=104, thread_safe=True, needs=Needs(artifacts=(ForegroundMasks,)))(
    _timed("zz_masks", _masks))
'''
pytestmark = pytest.mark.usefixtures("registry_restored")


NAMES = ("within_pca", "zz_plain_a", "zz_plain_b", "zz_safe", "zz_masks")


def _build(tmp_path: Path, monkeypatch, jobs: int, tag: str):
    from dinoreport.config import load_config
    from dinoreport.pipeline import BuildOptions, build

    root = tmp_path / tag
    cfg = write_project(root, {"a": planted_photo(224, 224, "tl"), "b": planted_photo(224, 224, "br", 1)},
                        models=ONE_MODEL, highres=[224])
    (cfg.parent / "analyses").mkdir()
    (cfg.parent / "analyses" / "zz_timed.py").write_text(textwrap.dedent(ANALYSES))
    log = root / "log.jsonl"
    monkeypatch.setenv("PARALLEL_TEST_LOG", str(log))
    monkeypatch.setenv("DINOREPORT_CACHE", str(root / "cache"))  # nothing from the other build's cache
    build(load_config(cfg), BuildOptions(out=root / "site", random_init=True, quiet=True, analyses=NAMES, jobs=jobs))
    spans = {name: (a, b) for name, a, b in map(json.loads, log.read_text().splitlines())}
    return root / "site", spans


def _overlap(x, y) -> bool:
    return x[0] < y[1] and y[0] < x[1]


def test_schedule_respects_declarations_and_the_site_does_not_depend_on_jobs(tmp_path, monkeypatch):
    site2, spans = _build(tmp_path, monkeypatch, jobs=3, tag="jobs3")
    assert set(spans) == {"zz_plain_a", "zz_plain_b", "zz_safe", "zz_masks"}
    # Analyses that do not declare thread_safe never run at the same time ...
    assert not _overlap(spans["zz_plain_a"], spans["zz_plain_b"])
    # ... but a declared one runs beside them: the build used its threads.
    assert _overlap(spans["zz_safe"], spans["zz_plain_a"]) or _overlap(spans["zz_safe"], spans["zz_plain_b"])
    res2 = json.loads((site2 / "data" / "results.json").read_text())
    assert res2["zz_masks"] == {"m": ["a", "b"]}  # ran after within_pca provided the masks
    from dinoreport.analyses import registry

    for name in NAMES[1:]:  # the second project registers them afresh
        registry._REGISTRY.pop(name)
    site1, _ = _build(tmp_path, monkeypatch, jobs=1, tag="jobs1")
    for rel in ("data/results.json", "data/figures.json", "index.html"):
        assert (site1 / rel).read_bytes() == (site2 / rel).read_bytes(), rel


def test_an_analysis_error_stops_the_build_and_names_it(tmp_path, monkeypatch):
    from dinoreport.config import load_config
    from dinoreport.pipeline import BuildOptions, build

    cfg = write_project(tmp_path, {"a": planted_photo(224, 224)}, models=ONE_MODEL, highres=[224])
    (cfg.parent / "analyses").mkdir()
    (cfg.parent / "analyses" / "boom.py").write_text(textwrap.dedent('''
        from dinoreport.analyses import register_analysis

        @register_analysis("zz_boom", order=105, thread_safe=True)
        def boom(ctx):
            raise RuntimeError("planted failure in zz_boom")
    '''))
    out = tmp_path / "site"
    with pytest.raises(RuntimeError, match="planted failure in zz_boom"):
        build(load_config(cfg), BuildOptions(out=out, random_init=True, quiet=True,
                                             analyses=("within_pca", "zz_boom"), jobs=2))
    assert not out.exists()  # nothing half-written

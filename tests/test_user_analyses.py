"""Analyses from outside the package: a report's own analyses/ folder and `dinoreport new`."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from dinoreport.config import load_config
from dinoreport.pipeline import BuildError, _plan_analyses

from conftest import planted_photo, write_project

ROOT = Path(__file__).resolve().parents[1]
ONE_MODEL = '[[models]]\nid = "in1k_convnext_tiny"\ntimm = "convnext_tiny.fb_in1k"\n'

RED_SHARE = '''
import numpy as np

from dinoreport.analyses import SectionOutput, TableKind, register_analysis
from dinoreport.page import Table


@register_analysis("red_share", order=5,
                   tables=(TableKind("red_share", "share of strongly red pixels", percent=("red share",)),))
def red_share(ctx):
    out = SectionOutput()
    rows = [{"image": i, "share": float((ctx.images[i][..., 0] > 200).mean())} for i in ctx.image_ids()]
    out.results["red_share"] = rows
    out.tables.append(Table(id="red-share", kind="red_share", caption="Strongly red pixels.",
                            columns=("image", "red share"), rows=tuple((r["image"], r["share"]) for r in rows)))
    return out
'''


def cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT / "generator") + os.pathsep + os.environ.get("PYTHONPATH", "")}
    return subprocess.run([sys.executable, "-m", "dinoreport.cli", *args], capture_output=True, text=True,
                          timeout=600, cwd=cwd, env=env)


def test_analysis_dropped_into_site_src_appears_in_the_report(tmp_path):
    # One planted image: a 74x74 red square in a 224x224 grey photo, i.e. 10.9% red.
    cfg = write_project(tmp_path, {"a": planted_photo(224, 224)}, models=ONE_MODEL, highres=[224])
    (cfg.parent / "analyses").mkdir()
    (cfg.parent / "analyses" / "red.py").write_text(RED_SHARE)
    (cfg.parent / "99-red.md").write_text("## Red\n\n::: tables kind=red_share\n")
    r = cli("analyses", "--config", str(cfg))
    assert r.returncode == 0, r.stderr
    names = [line.split(":")[0] for line in r.stdout.splitlines() if not line.startswith(" ")]
    assert names[:2] == ["red_share", "within_pca"]  # order 5 comes first
    r = cli("build", "--config", str(cfg), "--out", str(tmp_path / "site"), "--random-init", "--quiet")
    assert r.returncode == 0, r.stderr
    res = json.loads((tmp_path / "site" / "data" / "results.json").read_text())
    assert res["red_share"][0]["share"] == pytest.approx(74 * 74 / 224 ** 2, abs=0.01)
    page = (tmp_path / "site" / "index.html").read_text()
    assert 'id="red-share"' in page
    assert '<td class="num">10.9%</td>' in page  # declared percent column


def test_a_broken_user_analysis_names_its_file(tmp_path):
    cfg = write_project(tmp_path, {"a": planted_photo(64, 64)}, models=ONE_MODEL, highres=[224])
    (cfg.parent / "analyses").mkdir()
    (cfg.parent / "analyses" / "broken.py").write_text("import no_such_module_here\n")
    r = cli("analyses", "--config", str(cfg))
    assert r.returncode == 2
    assert "broken.py" in r.stderr and "no_such_module_here" in r.stderr


def test_an_analysis_without_its_provider_is_refused(tmp_path):
    cfg = load_config(write_project(tmp_path, {"a": planted_photo(64, 64)}, models=ONE_MODEL))
    with pytest.raises(BuildError, match="across_pca needs ForegroundMasks, which within_pca provides"):
        _plan_analyses(("across_pca",), cfg)
    assert [a.name for a in _plan_analyses(("across_pca", "within_pca"), cfg)] == ["within_pca", "across_pca"]


@pytest.mark.slow
def test_new_scaffolds_a_report_that_builds_offline(tmp_path):
    r = cli("new", "myreport", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    folder = tmp_path / "myreport"
    assert (folder / "report.toml").is_file() and (folder / "analyses" / "feature_norms.py").is_file()
    r = cli("build", "--random-init", "--quiet", cwd=folder)
    assert r.returncode == 0, r.stderr
    res = json.loads((folder / "site" / "data" / "results.json").read_text())
    assert {r["stage"] for r in res["feature_norms"]} == {"C2", "C3", "C4", "C5"}
    assert 'id="feature-norms"' in (folder / "site" / "index.html").read_text()
    r = cli("new", "myreport", cwd=tmp_path)
    assert r.returncode == 2 and "not empty" in r.stderr


SCALED_SHARE = '''
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
import zz_mylib  # a helper module beside the analysis

from dinoreport.analyses import SectionOutput, register_analysis


@register_analysis("scaled_share", order=5)
def scaled_share(ctx):
    out = SectionOutput()
    out.results["scaled_share"] = [{"image": i, "value": zz_mylib.FACTOR} for i in ctx.image_ids()]
    return out
'''


def test_editing_a_helper_module_beside_an_analysis_recomputes_it(tmp_path):
    """Issue 20 item 4: the section key covers every module of the report's analyses/ folder,
    so an edited helper is never published from the old cached result."""
    cfg = write_project(tmp_path, {"a": planted_photo(64, 64)}, models=ONE_MODEL, resolution=64, highres=[64])
    folder = cfg.parent / "analyses"
    folder.mkdir()
    (folder / "scaled.py").write_text(SCALED_SHARE)
    values = []
    for factor in (1.5, 2.5):
        (folder / "zz_mylib.py").write_text(f"FACTOR = {factor}\n")
        r = cli("build", "--config", str(cfg), "--out", str(tmp_path / "site"), "--random-init", "--quiet")
        assert r.returncode == 0, r.stderr
        res = json.loads((tmp_path / "site" / "data" / "results.json").read_text())
        values.append(res["scaled_share"][0]["value"])
    assert values == [1.5, 2.5]


def test_every_build_option_is_in_the_fingerprint_or_declared_not_to_change_the_output(tmp_path):
    """A new BuildOptions field counts in the fingerprint until it is listed in NOT_OUTPUT."""
    import dataclasses

    from dinoreport.fingerprint import NOT_OUTPUT, inputs_fingerprint
    from dinoreport.pipeline import BuildOptions, resolve

    cfg = load_config(write_project(tmp_path, {"a": planted_photo(64, 64)}, models=ONE_MODEL, resolution=64))
    base = BuildOptions(out=tmp_path / "site", random_init=True, quiet=True)
    plan = resolve(cfg, base)
    fields = {f.name: f for f in dataclasses.fields(BuildOptions)}
    assert NOT_OUTPUT <= set(fields), sorted(NOT_OUTPUT - set(fields))
    ref = inputs_fingerprint(cfg, base, plan, {})
    for name in sorted(set(fields) - NOT_OUTPUT - {"analyses"}):
        value = getattr(base, name)
        other = {bool: not value, str: "cpu" if value != "cpu" else "auto"}.get(type(value))
        assert other is not None, f"pick a changed value for BuildOptions.{name} in this test"
        changed = inputs_fingerprint(cfg, dataclasses.replace(base, **{name: other}), plan, {})
        assert changed != ref, name
    # An option added later is hashed without anyone listing it.
    Extended = dataclasses.make_dataclass("Extended", [("new_switch", bool, dataclasses.field(default=False))],
                                          bases=(BuildOptions,), frozen=True)
    a = Extended(out=base.out, random_init=True, quiet=True)
    assert inputs_fingerprint(cfg, a, plan, {}) != inputs_fingerprint(cfg, dataclasses.replace(a, new_switch=True), plan, {})


def test_an_analysis_importing_the_old_package_name_is_told_the_new_one(tmp_path):
    """Issue 21 item 0: the package is dinoreport; `generator` is no longer importable."""
    cfg = write_project(tmp_path, {"a": planted_photo(64, 64)}, models=ONE_MODEL, highres=[224])
    (cfg.parent / "analyses").mkdir()
    (cfg.parent / "analyses" / "old.py").write_text(RED_SHARE.replace("dinoreport.", "generator."))
    r = cli("analyses", "--config", str(cfg), cwd=tmp_path)
    assert r.returncode == 2
    assert "old.py" in r.stderr and "old name" in r.stderr and "from dinoreport.analyses import" in r.stderr
    assert "Traceback" not in r.stderr


def test_the_package_is_importable_as_dinoreport_only(tmp_path):
    r = subprocess.run([sys.executable, "-c", "import dinoreport, dinoreport.cli; print(dinoreport.__name__)"],
                       capture_output=True, text=True, cwd=tmp_path)
    assert r.returncode == 0 and r.stdout.strip() == "dinoreport", r.stderr
    r = subprocess.run([sys.executable, "-c", "import generator"], capture_output=True, text=True, cwd=tmp_path)
    assert r.returncode != 0 and "No module named 'generator'" in r.stderr

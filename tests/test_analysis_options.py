"""Options an analysis declares beside its code (register_analysis(..., options=...)): filled from
report.toml's [analysis], checked with messages naming the key and the analysis, listed by
`dinoreport analyses`, and part of that analysis's cache key only."""
from __future__ import annotations

import json
import shutil
import textwrap
from dataclasses import dataclass
from pathlib import Path

import pytest

from dinoreport.analyses import AnalysisLoadError, SectionOutput, get_analysis, option, register_analysis, resolve_options
from dinoreport.config import ConfigError, load_config
from dinoreport.pipeline import PROJECT_ROOT, BuildOptions, build

from conftest import planted_photo, write_project

EXAMPLE = PROJECT_ROOT / "examples" / "analysis-with-options"
ONE_MODEL = '[[models]]\nid = "m"\ntimm = "convnext_tiny.fb_in1k"\n'


def _with_example(tmp_path: Path, extra: str = "") -> Path:
    """A one-model project holding the example analysis and its narrative."""
    cfg = write_project(tmp_path, {"a": planted_photo(224, 224)}, models=ONE_MODEL, highres=[224], extra=extra)
    (cfg.parent / "analyses").mkdir()
    shutil.copy(EXAMPLE / "analyses" / "norm_quantiles.py", cfg.parent / "analyses")
    shutil.copy(EXAMPLE / "20-norm-quantiles.md", cfg.parent)
    return cfg


def _set(cfg: Path, line: str) -> None:
    cfg.write_text(cfg.read_text() + line + "\n")


def test_user_analysis_options_are_read_checked_and_listed(tmp_path, registry_restored):
    from dinoreport.analyses import load_user_analyses
    from typer.testing import CliRunner

    from dinoreport.cli import app

    cfg = _with_example(tmp_path)
    base = cfg.read_text()
    load_user_analyses(cfg.parent)
    opts = resolve_options(load_config(cfg))["norm_quantiles"]
    assert (opts.norm_quantiles, opts.norm_stages) == ((0.5, 0.9, 0.99), "last")
    _set(cfg, 'norm_quantiles = [0, 1]\nnorm_stages = "all"')
    opts = resolve_options(load_config(cfg))["norm_quantiles"]
    assert (opts.norm_quantiles, opts.norm_stages) == ((0.0, 1.0), "all")
    for line, message in [
        ("norm_quantiles = [0.5, 1.5]", r"analysis\.norm_quantiles\[1\]: must be a number from 0 to 1 "
                                        r"\(quantiles of the feature-vector lengths\), got 1\.5 — an option "
                                        r"of analysis norm_quantiles"),
        ('norm_stages = "first"', r"analysis\.norm_stages: must be one of 'last', 'all' .*got 'first'"),
        ("norm_quantiles = 0.5", r"analysis\.norm_quantiles: must be a list"),
        ("norm_quantile = [0.5]", r"analysis\.norm_quantile: unknown key — did you mean 'norm_quantiles'\?"),
        ("coseg_k = true", r"analysis\.coseg_k: must be an int from 2 to 9 .*got True"),
        ("mask_threshold = [1]", r"analysis\.mask_threshold: must be a number .* an option of analyses "
                                 r"within_pca, claims, resolution_sweep"),
    ]:
        cfg.write_text(base + line + "\n")
        with pytest.raises(ConfigError, match=message):
            resolve_options(load_config(cfg))
    # The command line says the same, without a traceback, before any work.
    r = CliRunner().invoke(app, ["build", "--random-init", "--config", str(cfg), "--out", str(tmp_path / "s")])
    assert r.exit_code == 2 and "analysis.mask_threshold: must be a number" in r.output
    assert "Traceback" not in r.output and not (tmp_path / "s").exists()
    cfg.write_text(base)
    r = CliRunner().invoke(app, ["analyses", "--config", str(cfg)])
    assert r.exit_code == 0, r.output
    block = r.output.split("norm_quantiles: ", 1)[1]
    assert block.startswith("Quantiles of the L2 norms of the feature vectors of every image, per model and stage.")
    assert ("  option norm_quantiles = [0.5, 0.9, 0.99] (list of float, each from 0 to 1): "
            "quantiles of the feature-vector lengths") in block
    assert "  option norm_stages = \"last\" (str one of 'last', 'all'): the stages measured" in block
    assert "  table norm_quantiles: quantiles of the feature-vector lengths" in block


def _sections(cfg: Path, out: Path) -> dict[str, bool]:
    """Build the example with three analyses; ``{analysis: computed (not from the cache)}``."""
    s = build(load_config(cfg), BuildOptions(out=out, random_init=True, quiet=True, force=True,
                                             analyses=("within_pca", "cosegmentation", "norm_quantiles")))
    return {a: a in s.analysis_seconds for a in ("within_pca", "cosegmentation", "norm_quantiles")}


def test_an_option_recomputes_its_analysis_and_those_reading_its_artifacts_only(
        tmp_path, registry_restored, isolated_cache):
    cfg = _with_example(tmp_path)
    out = tmp_path / "site"
    assert _sections(cfg, out) == dict.fromkeys(("within_pca", "cosegmentation", "norm_quantiles"), True)
    assert _sections(cfg, out) == dict.fromkeys(("within_pca", "cosegmentation", "norm_quantiles"), False)
    _set(cfg, 'norm_stages = "all"')  # the user analysis's own option
    assert _sections(cfg, out) == {"within_pca": False, "cosegmentation": False, "norm_quantiles": True}
    rows = json.loads((out / "data" / "results.json").read_text())["norm_quantiles"]
    assert [r["stage"] for r in rows] == ["C2", "C3", "C4", "C5"]
    _set(cfg, "coseg_k = 3")  # a built-in's: the others stay cached
    assert _sections(cfg, out) == {"within_pca": False, "cosegmentation": True, "norm_quantiles": False}
    # within_pca's threshold changes the masks cosegmentation reads: both, not norm_quantiles.
    _set(cfg, "mask_threshold = 0.5")
    assert _sections(cfg, out) == {"within_pca": True, "cosegmentation": True, "norm_quantiles": False}
    # How long an analysis may take is not part of what it computes.
    _set(cfg, "timeout_s = 600")
    assert not any(_sections(cfg, out).values())


def _register(name: str, options, **kw) -> None:
    register_analysis(name, order=200, options=options, **kw)(lambda ctx: SectionOutput())


def test_options_classes_that_cannot_work_are_refused_at_registration(registry_restored):
    @dataclass
    class Mutable:
        n: int = option(1, "n")

    @dataclass(frozen=True)
    class NoHelp:
        n: int = 1

    @dataclass(frozen=True)
    class NoDefault:
        n: int

    @dataclass(frozen=True)
    class BadDefault:
        n: int = option(0, "n", min=1)

    @dataclass(frozen=True)
    class BadType:
        n: dict = option(None, "n")

    @dataclass(frozen=True)
    class Timeout:
        timeout_s: float = option(1.0, "mine")

    for cls, message in [(Mutable, "must be a frozen dataclass"), (NoHelp, "option n: needs help text"),
                         (NoDefault, "option n: needs a default"), (BadDefault, "its default 0 must be an int >= 1"),
                         (BadType, "is not one of bool, int, float, str"), (Timeout, "the build's own")]:
        with pytest.raises(AnalysisLoadError, match=rf"analysis zz_bad: .*{message}"):
            _register("zz_bad", cls)


def test_a_key_shared_by_two_analyses_must_mean_one_thing(registry_restored):
    @dataclass(frozen=True)
    class Same:
        coseg_k: int = option(4, "parts per group in the co-segmentation (one distinct colour each)", min=2, max=9)

    @dataclass(frozen=True)
    class Other:
        coseg_k: int = option(5, "my k", min=2, max=9)

    _register("zz_same", Same)  # declared identically: shares the key and its value
    with pytest.raises(AnalysisLoadError, match=r"option 'coseg_k' of analysis zz_other .* declared differently "
                                                r"by analysis cosegmentation"):
        _register("zz_other", Other)
    assert get_analysis("zz_same").option_specs[0].name == "coseg_k"


def test_a_needs_callable_gets_the_options(registry_restored, tmp_path):
    from dinoreport.analyses import Needs

    @dataclass(frozen=True)
    class Sides:
        sides: tuple[int, ...] = option((448,), "short sides", min=14, max=2048)

    _register("zz_sides", Sides, needs=lambda cfg, opts: Needs(extra_resolutions=opts.sides))
    cfg = load_config(write_project(tmp_path, {"a": planted_photo(64, 64)}, models=ONE_MODEL,
                                    extra="sides = [672]\n"))
    a = get_analysis("zz_sides")
    assert a.needs(cfg).extra_resolutions == (448,)  # the defaults
    assert a.needs(cfg, resolve_options(cfg)["zz_sides"]).extra_resolutions == (672,)


def test_the_scaffold_analysis_declares_its_threshold(tmp_path, registry_restored):
    """The example a new report starts from shows how an analysis takes an option."""
    from dinoreport.analyses import load_user_analyses

    scaffold = PROJECT_ROOT / "generator" / "dinoreport" / "scaffold"
    load_user_analyses(scaffold)
    (spec,) = get_analysis("feature_norms").option_specs
    assert (spec.name, spec.default) == ("high_norm_factor", 3.0)
    assert "high_norm_factor" in textwrap.dedent((scaffold / "report.toml").read_text())


def test_a_table_of_an_undeclared_kind_stops_the_build_naming_the_analysis(tmp_path, registry_restored,
                                                                         isolated_cache):
    from dinoreport.analyses import TableKind
    from dinoreport.page import Table
    from dinoreport.runner import AnalysisError

    def typo(ctx):
        out = SectionOutput()
        out.tables.append(Table(id="t", kind="zz_sahre", caption="c", columns=("a",), rows=(("x",),)))
        return out

    register_analysis("zz_typo", order=200, tables=(TableKind("zz_share", "a share"),))(typo)
    cfg = load_config(write_project(tmp_path, {"a": planted_photo(64, 64)}, models=ONE_MODEL, highres=[224]))
    with pytest.raises(AnalysisError, match=r"analysis zz_typo \(.*test_analysis_options\.py\) returned table 't' "
                                            r"of kind 'zz_sahre', which it does not declare \(its table kinds: "
                                            r"zz_share\); add TableKind\('zz_sahre', \"...\"\) to tables="):
        build(cfg, BuildOptions(out=tmp_path / "site", random_init=True, quiet=True, analyses=("zz_typo",)))
    assert not (tmp_path / "site").exists()

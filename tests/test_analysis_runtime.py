"""How the build runs analyses: deadlines, Ctrl-C, errors that name the analysis, unique names."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from conftest import planted_photo, write_project

ROOT = Path(__file__).resolve().parents[1]
ONE_MODEL = '[[models]]\nid = "m"\ntimm = "convnext_tiny.fb_in1k"\n'

SLEEPER = '''
import os, time
from pathlib import Path
from dinoreport.analyses import register_analysis


@register_analysis("zz_sleep", order=0{extra})
def sleep(ctx):
    if os.environ.get("ZZ_STARTED"):
        Path(os.environ["ZZ_STARTED"]).write_text("started")
    time.sleep({seconds})
'''

# Each failing analysis marks the line the error must be located at with "# HERE".
FAILURES = {
    "RuntimeError": ('raise RuntimeError("planted runtime failure")  # HERE', "RuntimeError: planted runtime failure"),
    "KeyError": ('return _lookup({"present": 1}, "missing")', "KeyError: 'missing'"),
    "ValueError": ('raise ValueError("planted value failure")  # HERE', "ValueError: planted value failure"),
    "SystemExit": ("sys.exit(3)  # HERE", "sys.exit(3)"),
}
FAILING = '''
import sys
from dinoreport.analyses import register_analysis


def _lookup(table, key):
    return table[key]  # HERE (a KeyError is located in this helper: the innermost frame of the file)


@register_analysis("zz_fail", order=0)
def fail(ctx):
    {body}
'''


pytestmark = pytest.mark.usefixtures("registry_restored")


def _project(tmp_path: Path, files: dict[str, str], extra: str = "") -> Path:
    """A one-model, one-image project at resolution 64 with ``files`` in its analyses/ folder."""
    cfg = write_project(tmp_path, {"a": planted_photo(64, 64)}, models=ONE_MODEL, resolution=64, highres=[64],
                        extra=extra)
    (cfg.parent / "analyses").mkdir()
    for name, text in files.items():
        (cfg.parent / "analyses" / name).write_text(textwrap.dedent(text))
    return cfg


def _leftovers(folder: Path) -> list[str]:
    """Temporary site and scratch folders a build left beside ``folder / "site"``."""
    return sorted(p.name for p in folder.iterdir() if p.name.startswith(".site."))


def _cli_env(**extra: str) -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(ROOT / "generator") + os.pathsep + os.environ.get("PYTHONPATH", ""), **extra}


def _build_args(cfg: Path, out: Path, *more: str) -> list[str]:
    # One job: the user analysis (order 0) runs first and alone, before any built-in.
    return ["build", "--config", str(cfg), "--out", str(out), "--random-init", "--quiet", "-j", "1", *more]


def _invoke(*args: str):
    from dinoreport.cli import app

    return CliRunner().invoke(app, list(args), env={"COLUMNS": "200", "NO_COLOR": "1"})


# --------------------------------------------------------------------------- deadlines

def test_deadline_precedence_option_over_config_over_declaration_over_default():
    from dinoreport.analyses import DEFAULT_TIMEOUT_S, Analysis
    from dinoreport.runner import deadline

    plain, declared = Analysis("x", 1, lambda ctx: None), Analysis("y", 1, lambda ctx: None, timeout_s=7200.0)
    assert deadline(plain).seconds == DEFAULT_TIMEOUT_S == 1800
    assert (deadline(declared).seconds, deadline(declared).source) == (7200, "timeout_s of its register_analysis")
    assert deadline(declared, config_s=60).seconds == 60
    assert deadline(declared, config_s=60, option_s=5).source == "--analysis-timeout"
    assert deadline(declared, config_s=60, option_s=0).seconds is None  # 0: no limit


def test_analysis_timeout_s_in_report_toml_is_validated(tmp_path):
    from dinoreport.config import ConfigError, load_config

    cfg = _project(tmp_path, {}, extra="timeout_s = 90\n")
    assert load_config(cfg).analysis.timeout_s == 90.0
    assert load_config(_project(tmp_path / "b", {})).analysis.timeout_s is None
    for bad in ("-1", '"soon"', "true", "1e9"):
        cfg.write_text(cfg.read_text().rsplit("timeout_s", 1)[0] + f"timeout_s = {bad}\n")
        with pytest.raises(ConfigError, match="analysis.timeout_s"):
            load_config(cfg)


def test_register_analysis_refuses_a_timeout_that_is_not_positive():
    from dinoreport.analyses import AnalysisLoadError, register_analysis

    with pytest.raises(AnalysisLoadError, match="zz_bad: timeout_s must be"):
        register_analysis("zz_bad", 1, timeout_s=0)


def test_a_hung_analysis_stops_the_build_at_its_declared_timeout(tmp_path):
    from dinoreport.config import load_config
    from dinoreport.pipeline import BuildOptions, build
    from dinoreport.runner import AnalysisTimeout

    cfg = _project(tmp_path, {"sleepy.py": SLEEPER.format(extra=", timeout_s=0.5", seconds=60)})
    t = time.monotonic()
    with pytest.raises(AnalysisTimeout) as e:
        build(load_config(cfg), BuildOptions(out=tmp_path / "site", random_init=True, quiet=True,
                                             analyses=("zz_sleep",)))
    assert time.monotonic() - t < 30  # not the 60 s it sleeps
    msg = str(e.value)
    assert "analysis zz_sleep" in msg and str(cfg.parent / "analyses" / "sleepy.py") in msg
    assert "within 0.5 s" in msg and "timeout_s of its register_analysis" in msg
    assert "--analysis-timeout SECONDS" in msg and "analysis.timeout_s = SECONDS in report.toml" in msg
    assert not (tmp_path / "site").exists() and _leftovers(tmp_path) == []


def test_a_hung_analysis_ends_the_command_with_exit_1_and_no_threads_holding_it(tmp_path):
    # A subprocess: the command must end although the analysis's thread still sleeps.
    cfg = _project(tmp_path, {"sleepy.py": SLEEPER.format(extra="", seconds=3600)})
    r = subprocess.run([sys.executable, "-m", "dinoreport.cli", *_build_args(cfg, tmp_path / "site",
                                                                             "--analysis-timeout", "1")],
                       capture_output=True, text=True, timeout=300, env=_cli_env())
    assert r.returncode == 1, r.stderr
    assert "error: analysis zz_sleep" in r.stderr and "within 1 s, its timeout (--analysis-timeout)" in r.stderr
    assert "Traceback" not in r.stderr
    assert not (tmp_path / "site").exists() and _leftovers(tmp_path) == []


def test_ctrl_c_stops_a_build_within_seconds_and_removes_its_folders(tmp_path):
    cfg = _project(tmp_path, {"sleepy.py": SLEEPER.format(extra="", seconds=3600)})
    started = tmp_path / "started"
    # SIGINT back to its default in the child (a test runner in the background may ignore it),
    # so that Python installs its KeyboardInterrupt handler as it does in a terminal.
    p = subprocess.Popen([sys.executable, "-m", "dinoreport.cli", *_build_args(cfg, tmp_path / "site")],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                         env=_cli_env(ZZ_STARTED=str(started)),
                         preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        t_end = time.monotonic() + 300
        while not started.exists() and p.poll() is None and time.monotonic() < t_end:
            time.sleep(0.1)
        assert started.exists(), p.communicate(timeout=5)
        assert _leftovers(tmp_path)  # the build's folders exist while it runs
        t = time.monotonic()
        p.send_signal(signal.SIGINT)
        _, err = p.communicate(timeout=20)
        took = time.monotonic() - t
    finally:
        if p.poll() is None:
            p.kill()
            p.communicate()
    assert p.returncode == 130, err
    assert "interrupted" in err and "Traceback" not in err
    assert took < 10, took
    assert not (tmp_path / "site").exists() and _leftovers(tmp_path) == []


# --------------------------------------------------------------------------- errors

def _failing(body: str) -> str:
    return FAILING.format(body=body)


def _here(text: str) -> int:
    """The line (1-based) of ``text`` marked ``# HERE`` in the function body, else in the helper."""
    lines = textwrap.dedent(text).splitlines()
    marked = [n + 1 for n, line in enumerate(lines) if "# HERE" in line]
    return marked[-1]


@pytest.mark.parametrize("kind", list(FAILURES))
def test_an_analysis_error_names_the_analysis_its_file_and_line(tmp_path, kind):
    from dinoreport.config import load_config
    from dinoreport.pipeline import BuildOptions, build

    body, error = FAILURES[kind]
    source = _failing(body)
    cfg = _project(tmp_path, {"failing.py": source})
    with pytest.raises(BaseException) as e:  # SystemExit too: it must come back as AnalysisError
        build(load_config(cfg), BuildOptions(out=tmp_path / "site", random_init=True, quiet=True,
                                             analyses=("zz_fail",)))
    assert type(e.value).__name__ == "AnalysisError", repr(e.value)
    path = cfg.parent / "analyses" / "failing.py"
    msg = str(e.value)
    assert msg.startswith(f"analysis zz_fail failed at {path}, line {_here(source)}, in "), msg
    assert msg.endswith(error) or error in msg, msg
    assert e.value.original.__traceback__ is not None  # kept for --verbose
    assert not (tmp_path / "site").exists() and _leftovers(tmp_path) == []


def test_cli_reports_an_analysis_that_exits_in_one_line_with_exit_1(tmp_path):
    cfg = _project(tmp_path, {"failing.py": _failing(FAILURES["SystemExit"][0])})
    r = _invoke(*_build_args(cfg, tmp_path / "site"))
    assert r.exit_code == 1, r.output
    assert "error: analysis zz_fail failed at" in r.output and "sys.exit(3)" in r.output
    assert "--verbose shows the traceback" in r.output and "Traceback" not in r.output


def test_cli_verbose_shows_the_traceback_inside_the_analysis(tmp_path):
    cfg = _project(tmp_path, {"failing.py": _failing(FAILURES["KeyError"][0])})
    r = _invoke(*_build_args(cfg, tmp_path / "site", "--verbose"))
    assert r.exit_code == 1, r.output
    assert "Traceback" in r.output and "return table[key]" in r.output  # the frames inside the analysis
    assert "error: analysis zz_fail failed at" in r.output and "KeyError: 'missing'" in r.output


# --------------------------------------------------------------------------- unique names

BUILTIN_NAME = '''
from dinoreport.analyses import SectionOutput, register_analysis


@register_analysis("within_pca", order=10)
def mine(ctx):
    return SectionOutput()
'''

TWICE = '''
from dinoreport.analyses import SectionOutput, register_analysis


@register_analysis("zz_twice", order=100)
def {fn}(ctx):
    return SectionOutput()
'''


def test_a_user_analysis_with_a_builtin_name_is_refused_naming_both_files(tmp_path):
    from dinoreport.analyses import within_pca

    cfg = _project(tmp_path, {"mine.py": BUILTIN_NAME})
    r = _invoke("analyses", "--config", str(cfg))
    assert r.exit_code == 2, r.output
    assert "'within_pca' is registered twice" in r.output
    assert within_pca.__file__ in r.output and str(cfg.parent / "analyses" / "mine.py") in r.output
    assert "Traceback" not in r.output


def test_two_user_files_with_one_name_are_refused_naming_both(tmp_path):
    from dinoreport.analyses import AnalysisLoadError, load_user_analyses

    cfg = _project(tmp_path, {"a.py": TWICE.format(fn="first"), "b.py": TWICE.format(fn="second")})
    folder = cfg.parent / "analyses"
    with pytest.raises(AnalysisLoadError) as e:
        load_user_analyses(cfg.parent)
    assert f"by {folder / 'a.py'}, line 5 and by {folder / 'b.py'}, line 5" in str(e.value)


def test_a_module_imported_again_replaces_its_own_registration(tmp_path):
    from dinoreport.analyses import get_analysis, load_user_analyses

    cfg = _project(tmp_path, {"a.py": TWICE.format(fn="first")})
    load_user_analyses(cfg.parent)
    first = get_analysis("zz_twice").run
    del sys.modules["dinoreport_site_analyses.a"]  # as after a failed import: the file runs again
    load_user_analyses(cfg.parent)
    assert get_analysis("zz_twice").run is not first


def test_a_user_analysis_that_exits_while_imported_is_named(tmp_path):
    cfg = _project(tmp_path, {"quits.py": "import sys\nsys.exit(3)\n"})
    r = _invoke("analyses", "--config", str(cfg))
    assert r.exit_code == 2, r.output
    assert f"{cfg.parent / 'analyses' / 'quits.py'}: SystemExit: 3" in r.output


def test_serve_reports_a_failed_first_build_and_removes_its_folder(tmp_path, monkeypatch):
    import tempfile

    import dinoreport.serve as serve
    from dinoreport.runner import AnalysisError

    def failing_build(cfg, opts):
        assert opts.analysis_timeout_s == 5  # --analysis-timeout reaches the build
        raise AnalysisError("analysis zz_fail failed at x.py, line 1, in f: RuntimeError: planted", "zz_fail")

    monkeypatch.setattr(serve, "build", failing_build)
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()
    cfg = _project(tmp_path / "p", {})
    r = _invoke("serve", "--config", str(cfg), "--port", "0", "--analysis-timeout", "5")
    assert r.exit_code == 1, r.output
    assert "error: analysis zz_fail failed at x.py" in r.output and "Traceback" not in r.output
    assert not list((tmp_path / "tmp").glob("dinoreport-serve-*"))  # the served site's temporary folder is gone

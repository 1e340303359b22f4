"""The command line: every command's --help, and the commands that need no build."""
from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from dinoreport.cli import app
from dinoreport.analyses import list_analyses

ROOT = Path(__file__).resolve().parents[1]
PROJECT_CONFIG = ROOT / "site_src" / "report.toml"
WIDE = {"COLUMNS": "200", "TERMINAL_WIDTH": "200", "NO_COLOR": "1"}


def run(*args: str, env: dict | None = None):
    return CliRunner().invoke(app, list(args), env={**WIDE, **(env or {})})


def _flat(text: str) -> str:
    """Help text without rich's box drawing and line wrapping."""
    text = re.sub(r"[│╭╮╰╯─]", " ", text)
    return re.sub(r"\s+", " ", text)


HELP = {
    (): ["build", "models", "serve", "publish", "clean", "analyses", "images", "new",
         "Build a blog-style report"],
    ("build",): ["--config", "The report config (TOML)", "--out", "replaced atomically",
                 "--images", "instead of the images of the config", "file names are ids",
                 "--random-init", "Seeded random weights", "works offline",
                 "--device", "auto, cpu, cuda or mps", "--dtype", "bf16",
                 "--keep-going", "Skip images that cannot be decoded", "--quiet", "No progress bars",
                 "--analysis-timeout SECONDS", "0: no limit", "analysis.timeout_s", "--verbose", "full traceback"],
    ("images",): ["list", "fetch"],
    ("images", "list"): ["--config", "--images", "A folder instead of the manifest",
                         "whether it is available offline"],
    ("images", "fetch"): ["--config", "--timeout", "Seconds per download", "sha256 verified"],
    ("models",): ["--config", "stages", "weights"],
    ("serve",): ["--port", "127.0.0.1", "--random-init", "--images", "rebuild", "--analysis-timeout", "--verbose"],
    ("publish",): ["--site", "The built site to publish", "--remote", "name or URL", "--branch",
                   "gh-pages", "--message", "Commit message", "needs git", "--replace",
                   "CNAME", "are kept", "Symbolic links in the site are refused"],
    ("clean",): ["--yes", "Do not ask", "cache"],
    ("analyses",): ["report order", "--config"],
    ("new",): ["folder to create", "report.toml", "example analysis"],
}


@pytest.mark.parametrize("cmd", list(HELP), ids=lambda c: " ".join(c) or "top")
def test_help_explains_every_option(cmd):
    r = run(*cmd, "--help")
    assert r.exit_code == 0, r.output
    text = _flat(r.output)
    for phrase in HELP[cmd]:
        assert phrase in text, (phrase, r.output)
    assert "<bool>" not in r.output  # flags take no value; no type noise


def _commands(cmd, path=()):
    yield path, cmd
    for name, sub in sorted(getattr(cmd, "commands", {}).items()):
        yield from _commands(sub, path + (name,))


def test_every_option_and_command_has_its_own_help():
    import typer.main

    for path, cmd in _commands(typer.main.get_command(app)):
        assert path == () or cmd.help, path
        for p in cmd.params:
            if p.param_type_name == "option" and p.name != "help":
                assert p.help, (path, p.name)  # an option without a help line is a gap in the docs
    assert set(HELP) == {path for path, _ in _commands(typer.main.get_command(app))}


def test_models_lists_stages_and_offline_weights():
    r = run("models", "--config", str(PROJECT_CONFIG))
    assert r.exit_code == 0, r.output
    blocks = {b.split("\n", 1)[0]: b for b in re.split(r"\n(?=\S)", r.output.strip())}
    assert list(blocks) == ["dinov3_convnext_tiny", "in1k_convnext_tiny", "dinov3_vits16"]
    for mid in ("dinov3_convnext_tiny", "in1k_convnext_tiny"):
        assert re.search(r"stages:\s+C2\(96ch/4\), C3\(192ch/8\), C4\(384ch/16\), C5\(768ch/32\)", blocks[mid])
    assert re.search(r"stages:\s+B3\(384ch/16\), B6\(384ch/16\), B9\(384ch/16\), B12\(384ch/16\)",
                     blocks["dinov3_vits16"])
    assert "timm:    convnext_tiny.fb_in1k" in blocks["in1k_convnext_tiny"]
    for b in blocks.values():
        assert "weights: not available offline" in b and "--random-init" in b, b


def test_models_with_a_bad_config_names_the_problem(tmp_path):
    bad = tmp_path / "report.toml"
    bad.write_text('resolutoin = 448\n')
    r = run("models", "--config", str(bad))
    assert r.exit_code == 2
    assert "resolutoin: unknown key — did you mean 'resolution'?" in r.output


def test_images_list_shows_the_bundled_dogs_offline():
    r = run("images", "list", "--config", str(PROJECT_CONFIG))
    assert r.exit_code == 0, r.output
    lines = [ln.split() for ln in r.output.strip().splitlines()]
    ids = [ln[0] for ln in lines]
    assert len(ids) == 27 and len(set(ids)) == 27
    state = {ln[0]: " ".join(ln[-2:]) if ln[-1] == "fetched" else ln[-1] for ln in lines}
    dogs = [i for i in ids if i.startswith("dog_")]
    assert len(dogs) == 14  # 9 single dogs and 5 photos of several (issue 22)
    assert all(s == "ok" for s in state.values()), state  # everything ships: nothing to fetch


def test_images_list_of_a_folder(tmp_path):
    from PIL import Image

    for name in ("dog_a.png", "cat_b.jpg"):
        Image.new("RGB", (40, 40), (200, 10, 10)).save(tmp_path / name)
    r = run("images", "list", "--images", str(tmp_path))
    assert r.exit_code == 0, r.output
    assert [ln.split()[:2] for ln in r.output.strip().splitlines()] == [["cat_b", "cat"], ["dog_a", "dog"]]
    r = run("images", "list", "--images", str(tmp_path / "nope"))
    assert r.exit_code == 2 and "--images" in r.output and "not a folder" in r.output


def test_analyses_in_registry_order():
    r = run("analyses")
    assert r.exit_code == 0
    names = [line.split(":")[0] for line in r.output.splitlines() if not line.startswith(" ")]
    assert names == list_analyses()
    assert names[0] == "within_pca" and "explorer" in names and "highres" in names
    # Each with its description, its options (default, limits, help) and its kinds.
    block = r.output.split("\ncosegmentation: ", 1)[1].split("\ncorrespondences", 1)[0]
    assert block.startswith("k-means with coseg_k parts")
    assert "  option coseg_k = 4 (int from 2 to 9): parts per group" in block
    assert "  figure cosegmentation: " in block and "  table cosegmentation: " in block
    assert "  option sweep = [224, 448, 896] (list of int, each from 14 to 2048): " in r.output


def test_clean_yes_removes_the_cache(tmp_path):
    cache = tmp_path / "cache"
    (cache / "features" / "ab").mkdir(parents=True)
    (cache / "features" / "ab" / ("ab" + "0" * 62 + ".safetensors")).write_bytes(b"x")
    r = run("clean", "--yes", env={"DINOREPORT_CACHE": str(cache)})
    assert r.exit_code == 0, r.output
    assert f"removed 1 cache files under {cache}" in r.output
    assert not cache.exists()
    r = run("clean", "--yes", env={"DINOREPORT_CACHE": str(cache)})
    assert r.exit_code == 0 and "nothing to clean" in r.output


def test_no_command_shows_help():
    r = run()
    assert "Usage" in r.output and "build" in r.output


# --------------------------------------------------------------------------- new: paths it cannot use

def _tree(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


@pytest.mark.parametrize("make, target, said", [
    (lambda d: (d / "afile").write_text("x"), "afile/report", "afile is a file, not a folder"),
    (lambda d: (d / "afile").write_text("x"), "afile/a/b", "afile is a file, not a folder"),
    (lambda d: (d / "link").symlink_to(d / "nowhere"), "link", "link is a symbolic link to "),
    (lambda d: (d / "link").symlink_to(d / "nowhere"), "link/report", "link is a symbolic link to "),
])
def test_new_refuses_a_path_it_cannot_make(tmp_path, make, target, said):
    make(tmp_path)
    before = _tree(tmp_path)
    r = run("new", str(tmp_path / target))
    assert r.exit_code == 1 and isinstance(r.exception, SystemExit), r.output
    assert said in r.output and "Traceback" not in r.output, r.output
    assert _tree(tmp_path) == before


def _failing_copytree(monkeypatch, after: int):
    """copytree that fails with EACCES after copying ``after`` files (as an unwritable disk would)."""
    import errno
    import shutil

    real = shutil.copytree
    copied = []

    def copy(src, dst, *a, **k):
        if len(copied) >= after:
            raise PermissionError(errno.EACCES, "Permission denied", dst)
        copied.append(dst)
        return shutil.copy2(src, dst)

    def copytree(src, dst, symlinks=False, ignore=None, copy_function=None, *rest, **k):
        return real(src, dst, symlinks, ignore, copy, *rest, **k)  # copytree recurses through the module name

    monkeypatch.setattr(shutil, "copytree", copytree)


@pytest.mark.parametrize("target", ["fresh", "deep/er/report", "empty"])
def test_new_that_cannot_write_leaves_nothing(tmp_path, monkeypatch, target):
    (tmp_path / "empty").mkdir()
    before = _tree(tmp_path)
    _failing_copytree(monkeypatch, after=2)
    r = run("new", str(tmp_path / target))
    assert r.exit_code == 1 and isinstance(r.exception, SystemExit), r.output
    assert f"cannot create {tmp_path / target} (" in r.output and "Permission denied" in r.output, r.output
    assert "nothing was written" in r.output
    assert _tree(tmp_path) == before  # no half scaffold, no parents made, no staging folder


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() == 0, reason="root writes anywhere")
def test_new_in_an_unwritable_folder_names_it(tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o555)
    try:
        r = run("new", str(locked / "report"))
    finally:
        locked.chmod(0o755)
    assert r.exit_code == 1 and "Permission denied" in r.output and "Traceback" not in r.output, r.output
    assert list(locked.iterdir()) == []


def test_new_makes_missing_parents_and_an_empty_folder_works(tmp_path):
    (tmp_path / "empty").mkdir()
    for target in ("a/b/report", "empty"):
        r = run("new", str(tmp_path / target))
        assert r.exit_code == 0, r.output
        assert (tmp_path / target / "report.toml").is_file()
    assert not [p for p in tmp_path.rglob(".*new-*")]  # the staging folder is gone

"""``dinoreport publish``: no symlinks followed, files committed on gh-pages kept, no git handled.

Real git throughout: a bare repository in tmp_path is the remote.
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pytest
from typer.testing import CliRunner

from dinoreport.cli import app
from dinoreport.outdir import MARKER
from dinoreport.publish import RECORD

from conftest import git, publish_cli

ID = ["-c", "user.name=t", "-c", "user.email=t@localhost"]


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


@pytest.fixture
def site(tmp_path) -> Path:
    """A small site laid out like a build's, with the build's manifest of what it wrote."""
    s = tmp_path / "site"
    for rel, text in {"index.html": "<p>report</p>", "report.html": "<p>one file</p>", ".nojekyll": "",
                      "data/build.json": "{}", "assets/fig/a.svg": "<svg/>"}.items():
        _write(s / rel, text)
    files = {p.relative_to(s).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
             for p in sorted(s.rglob("*")) if p.is_file()}
    _write(s / MARKER, json.dumps({"format": "dinoreport-site-1", "files": files}))
    return s


def _tip(bare: Path) -> str:
    return git("rev-parse", "gh-pages", cwd=bare).strip()


def _tree(bare: Path) -> dict[str, str]:
    """{path: content} of the gh-pages tip."""
    names = git("ls-tree", "-r", "--name-only", "gh-pages", cwd=bare).split("\n")
    return {n: git("show", f"gh-pages:{n}", cwd=bare) for n in names if n}


def _commit_on_branch(bare: Path, tmp_path: Path, files: dict[str, str], remove: tuple[str, ...] = ()) -> None:
    """Commit files to gh-pages by hand (as GitHub's settings page or a person would) and push."""
    clone = tmp_path / "hand"
    if not clone.exists():
        git("clone", "-q", "--branch", "gh-pages", str(bare), str(clone), cwd=tmp_path)
    git("pull", "-q", "origin", "gh-pages", cwd=clone)
    for rel, text in files.items():
        _write(clone / rel, text)
    for rel in remove:
        (clone / rel).unlink()
    git("add", "-A", cwd=clone)
    git(*ID, "commit", "-q", "-m", "by hand", cwd=clone)
    git("push", "-q", "origin", "gh-pages", cwd=clone)


def _no_traceback(r) -> None:
    assert isinstance(r.exception, SystemExit), repr(r.exception)
    assert "Traceback" not in r.output


# --------------------------------------------------------------------------- 6: symlinks

def test_publish_refuses_symlinks_leading_out_of_the_site(tmp_path, site, bare):
    secret = tmp_path / "secret.txt"
    secret.write_text("TOPSECRET-file")
    outside = tmp_path / "elsewhere"
    _write(outside / "key.txt", "TOPSECRET-folder")
    (site / "notes.txt").symlink_to(secret)
    (site / "assets" / "extra").symlink_to(outside, target_is_directory=True)

    r = publish_cli(site, bare)
    assert r.exit_code == 2, r.output
    _no_traceback(r)
    assert "symbolic links" in r.output and "Remove them" in r.output
    assert f"notes.txt -> {secret}" in r.output
    assert f"assets/extra -> {outside}" in r.output
    assert "Nothing was pushed" in r.output
    assert git("for-each-ref", cwd=bare).strip() == ""  # no branch, no commit


def test_publish_refuses_a_symlink_inside_the_site_too(site, bare):
    (site / "home.html").symlink_to("index.html")
    r = publish_cli(site, bare)
    assert r.exit_code == 2 and "home.html -> index.html" in r.output
    assert git("for-each-ref", cwd=bare).strip() == ""
    (site / "home.html").unlink()
    assert publish_cli(site, bare).exit_code == 0


# --------------------------------------------------------------------------- 7: files on gh-pages

def test_publish_keeps_files_committed_on_the_branch(tmp_path, site, bare):
    assert publish_cli(site, bare).exit_code == 0
    _commit_on_branch(bare, tmp_path, {"CNAME": "report.example.org\n", "hand/page.html": "<p>mine</p>"})

    (site / "report.html").unlink()  # gone from the new site: the published copy goes too
    _write(site / "index.html", "<p>report v2</p>")
    r = publish_cli(site, bare, "-m", "v2")
    assert r.exit_code == 0, r.output
    tree = _tree(bare)
    assert tree["CNAME"] == "report.example.org\n"
    assert tree["hand/page.html"] == "<p>mine</p>"
    assert tree["index.html"] == "<p>report v2</p>"
    assert "report.html" not in tree
    assert "kept on gh-pages" in r.output and "CNAME, hand/page.html" in r.output
    # the record names only what publish wrote, so the next publish keeps the files again
    assert set(json.loads(tree[RECORD])["files"]) == set(tree) - {"CNAME", "hand/page.html", RECORD}
    r = publish_cli(site, bare, "-m", "v3")
    assert r.exit_code == 0, r.output
    assert "CNAME" in _tree(bare) and "kept on gh-pages" in r.output


def test_publish_replace_removes_files_it_did_not_write(tmp_path, site, bare):
    assert publish_cli(site, bare).exit_code == 0
    _commit_on_branch(bare, tmp_path, {"CNAME": "report.example.org\n"})
    r = publish_cli(site, bare, "--replace")
    assert r.exit_code == 0, r.output
    assert "removed or replaced on gh-pages (--replace)" in r.output and "CNAME" in r.output
    tree = _tree(bare)
    assert "CNAME" not in tree
    assert set(tree) - {RECORD} == {p.relative_to(site).as_posix() for p in site.rglob("*") if p.is_file()}


def test_publish_refuses_to_overwrite_a_file_it_did_not_write(tmp_path, site, bare):
    assert publish_cli(site, bare).exit_code == 0
    _commit_on_branch(bare, tmp_path, {"CNAME": "new.example.org\n"})  # domain changed in the settings
    before = _tip(bare)

    _write(site / "CNAME", "old.example.org\n")
    r = publish_cli(site, bare)
    assert r.exit_code == 2, r.output
    _no_traceback(r)
    assert "did not write" in r.output and "\n  CNAME" in r.output and "--replace" in r.output
    assert _tip(bare) == before  # nothing pushed

    _write(site / "CNAME", "new.example.org\n")  # the same content: nothing to refuse
    assert publish_cli(site, bare).exit_code == 0
    _write(site / "CNAME", "old.example.org\n")  # now the site's CNAME is one publish wrote
    assert publish_cli(site, bare).exit_code == 0
    assert _tree(bare)["CNAME"] == "old.example.org\n"


def test_publish_refuses_to_overwrite_a_file_of_ours_edited_on_the_branch(tmp_path, site, bare):
    assert publish_cli(site, bare).exit_code == 0
    _commit_on_branch(bare, tmp_path, {"index.html": "<p>fixed on GitHub</p>"})
    before = _tip(bare)
    _write(site / "index.html", "<p>report v2</p>")
    r = publish_cli(site, bare)
    assert r.exit_code == 2 and "\n  index.html" in r.output
    assert _tip(bare) == before
    r = publish_cli(site, bare, "--replace")
    assert r.exit_code == 0 and _tree(bare)["index.html"] == "<p>report v2</p>"


def test_publish_over_a_branch_from_before_the_record(tmp_path, site, bare):
    """A branch an older publish wrote has no record: the build's manifest says what was ours."""
    git("init", "-q", "-b", "gh-pages", str(tmp_path / "old"), cwd=tmp_path)
    old = tmp_path / "old"
    for p in site.rglob("*"):
        if p.is_file():
            _write(old / p.relative_to(site), p.read_text())
    _write(old / "CNAME", "report.example.org\n")
    git("add", "-A", cwd=old)
    git(*ID, "commit", "-q", "-m", "old publish", cwd=old)
    git("push", "-q", str(bare), "gh-pages", cwd=old)

    (site / "report.html").unlink()
    r = publish_cli(site, bare)
    assert r.exit_code == 0, r.output
    tree = _tree(bare)
    assert "report.html" not in tree and tree["CNAME"] == "report.example.org\n"
    assert git("rev-list", "--count", "gh-pages", cwd=bare).strip() == "2"


# --------------------------------------------------------------------------- 8: git missing or broken

@pytest.mark.parametrize("kind", ["absent", "not_executable", "not_a_program", "fails"])
def test_publish_without_a_working_git(tmp_path, site, bare, monkeypatch, kind):
    bindir = tmp_path / "bin"
    bindir.mkdir()
    fake = bindir / "git"
    if kind == "not_executable":
        fake.write_text("#!/bin/sh\nexit 0\n")
        fake.chmod(0o644)
    elif kind == "not_a_program":
        fake.write_bytes(b"\x00\x01 not a program\n")
        fake.chmod(0o755)
    elif kind == "fails":
        fake.write_text("#!/bin/sh\necho 'git: broken install' >&2\nexit 1\n")
        fake.chmod(0o755)
    monkeypatch.setenv("PATH", str(bindir))

    r = publish_cli(site, bare)
    assert r.exit_code == 2, r.output
    _no_traceback(r)
    assert "needs git" in r.output and "apt-get install git" in r.output and "git-scm.com" in r.output
    said = {"absent": "git was not found on PATH", "not_executable": f"{fake} is on PATH but cannot be run",
            "not_a_program": f"{fake} cannot be run", "fails": "git: broken install"}[kind]
    assert said in r.output
    monkeypatch.setenv("PATH", os.defpath)
    assert git("for-each-ref", cwd=bare).strip() == ""


# --------------------------------------------------------------------------- remote given as a relative path

def test_publish_to_a_relative_path(tmp_path, site, bare, monkeypatch):
    """git runs in a temporary folder; ./pages.git means the one beside the user, not there."""
    monkeypatch.chdir(tmp_path)
    r = CliRunner().invoke(app, ["publish", "--site", "site", "--remote", "./pages.git"])
    assert r.exit_code == 0, r.output
    assert _tree(bare)["index.html"] == "<p>report</p>"

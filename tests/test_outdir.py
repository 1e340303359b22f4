"""The output folder and the cache lose nothing that dinoreport did not write (issue 10, items 1-4)."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from typer.testing import CliRunner

from dinoreport import outdir
from dinoreport.cli import app
from dinoreport.cachedir import sweep_parts
from dinoreport.outdir import MARKER, OutDirError, check_out, make_tmp, recover, swap_in

PROJECT = Path(__file__).resolve().parents[1]


def cli(*args: str, env: dict | None = None, stdin=subprocess.DEVNULL) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "dinoreport.cli", *args], capture_output=True, text=True,
                          timeout=120, stdin=stdin, env={**os.environ, "COLUMNS": "200", **(env or {})})


def _dead_pid() -> int:
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


def _site(out: Path, files: dict[str, str]) -> None:
    """A site as a build writes it: files in a temporary folder, swapped in with the marker."""
    tmp = make_tmp(out)
    for rel, text in files.items():
        (tmp / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp / rel).write_text(text)
    swap_in(tmp, out)


# --------------------------------------------------------------------------- 1. foreign folders

def test_build_refuses_a_folder_it_did_not_write(tmp_path):
    p = tmp_path / "P"
    (p / "data").mkdir(parents=True)
    (p / "src").mkdir()
    (p / "data" / "build.json").write_text("{}")
    (p / "src" / "main.py").write_text("x\n")
    r = cli("build", "--random-init", "--quiet", "--out", str(p))
    assert r.returncode != 0
    assert str(p) in r.stderr and "not written by dinoreport" in r.stderr and "--out" in r.stderr, r.stderr
    assert "Traceback" not in r.stderr
    assert (p / "src" / "main.py").read_text() == "x\n"
    assert sorted(x.name for x in tmp_path.iterdir()) == ["P"]


def test_marker_records_every_written_file_with_its_hash(tmp_path):
    out = tmp_path / "site"
    _site(out, {"index.html": "<p>a</p>", "data/build.json": "{}"})
    files = outdir.written_files(out)
    assert sorted(files) == ["data/build.json", "index.html"]
    assert files["index.html"] == __import__("hashlib").sha256(b"<p>a</p>").hexdigest()
    # A marker of the wrong shape proves nothing.
    (out / MARKER).write_text('{"files": ["index.html"]}')
    with pytest.raises(OutDirError, match="not written by dinoreport"):
        check_out(out, [])


# --------------------------------------------------------------------------- 2. the user's files

def test_rebuild_carries_over_files_the_user_added(tmp_path):
    out = tmp_path / "site"
    _site(out, {"index.html": "old", "data/build.json": "{}"})
    (out / "CNAME").write_text("report.example.org\n")
    (out / "notes").mkdir()
    (out / "notes" / "todo.md").write_text("check C5\n")
    (out / ".git" / "refs" / "heads").mkdir(parents=True)
    (out / ".git" / "refs" / "heads" / "gh-pages").write_text("1234abcd\n")
    os.symlink("index.html", out / "home.html")
    check_out(out, [])
    _site(out, {"index.html": "new", "data/build.json": "{}"})
    assert (out / "index.html").read_text() == "new"
    assert (out / "CNAME").read_text() == "report.example.org\n"
    assert (out / "notes" / "todo.md").read_text() == "check C5\n"
    assert (out / ".git" / "refs" / "heads" / "gh-pages").read_text() == "1234abcd\n"
    assert os.readlink(out / "home.html") == "index.html"
    # Carried files stay the user's: the next rebuild carries them again.
    assert "CNAME" not in outdir.written_files(out)
    _site(out, {"index.html": "newer", "data/build.json": "{}"})
    assert (out / "CNAME").is_file() and (out / ".git" / "refs" / "heads" / "gh-pages").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["site"]


def test_edited_files_of_ours_are_named_and_kept_unless_discarded(tmp_path):
    out = tmp_path / "site"
    _site(out, {"index.html": "built", "data/build.json": "{}"})
    (out / "index.html").write_text("built, then hand-edited")
    with pytest.raises(OutDirError, match=r"(?s)changed since.*index\.html.*--discard-edits"):
        check_out(out, [])
    assert check_out(out, [], discard_edits=True) == out.resolve()


def test_user_file_named_like_a_new_output_is_refused_before_the_swap(tmp_path):
    out = tmp_path / "site"
    _site(out, {"index.html": "a"})
    (out / "report.html").write_text("mine")
    tmp = make_tmp(out)
    (tmp / "report.html").write_text("the build's")
    with pytest.raises(OutDirError, match="report.html"):
        swap_in(tmp, out)
    assert (out / "report.html").read_text() == "mine"


def test_full_rebuild_keeps_cname_and_git(tmp_path, demo_site):
    from dinoreport.config import load_config
    from dinoreport.pipeline import BuildOptions, build

    out = tmp_path / "site"
    shutil.copytree(demo_site, out, symlinks=True)
    (out / "CNAME").write_text("report.example.org\n")
    (out / ".git").mkdir()
    (out / ".git" / "HEAD").write_text("ref: refs/heads/gh-pages\n")
    cfg = load_config(demo_site.parent / "site_src" / "report.toml")
    build(cfg, BuildOptions(out=out, random_init=True, quiet=True))
    assert (out / "CNAME").read_text() == "report.example.org\n"
    assert (out / ".git" / "HEAD").is_file()
    assert (out / "index.html").is_file() and (out / MARKER).is_file()


# --------------------------------------------------------------------------- 3. clean

def _cache_with_neighbours(root: Path) -> list[Path]:
    ours = [root / "features" / "ab" / ("ab" + "0" * 62 + ".safetensors"),
            root / "sections" / ("1" * 64 + ".json"), root / "figures" / ("2" * 20 + ".png"),
            root / "images" / ("3" * 64 + ".jpg"), root / "models" / ("meta-" + "4" * 32 + ".json")]
    for p in ours:
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(b"x")
    (root / "thesis.tex").write_text("mine")
    (root / "images" / "holiday.jpg").write_bytes(b"mine")
    return ours


def test_clean_off_a_terminal_needs_yes(tmp_path):
    root = tmp_path / "U"
    ours = _cache_with_neighbours(root)
    r = cli("clean", env={"DINOREPORT_CACHE": str(root)})
    assert r.returncode != 0 and "--yes" in r.stderr and str(root) in r.stderr, r.stderr
    assert all(p.exists() for p in ours) and (root / "thesis.tex").exists()


def test_clean_deletes_only_what_the_cache_wrote(tmp_path):
    root = tmp_path / "U"
    ours = _cache_with_neighbours(root)
    r = cli("clean", "--yes", env={"DINOREPORT_CACHE": str(root)})
    assert r.returncode == 0, r.stderr
    assert not any(p.exists() for p in ours)
    assert (root / "thesis.tex").read_text() == "mine"
    assert (root / "images" / "holiday.jpg").read_bytes() == b"mine"
    assert not (root / "features").exists()
    assert "removed 5 cache files" in r.stdout


# --------------------------------------------------------------------------- 4. killed builds

def test_kill_between_the_two_renames_is_restored_by_the_next_build(tmp_path):
    out = tmp_path / "site"
    _site(out, {"index.html": "old site"})
    (out / "CNAME").write_text("x.org\n")
    script = textwrap.dedent(f"""
        import os, signal
        from pathlib import Path
        from dinoreport import outdir
        real, calls = os.replace, []
        def replace(a, b):
            calls.append(1)
            if len(calls) == 2:
                os.kill(os.getpid(), signal.SIGKILL)
            real(a, b)
        outdir.os.replace = replace
        out = Path({str(out)!r})
        tmp = outdir.make_tmp(out)
        (tmp / "index.html").write_text("new site")
        outdir.swap_in(tmp, out)
    """)
    r = subprocess.run([sys.executable, "-c", script], env={**os.environ, "PYTHONPATH": str(PROJECT / "generator")})
    assert r.returncode == -9
    assert not out.exists()  # the kill left no site: the old one sits in .site.old-PID
    left = sorted(p.name for p in tmp_path.iterdir())
    assert any(n.startswith(".site.old-") for n in left) and any(n.startswith(".site.tmp-") for n in left)
    said = recover(out)
    assert (out / "index.html").read_text() == "old site" and (out / "CNAME").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["site"]
    assert any("restored" in s for s in said)


def test_old_copy_after_a_finished_swap_is_removed(tmp_path):
    out = tmp_path / "site"
    _site(out, {"index.html": "new"})
    old = tmp_path / f".site.old-{_dead_pid()}"
    _site(old, {"index.html": "old"})
    recover(out)
    assert (out / "index.html").read_text() == "new" and not old.exists()


def test_leftovers_of_live_builds_are_left_alone(tmp_path):
    out = tmp_path / "site"
    live = tmp_path / f".site.tmp-{os.getpid()}-abc"
    live.mkdir()
    dead = tmp_path / f".site.tmp-{_dead_pid()}-abc"
    dead.mkdir()
    recover(out)
    assert live.exists() and not dead.exists()


def test_part_files_of_killed_writers_are_swept(tmp_path):
    from dinoreport.atomic import HOST

    dead, live = _dead_pid(), os.getpid()
    (tmp_path / "features" / "ab").mkdir(parents=True)
    stale = tmp_path / "features" / "ab" / f".part-{dead}.{HOST}-x1.safetensors"
    old_style = tmp_path / "features" / "ab" / f".part-{dead}-x3.safetensors"  # older versions: no host
    mine = tmp_path / "features" / "ab" / f".part-{live}.{HOST}-x2.safetensors"
    # Another machine sharing the folder: its pid means nothing here, and it may be writing.
    theirs = tmp_path / "features" / "ab" / f".part-{dead}.{HOST}x-x4.safetensors"
    keep = tmp_path / "features" / "ab" / ".part-notes.txt"
    elsewhere = tmp_path / "thesis" / f".part-{dead}.{HOST}-draft.tex"  # not a cache folder: not ours
    elsewhere.parent.mkdir()
    for p in (stale, old_style, mine, theirs, keep, elsewhere):
        p.write_bytes(b"x")
    assert sweep_parts(tmp_path) == 2
    assert not stale.exists() and not old_style.exists()
    assert mine.exists() and theirs.exists() and keep.exists() and elsewhere.exists()


def test_atomic_writes_name_their_process_and_host(tmp_path, monkeypatch):
    import socket

    from dinoreport.atomic import HOST, atomic_path

    assert HOST and HOST.isalnum() and HOST in "".join(c for c in socket.gethostname() if c.isalnum())
    with atomic_path(tmp_path / "a.json") as tmp:
        assert tmp.name.startswith(f".part-{os.getpid()}.{HOST}-")
        tmp.write_text("{}")


def test_publish_leaves_out_the_sites_own_git_folder(tmp_path, demo_site):
    site = tmp_path / "site"
    shutil.copytree(demo_site, site)
    (site / "CNAME").write_text("report.example.org\n")
    subprocess.run(["git", "init", "-q", str(site)], check=True)  # the user's repository of the site
    bare = tmp_path / "pages.git"
    subprocess.run(["git", "init", "-q", "--bare", str(bare)], check=True)
    r = CliRunner().invoke(app, ["publish", "--site", str(site), "--remote", str(bare)])
    assert r.exit_code == 0, r.output
    files = subprocess.run(["git", "ls-tree", "-r", "--name-only", "gh-pages"], cwd=bare, capture_output=True,
                           text=True, check=True).stdout.split()
    assert "CNAME" in files and "index.html" in files and not any(f.startswith(".git/") for f in files)
    assert (site / ".git" / "HEAD").is_file()

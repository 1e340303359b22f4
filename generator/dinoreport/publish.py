"""Commit a built site to a ``gh-pages`` branch and push it (history kept, nothing else touched).

What the tool wrote to the branch is recorded on the branch itself, in :data:`RECORD`
(``{path: git blob id}`` of every file of the site as it was published). The next publish
uses it to tell the files it wrote from files committed there by hand or by GitHub (``CNAME``,
which holds a custom domain set in the repository's settings):

- a file of ours that is gone from the new site is removed;
- a file that is not ours (never written, or changed on the branch since) and that the site
  does not contain is kept, and named in the result;
- a file that is not ours and that the site would replace with different content is refused by
  name, before anything is committed or pushed.

``replace=True`` publishes the site as the whole tree of the branch instead. A branch published
before the record existed counts the build's own manifest (:data:`dinoreport.outdir.MARKER`) as
the files we wrote.

Symbolic links in the site are refused, each named: copying one would publish whatever it
points to, inside the site or not.
"""
from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from .outdir import MARKER

__all__ = ["PublishError", "PublishResult", "RECORD", "publish_site", "site_files"]

RECORD = "data/.dinoreport-published.json"
_RECORD_FORMAT = "dinoreport-published-1"
_GIT_HELP = ("dinoreport publish needs git. Install it (Debian/Ubuntu: sudo apt-get install git; "
             "Fedora: sudo dnf install git; macOS: xcode-select --install or brew install git; "
             "others: https://git-scm.com/downloads) and check that `git --version` works in this shell.")


class PublishError(RuntimeError):
    """Publishing failed or was refused; the message names the step, the files and what to do."""


@dataclass(frozen=True)
class PublishResult:
    """What a publish did.

    Attributes
    ----------
    sha : str
        The commit now at the tip of the branch.
    kept : list of str
        Files on the branch that the tool did not write and the site does not contain; left there.
    replaced : list of str
        Files the tool did not write that ``replace=True`` removed or overwrote.
    """

    sha: str
    kept: list[str] = field(default_factory=list)
    replaced: list[str] = field(default_factory=list)


def _listing(names: list[str], n: int = 12) -> str:
    more = f"\n  ... and {len(names) - n} more" if len(names) > n else ""
    return "".join(f"\n  {x}" for x in names[:n]) + more


def _find_git() -> str:
    """The path of a working ``git`` on the user's PATH, else :class:`PublishError` saying how to get one."""
    exe = shutil.which("git")
    if exe is None:
        # which() skips a git without the execute bit; name it, it is the likelier mistake to fix
        for d in os.get_exec_path():
            p = Path(d or ".") / "git"
            if p.is_file():
                raise PublishError(f"{p} is on PATH but cannot be run (not executable). {_GIT_HELP}")
        raise PublishError(f"git was not found on PATH. {_GIT_HELP}")
    try:
        r = subprocess.run([exe, "--version"], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise PublishError(f"{exe} cannot be run ({getattr(e, 'strerror', None) or e}). {_GIT_HELP}") from None
    if r.returncode != 0 or not r.stdout.startswith("git version"):
        said = (r.stderr or r.stdout).strip() or f"exit status {r.returncode}"
        raise PublishError(f"`{exe} --version` did not work ({said}). {_GIT_HELP}")
    return exe


def _git(exe: str, *args: str, cwd: Path, check: bool = True, stdin: str | None = None) -> subprocess.CompletedProcess:
    # The user's own PATH: credential helpers and ssh are found through it.
    env = {**os.environ, "GIT_TERMINAL_PROMPT": "0"}
    try:
        # surrogateescape: a file name that is not UTF-8 goes back to git byte for byte
        r = subprocess.run([exe, *args], cwd=cwd, capture_output=True, encoding="utf-8",
                           errors="surrogateescape", env=env, input=stdin)
    except OSError as e:  # git went away or broke after _find_git checked it
        raise PublishError(f"git {' '.join(args)} could not be run ({e.strerror or e}). {_GIT_HELP}") from None
    if check and r.returncode != 0:
        raise PublishError(f"git {' '.join(args)} failed: {(r.stderr or r.stdout).strip()}")
    return r


def _remote_url(exe: str, remote: str, cwd: Path) -> str:
    """A remote name of the repository around ``cwd`` -> its URL; a URL is used as is, a path made absolute."""
    local = cwd / remote
    if "/" in remote and "://" not in remote and local.exists():
        # git runs in a temporary folder: a relative path must not be read from there
        return str(local.resolve())
    if "/" in remote or ":" in remote:
        return remote
    r = _git(exe, "remote", "get-url", remote, cwd=cwd, check=False)
    if r.returncode != 0:
        raise PublishError(f"no git remote named '{remote}' here; pass --remote URL")
    return r.stdout.strip()


def site_files(site: Path) -> list[str]:
    """The files of ``site`` to publish (posix-relative, sorted), or :class:`PublishError`.

    Refused, each named: symbolic links (to files or folders, inside the site or not; a copy
    would publish their targets) and anything that is not a plain file (a pipe, a socket).
    A ``.git`` at the top (the user's own repository of the site) is left out.
    """
    files, links, odd = [], [], []
    for dirpath, dirnames, filenames in os.walk(site):  # never follows links
        d = Path(dirpath)
        if d == site:
            dirnames[:] = [n for n in dirnames if n != ".git"]
            filenames = [n for n in filenames if n != ".git"]
        for name in sorted(dirnames):
            if (d / name).is_symlink():
                links.append(d / name)
        dirnames[:] = sorted(n for n in dirnames if not (d / n).is_symlink())
        for name in sorted(filenames):
            p = d / name
            mode = p.lstat().st_mode
            if stat.S_ISLNK(mode):
                links.append(p)
            elif not stat.S_ISREG(mode):
                odd.append(p.relative_to(site).as_posix())
            else:
                files.append(p.relative_to(site).as_posix())
    if links:
        shown = sorted(f"{p.relative_to(site).as_posix()} -> {os.readlink(p)}" for p in links)
        raise PublishError(
            f"{site} contains symbolic links; publish follows none (a link would push what it points "
            f"to, which may be outside the site):{_listing(shown)}\n"
            "Remove them, or replace each with a copy of what the site should contain, then publish "
            "again. Nothing was pushed.")
    if odd:
        raise PublishError(f"{site} contains entries that are not plain files:{_listing(sorted(odd))}\n"
                           "Remove them, then publish again. Nothing was pushed.")
    return sorted(files)


def _tree(exe: str, rev: str, cwd: Path) -> dict[str, tuple[str, str]]:
    """``{path: (mode, blob id)}`` of every file in the tree of ``rev``."""
    out = _git(exe, "ls-tree", "-r", "-z", "--full-tree", rev, cwd=cwd).stdout
    tree = {}
    for entry in filter(None, out.split("\0")):
        meta, path = entry.split("\t", 1)
        mode, _kind, sha = meta.split()
        tree[path] = (mode, sha)
    return tree


def _ours(exe: str, tip: dict[str, tuple[str, str]], cwd: Path) -> set[str]:
    """The files of the branch's tip that the tool wrote and that nobody changed since."""
    def blob(path: str):
        if path not in tip:
            return None
        try:
            return json.loads(_git(exe, "cat-file", "blob", tip[path][1], cwd=cwd).stdout)
        except ValueError:
            return None

    rec = blob(RECORD)
    if isinstance(rec, dict) and rec.get("format") == _RECORD_FORMAT and isinstance(rec.get("files"), dict):
        return {p for p, sha in rec["files"].items() if p in tip and tip[p][1] == sha} | {RECORD}
    # Published before the record existed: what the build wrote (its manifest) went there as is.
    man = blob(MARKER)
    if isinstance(man, dict) and isinstance(man.get("files"), dict):
        return {p for p in man["files"] if p in tip} | {MARKER}
    return set()


def _parents(path: str) -> list[str]:
    parts = path.split("/")
    return ["/".join(parts[:i]) for i in range(1, len(parts))]


def publish_site(site: Path, *, remote: str = "origin", branch: str = "gh-pages",
                 message: str = "Publish report", cwd: Path | None = None,
                 replace: bool = False) -> PublishResult:
    """Commit the files of ``site`` to ``branch`` on ``remote`` and push; see the module docstring.

    The branch's earlier commits are kept (the new commit is their child); a branch that does
    not exist yet is created. Every refusal comes before the commit: nothing is pushed then.

    Parameters
    ----------
    site : Path
        A folder written by ``dinoreport build``.
    remote : str
        A remote name of the repository around ``cwd``, or a URL or path.
    branch, message : str
        The branch to commit to and the commit message.
    cwd : Path, optional
        Where remote names are looked up; the current folder by default.
    replace : bool
        Publish the site as the whole tree of the branch: files on it that the tool did not write
        are removed or overwritten instead of kept or refused.
    """
    site = Path(site).resolve()
    if not (site / "index.html").is_file() or not (site / "data" / "build.json").is_file():
        raise PublishError(f"{site} is not a built site (no index.html / data/build.json); run `dinoreport build` first")
    files = site_files(site)
    if RECORD in files:
        raise PublishError(f"{site / RECORD} is the record publish writes on the branch; remove it from the site")
    git = _find_git()
    url = _remote_url(git, remote, Path(cwd or Path.cwd()))
    with tempfile.TemporaryDirectory(prefix="dinoreport-publish-") as tmp:
        work = Path(tmp)
        _git(git, "init", "-q", cwd=work)
        _git(git, "checkout", "-q", "-b", branch, cwd=work)
        # Asked first so that a remote that cannot be read is an error, not a branch to create.
        heads = _git(git, "ls-remote", url, f"refs/heads/{branch}", cwd=work).stdout
        fetched = bool(heads.strip())
        if fetched:
            _git(git, "fetch", "-q", "--depth=1", url, f"refs/heads/{branch}", cwd=work)
        tip: dict[str, tuple[str, str]] = {}
        if fetched:
            # HEAD moves to the tip, the index stays empty: it is filled from the site alone below.
            _git(git, "reset", "-q", "--soft", "FETCH_HEAD", cwd=work)
            tip = _tree(git, "FETCH_HEAD", work)
        for rel in files:
            dest = work / rel
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(site / rel, dest, follow_symlinks=False)
        _git(git, "add", "-A", cwd=work)
        new = _tree(git, _git(git, "write-tree", cwd=work).stdout.strip(), work)

        ours = _ours(git, tip, work)
        new_dirs = {d for p in new for d in _parents(p)}
        kept, clash = [], []
        for path, (mode, sha) in sorted(tip.items()):
            if path in ours or path == RECORD:
                continue  # overwritten by the site or, gone from it, removed
            if path in new:
                if new[path][1] != sha:
                    clash.append(path)
            elif path in new_dirs or any(d in new for d in _parents(path)):
                clash.append(path)  # a file where the site has a folder, or the reverse
            else:
                kept.append(path)
        if clash and not replace:
            raise PublishError(
                f"{branch} on {remote} has files that dinoreport did not write (or that were changed "
                f"there since), and the site would replace them:{_listing(clash)}\n"
                "Put the version you want in the site, or pass --replace to publish the site as the "
                "whole branch (the old files stay in the branch's history). Nothing was pushed.")
        if replace:
            replaced, kept = sorted(clash + kept), []
        else:
            replaced = []
        if kept:
            entries = "".join(f"{tip[p][0]} {tip[p][1]}\t{p}\0" for p in kept)
            _git(git, "update-index", "--add", "-z", "--index-info", cwd=work, stdin=entries)

        record = {"format": _RECORD_FORMAT, "files": {p: sha for p, (_m, sha) in sorted(new.items())}}
        (work / RECORD).parent.mkdir(parents=True, exist_ok=True)
        (work / RECORD).write_text(json.dumps(record, indent=1, sort_keys=True) + "\n", encoding="utf-8")
        _git(git, "add", "--", RECORD, cwd=work)

        # Compared as trees, not by git's (translated) "nothing to commit": the worktree lacks
        # the kept files, so git would call them unstaged deletions.
        same = fetched and (_git(git, "write-tree", cwd=work).stdout.strip()
                            == _git(git, "rev-parse", "FETCH_HEAD^{tree}", cwd=work).stdout.strip())
        if not same:
            ident = ["-c", "user.name=dinoreport", "-c", "user.email=dinoreport@localhost"]
            _git(git, *ident, "commit", "-q", "-m", message, cwd=work)
        _git(git, "push", "-q", url, f"HEAD:refs/heads/{branch}", cwd=work)
        return PublishResult(_git(git, "rev-parse", "HEAD", cwd=work).stdout.strip(), kept, replaced)

"""Commit a built site to a ``gh-pages`` branch and push it (history kept, nothing else touched)."""
from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

__all__ = ["PublishError", "publish_site"]


class PublishError(RuntimeError):
    """Publishing failed; the message names the step and what git said."""


def _git(*args: str, cwd: Path, check: bool = True) -> subprocess.CompletedProcess:
    env = {"GIT_TERMINAL_PROMPT": "0", "PATH": "/usr/bin:/bin:/usr/local/bin"}
    import os

    env = {**os.environ, **env}
    r = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, env=env)
    if check and r.returncode != 0:
        raise PublishError(f"git {' '.join(args)} failed: {(r.stderr or r.stdout).strip()}")
    return r


def _remote_url(remote: str, cwd: Path) -> str:
    """A remote name of the repository around ``cwd`` -> its URL; a URL or path is used as is."""
    if "/" in remote or ":" in remote:
        return remote
    r = _git("remote", "get-url", remote, cwd=cwd, check=False)
    if r.returncode != 0:
        raise PublishError(f"no git remote named '{remote}' here; pass --remote URL")
    return r.stdout.strip()


def publish_site(site: Path, *, remote: str = "origin", branch: str = "gh-pages",
                 message: str = "Publish report", cwd: Path | None = None) -> str:
    """Commit the files of ``site`` as the whole tree of ``branch`` on ``remote``; return the commit sha.

    The branch's earlier commits are kept (the new commit is their child); a branch that does
    not exist yet is created.
    """
    site = Path(site).resolve()
    if not (site / "index.html").is_file() or not (site / "data" / "build.json").is_file():
        raise PublishError(f"{site} is not a built site (no index.html / data/build.json); run `dinoreport build` first")
    url = _remote_url(remote, Path(cwd or Path.cwd()))
    with tempfile.TemporaryDirectory(prefix="dinoreport-publish-") as tmp:
        work = Path(tmp)
        _git("init", "-q", cwd=work)
        _git("checkout", "-q", "-b", branch, cwd=work)
        fetched = _git("fetch", "-q", "--depth=1", url, branch, cwd=work, check=False).returncode == 0
        if fetched:
            _git("reset", "-q", "FETCH_HEAD", cwd=work)
        for item in sorted(site.iterdir()):
            if item.name == ".git":  # the user's own repository of the site (kept by rebuilds)
                continue
            dest = work / item.name
            if item.is_dir():
                shutil.copytree(item, dest)
            else:
                shutil.copy2(item, dest)
        _git("add", "-A", cwd=work)
        ident = ["-c", "user.name=dinoreport", "-c", "user.email=dinoreport@localhost"]
        r = _git(*ident, "commit", "-q", "-m", message, cwd=work, check=False)
        if r.returncode != 0 and "nothing to commit" not in (r.stdout + r.stderr):
            raise PublishError(f"git commit failed: {(r.stderr or r.stdout).strip()}")
        _git("push", "-q", url, f"HEAD:refs/heads/{branch}", cwd=work)
        return _git("rev-parse", "HEAD", cwd=work).stdout.strip()

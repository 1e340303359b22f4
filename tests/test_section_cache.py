"""Section cache entries are data: they round-trip by fields and can never run code (issue 10, item 5)."""
from __future__ import annotations

import hashlib
import json
import os
import pickle
from pathlib import Path

import numpy as np
import pytest

from dinoreport.page import Figure, Panel, Row, Table
from dinoreport.analyses.registry import SectionOutput
from dinoreport.section_cache import EntryError, SectionCache, decode, encode

KEY = "ab" * 32
PNG = b"png bytes"
PNG_REL = f"assets/fig/{hashlib.sha256(PNG).hexdigest()[:20]}.png"  # FigureWriter's content-hash name


def _output() -> SectionOutput:
    fig = Figure(id="within-pca-dog", kind="within_pca", caption="c", image="dog",
                 rows=(Row("Photo", (Panel(PNG_REL, "Photo dog"),)),), column_labels=("RGB",))
    tab = Table(id="t", kind="feature_stats", caption="t", columns=("a", "b"), rows=(("x", 1.5), ("y", float("nan"))))
    return SectionOutput(
        results={"within_image_pca": [{"model": "m", "ratio": [0.5, 0.25]}]},
        figures=[fig], tables=[tab],
        explorer={"features": {"m": {"dog": {"h": 2, "b64": "AA=="}}}},
        shared={"masks": {"m": {"dog": np.array([[True, False]])}}, "pairs": {("m", "n"): np.float32(0.5)}},
    )


class _Boom:
    def __reduce__(self):
        return (os.system, (f"touch {Path.cwd() / 'PWNED'}",))



def test_output_round_trips_by_fields(tmp_path):
    (tmp_path / "site" / "assets" / "fig").mkdir(parents=True)
    (tmp_path / "site" / PNG_REL).write_bytes(PNG)
    cache = SectionCache(tmp_path / "cache")
    out = _output()
    cache.put(KEY, out, [PNG_REL], tmp_path / "site")
    assert sorted(p.suffix for p in (tmp_path / "cache" / "sections").iterdir()) == [".json", ".npz"]
    got, files = cache.get(KEY, tmp_path / "new")
    assert files == [PNG_REL] and (tmp_path / "new" / PNG_REL).read_bytes() == PNG
    assert got.figures == out.figures and got.results == out.results and got.explorer == out.explorer
    assert got.tables[0].rows[0] == ("x", 1.5) and np.isnan(got.tables[0].rows[1][1])
    np.testing.assert_array_equal(got.shared["masks"]["m"]["dog"], out.shared["masks"]["m"]["dog"])
    assert got.shared["pairs"][("m", "n")] == np.float32(0.5) and isinstance(got.shared["pairs"][("m", "n")], np.float32)


def test_a_planted_pickle_never_runs(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    sections = tmp_path / "cache" / "sections"
    sections.mkdir(parents=True)
    (sections / f"{KEY}.pkl").write_bytes(pickle.dumps((_Boom(), [])))
    # Even a JSON entry cannot name a class outside the fixed list.
    (sections / f"{'cd' * 32}.json").write_text(json.dumps(
        {"format": "dinoreport-section-2", "files": [], "npz_sha256": None,
         "output": {"__class__": "Popen", "fields": {"args": "touch PWNED"}}}))
    cache = SectionCache(tmp_path / "cache")
    assert cache.get(KEY, tmp_path / "site") is None
    assert cache.get("cd" * 32, tmp_path / "site") is None
    assert not (tmp_path / "PWNED").exists()
    assert not (sections / f"{'cd' * 32}.json").exists()  # damaged entries are dropped


@pytest.mark.parametrize("entry", [
    [], {"format": "dinoreport-section-2"}, {"format": "dinoreport-section-2", "files": ["../../x.png"],
                                             "npz_sha256": None, "output": None},
    {"format": "dinoreport-section-2", "files": [], "npz_sha256": None,
     "output": {"__class__": "Figure", "fields": {"id": "x", "no_such_field": 1}}},
])
def test_entries_of_the_wrong_shape_are_recomputed(tmp_path, entry):
    sections = tmp_path / "sections"
    sections.mkdir()
    (sections / f"{KEY}.json").write_text(json.dumps(entry))
    assert SectionCache(tmp_path).get(KEY, tmp_path / "site") is None
    assert not (tmp_path / "x.png").exists()


def test_fields_added_with_defaults_still_round_trip():
    arrays: dict = {}
    tree = encode(Panel("a.png", "alt", "PC1"), arrays)
    assert decode(tree, arrays) == Panel("a.png", "alt", "PC1")
    tree["fields"].pop("label")  # an entry written before a field existed
    assert decode(tree, arrays) == Panel("a.png", "alt", "")


def test_values_that_are_not_data_are_not_cached(tmp_path):
    cache = SectionCache(tmp_path)
    cache.put(KEY, SectionOutput(shared={"f": lambda: 1}), [], tmp_path)
    assert not (tmp_path / "sections" / f"{KEY}.json").exists()
    with pytest.raises(EntryError):
        encode(np.array([object()]), {})


def test_a_cached_figure_that_does_not_match_its_name_is_not_published(tmp_path):
    """Item 7: garbage planted under a figure's content-hash name is never copied into a site;
    the section is computed again and the next put repairs the file."""
    (tmp_path / "site" / "assets" / "fig").mkdir(parents=True)
    (tmp_path / "site" / PNG_REL).write_bytes(PNG)
    cache = SectionCache(tmp_path / "cache")
    cache.put(KEY, _output(), [PNG_REL], tmp_path / "site")
    cached_fig = tmp_path / "cache" / "figures" / Path(PNG_REL).name
    cached_fig.write_bytes(b"<svg onload=alert(1)>")  # planted garbage
    assert cache.get(KEY, tmp_path / "new") is None  # recompute
    assert not (tmp_path / "new" / PNG_REL).exists()
    cache.put(KEY, _output(), [PNG_REL], tmp_path / "site")
    assert cached_fig.read_bytes() == PNG
    assert cache.get(KEY, tmp_path / "again") is not None
    assert (tmp_path / "again" / PNG_REL).read_bytes() == PNG


def _stored(tmp_path) -> SectionCache:
    (tmp_path / "site" / "assets" / "fig").mkdir(parents=True, exist_ok=True)
    (tmp_path / "site" / PNG_REL).write_bytes(PNG)
    cache = SectionCache(tmp_path / "cache")
    cache.put(KEY, _output(), [PNG_REL], tmp_path / "site")
    assert cache.get(KEY, tmp_path / "check") is not None
    return cache


def _edit(tmp_path, change) -> None:
    p = tmp_path / "cache" / "sections" / f"{KEY}.json"
    meta = json.loads(p.read_text())
    change(meta)
    p.write_text(json.dumps(meta))


def _panel(meta) -> dict:
    """The fields of the (one) Panel in an entry's JSON tree."""
    fig = meta["output"]["fields"]["figures"][0]["fields"]
    return fig["rows"]["__tuple__"][0]["fields"]["panels"]["__tuple__"][0]["fields"]


@pytest.mark.parametrize("path", ["../../../../outside/secret.txt", "/etc/passwd", "assets/fig/../../x.png",
                                  "assets/../data/results.json", "assets/fig/notahash.png"])
def test_a_panel_path_outside_the_figure_store_is_refused(tmp_path, path):
    """Issue 20 item 2: a panel path that is not a content-hash name of the figure store is
    refused (even with the entry's digest and file list made to agree with it)."""
    from dinoreport.section_cache import _entry_sha256

    cache = _stored(tmp_path)

    def change(meta):
        _panel(meta)["file"] = path
        meta["files"] = sorted(meta["files"] + [path])
        meta["sha256"] = _entry_sha256(meta["output"], meta["files"], meta["npz_sha256"])

    _edit(tmp_path, change)
    assert cache.get(KEY, tmp_path / "new") is None
    assert not (tmp_path / "cache" / "sections" / f"{KEY}.json").exists()


def test_a_panel_must_be_one_of_the_entry_files(tmp_path):
    """A panel pointed at another cached figure (a valid name, not among the entry's files)."""
    from dinoreport.section_cache import _entry_sha256

    cache = _stored(tmp_path)
    other = f"assets/fig/{hashlib.sha256(b'other').hexdigest()[:20]}.png"

    def change(meta):
        _panel(meta)["file"] = other
        meta["sha256"] = _entry_sha256(meta["output"], meta["files"], meta["npz_sha256"])

    _edit(tmp_path, change)
    assert cache.get(KEY, tmp_path / "new") is None


@pytest.mark.parametrize("what", ["number", "panel", "files", "table"])
def test_an_edited_entry_fails_its_digest(tmp_path, what):
    """Issue 20 item 3: a number, a panel or a table cell edited in a section JSON is refused."""
    cache = _stored(tmp_path)
    other = f"assets/fig/{hashlib.sha256(b'other').hexdigest()[:20]}.png"

    def change(meta):
        if what == "number":
            meta["output"]["fields"]["results"]["within_image_pca"][0]["ratio"][0] = 12345.678
        elif what == "panel":
            _panel(meta)["file"] = other
            meta["files"] = sorted(meta["files"] + [other])
        elif what == "files":
            meta["files"] = []
        else:
            meta["output"]["fields"]["tables"][0]["fields"]["rows"]["__tuple__"][0]["__tuple__"][1] = 9.5

    _edit(tmp_path, change)
    assert cache.get(KEY, tmp_path / "new") is None
    assert not (tmp_path / "new" / other).exists()


def test_a_page_never_embeds_a_file_from_outside_its_figure_store(tmp_path):
    """The renderer's own guard, whatever produced the panel (a user analysis, a cache)."""
    from dinoreport.assets import Assets
    from dinoreport.page import RenderError

    (tmp_path / "outside").mkdir()
    (tmp_path / "outside" / "secret.txt").write_text("secret")
    site = tmp_path / "site"
    (site / "assets" / "fig").mkdir(parents=True)
    (site / PNG_REL).write_bytes(PNG)
    link = f"assets/fig/{hashlib.sha256(b'l').hexdigest()[:20]}.png"
    (site / link).symlink_to(tmp_path / "outside" / "secret.txt")
    assets = Assets(site, inline=True)
    assert assets.url(PNG_REL).startswith("data:image/png;base64,")
    for rel in ("../outside/secret.txt", "assets/fig/../../../outside/secret.txt", link):
        with pytest.raises(RenderError):
            assets.url(rel)


def test_every_module_of_the_package_is_in_the_section_key(tmp_path):
    """Issue 21 item 2 (the drawing.py bug): the code digest in every section key covers each
    module and figure template of the package, not a hand list of folders."""
    import shutil

    import dinoreport
    from dinoreport.codehash import _folder_sha256

    pkg = tmp_path / "pkg"
    shutil.copytree(Path(dinoreport.__file__).parent, pkg, ignore=shutil.ignore_patterns("__pycache__"))
    files = sorted(p for p in pkg.rglob("*") if p.suffix in (".py", ".j2"))
    assert any(p.name == "drawing.py" for p in files)
    seen = {_folder_sha256(pkg)}
    for p in files:
        p.write_text(p.read_text() + "\n# edited\n")
        seen.add(_folder_sha256(pkg))
    assert len(seen) == len(files) + 1


def test_a_user_analysis_key_covers_the_modules_beside_it(tmp_path):
    import types

    from dinoreport.codehash import module_code_sha256, package_sha256

    (tmp_path / "mine.py").write_text("X = 1\n")
    (tmp_path / "zz_helper.py").write_text("Y = 1\n")
    mod = types.ModuleType("dinoreport_site_analyses.mine")
    mod.__file__ = str(tmp_path / "mine.py")
    before = module_code_sha256(mod)
    (tmp_path / "zz_helper.py").write_text("Y = 2\n")
    assert module_code_sha256(mod) != before
    import dinoreport.analyses.within_pca as builtin
    assert module_code_sha256(builtin) == package_sha256()

"""Section cache entries are data: they round-trip by fields and can never run code (issue 10, item 5)."""
from __future__ import annotations

import hashlib
import json
import os
import pickle
from pathlib import Path

import numpy as np
import pytest

from generator.page import Figure, Panel, Row, Table
from generator.analyses.registry import SectionOutput
from generator.section_cache import EntryError, SectionCache, decode, encode

KEY = "ab" * 32


def _output() -> SectionOutput:
    fig = Figure(id="within-pca-dog", kind="within_pca", caption="c", image="dog",
                 rows=(Row("Photo", (Panel("assets/fig/aaaa.png", "Photo dog"),)),), column_labels=("RGB",))
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


PNG = b"png bytes"
PNG_REL = f"assets/fig/{hashlib.sha256(PNG).hexdigest()[:20]}.png"  # FigureWriter's content-hash name


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
        {"format": "dinoreport-section-1", "files": [], "npz_sha256": None,
         "output": {"__class__": "Popen", "fields": {"args": "touch PWNED"}}}))
    cache = SectionCache(tmp_path / "cache")
    assert cache.get(KEY, tmp_path / "site") is None
    assert cache.get("cd" * 32, tmp_path / "site") is None
    assert not (tmp_path / "PWNED").exists()
    assert not (sections / f"{'cd' * 32}.json").exists()  # damaged entries are dropped


@pytest.mark.parametrize("entry", [
    [], {"format": "dinoreport-section-1"}, {"format": "dinoreport-section-1", "files": ["../../x.png"],
                                             "npz_sha256": None, "output": None},
    {"format": "dinoreport-section-1", "files": [], "npz_sha256": None,
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

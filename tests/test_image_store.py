"""ImageStore: preprocessed images held on disk during a build and read back on demand, and the
scratch folder that holds them for exactly as long as the build runs."""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from dinoreport.config import load_config
from dinoreport.images import ImageStore
from dinoreport.pipeline import BuildOptions, build

from conftest import planted_photo, write_project

ONE_MODEL = '[[models]]\nid = "in1k_convnext_tiny"\ntimm = "convnext_tiny.fb_in1k"\n'


def _arrays(n: int, seed: int = 0) -> dict[str, np.ndarray]:
    """``n`` random (H, W, 3) uint8 images of a few different shapes."""
    rng = np.random.default_rng(seed)
    return {f"im{i}": rng.integers(0, 256, (8 + 4 * (i % 3), 12 + 4 * (i % 2), 3), dtype=np.uint8)
            for i in range(n)}


def _store(folder, arrays: dict[str, np.ndarray]) -> ImageStore:
    store = ImageStore(folder)
    for iid, rgb in arrays.items():
        store.add(iid, rgb)
    return store


def test_store_returns_exactly_the_arrays_written(tmp_path):
    arrays = _arrays(5)
    store = _store(tmp_path / "s", arrays)
    assert list(store) == list(arrays) and len(store) == 5  # the order they were added in
    for iid, rgb in arrays.items():
        got = store[iid]
        assert got.dtype == np.uint8 and got.shape == rgb.shape
        np.testing.assert_array_equal(got, rgb)
        assert store.shape(iid) == rgb.shape
    # A read is a fresh array: changing it does not change what the next read returns.
    store["im0"][:] = 0
    np.testing.assert_array_equal(store["im0"], arrays["im0"])


def test_shapes_and_membership_read_no_file(tmp_path):
    arrays = _arrays(3)
    store = _store(tmp_path / "s", arrays)
    for f in (tmp_path / "s").iterdir():
        f.unlink()
    assert store.shape("im2") == arrays["im2"].shape and "im2" in store and "nope" not in store
    with pytest.raises(FileNotFoundError):  # the pixels do come from the file
        store["im2"]


def test_missing_image_is_a_key_error_and_an_id_is_written_once(tmp_path):
    store = _store(tmp_path / "s", _arrays(2))
    with pytest.raises(KeyError):
        store["im9"]
    with pytest.raises(KeyError):
        store.shape("im9")
    assert store.get("im9") is None
    with pytest.raises(ValueError, match="'im1' is already in the store"):
        store.add("im1", np.zeros((4, 4, 3), np.uint8))


def test_parallel_reads_from_threads_give_the_right_arrays(tmp_path):
    arrays = _arrays(12)
    store = _store(tmp_path / "s", arrays)
    order = [f"im{i % 12}" for i in np.random.default_rng(1).permutation(240)]
    with ThreadPoolExecutor(8) as pool:
        got = list(pool.map(lambda iid: (iid, store[iid]), order))
    for iid, rgb in got:
        np.testing.assert_array_equal(rgb, arrays[iid])


@pytest.fixture()
def small_project(tmp_path, monkeypatch):
    monkeypatch.setenv("DINOREPORT_CACHE", str(tmp_path / "cache"))
    cfg = write_project(tmp_path / "p", {"a": planted_photo(224, 224), "b": planted_photo(224, 256, "br")},
                        models=ONE_MODEL, highres=[224])
    return load_config(cfg)


def _spy_extract(monkeypatch, fail: bool = False) -> list:
    """Record what each build decoded, and where its image files were, as extraction starts."""
    import dinoreport.pipeline as pipeline

    seen = []
    real = pipeline.extract

    def spy(cfg, opts, plan, decoded, progress, cache):
        files = sorted(p for p in opts.out.parent.glob(f".{opts.out.name}.tmp-*/**/*") if p.is_file())
        seen.append((decoded.images, files))
        if fail:
            raise RuntimeError("planted failure after decode")
        return real(cfg, opts, plan, decoded, progress, cache)

    monkeypatch.setattr(pipeline, "extract", spy)
    return seen


def test_build_reads_images_from_a_scratch_folder_removed_at_the_end(small_project, tmp_path, monkeypatch):
    seen = _spy_extract(monkeypatch)
    out = tmp_path / "site"
    build(small_project, BuildOptions(out=out, random_init=True, quiet=True, analyses=("within_pca",)))
    [(images, files)] = seen
    assert isinstance(images, ImageStore) and sorted(images) == ["a", "b"]
    assert [f.suffix for f in files] == [".npy", ".npy"]  # beside the output, one file per image
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # and gone after


def test_failing_build_removes_the_scratch_folder(small_project, tmp_path, monkeypatch):
    seen = _spy_extract(monkeypatch, fail=True)
    with pytest.raises(RuntimeError, match="planted failure"):
        build(small_project, BuildOptions(out=tmp_path / "site", random_init=True, quiet=True,
                                          analyses=("within_pca",)))
    [(_, files)] = seen
    assert len(files) == 2  # the images had been written
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []

"""extract_all: batches of same-size images, a prefetch thread and a cache-writer thread give
the same entries as one forward pass per image."""
from __future__ import annotations

import os

import numpy as np
import pytest
import torch

from dinoreport.features import FeatureCache, extract_all
from dinoreport.images import ImageStore

from conftest import rot_in_place


class _Tiny:
    """A stand-in backbone: one strided conv, two 'stages'."""

    is_vit = False

    def __init__(self):
        torch.manual_seed(0)
        self.model = torch.nn.Conv2d(3, 4, 2, stride=2)

    def to(self, dev):
        self.model.to(dev)
        return self

    def normalize(self, x):
        return x.permute(0, 3, 1, 2).float() / 255.0 - 0.5

    def forward(self, x):
        y = self.model(x)
        return {"S1": y, "S2": torch.nn.functional.avg_pool2d(y, 2)}


def test_batched_threaded_extraction_matches_one_image_at_a_time(tmp_path):
    rng = np.random.default_rng(0)
    shapes = [(8, 8, 3)] * 5 + [(8, 12, 3)] * 2 + [(16, 8, 3)]
    images = {f"im{i}": rng.integers(0, 256, s, dtype=np.uint8) for i, s in enumerate(shapes)}
    cache = FeatureCache(tmp_path / "cache")
    done = []
    keys = extract_all({"m": 1}, images, cache, make_backbone=_Tiny, device="cpu", cpu_batch_size=2,
                       advance=done.append)
    assert sorted(keys) == sorted(images) and sum(done) == len(images)
    assert 2 in done  # same-size images went through together
    assert cache.stats.computed == len(images)
    ref = _Tiny()
    for iid, rgb in images.items():
        entry = cache.get(keys[iid])
        assert entry is not None, iid
        with torch.inference_mode():
            want = ref.forward(ref.normalize(torch.from_numpy(rgb)[None]))
        for stage, t in want.items():
            np.testing.assert_allclose(entry[stage], t[0].numpy(), rtol=1e-5, atol=1e-6)
    # A second call finds every entry and computes nothing.
    again = FeatureCache(tmp_path / "cache")
    assert extract_all({"m": 1}, images, again, make_backbone=_Tiny, device="cpu") == keys
    assert again.stats.hits == len(images) and again.stats.computed == 0


def test_verified_entries_are_trusted_until_their_file_changes(tmp_path, monkeypatch):
    rng = np.random.default_rng(1)
    images = {f"im{i}": rng.integers(0, 256, (8, 8, 3), dtype=np.uint8) for i in range(2)}
    keys = extract_all({"m": 2}, images, FeatureCache(tmp_path), make_backbone=_Tiny, device="cpu")
    cache = FeatureCache(tmp_path)
    real_get = cache.get

    def no_read(key):
        raise AssertionError("a verified, unchanged entry must not be read again")

    monkeypatch.setattr(cache, "get", no_read)
    assert all(cache.has(k) for k in keys.values())
    # Alter one byte of one entry: its size/mtime no longer match the stamp, so it is read,
    # fails its sha256 and is removed.
    monkeypatch.setattr(cache, "get", real_get)
    p = cache.path(keys["im0"])
    data = bytearray(p.read_bytes())
    data[-3] ^= 0xFF
    p.write_bytes(bytes(data))
    assert not cache.has(keys["im0"]) and cache.stats.damaged == 1 and not p.exists()
    assert cache.has(keys["im1"])


def test_stage_reads_one_channel_alone(tmp_path):
    from dinoreport.features import FeatureCache

    cache = FeatureCache(tmp_path)
    x = np.arange(5 * 6 * 7, dtype=np.float32).reshape(5, 6, 7)
    cache.put("ab" * 32, {"C2": x, "C3": x[:, ::2, ::2].copy()})
    for c in range(5):
        assert np.array_equal(cache.stage("ab" * 32, "C2", c), x[c])
    assert np.array_equal(cache.stage("ab" * 32, "C3"), x[:, ::2, ::2])


def test_cpu_takes_one_image_at_a_time_by_default(tmp_path):
    # Batching measured slower per image on a CPU: batch_size applies to accelerators only.
    rng = np.random.default_rng(1)
    images = {f"im{i}": rng.integers(0, 256, (8, 8, 3), dtype=np.uint8) for i in range(5)}
    done = []
    extract_all({"m": 1}, images, FeatureCache(tmp_path), make_backbone=_Tiny, device="cpu", batch_size=4,
                advance=done.append)
    assert done == [1] * 5


def test_images_from_a_store_get_the_keys_of_the_same_pixels_in_memory(tmp_path):
    """Images held on disk (as a build holds them) hash to the keys the same pixels in memory
    got, so features cached before still hit."""
    rng = np.random.default_rng(3)
    images = {f"im{i}": rng.integers(0, 256, (8, 8 + 4 * (i % 2), 3), dtype=np.uint8) for i in range(4)}
    keys = extract_all({"m": 1}, images, FeatureCache(tmp_path / "cache"), make_backbone=_Tiny, device="cpu")
    store = ImageStore(tmp_path / "images")
    for iid, rgb in images.items():
        store.add(iid, rgb)
    again = FeatureCache(tmp_path / "cache")
    assert extract_all({"m": 1}, store, again, make_backbone=_Tiny, device="cpu") == keys
    assert (again.stats.hits, again.stats.computed) == (4, 0)


def test_freed_heap_memory_goes_back_to_the_system():
    """What a CPU pass leaves behind: many freed mid-size blocks under one still in use, which
    glibc keeps resident until trimmed."""
    import gc

    from dinoreport.features import _malloc_trim, give_back_freed_memory

    if _malloc_trim() is None:
        pytest.skip("no glibc malloc_trim here")

    def rss_mib() -> float:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20

    blocks = [np.ones(12_000) for _ in range(2000)]  # 96 KB each, from the heap: 190 MB
    keep = np.ones(12_000)  # allocated last: the heap cannot simply shrink from its top
    del blocks
    gc.collect()
    before = rss_mib()
    give_back_freed_memory()
    assert rss_mib() < before - 100, (before, rss_mib())
    assert keep.sum() == 12_000


def test_bytes_changed_in_place_are_caught_when_a_stage_is_read(tmp_path):
    from dinoreport.features import DamagedEntry

    rng = np.random.default_rng(2)
    images = {"im0": rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)}
    key = extract_all({"m": 3}, images, FeatureCache(tmp_path), make_backbone=_Tiny, device="cpu")["im0"]
    p = FeatureCache(tmp_path).path(key)
    rot_in_place(p)
    cache = FeatureCache(tmp_path)  # a later build: the stamp still vouches for the file
    assert cache.has(key)
    # The last stage's bytes sit at the end of the file: reading S1 alone is still sound...
    last = _stored_order(p)[-1]
    sound = [s for s in ("S1", "S2") if s != last][0]
    assert cache.stage(key, sound).shape[0] == 4
    # ...the altered stage is refused, with the entry named, and removed.
    with pytest.raises(DamagedEntry, match=str(p.name)):
        cache.stage(key, last)
    assert not p.exists() and cache.stats.damaged == 1 and not cache.has(key)


def test_a_channel_read_is_checked_too(tmp_path):
    from dinoreport.features import DamagedEntry

    cache = FeatureCache(tmp_path)
    x = np.arange(4 * 3 * 3, dtype=np.float32).reshape(4, 3, 3)
    cache.put("cd" * 32, {"C2": x})
    rot_in_place(cache.path("cd" * 32))
    with pytest.raises(DamagedEntry):
        FeatureCache(tmp_path).stage("cd" * 32, "C2", 1)


def test_entries_without_stage_digests_are_checked_whole(tmp_path):
    """Entries written before per-stage digests: still read, and still checked."""
    from safetensors.numpy import save_file

    from dinoreport.features import FORMAT, DamagedEntry

    cache = FeatureCache(tmp_path)
    x = {"C2": np.ones((2, 2, 2), np.float32), "C3": np.zeros((2, 1, 1), np.float32)}
    cache.path("ef" * 32).parent.mkdir(parents=True)
    save_file(x, str(cache.path("ef" * 32)), metadata={"format": FORMAT, "sha256": FeatureCache._digest(x)})
    assert np.array_equal(cache.stage("ef" * 32, "C3"), x["C3"])
    rot_in_place(cache.path("ef" * 32))
    with pytest.raises(DamagedEntry):
        FeatureCache(tmp_path).stage("ef" * 32, "C3")


def _stored_order(p) -> list[str]:
    """The tensor names of a safetensors file in the order their bytes are stored."""
    import json
    import struct

    raw = p.read_bytes()
    header = json.loads(raw[8:8 + struct.unpack("<Q", raw[:8])[0]])
    header.pop("__metadata__", None)
    return sorted(header, key=lambda k: header[k]["data_offsets"][0])


def test_heap_is_trimmed_only_when_resident_memory_has_grown(monkeypatch):
    """A trim after every pass cost 30-70 ms each; passes that reuse freed blocks skip it."""
    from dinoreport import features

    rss = iter([1000.0, 1050.0, 1100.0, 1200.0, 900.0, 950.0, 1040.0, 910.0])
    monkeypatch.setattr(features, "resident_mib", lambda: next(rss))
    calls = []
    monkeypatch.setattr(features, "give_back_freed_memory", lambda: calls.append(1))
    trim = features.HeapTrimmer(slack_mib=128)          # floor 1000
    assert [trim(), trim()] == [False, False]            # 1050, 1100: within the slack
    assert trim() is True and len(calls) == 1            # 1200: grown; after it 900
    assert [trim(), trim()] == [False, True]             # 950 kept, 1040 > 900 + 128
    assert trim.trims == 2


def test_heap_trimmer_trims_every_time_without_proc(monkeypatch):
    from dinoreport import features

    monkeypatch.setattr(features, "resident_mib", lambda: None)
    calls = []
    monkeypatch.setattr(features, "give_back_freed_memory", lambda: calls.append(1))
    trim = features.HeapTrimmer()
    assert trim() and trim() and len(calls) == 2

"""Weight resolution order: local file, HF cache, hub (probed once, only when needed)."""
from pathlib import Path

import pytest

import dinoreport.weights as W
from dinoreport.config import ModelSpec

A = ModelSpec("a", "convnext_tiny.fb_in1k", "A")
B = ModelSpec("b", "vit_small_patch16_dinov3.lvd1689m", "B")


def fake(found_offline: set[str], found_online: set[str], calls: list):
    def resolve(spec, *, online):
        calls.append((spec.id, online))
        if spec.id in found_offline or (online and spec.id in found_online):
            return W.ResolvedWeights(Path(f"/w/{spec.id}"), "hub" if online else "hf-cache", "0" * 64)
        return None
    return resolve


def test_hub_not_probed_when_everything_is_local(monkeypatch):
    calls, probes = [], []
    monkeypatch.setattr(W, "resolve_weights", fake({"a", "b"}, set(), calls))
    got = W.resolve_all((A, B), reachable=lambda: probes.append(1) or True)
    assert {k: v.source for k, v in got.items()} == {"a": "hf-cache", "b": "hf-cache"}
    assert probes == [] and all(not online for _, online in calls)


def test_hub_used_only_for_missing_models(monkeypatch):
    calls = []
    monkeypatch.setattr(W, "resolve_weights", fake({"a"}, {"b"}, calls))
    got = W.resolve_all((A, B), reachable=lambda: True)
    assert {k: v.source for k, v in got.items()} == {"a": "hf-cache", "b": "hub"}
    assert calls == [("a", False), ("b", False), ("b", True)]


def test_unreachable_hub_names_every_missing_model(monkeypatch):
    monkeypatch.setattr(W, "resolve_weights", fake(set(), {"a", "b"}, []))
    with pytest.raises(W.WeightsError, match=r"(?s)- a \(convnext_tiny\.fb_in1k\).*- b \(vit_small.*--random-init"):
        W.resolve_all((A, B), reachable=lambda: False)


def test_offline_env_skips_the_probe(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert W.hub_reachable(timeout=30) is False

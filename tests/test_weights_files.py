"""Weights files are read as tensors only, and a bad one is named with what to do (issue 10, items 5 and C)."""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from dinoreport.config import ModelSpec
from dinoreport.weights import ResolvedWeights, WeightsError, read_state_dict

from conftest import planted_photo, write_project

SPEC = ModelSpec("m", "convnext_tiny.fb_in1k", "M")


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "dinoreport.cli", *args], capture_output=True, text=True,
                          timeout=300, env={**os.environ, "COLUMNS": "200", "HF_HUB_OFFLINE": "1"})


class _Boom:
    def __init__(self, target: Path):
        self.target = target

    def __reduce__(self):
        return (os.system, (f"touch {self.target}",))


def _truncated(tmp_path: Path) -> Path:
    p = tmp_path / "w.safetensors"
    save_file({"a": torch.zeros(64, 64)}, str(p))
    p.write_bytes(p.read_bytes()[:200])
    return p


def _pickle_with_code(tmp_path: Path) -> Path:
    p = tmp_path / "w.pth"
    torch.save({"state_dict": {"a": torch.zeros(2)}, "hook": _Boom(tmp_path / "PWNED")}, p)
    return p


def test_truncated_safetensors_is_named(tmp_path):
    p = _truncated(tmp_path)
    with pytest.raises(WeightsError, match=rf"{p}: cannot read this safetensors file.*damaged or truncated.*download it again"):
        read_state_dict(p)


def test_pickle_with_objects_is_refused_without_running(tmp_path):
    p = _pickle_with_code(tmp_path)
    with pytest.raises(WeightsError, match=rf"{p}: refused to load.*Convert it to \.safetensors"):
        read_state_dict(p)
    assert not (tmp_path / "PWNED").exists()
    q = tmp_path / "ns.pth"
    torch.save({"args": argparse.Namespace(lr=1), "state_dict": {"a": torch.zeros(2)}}, q)
    with pytest.raises(WeightsError, match="refused to load"):
        read_state_dict(q)


def test_plain_tensor_checkpoints_are_unwrapped(tmp_path):
    p = tmp_path / "ok.pth"
    torch.save({"model": {"module.a": torch.ones(2)}}, p)
    assert list(read_state_dict(p)) == ["a"]


def test_wrong_architecture_is_summarised(tmp_path):
    import timm

    from dinoreport.backbones import create_backbone

    other = timm.create_model("resnet10t", pretrained=False, num_classes=0)
    p = tmp_path / "resnet.safetensors"
    save_file({k: v.contiguous() for k, v in other.state_dict().items()}, str(p))
    with pytest.raises(WeightsError) as info:
        create_backbone(SPEC, ResolvedWeights(p, "file", "0" * 64))
    msg = str(info.value)
    assert str(p) in msg and "do not fit the model convnext_tiny.fb_in1k" in msg and "report.toml" in msg
    assert "missing keys (" in msg and "unexpected keys (" in msg and "more)" in msg
    assert len(msg) < 1200, len(msg)


@pytest.mark.parametrize("make", [_truncated, _pickle_with_code])
def test_build_with_a_bad_weights_file_says_which_without_traceback(tmp_path, make):
    w = make(tmp_path)
    cfg = write_project(tmp_path, {"a": planted_photo(224, 224)}, highres=[224],
                        models=f'[[models]]\nid = "m"\ntimm = "convnext_tiny.fb_in1k"\nweights = "{w}"\n')
    r = cli("build", "--config", str(cfg), "--out", str(tmp_path / "site"), "--quiet")
    assert r.returncode != 0
    assert str(w) in r.stderr and "Traceback" not in r.stderr, r.stderr
    assert not (tmp_path / "PWNED").exists() and not (tmp_path / "site").exists()


def test_models_does_not_list_a_refused_pickle_as_usable(tmp_path):
    w = _pickle_with_code(tmp_path)
    cfg = write_project(tmp_path, {"a": planted_photo(224, 224)},
                        models=f'[[models]]\nid = "m"\ntimm = "convnext_tiny.fb_in1k"\nweights = "{w}"\n')
    r = cli("models", "--config", str(cfg))
    assert r.returncode == 0, r.stderr
    assert "weights: not usable:" in r.stdout and "refused to load" in r.stdout
    assert f"weights: file {w}" not in r.stdout
    assert not (tmp_path / "PWNED").exists()

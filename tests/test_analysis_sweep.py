"""Resolution sweep: PC1-mask IoU across grids and PC1 share, on planted square masks."""
from __future__ import annotations

import numpy as np
import pytest

from dinoreport.analysis import resolution_sweep


def planted(n: int, lo: float = 0.25, hi: float = 0.75, shift: float = 0.0, seed: int = 0) -> np.ndarray:
    """(8, n, n) features: a centred square (sides lo..hi of the image, moved right by ``shift``)
    with one feature vector, the rest another, plus a little noise."""
    rng = np.random.default_rng(seed)
    yy, xx = (np.mgrid[0:n, 0:n] + 0.5) / n
    sq = (yy > lo) & (yy < hi) & (xx > lo + shift) & (xx < hi + shift)
    fg, bg = rng.normal(size=8), rng.normal(size=8)
    f = np.where(sq[None], fg[:, None, None], bg[:, None, None]) + 0.05 * rng.normal(size=(8, n, n))
    return f.astype(np.float32)


def test_same_square_at_several_grids_agrees():
    # grids of 16, 32, 64 cells put the square on whole cells at each, so the masks match exactly
    pts = resolution_sweep({224: planted(16), 448: planted(32), 896: planted(64)}, base=448)
    assert [p.resolution for p in pts] == [224, 448, 896]
    assert [p.grid for p in pts] == [(16, 16), (32, 32), (64, 64)]
    for p in pts:
        assert p.mask_iou_vs_base == pytest.approx(1.0, abs=0.02)
        assert p.pc1_explained > 0.9  # one planted direction carries nearly all variance
        assert p.mask.mean() == pytest.approx(0.25, abs=0.03)  # the square, not the border


def test_shifted_square_scores_lower():
    pts = resolution_sweep({224: planted(16), 448: planted(32, shift=0.2), 896: planted(64)}, base=224)
    by = {p.resolution: p.mask_iou_vs_base for p in pts}
    assert by[224] == 1.0 and by[896] == pytest.approx(1.0, abs=0.02)
    # a 0.5-wide square moved by 0.2: overlap 0.3 x 0.5 over union 2 * 0.25 - 0.15
    assert by[448] == pytest.approx(0.15 / 0.35, abs=0.05)


def test_noise_only_explains_little_on_pc1():
    rng = np.random.default_rng(1)
    pts = resolution_sweep({1: rng.normal(size=(32, 16, 16)).astype(np.float32),
                            2: planted(16)}, base=2)
    assert pts[0].pc1_explained < 0.2 < 0.9 < pts[1].pc1_explained


def test_base_must_be_swept():
    with pytest.raises(ValueError, match="base resolution 100"):
        resolution_sweep({224: planted(16)}, base=100)

import numpy as np
import pytest

from dinoreport.analysis import foreground_mask, mask_iou, orient_by_border, resize_nearest


def _blob(h=8, w=10, sign=1.0):
    pc1 = np.full((h, w), -1.0)
    pc1[3:5, 4:7] = 2.0
    return sign * pc1


def test_orient_keeps_correct_sign():
    out, flipped = orient_by_border(_blob())
    assert not flipped and out.dtype == np.float32
    np.testing.assert_array_equal(out, _blob())


def test_orient_flips_when_border_positive():
    out, flipped = orient_by_border(_blob(sign=-1.0))
    assert flipped
    np.testing.assert_array_equal(out, _blob())


def test_ring_width_matters():
    pc1 = np.zeros((8, 8))
    pc1[0, :] = pc1[-1, :] = pc1[:, 0] = pc1[:, -1] = -1.0  # outer ring negative
    pc1[1:7, 1:7] = 0.0
    pc1[1, 1:7] = pc1[6, 1:7] = pc1[1:7, 1] = pc1[1:7, 6] = 3.0  # second ring strongly positive
    assert orient_by_border(pc1, ring=1)[1] is False
    # ring=2: 28 cells at -1 and 20 at +3 -> mean > 0 -> flip
    assert orient_by_border(pc1, ring=2)[1] is True


def test_small_map_ring_is_whole_map():
    # H <= 2 * ring: every cell is border, so the orientation follows the global mean
    pc1 = np.array([[5.0, -1.0], [-1.0, -1.0]])
    out, flipped = orient_by_border(pc1, ring=1)
    assert flipped
    pc1 = np.array([[1.0, 2.0, -9.0]])
    assert orient_by_border(pc1, ring=3)[1] is False


def test_zero_border_mean_not_flipped():
    assert orient_by_border(np.zeros((4, 4)))[1] is False


def test_orient_errors():
    with pytest.raises(ValueError, match=r"pc1 must be a non-empty \(H, W\) array, got shape \(2, 2, 2\)"):
        orient_by_border(np.zeros((2, 2, 2)))
    with pytest.raises(ValueError, match="ring must be an integer >= 1, got 0"):
        orient_by_border(np.zeros((4, 4)), ring=0)
    with pytest.raises(ValueError, match="got 1 non-finite values"):
        orient_by_border(np.array([[0.0, np.nan]]))


def test_foreground_mask_threshold():
    m = foreground_mask(_blob(sign=-1.0))
    truth = np.zeros((8, 10), bool)
    truth[3:5, 4:7] = True
    np.testing.assert_array_equal(m, truth)
    assert not foreground_mask(_blob(), threshold=2.0).any()
    assert foreground_mask(_blob(), threshold=-1.5).all()
    with pytest.raises(ValueError, match="threshold must be finite, got nan"):
        foreground_mask(_blob(), threshold=float("nan"))


def test_resize_nearest_up_and_down():
    m = np.array([[1, 0], [0, 1]], bool)
    up = resize_nearest(m, (4, 4))
    np.testing.assert_array_equal(up, np.kron(m, np.ones((2, 2), bool)))
    assert up.dtype == bool
    np.testing.assert_array_equal(resize_nearest(up, (2, 2)), m)
    with pytest.raises(ValueError, match=r"shape must be two positive ints, got \(0, 2\)"):
        resize_nearest(m, (0, 2))


def test_mask_iou_values():
    a = np.zeros((4, 4), bool)
    b = np.zeros((4, 4), bool)
    assert mask_iou(a, b) == 1.0
    a[0, :] = True
    assert mask_iou(a, b) == 0.0
    b[0, :2] = True
    b[1, 0] = True
    assert mask_iou(a, b) == pytest.approx(2 / 5)


def test_mask_iou_different_shapes_resizes_smaller():
    small = np.array([[True, False], [False, False]])
    big = np.zeros((4, 4), bool)
    big[:2, :2] = True
    assert mask_iou(small, big) == 1.0
    assert mask_iou(big, small) == 1.0


def test_mask_iou_errors():
    with pytest.raises(ValueError, match="a must be a bool mask, got dtype int64"):
        mask_iou(np.zeros((2, 2), np.int64), np.zeros((2, 2), bool))
    with pytest.raises(ValueError, match=r"b must be a non-empty \(H, W\) array, got shape \(4,\)"):
        mask_iou(np.zeros((2, 2), bool), np.zeros(4, bool))

"""Reference masks: polygon rasterising on planted shapes, manifest validation, overlay figure."""
import numpy as np
import pytest

from dinoreport.figures import refmask_overlay
from dinoreport.images import ImageError, load_manifest
from dinoreport.refmasks import parse_polygons, rasterize

SQUARE = [[0.25, 0.25], [0.75, 0.25], [0.75, 0.75], [0.25, 0.75]]


def test_square_gives_exactly_the_square():
    mask = rasterize([SQUARE], (8, 8))
    expect = np.zeros((8, 8), bool)
    expect[2:6, 2:6] = True  # centres 0.3125 .. 0.6875 are inside, 0.1875 and 0.8125 are not
    assert np.array_equal(mask, expect)


def test_orientation_and_aspect():
    """x is the column fraction, y the row fraction, origin top-left."""
    tri = [[0.0, 0.0], [1.0, 0.0], [0.0, 1.0]]  # upper-left half
    mask = rasterize([tri], (10, 20))
    assert mask[0, 0] and mask[0, 17] and not mask[9, 19] and not mask[5, 15]
    assert mask.shape == (10, 20)
    # Vertex order (clockwise or not) does not matter.
    assert np.array_equal(mask, rasterize([tri[::-1]], (10, 20)))


def test_shared_edge_tiles_without_gap_or_overlap():
    left = [[0.0, 0.0], [0.5, 0.0], [0.5, 1.0], [0.0, 1.0]]
    right = [[0.5, 0.0], [1.0, 0.0], [1.0, 1.0], [0.5, 1.0]]
    a, b = rasterize([left], (6, 9)), rasterize([right], (6, 9))
    assert not (a & b).any() and (a | b).all()


def test_even_odd_within_a_polygon_union_across_polygons():
    # One outline going around twice over the centre (a pentagram): its core is even -> out.
    star = [[0.5 + 0.45 * np.cos(np.pi / 2 + k * 4 * np.pi / 5), 0.5 - 0.45 * np.sin(np.pi / 2 + k * 4 * np.pi / 5)]
            for k in range(5)]
    mask = rasterize([star], (101, 101))
    assert not mask[50, 50] and mask[10, 50]
    # Two overlapping polygons are united, the overlap stays in.
    a = [[0.1, 0.1], [0.6, 0.1], [0.6, 0.6], [0.1, 0.6]]
    b = [[0.4, 0.4], [0.9, 0.4], [0.9, 0.9], [0.4, 0.9]]
    both = rasterize([a, b], (10, 10))
    assert np.array_equal(both, rasterize([a], (10, 10)) | rasterize([b], (10, 10)))
    assert both[5, 5]


def test_area_follows_resolution():
    circle = [[0.5 + 0.4 * np.cos(t), 0.5 + 0.4 * np.sin(t)] for t in np.linspace(0, 2 * np.pi, 200, endpoint=False)]
    for n in (50, 200):
        assert rasterize([circle], (n, n)).mean() == pytest.approx(np.pi * 0.16, rel=0.03)


@pytest.mark.parametrize("value, fragment", [
    ([], "non-empty list of polygons"),
    ([[[0.1, 0.1], [0.2, 0.2]]], "[0] must be a list of at least 3"),
    ([[[0.1, 0.1], [0.2, 0.2], [0.3]]], "[0][2] must be a pair of numbers"),
    ([[[0.1, 0.1], [0.2, 0.2], [1.3, 0.2]]], "[0][2] = [1.3, 0.2] lies outside [0, 1]"),
    ([[[0.1, 0.1], [0.2, 0.2], [0.3, 0.3]]], "[0] has no area"),
    ([[[0.1, 0.1], [0.2, True], [0.3, 0.3]]], "[0][1] must be a pair of numbers"),
])
def test_parse_polygons_errors(value, fragment):
    with pytest.raises(ValueError) as err:
        parse_polygons(value, "m.toml: images.x.mask_polygons")
    assert str(err.value).startswith("m.toml: images.x.mask_polygons")
    assert fragment in str(err.value)


def _manifest(tmp_path, extra):
    (tmp_path / "a.png").write_bytes(b"")
    path = tmp_path / "manifest.toml"
    path.write_text(f'[[image]]\nid = "pic"\nauthor = "me"\nlicense = "CC0"\nfile = "a.png"\n{extra}\n')
    return path


def test_manifest_reads_polygons(tmp_path):
    entry = load_manifest(_manifest(tmp_path, f"mask_polygons = [{SQUARE}]"))["pic"]
    assert entry.mask_polygons == (tuple(tuple(v) for v in SQUARE),)


@pytest.mark.parametrize("extra, fragment", [
    ('mask_polygons = [[[0.1, 0.1], [0.5, 0.1]]]', "images.pic.mask_polygons[0] must be a list of at least 3"),
    ('mask_polygons = "square"', "images.pic.mask_polygons must be a list of polygons"),
    (f'mask = "m.png"\nmask_polygons = [{SQUARE}]', "at most one of images.pic.mask and images.pic.mask_polygons"),
])
def test_manifest_polygon_errors_name_image_and_key(tmp_path, extra, fragment):
    with pytest.raises(ImageError) as err:
        load_manifest(_manifest(tmp_path, extra))
    assert "(pic)" in str(err.value) and fragment in str(err.value)


def test_overlay_tints_inside_outlines_edge_keeps_outside():
    photo = np.full((80, 100, 3), 100, np.uint8)
    img = np.asarray(refmask_overlay(photo, [SQUARE], colour=(255, 0, 0), alpha=0.5, max_side=0))
    assert img.shape == (80, 100, 3)
    assert tuple(img[40, 50]) == (178, 50, 50)          # fill: half way to red
    assert tuple(img[5, 5]) == (100, 100, 100)          # far outside: untouched
    assert tuple(img[20, 50]) == (255, 0, 0)            # on the top edge: outline colour
    small = refmask_overlay(np.zeros((800, 1000, 3), np.uint8), [SQUARE], max_side=250)
    assert small.size == (250, 200)

"""decode() on odd inputs (all generated with Pillow into tmp_path) and preprocess() geometry."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from dinoreport.images import ImageError, crop_geometry, decode, preprocess

RED = (255, 0, 0)
BLUE = (0, 0, 255)


def _save(tmp_path: Path, name: str, im: Image.Image, **kw) -> tuple[str, bytes]:
    path = tmp_path / name
    im.save(path, **kw)
    return path.name, path.read_bytes()


def _quadrant_block(w: int = 64, h: int = 32) -> Image.Image:
    """Blue image, red block in the top-left quarter."""
    arr = np.zeros((h, w, 3), np.uint8)
    arr[...] = BLUE
    arr[: h // 2, : w // 2] = RED
    return Image.fromarray(arr)


def _corner_means(rgb: np.ndarray) -> dict[str, np.ndarray]:
    h, w = rgb.shape[:2]
    q = {
        "tl": rgb[: h // 4, : w // 4],
        "tr": rgb[: h // 4, -w // 4 :],
        "bl": rgb[-h // 4 :, : w // 4],
        "br": rgb[-h // 4 :, -w // 4 :],
    }
    return {k: v.reshape(-1, 3).mean(0) for k, v in q.items()}


def _is_red(c: np.ndarray) -> bool:
    return c[0] > 200 and c[1] < 60 and c[2] < 60


# --------------------------------------------------------------------------- modes


def test_rgb_jpeg_roundtrip(tmp_path):
    name, data = _save(tmp_path, "plain.jpg", _quadrant_block(), quality=95)
    rgb = decode(data, name=name)
    assert rgb.shape == (32, 64, 3) and rgb.dtype == np.uint8
    assert _is_red(_corner_means(rgb)["tl"])


def test_cmyk_jpeg_converted(tmp_path):
    im = Image.new("CMYK", (40, 30), (0, 255, 255, 0))  # red in CMYK
    name, data = _save(tmp_path, "cmyk.jpg", im, quality=95)
    assert Image.open(io.BytesIO(data)).mode == "CMYK"
    rgb = decode(data, name=name)
    assert rgb.shape == (30, 40, 3)
    assert _is_red(rgb.reshape(-1, 3).mean(0))


def test_16bit_png_scaled_not_clipped(tmp_path):
    arr = np.array([[0, 65535, 257 * 100], [32896, 128, 65535 - 129]], np.uint16)
    name, data = _save(tmp_path, "deep.png", Image.fromarray(arr))
    assert Image.open(io.BytesIO(data)).mode.startswith("I;16")
    rgb = decode(data, name=name)
    assert rgb.shape == (2, 3, 3)
    assert (rgb[..., 0] == rgb[..., 2]).all()
    np.testing.assert_array_equal(rgb[..., 0], [[0, 255, 100], [128, 0, 254]])


def test_32bit_int_tiff_with_16bit_values(tmp_path):
    im = Image.fromarray(np.array([[0, 65535]], np.int32), mode="I")
    name, data = _save(tmp_path, "int.tif", im)
    rgb = decode(data, name=name)
    np.testing.assert_array_equal(rgb[0, :, 0], [0, 255])


def test_palette_with_transparency_on_white(tmp_path):
    im = Image.new("P", (8, 8), 0)
    im.putpalette([0, 0, 0, 255, 0, 0] + [0] * (256 * 3 - 6))  # index 0 black, 1 red
    im.paste(1, (0, 0, 4, 8))
    name, data = _save(tmp_path, "pal.png", im, transparency=0)
    reread = Image.open(io.BytesIO(data))
    assert reread.mode == "P" and "transparency" in reread.info
    rgb = decode(data, name=name)
    assert (rgb[:, :4] == RED).all()
    assert (rgb[:, 4:] == 255).all()  # transparent black -> white, not black


def test_rgba_transparent_white_opaque_kept_half_blended(tmp_path):
    arr = np.zeros((2, 3, 4), np.uint8)
    arr[0, 0] = (0, 0, 0, 0)  # fully transparent black
    arr[0, 1] = (255, 0, 0, 255)  # opaque red
    arr[0, 2] = (0, 0, 0, 128)  # half-transparent black
    arr[1] = (10, 20, 30, 255)
    name, data = _save(tmp_path, "rgba.png", Image.fromarray(arr, "RGBA"))
    rgb = decode(data, name=name)
    assert tuple(rgb[0, 0]) == (255, 255, 255)
    assert tuple(rgb[0, 1]) == RED
    assert tuple(rgb[0, 2]) == (127, 127, 127)
    assert (rgb[1] == (10, 20, 30)).all()


def test_la_alpha_on_white(tmp_path):
    arr = np.zeros((2, 2, 2), np.uint8)
    arr[..., 0] = 50
    arr[0, 0, 1] = 255
    name, data = _save(tmp_path, "la.png", Image.fromarray(arr, "LA"))
    rgb = decode(data, name=name)
    assert tuple(rgb[0, 0]) == (50, 50, 50)
    assert tuple(rgb[1, 1]) == (255, 255, 255)


def test_grayscale_l_replicated(tmp_path):
    arr = np.arange(12, dtype=np.uint8).reshape(3, 4) * 20
    name, data = _save(tmp_path, "gray.png", Image.fromarray(arr, "L"))
    rgb = decode(data, name=name)
    assert rgb.shape == (3, 4, 3)
    for c in range(3):
        np.testing.assert_array_equal(rgb[..., c], arr)


def test_bilevel_mode_1(tmp_path):
    im = Image.new("1", (4, 2), 0)
    im.putpixel((0, 0), 1)
    name, data = _save(tmp_path, "bw.png", im)
    rgb = decode(data, name=name)
    assert tuple(rgb[0, 0]) == (255, 255, 255) and tuple(rgb[1, 3]) == (0, 0, 0)


def test_animated_gif_first_frame(tmp_path):
    frames = [Image.new("RGB", (16, 16), c) for c in (RED, BLUE, (0, 255, 0))]
    name, data = _save(
        tmp_path, "anim.gif", frames[0], save_all=True, append_images=frames[1:], duration=50
    )
    assert Image.open(io.BytesIO(data)).n_frames == 3
    rgb = decode(data, name=name)
    assert rgb.shape == (16, 16, 3)
    assert (rgb == RED).all()


# --------------------------------------------------------------------------- EXIF


@pytest.mark.parametrize(
    ("orientation", "shape", "red_corner"),
    [
        (1, (32, 64), "tl"),
        (3, (32, 64), "br"),  # rotated 180
        (6, (64, 32), "tr"),  # viewer rotates 90 deg clockwise
        (8, (64, 32), "bl"),  # viewer rotates 90 deg counter-clockwise
    ],
)
def test_exif_orientation_applied(tmp_path, orientation, shape, red_corner):
    im = _quadrant_block()  # stored: 64 wide, 32 high, red top-left
    exif = Image.Exif()
    exif[0x0112] = orientation
    name, data = _save(tmp_path, f"exif{orientation}.jpg", im, exif=exif, quality=95)
    rgb = decode(data, name=name)
    assert rgb.shape[:2] == shape
    means = _corner_means(rgb)
    assert _is_red(means[red_corner]), (red_corner, means)
    assert sum(_is_red(m) for m in means.values()) == 1


# --------------------------------------------------------------------------- failures


def test_zero_byte_file(tmp_path):
    path = tmp_path / "empty.jpg"
    path.write_bytes(b"")
    with pytest.raises(ImageError, match=r"empty\.jpg: empty file \(0 bytes\)"):
        decode(path.read_bytes(), name=path.name)


def test_text_file_named_jpg(tmp_path):
    path = tmp_path / "notes.jpg"
    path.write_text("this is not an image\n")
    with pytest.raises(ImageError, match=r"notes\.jpg: not a recognised image file"):
        decode(path.read_bytes(), name=path.name)


def test_truncated_jpeg(tmp_path):
    rng = np.random.default_rng(0)
    im = Image.fromarray(rng.integers(0, 255, (128, 128, 3), dtype=np.uint8))
    name, data = _save(tmp_path, "cut.jpg", im, quality=90)
    cut = tmp_path / "cut.jpg"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageError, match=r"cut\.jpg: cannot decode JPEG .*truncated"):
        decode(cut.read_bytes(), name=name)


def test_corrupt_png_body(tmp_path):
    name, data = _save(tmp_path, "bad.png", Image.new("RGB", (64, 64), RED))
    bad = bytearray(data)
    idat = bad.index(b"IDAT")
    bad[idat + 8 : idat + 40] = b"\x00" * 32
    with pytest.raises(ImageError, match=r"bad\.png: cannot decode PNG"):
        decode(bytes(bad), name=name)


def test_huge_image_refused_by_header_check(tmp_path):
    # 12 x 12 = 144 px: above our limit of 100, below PIL's own error threshold (2 x limit)
    name, data = _save(tmp_path, "huge.png", Image.new("RGB", (12, 12)))
    with pytest.raises(ImageError, match=r"huge\.png: image is too large \(12x12 = 144 pixels\).*max_pixels=100"):
        decode(data, name=name, max_pixels=100)


def test_huge_image_pil_bomb_error_becomes_image_error(tmp_path):
    # 40 x 40 = 1600 px > 2 x 100: PIL raises DecompressionBombError while opening
    name, data = _save(tmp_path, "bomb.png", Image.new("RGB", (40, 40)))
    with pytest.raises(ImageError, match=r"bomb\.png: image is too large .*1600.*max_pixels=100"):
        decode(data, name=name, max_pixels=100)
    # and PIL's global settings are restored afterwards
    assert Image.MAX_IMAGE_PIXELS != 100
    assert decode(data, name=name).shape == (40, 40, 3)


# --------------------------------------------------------------------------- preprocess


def test_preprocess_landscape_geometry():
    rgb = np.zeros((853, 1280, 3), np.uint8)
    out = preprocess(rgb, 448)
    assert out.shape == (448, 672, 3) and out.dtype == np.uint8


def test_preprocess_portrait_geometry_and_crop_offset():
    assert crop_geometry(1792, 1280, 448) == ((627, 448), (9, 0, 608, 448))
    out = preprocess(np.zeros((1792, 1280, 3), np.uint8), 448)
    assert out.shape == (608, 448, 3)


def test_preprocess_identity_is_byte_identical():
    rng = np.random.default_rng(1)
    rgb = rng.integers(0, 256, (448, 640, 3), dtype=np.uint8)
    out = preprocess(rgb, 448)
    assert out.shape == rgb.shape
    assert out.tobytes() == rgb.tobytes()


def test_preprocess_crop_only_no_resample():
    rng = np.random.default_rng(2)
    rgb = rng.integers(0, 256, (448, 650, 3), dtype=np.uint8)  # right short side, 650 -> 640
    out = preprocess(rgb, 448)
    assert out.shape == (448, 640, 3)
    np.testing.assert_array_equal(out, rgb[:, 5:645])


def test_preprocess_downscale_is_antialiased():
    # a fine checkerboard must average to grey, not alias into stripes
    board = (np.indices((896, 896)).sum(0) % 2 * 255).astype(np.uint8)
    rgb = np.repeat(board[..., None], 3, axis=2)
    out = preprocess(rgb, 448).astype(float)
    assert abs(out.mean() - 127.5) < 2 and out.std() < 10


def test_preprocess_too_small(tmp_path):
    name, data = _save(tmp_path, "tiny.png", Image.new("RGB", (20, 50), RED))
    rgb = decode(data, name=name)
    with pytest.raises(ImageError, match=r"tiny\.png: image is too small \(20x50 pixels\).*32x32"):
        preprocess(rgb, 448, name=name)


def test_preprocess_resolution_below_one_cell():
    with pytest.raises(ImageError, match=r"too small at resolution 16"):
        preprocess(np.zeros((64, 64, 3), np.uint8), 16)


def test_preprocess_rejects_bad_arrays():
    with pytest.raises(ValueError, match=r"\(H, W, 3\) uint8"):
        preprocess(np.zeros((64, 64), np.uint8), 448)
    with pytest.raises(ValueError, match="uint8, got float32"):
        preprocess(np.zeros((64, 64, 3), np.float32), 448)

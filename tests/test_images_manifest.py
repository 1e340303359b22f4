"""Manifest validation, folder scanning, and the shipped images/manifest.toml."""

from __future__ import annotations

import textwrap
from pathlib import Path

import numpy as np
import pytest

from PIL import Image

from dinoreport.images import ImageError, available, load_image, load_manifest, load_mask, scan_folder

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = ROOT / "images" / "manifest.toml"
SHARED_IMAGES = Path(__file__).resolve().parents[2] / "shared" / "images"

GOOD = """
[[image]]
id = "dog_pug"
subject = "Pug"
groups = ["dogs"]
file = "pug.jpg"
author = "Someone"
license = "CC BY-SA 4.0"
"""


def _write(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "manifest.toml"
    path.write_text(textwrap.dedent(body), encoding="utf-8")
    return path


def _entry(**fields: object) -> str:
    base = {"id": "x", "subject": "s", "author": "a", "license": "CC0 1.0", "file": "x.png"}
    base.update(fields)
    lines = ["[[image]]"]
    for key, value in base.items():
        if value is None:
            continue
        lines.append(f"{key} = {_toml(value)}")
    return "\n".join(lines) + "\n"


def _toml(value: object) -> str:
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    return str(value)


# --------------------------------------------------------------------------- good input


def test_good_manifest(tmp_path):
    set_ = load_manifest(_write(tmp_path, GOOD + _entry(id="astro", package="skimage:astronaut", file=None, groups=["dogs", "people"])))
    assert [e.id for e in set_.entries] == ["astro", "dog_pug"]  # sorted by id
    pug = set_["dog_pug"]
    assert pug.file == (tmp_path / "pug.jpg").resolve()
    assert pug.share_alike
    assert not set_["astro"].share_alike
    assert set_.groups == {"dogs": ("astro", "dog_pug"), "people": ("astro",)}
    assert set_.source == str(tmp_path / "manifest.toml")


def test_subject_and_groups_optional(tmp_path):
    entry = load_manifest(_write(tmp_path, _entry(subject=None))).entries[0]
    assert entry.subject == "x" and entry.groups == ()


# --------------------------------------------------------------------------- errors


def test_unknown_key_suggests_closest(tmp_path):
    body = GOOD.replace('license = "CC BY-SA 4.0"', 'licence = "CC BY-SA 4.0"')
    path = _write(tmp_path, _entry(id="a") + _entry(id="b") + _entry(id="c") + body)
    with pytest.raises(ImageError) as err:
        load_manifest(path)
    msg = str(err.value)
    assert f"{path}: image[3] (dog_pug): unknown key 'licence' — did you mean 'license'?" in msg
    assert "images.dog_pug.licence" in msg


def test_unknown_top_level_key(tmp_path):
    path = _write(tmp_path, "[[images]]\nid = 'x'\n")
    with pytest.raises(ImageError, match=r"unknown top-level key 'images' — did you mean 'image'\?"):
        load_manifest(path)


@pytest.mark.parametrize(
    ("field", "value", "expected"),
    [
        ("groups", "dogs", r"images\.x\.groups must be a list of strings, got str 'dogs'"),
        ("groups", [1, 2], r"images\.x\.groups must be a list of strings"),
        ("author", 3, r"images\.x\.author must be a string, got int 3"),
        ("license", True, r"images\.x\.license must be a string, got bool"),
        ("sha256", "abc", r"images\.x\.sha256 must be 64 lower-case hex digits"),
        ("id", "Dog-Pug", r"id 'Dog-Pug' must match \[a-z0-9_\]\+"),
        ("groups", ["Dogs"], r"group 'Dogs' must match"),
        ("package", "numpy:thing", r"images\.x\.package 'numpy:thing' must look like"),
        ("license", " ", r"images\.x\.license is empty"),
    ],
)
def test_wrong_types_and_values(tmp_path, field, value, expected):
    fields = {field: value, **({"file": None} if field == "package" else {})}
    with pytest.raises(ImageError, match=expected):
        load_manifest(_write(tmp_path, _entry(**fields)))


def test_missing_required_key(tmp_path):
    with pytest.raises(ImageError, match=r"image\[0\] \(x\): missing required key images\.x\.license"):
        load_manifest(_write(tmp_path, _entry(license=None)))


def test_duplicate_id(tmp_path):
    path = _write(tmp_path, _entry(id="same") + _entry(id="other") + _entry(id="same"))
    with pytest.raises(ImageError, match=r"image\[2\]: duplicate id 'same' \(also image\[0\]\)"):
        load_manifest(path)


@pytest.mark.parametrize("sources", [{}, {"url": "https://example.org/a.jpg"}])
def test_exactly_one_source(tmp_path, sources):
    fields = {"file": None} if not sources else {"file": "x.png", **sources}
    with pytest.raises(ImageError, match=r"give exactly one of images\.x\.file, images\.x\.package, images\.x\.url"):
        load_manifest(_write(tmp_path, _entry(**fields)))


@pytest.mark.parametrize("bad", ["../outside.png", "sub/../../outside.png", "/etc/passwd"])
@pytest.mark.parametrize("key", ["file", "mask"])
def test_path_escaping_folder(tmp_path, bad, key):
    folder = tmp_path / "images"
    folder.mkdir()
    with pytest.raises(ImageError, match=rf"images\.x\.{key} .* points outside the manifest's folder"):
        load_manifest(_write(folder, _entry(**{key: bad})))


def test_absolute_path_inside_folder_allowed(tmp_path):
    inside = str((tmp_path / "pics" / "x.png").resolve())
    entry = load_manifest(_write(tmp_path, _entry(file=inside))).entries[0]
    assert entry.file == Path(inside)


@pytest.mark.parametrize(
    ("key", "url"),
    [("url", "ftp://example.org/a.jpg"), ("url", "file:///etc/passwd"), ("url", "example.org/a.jpg"),
     ("source_url", "javascript:alert(1)"), ("license_url", "www.example.org")],
)
def test_non_http_url(tmp_path, key, url):
    fields = {"file": None, "url": "https://example.org/a.jpg"}
    fields[key] = url
    with pytest.raises(ImageError, match=rf"images\.x\.{key} must be an http:// or https:// URL"):
        load_manifest(_write(tmp_path, _entry(**fields)))


def test_toml_syntax_error_names_file(tmp_path):
    path = _write(tmp_path, "[[image]\nid = 'x'\n")
    with pytest.raises(ImageError, match=r"manifest\.toml: TOML syntax error"):
        load_manifest(path)


def test_missing_manifest(tmp_path):
    with pytest.raises(ImageError, match=r"nope\.toml: cannot read the image manifest"):
        load_manifest(tmp_path / "nope.toml")


# --------------------------------------------------------------------------- scan_folder


def _touch_images(folder: Path, names: list[str]) -> None:
    from PIL import Image

    for name in names:
        Image.new("RGB", (40, 40)).save(folder / name, format="PNG")


def test_scan_folder_ids_groups_and_order(tmp_path):
    _touch_images(tmp_path, ["Dog_Pug.PNG", "dog-boxer.jpeg", "cat_tabby.webp", "sunset.TIFF", "zebra.gif"])
    (tmp_path / "notes.txt").write_text("x")
    (tmp_path / ".hidden.png").write_bytes(b"")
    set_ = scan_folder(tmp_path)
    assert [e.id for e in set_.entries] == ["cat_tabby", "dog_boxer", "dog_pug", "sunset", "zebra"]
    assert set_.groups == {"cat": ("cat_tabby",), "dog": ("dog_boxer", "dog_pug")}
    pug = set_["dog_pug"]
    assert pug.file == (tmp_path / "Dog_Pug.PNG").resolve()
    assert (pug.author, pug.license, pug.groups) == ("unknown", "unknown", ("dog",))
    assert set_.source == str(tmp_path)


def test_scan_folder_duplicate_ids_name_both_files(tmp_path):
    _touch_images(tmp_path, ["Dog Pug.png", "dog-pug.jpg"])
    with pytest.raises(ImageError, match=r"files 'Dog Pug\.png' and 'dog-pug\.jpg' both give the id 'dog_pug'"):
        scan_folder(tmp_path)


def test_scan_folder_uses_manifest(tmp_path):
    _write(tmp_path, GOOD)
    _touch_images(tmp_path, ["other.png"])
    assert [e.id for e in scan_folder(tmp_path).entries] == ["dog_pug"]


def test_scan_folder_empty_or_missing(tmp_path):
    with pytest.raises(ImageError, match="no image files found"):
        scan_folder(tmp_path)
    with pytest.raises(ImageError, match="image folder not found"):
        scan_folder(tmp_path / "missing")


@pytest.mark.skipif(not SHARED_IMAGES.is_dir(), reason="shared development images not present")
def test_scan_shared_images():
    set_ = scan_folder(SHARED_IMAGES)
    assert len(set_.entries) == 18
    assert len(set_.groups["dog"]) == 9
    assert set_.groups["dog"] == tuple(sorted(set_.groups["dog"]))
    assert "dog_golden_jump" in set_.groups["dog"]


# --------------------------------------------------------------------------- the shipped manifest

DOGS = [
    "dog_aussie", "dog_bostonterrier", "dog_bulldog", "dog_cattledog", "dog_germanshepherd",
    "dog_golden_jump", "dog_greatdane", "dog_poodle_coat", "dog_pug",
    "dog_pair_chihuahuas", "dog_pair_dogpark", "dog_pair_foxhound_lab", "dog_pair_labradors",
    "dog_pair_wolfdogs",
]
# Bundled photos with several subjects, each outlined on its own (issue 22).
SEVERAL = ["cats_kittens", "cats_mainecoons", "dog_pair_chihuahuas", "dog_pair_dogpark",
           "dog_pair_foxhound_lab", "dog_pair_labradors", "dog_pair_wolfdogs", "scene_hermit_crabs",
           "scene_waiting_room"]
# The one bundled photo whose original is on Flickr, not Commons.
FLICKR = {"scene_hermit_crabs": "https://www.flickr.com/photos/52133016@N08/48614311461"}


def test_shipped_manifest_valid():
    set_ = load_manifest(SHIPPED)
    assert set_.groups["dogs"] == tuple(sorted(DOGS))
    for entry in set_.entries:
        assert entry.author and entry.license and entry.subject
        if entry.url:
            assert entry.url.startswith("https://commons.wikimedia.org/wiki/Special:FilePath/")
            assert entry.url.endswith("?width=1280")
            assert entry.source_url and entry.source_url.startswith("https://commons.wikimedia.org/wiki/File:")
    # Bundled photos (issues 12, 22): the dogs, the Maine Coon and the photos with several
    # subjects, resized, pinned, credited, never share-alike, each with its full-resolution
    # original (on Commons, except the one Flickr photo).
    files = [e for e in set_.entries if e.file is not None]
    assert {e.id for e in files} == set(DOGS) | {"cat_mainecoon"} | set(SEVERAL)
    for entry in files:
        assert entry.sha256 and not entry.share_alike
        if entry.id in FLICKR:
            assert entry.source_url == FLICKR[entry.id] and entry.original_url is None
            continue
        assert entry.original_url.startswith("https://commons.wikimedia.org/wiki/Special:FilePath/")
        assert entry.source_url.startswith("https://commons.wikimedia.org/wiki/File:")
        with Image.open(entry.file) as im:
            assert max(im.size) <= 1024
            assert (entry.modified == f"resized to {im.width}x{im.height}") == (entry.modified is not None)
        rgb = load_image(entry, 448)  # verifies sha256
        assert min(rgb.shape[:2]) == 448


def test_shipped_manifest_every_photo_has_a_reference_mask():
    set_ = load_manifest(SHIPPED)
    for entry in set_.entries:
        assert entry.mask_polygons, entry.id
        mask = load_mask(entry, load_image(entry, 448).shape[:2], resolution=448)
        # A subject, not the whole frame or nothing (the Hubble field marks its largest galaxies).
        assert 0.005 < mask.mean() < 0.9, (entry.id, mask.mean())


def test_shipped_manifest_lets_the_instance_claim_be_judged():
    """c4_instances is judged over images whose mask has two or more instances on the C4 grid
    (claim_metrics: 4-connected regions of >= MIN_INSTANCE_CELLS cells), and needs at least
    claims.MIN_IMAGES of them; the default build works at 448 px, and C4 is 1/16 of the input."""
    from dinoreport.analysis.claim_metrics import _instances_on_grid
    from dinoreport.analysis.claims import MIN_IMAGES

    set_ = load_manifest(SHIPPED)
    several = []
    for entry in set_.entries:
        h, w = load_image(entry, 448).shape[:2]
        mask = load_mask(entry, (h, w), resolution=448)
        if _instances_on_grid(mask, None, (h // 16, w // 16)).max() >= 2:
            several.append(entry.id)
    assert len(several) >= MIN_IMAGES, several
    # The photos bundled for it, where the subjects stand apart, are among them.
    assert {"dog_pair_dogpark", "dog_pair_foxhound_lab", "dog_pair_labradors", "scene_hermit_crabs",
            "scene_waiting_room"} <= set(several)


@pytest.mark.parametrize("image_id", SEVERAL)
def test_shipped_instance_outlines_are_separate_subjects(image_id):
    """Each outline of a photo with several subjects covers part of the frame, and two outlines
    share little: at most 10 % of the smaller one (subjects in front are drawn whole, the ones
    behind around them)."""
    from dinoreport.refmasks import rasterize

    entry = load_manifest(SHIPPED)[image_id]
    with Image.open(entry.file) as im:
        shape = (im.height, im.width)
    masks = [rasterize([poly], shape) for poly in entry.mask_polygons]
    assert len(masks) >= 2
    for k, m in enumerate(masks):
        assert 0 < m.mean() < 0.5, (image_id, k, m.mean())
    for a in range(len(masks)):
        for b in range(a + 1, len(masks)):
            shared = np.count_nonzero(masks[a] & masks[b])
            assert shared <= 0.1 * min(masks[a].sum(), masks[b].sum()), (image_id, a, b, shared)


def test_shipped_dogs_are_offline():
    set_ = load_manifest(SHIPPED)
    assert all(available(set_[i]) for i in DOGS)


def test_shipped_manifest_has_an_offline_group_of_three():
    set_ = load_manifest(SHIPPED)
    offline = {g: [i for i in ids if available(set_[i])] for g, ids in set_.groups.items()}
    assert max(len(v) for v in offline.values()) >= 3
    assert all(available(e) for e in set_.entries if e.package)


def test_shipped_package_images_decode():
    set_ = load_manifest(SHIPPED)
    for entry in set_.entries:
        if entry.package:
            rgb = load_image(entry, 448)  # also verifies sha256 where pinned
            assert rgb.dtype.name == "uint8" and rgb.shape[2] == 3
            assert min(rgb.shape[:2]) == 448 and rgb.shape[0] % 32 == rgb.shape[1] % 32 == 0

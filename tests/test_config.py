"""report.toml: valid configs load; every mistake names the file, the dotted key and the fix."""
from pathlib import Path

import pytest

from dinoreport.analyses import resolve_options
from dinoreport.config import ConfigError, load_config

PROJECT = Path(__file__).resolve().parents[1]

MODEL = '[[models]]\nid = "m1"\ntimm = "convnext_tiny.fb_in1k"\n'


def options(path: Path) -> dict:
    """The analyses' options of the config at ``path``, as a build checks them."""
    return resolve_options(load_config(path))


def write(tmp_path: Path, text: str) -> Path:
    (tmp_path / "imgs").mkdir(exist_ok=True)
    p = tmp_path / "report.toml"
    p.write_text(text)
    return p


def test_project_config_loads():
    cfg = load_config(PROJECT / "site_src" / "report.toml")
    assert [m.id for m in cfg.models] == ["dinov3_convnext_tiny", "in1k_convnext_tiny", "dinov3_vits16"]
    assert cfg.resolution == 448 and cfg.seed == 0
    assert cfg.images.manifest == (PROJECT / "images" / "manifest.toml").resolve()
    assert cfg.images.featured == ("astronaut", "chelsea")
    with pytest.raises(AttributeError):
        cfg.resolution = 224  # frozen


def test_relative_paths_resolve_against_the_config(tmp_path):
    cfg = load_config(write(tmp_path, MODEL + '[images]\ndir = "imgs"\n'))
    assert cfg.images.dir == (tmp_path / "imgs").resolve()


def test_unknown_key_suggests_the_closest(tmp_path):
    with pytest.raises(ConfigError, match=r"resolutoin: unknown key — did you mean 'resolution'\?"):
        load_config(write(tmp_path, 'resolutoin = 448\n' + MODEL + '[images]\ndir = "imgs"\n'))


def test_unknown_model_key_is_dotted_by_model_id(tmp_path):
    with pytest.raises(ConfigError, match=r"models\.m1\.wieghts: unknown key — did you mean 'weights'\?"):
        load_config(write(tmp_path, MODEL + 'wieghts = "x"\n[images]\ndir = "imgs"\n'))


def test_wrong_type_names_key_and_type(tmp_path):
    with pytest.raises(ConfigError, match=r"resolution: must be int, got str '448'"):
        load_config(write(tmp_path, 'resolution = "448"\n' + MODEL + '[images]\ndir = "imgs"\n'))


def test_bool_is_not_an_int(tmp_path):
    with pytest.raises(ConfigError, match=r"seed: must be int, got bool"):
        load_config(write(tmp_path, 'seed = true\n' + MODEL + '[images]\ndir = "imgs"\n'))


def test_resolution_upper_bound(tmp_path):
    with pytest.raises(ConfigError, match=r"resolution: must be from 14 \(one ViT/14 patch\) to 1024 .*got 100000"):
        load_config(write(tmp_path, 'resolution = 100000\n' + MODEL + '[images]\ndir = "imgs"\n'))


def test_resolution_below_one_patch(tmp_path):
    # Whether a resolution suits the models is checked at build time (test_backbone_matrix).
    with pytest.raises(ConfigError, match=r"resolution: must be from 14 \(one ViT/14 patch\) to 1024 .*got 8"):
        load_config(write(tmp_path, 'resolution = 8\n' + MODEL + '[images]\ndir = "imgs"\n'))


def test_model_stages_are_read(tmp_path):
    cfg = load_config(write(tmp_path, MODEL + 'stages = ["C3", "C5"]\n[images]\ndir = "imgs"\n'))
    assert cfg.models[0].stages == ("C3", "C5")


def test_unknown_timm_name_gets_real_names(tmp_path):
    text = '[[models]]\nid = "m1"\ntimm = "convnext_tiny.dinov3_lvd1689"\n[images]\ndir = "imgs"\n'
    with pytest.raises(ConfigError, match=r"models\.m1\.timm: unknown timm model 'convnext_tiny\.dinov3_lvd1689'"
                       r" — closest timm names: convnext_tiny\.dinov3_lvd1689m"):
        load_config(write(tmp_path, text))


def test_unknown_architecture_gets_real_names(tmp_path):
    text = '[[models]]\nid = "m1"\ntimm = "convnxt_tiny.fb_in1k"\n[images]\ndir = "imgs"\n'
    with pytest.raises(ConfigError, match=r"closest timm names: convnext_tiny\.fb_in1k"):
        load_config(write(tmp_path, text))


def test_duplicate_model_ids(tmp_path):
    with pytest.raises(ConfigError, match=r"models\.m1: duplicate model id"):
        load_config(write(tmp_path, MODEL + MODEL + '[images]\ndir = "imgs"\n'))


def test_missing_weights_file_is_named(tmp_path):
    with pytest.raises(ConfigError, match=r"models\.m1\.weights: file not found: .*nope\.safetensors"):
        load_config(write(tmp_path, MODEL + 'weights = "nope.safetensors"\n[images]\ndir = "imgs"\n'))


def test_images_needs_manifest_or_dir(tmp_path):
    with pytest.raises(ConfigError, match=r"images\.manifest: is required \(or images\.dir\)"):
        load_config(write(tmp_path, MODEL))


def test_missing_file_and_bad_toml(tmp_path):
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "nope.toml")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(write(tmp_path, "title = \n"))


def test_highres_models_must_exist(tmp_path):
    text = MODEL + '[images]\ndir = "imgs"\n[analysis]\nhighres_models = ["m2"]\n'
    with pytest.raises(ConfigError, match=r"analysis\.highres_models\[0\]: unknown model id 'm2'.* "
                                          r"an option of analysis highres"):
        options(write(tmp_path, text))


def test_part_groups_default_and_unknown_group_is_named(tmp_path):
    assert options(write(tmp_path, MODEL + '[images]\ndir = "imgs"\n'))["claims"].part_groups == ("dogs",)
    text = MODEL + '[images]\ndir = "imgs"\n[groups]\ndogs = []\ncats = []\n[analysis]\npart_groups = ["dgos"]\n'
    with pytest.raises(ConfigError, match=r"analysis\.part_groups\[0\]: unknown group 'dgos' — did you mean 'dogs'\?"):
        options(write(tmp_path, text))
    ok = MODEL + '[images]\ndir = "imgs"\n[groups]\ncats = []\n[analysis]\npart_groups = ["cats"]\n'
    assert options(write(tmp_path, ok))["claims"].part_groups == ("cats",)


@pytest.mark.parametrize("text, key", [
    ('sweep = [224, "x"]', r"analysis\.sweep\[1\]: must be an int"),
    ("sweep = [4]", r"analysis\.sweep\[0\]: must be an int"),
    ("explorer_kb = 4000", r"analysis\.explorer_kb: must be an int from 16 to 1500"),
    ("explorer_images = 0", r"analysis\.explorer_images: must be an int from 1 to 200"),
])
def test_sweep_and_explorer_budget_are_checked(tmp_path, text, key):
    with pytest.raises(ConfigError, match=key):
        options(write(tmp_path, MODEL + f'[images]\ndir = "imgs"\n[analysis]\n{text}\n'))


def test_sweep_and_explorer_budget_defaults(tmp_path):
    an = options(write(tmp_path, MODEL + '[images]\ndir = "imgs"\n'))
    assert an["resolution_sweep"].sweep == (224, 448, 896)
    assert an["explorer"].explorer_kb == 250 and an["explorer"].explorer_images == 16

"""Write each model's random-but-exercised init (what --random-init builds) as a local
safetensors file, and a copy of the config pointing at them.

A build from that copy runs without --random-init, so the claims are judged on their numbers
instead of being forced to "cannot tell": the way to see what verdicts untrained networks get.

    PYTHONPATH=generator python bench/exercised_weights.py site_src/report.toml /tmp/exercised
    dinoreport build --config /tmp/exercised/report.toml --out /tmp/site-exercised
"""
from __future__ import annotations

import shutil
import sys
from pathlib import Path

from safetensors.torch import save_file

from dinoreport.backbones import create_backbone
from dinoreport.config import load_config


def write_weights(config: Path, folder: Path) -> Path:
    """One ``<model id>.safetensors`` per model of ``config`` in ``folder``, and
    ``folder/report.toml`` beside a copy of the narrative: the config with ``weights = ...`` per model and every relative
    path made absolute. Returns the new config's path."""
    cfg = load_config(config)
    folder.mkdir(parents=True, exist_ok=True)
    text = config.read_text(encoding="utf-8")
    for spec in cfg.models:
        model = create_backbone(spec, None, seed=cfg.seed).model
        path = folder / f"{spec.id}.safetensors"
        save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path))
        line = f'id = "{spec.id}"\n'
        if line not in text:
            raise SystemExit(f"{config}: cannot find the line {line!r} to add the weights after")
        text = text.replace(line, line + f'weights = "{path}"\n', 1)
    manifest = cfg.images.manifest
    if manifest is not None:
        text = text.replace('manifest = "../images/manifest.toml"', f'manifest = "{manifest}"')
    for md in sorted(config.parent.glob("*.md")):  # the narrative travels with the config
        shutil.copyfile(md, folder / md.name)
    out = folder / "report.toml"
    out.write_text(text, encoding="utf-8")
    return out


if __name__ == "__main__":
    if len(sys.argv) != 3:
        raise SystemExit(__doc__)
    print(write_weights(Path(sys.argv[1]).resolve(), Path(sys.argv[2]).resolve()))

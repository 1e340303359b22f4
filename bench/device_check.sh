#!/usr/bin/env bash
# The one prepared GPU check of issue 13, for a session lent a device machine. Run from the
# repository root; the peer and its photos must be in ../shared or in shared/ (copy them there
# as untracked files before the run). Offline, random weights. Prints, in one run:
#   - what the machine has (missing Python modules stop the run here, by name);
#   - our cold build on cuda (fp32), the peer on cuda, our warm rebuild;
#   - our cold build on cuda with --dtype bf16, ours and the peer's cold on the CPU;
#   - the drift of every number in results.json, GPU fp32 and bf16 against the CPU build.
# Test it on a CPU first with:  bash bench/device_check.sh --dry-run
set -euo pipefail
export HF_HUB_OFFLINE=1 PYTHONPATH="$PWD/generator${PYTHONPATH:+:$PYTHONPATH}"
PY="${PYTHON:-python3}"
"$PY" - <<'PYEOF'
import importlib.util, sys
mods = ("torch", "torchvision", "timm", "numpy", "scipy", "sklearn", "skimage", "jinja2", "matplotlib",
        "markdown", "typer", "PIL", "safetensors", "huggingface_hub", "threadpoolctl")
missing = [m for m in mods if importlib.util.find_spec(m) is None]
import torch
print("torch", torch.__version__, "| cuda:", torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none")
print("missing modules:", ", ".join(missing) if missing else "none")
sys.exit(1 if missing else 0)
PYEOF
if [ "${1:-}" = "--dry-run" ]; then
  "$PY" bench/build.py --help >/dev/null && echo "dry run: bench/build.py loads; on a GPU this runs --device cuda --gpu-table"
  exit 0
fi
"$PY" bench/build.py --device cuda --gpu-table "$@"

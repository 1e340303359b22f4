# %% [markdown]
# # dinoreport from a notebook
#
# Feature maps of a timm backbone, the report's pictures inline, the report's own numbers, and
# a comparison report, from Python. Open it as a notebook (Jupytext, VS Code, PyCharm read the
# `# %%` cells) or run it as a script: `python examples/notebook.py`.
#
# Without the pretrained weights (offline), set `DINOREPORT_RANDOM_INIT=1`: seeded random
# weights, which show the pipeline, not what a trained network learned. `tests/test_api.py`
# runs this file that way at 64 px.

# %%
import os
from pathlib import Path

import dinoreport
from dinoreport import metrics, show

RANDOM_INIT = os.environ.get("DINOREPORT_RANDOM_INIT", "0") == "1"
RESOLUTION = int(os.environ.get("DINOREPORT_RESOLUTION", "448"))
# The three scikit-image photos of `dinoreport new`; any folder of photos works.
IMAGES = Path(os.environ.get("DINOREPORT_IMAGES", Path(dinoreport.__file__).parent / "scaffold" / "images"))
OUT = Path(os.environ.get("DINOREPORT_OUT", "notebook-out"))
OUT.mkdir(parents=True, exist_ok=True)
MODEL = "convnext_tiny.dinov3_lvd1689m"

# %% [markdown]
# ## Feature maps: `fm[image][stage]` is a (C, H, W) float32 array
# The same preprocessing, crop and stages as a build, through the same cache.

# %%
fm = dinoreport.extract(MODEL, IMAGES, resolution=RESOLUTION, random_init=RANDOM_INIT)
image = sorted(fm)[0]
last = fm[image][fm.stages[-1]]
print(fm.model.label, fm.stages, {s: fm[image][s].shape for s in fm.stages})

# %% [markdown]
# ## The report's pictures, inline

# %%
show.pca_rgb(last)

# %%
show.components(last).save(OUT / "components.png")
show.components(last)

# %%
show.histogram({s: list(fm.stage(s).values()) for s in fm.stages}, title=fm.model.label)

# %% [markdown]
# ## The report's numbers

# %%
pca = metrics.pca_within(last, k=3)
mask = metrics.foreground_mask(pca.proj[0])
stats = metrics.feature_stats(lambda: iter(fm.stage(fm.stages[-1]).values()))
print(f"PC1..3 explain {pca.explained_variance_ratio.round(3)}; foreground {mask.mean():.0%}; "
      f"kurtosis {stats.kurtosis:.2f}")

# %% [markdown]
# ## A report comparing two models (`dinoreport compare` as a function)

# %%
summary = dinoreport.build(models=[MODEL, "convnext_tiny.fb_in1k"], images=IMAGES, out=OUT / "site",
                           resolution=RESOLUTION, random_init=RANDOM_INIT,
                           analyses=["within_pca", "stage_pca", "feature_stats"])
print(summary.line())
print(summary.index, len(summary.results["within_image_pca"]), "within-image PCA rows")

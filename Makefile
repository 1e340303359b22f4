# The README's commands. `make report` needs internet once (the weights);
# `make demo` and `make test` work offline.
PY      ?= python3
VENV    ?= .venv
BIN      = $(VENV)/bin
OUT     ?= site
IMAGES  ?=
ARGS    ?=
IMAGES_FLAG = $(if $(IMAGES),--images $(IMAGES),)

.PHONY: setup report demo test serve clean bench bench-scaling bench-backbones

$(BIN)/dinoreport: pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $@

setup: $(BIN)/dinoreport   ## create .venv and install the project

report: setup              ## the real report: pretrained weights (internet once)
	$(BIN)/dinoreport build --fetch --out $(OUT) $(IMAGES_FLAG) $(ARGS)

demo: setup                ## the same report with seeded random weights: offline, illustrates the pipeline
	$(BIN)/dinoreport build --random-init --out $(OUT) $(IMAGES_FLAG) $(ARGS)

test: setup                ## the test suite (offline)
	HF_HUB_OFFLINE=1 $(BIN)/python -m pytest -q

serve: setup               ## preview on http://127.0.0.1:8000, rebuilt when site_src/ or the theme change
	$(BIN)/dinoreport serve --random-init $(IMAGES_FLAG)

bench: setup               ## cold build side by side with the peer (../shared), warm rebuild, peak RSS, phases
	$(BIN)/python bench/build.py

bench-scaling: setup       ## the same plus cold builds of 25, 100 and 400 images (long)
	$(BIN)/python bench/build.py --scaling 25,100,400

bench-backbones: setup     ## per architecture: stages, grid at 448, cold single-model build time
	$(BIN)/python bench/backbones.py

clean:                     ## remove the built site and the feature/image cache
	rm -rf $(OUT)
	-$(BIN)/dinoreport clean --yes

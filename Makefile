# Two entry points (see README): `make demo` and `make test`. Both set up .venv first.
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
DEMO_DIR ?= runs/demo

.PHONY: setup demo test lint

setup: $(VENV)/.installed

# torch is installed first, pinned, so that nothing pulls a CUDA build.
$(VENV)/.installed: pyproject.toml clients/pyproject.toml
	python3 -m venv $(VENV)
	$(PIP) install --quiet --disable-pip-version-check "torch==2.13.0"
	$(PIP) install --quiet --disable-pip-version-check -e ".[dev,server,client,minari]" -e clients
	touch $@

demo: setup
	$(VENV)/bin/adept-env data make halfcheetah-random --steps 20000 --seed 0 --out $(DEMO_DIR)/halfcheetah-random.hdf5

lint: setup
	$(VENV)/bin/ruff check .

# pytest exits 5 when it collects no test; that is not a failure of the suite.
test: lint
	$(PY) -m pytest -q -p no:cacheprovider; rc=$$?; if [ $$rc -eq 5 ]; then echo "pytest collected no tests"; rc=0; fi; exit $$rc

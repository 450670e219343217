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
	$(PIP) install --quiet --disable-pip-version-check -e ".[dev,server,client,minari,ray]"
	touch $@

# The product's point, side by side: plain IQL (real data only) and adept-sac (the world model, IS refits) on
# the same 200k-row halfcheetah-random data and 20k-update budget; real-MuJoCo scores and one figure with both
# curves (runs/demo/demo.png). Settings and measured time: BENCHMARKS.md, "make demo".
demo: setup
	$(VENV)/bin/adept-env demo --out $(DEMO_DIR)

lint: setup
	$(VENV)/bin/ruff check .

# pytest exits 5 when it collects no test; that is not a failure of the suite.
test: lint
	$(PY) -m pytest -q -p no:cacheprovider; rc=$$?; if [ $$rc -eq 5 ]; then echo "pytest collected no tests"; rc=0; fi; exit $$rc

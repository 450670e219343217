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

# End to end, a few minutes on 2 CPU cores: a 200k-step halfcheetah-random dataset, a quick world model,
# 20k adept-iql updates with synthetic rollouts and IS refits, real-MuJoCo evaluation, a learning-curve PNG.
demo: setup
	$(VENV)/bin/adept-env train halfcheetah-random --algo adept-iql --budget 20000 --eval-every 5000 \
		--profile quick --dataset-steps 200000 --refit-every 5000 --out $(DEMO_DIR)

lint: setup
	$(VENV)/bin/ruff check .

# pytest exits 5 when it collects no test; that is not a failure of the suite.
test: lint
	$(PY) -m pytest -q -p no:cacheprovider; rc=$$?; if [ $$rc -eq 5 ]; then echo "pytest collected no tests"; rc=0; fi; exit $$rc

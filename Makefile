# The two commands of the README: `make demo` and `make test`.
# Both create ./.venv on first use. TORCH picks the torch build; the default is the
# CPU wheel this project is tested with (override, e.g. TORCH="torch==2.6.0", for CUDA).
PYTHON ?= python3
VENV ?= .venv
TORCH ?= torch==2.13.0
PY := $(VENV)/bin/python
STAMP := $(VENV)/.goose-installed
LAVA_VENV ?= .venv-lava

.PHONY: demo test test-fast lava-env bench clean help

help:
	@echo "make demo      run the whole pipeline offline on the embedded demo teacher"
	@echo "make test      run the test suite (creates .venv and .venv-lava on first use)"
	@echo "make lava-env  create the Python 3.10 Lava environment (.venv-lava)"
	@echo "make bench     run the quick benchmarks (prints figures)"

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q "$(TORCH)"
	$(PY) -m pip install -q -e ".[dev]"
	touch $(STAMP)

lava-env:
	$(PYTHON) scripts/make_lava_env.py --venv $(LAVA_VENV)

demo: $(STAMP)
	-$(PYTHON) scripts/make_lava_env.py --venv $(LAVA_VENV) --if-possible
	$(VENV)/bin/goose-demo

test: $(STAMP)
	-$(PYTHON) scripts/make_lava_env.py --venv $(LAVA_VENV) --if-possible
	$(PY) -m pytest

test-fast: $(STAMP)
	$(PY) -m pytest -m "not slow and not lava"

bench: $(STAMP)
	$(PY) benchmarks/model_speed.py --quick

clean:
	rm -rf $(VENV) $(LAVA_VENV) build dist *.egg-info

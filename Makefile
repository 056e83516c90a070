# Two entry points for a fresh machine: `make run` and `make test` (see README).
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: run test lint bench matrix-long system-deps clean

$(STAMP): pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	touch $(STAMP)

run: $(STAMP)
	$(PY) run.py serve $(ARGS)

system-deps:
	bash tests/tools/system_deps.sh

# the suite runs on every core (pytest-xdist), a test file's tests together and in order
JOBS ?= auto

test: $(STAMP) system-deps
	$(PY) -m ruff check .
	$(PY) -m mypy sync
	$(PY) -m pytest -n $(JOBS) --dist loadfile $(PYTEST_ARGS)

lint: $(STAMP)
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(PY) -m mypy sync

bench: $(STAMP)
	$(PY) bench/run_all.py $(ARGS)

# The reliability matrix at its long sizes (>= 100 kill points); CI runs `pytest -m matrix` small.
matrix-long: $(STAMP)
	MATRIX_LONG=1 $(PY) -m pytest -m matrix -p no:cacheprovider tests/reliability/matrix $(PYTEST_ARGS)

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache test-artifacts

# jobrunner: `make run` starts a daemon on an embedded PostgreSQL; `make test` runs the suite.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
JR := $(VENV)/bin/jobrunner

.PHONY: venv run migrate enqueue-demo test test-unit test-faults lint fmt bench db-stop db-reset ci clean

venv: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	touch $@

## run: the daemon with the example workers of config/jobrunner.toml (embedded PostgreSQL
## unless JOBRUNNER_DATABASE_URL is set); Ctrl-C stops it gracefully.
run: venv
	$(JR) migrate
	$(JR) enqueue jobrunner.examples.greet --args '{"name": "world"}' || true
	$(JR) start

migrate: venv
	$(JR) migrate

test: venv
	$(PY) -m pytest -q -p no:cacheprovider

test-unit: venv
	$(PY) -m pytest -q tests/unit

test-faults: venv
	$(PY) -m pytest -q -m faults

lint: venv
	$(VENV)/bin/ruff format --check jobrunner tests deploy examples
	$(VENV)/bin/ruff check jobrunner tests deploy examples
	$(VENV)/bin/mypy
	$(VENV)/bin/mypy --strict deploy/build_image.py
	$(VENV)/bin/hadolint Dockerfile
	$(VENV)/bin/lint-imports

fmt: venv
	$(VENV)/bin/ruff format jobrunner tests deploy examples
	$(VENV)/bin/ruff check --fix jobrunner tests deploy examples

## bench: the benchmarks (~2 min; a local PostgreSQL or the embedded one); BENCH_ARGS="--quick" etc.
bench: venv
	$(PY) -m jobrunner.bench $(BENCH_ARGS)

## db-stop: stop the embedded PostgreSQL that `make run` started (it keeps running to be shared);
## db-reset: stop it and delete its data.
db-stop:
	-$(PY) -c "from jobrunner.db import embedded; embedded.stop('.jobrunner')"

db-reset: venv
	$(PY) -c "from jobrunner.db import embedded; embedded.remove('.jobrunner')"

ci: lint test

clean:
	rm -rf $(VENV) .jobrunner .pytest_cache .mypy_cache .ruff_cache .import_linter_cache

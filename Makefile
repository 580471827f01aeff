# What you run locally is what CI runs (.ci/run calls `make test`).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install test lint typecheck unit docs demo bench soak stress clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports

typecheck: $(STAMP)
	$(BIN)/mypy

unit: $(STAMP)
	$(BIN)/pytest -q

test: lint typecheck unit

# The documentation site (docs/, mkdocs.yml) into site/; any warning (a broken link or
# reference, a docstring it cannot read) fails the build.
docs: $(STAMP)
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --quiet

demo: $(STAMP)
	$(BIN)/cloudonex demo

bench: $(STAMP)
	$(BIN)/python -m benchmarks.run_all

# The soak test for longer (SOAK_SECONDS, default 120), printing its figures.
soak: $(STAMP)
	CLOUDONEX_SOAK_SECONDS=$${SOAK_SECONDS:-120} CLOUDONEX_SOAK_REPORT=1 \
		$(BIN)/pytest -q -s tests/test_soak.py

# The jobs' state machine with many more drawn examples (STRESS_EXAMPLES, default 3000),
# new ones each run.
stress: $(STAMP)
	CLOUDONEX_STATEFUL_EXAMPLES=$${STRESS_EXAMPLES:-3000} \
		$(BIN)/pytest -q tests/test_stateful.py

clean:
	rm -rf .venv .venv-* .mypy_cache .ruff_cache .pytest_cache site

PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test test-all bench lint format clean mutate

$(STAMP): pyproject.toml
	test -d $(VENV) || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/python -m leanfit.demo

test: $(STAMP)
	$(BIN)/pytest -q

test-all: $(STAMP)
	$(BIN)/pytest -q -m ''

bench: $(STAMP)
	$(BIN)/python bench/inspect_speed.py
	$(BIN)/python bench/memory_per_row.py
	$(BIN)/python bench/train.py
	$(BIN)/python bench/boosting.py
	$(BIN)/python bench/memory.py

# Mutation testing of the core modules listed in pyproject.toml [tool.mutmut]; CPU
# heavy (hours on 2 cores), so not part of `make test`. Narrow it with e.g.
# make mutate MUTANTS='leanfit.metrics*'. Ends by listing the mutants that survived.
mutate: $(STAMP)
	$(BIN)/mutmut run --max-children 2 $(MUTANTS)
	$(BIN)/mutmut results

lint: $(STAMP)
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench

format: $(STAMP)
	$(BIN)/ruff check --fix src tests bench
	$(BIN)/ruff format src tests bench

clean:
	rm -rf $(VENV) data .pytest_cache

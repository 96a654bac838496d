PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test test-all bench lint format clean mutate chromium

$(STAMP): pyproject.toml
	test -d $(VENV) || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/python -m leanfit.demo

test: $(STAMP) chromium
	$(BIN)/pytest -q

test-all: $(STAMP) chromium
	$(BIN)/pytest -q -m ''

# Headless Chromium (Debian's package) for the report's browser test; where it is
# missing and this is not root, say so: that test then skips.
chromium:
	@command -v chromium >/dev/null || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    { apt-get update -q && DEBIAN_FRONTEND=noninteractive \
	      apt-get install -y -q --no-install-recommends chromium && chromium --version; } || \
	      echo "chromium: apt-get failed; the browser test of the HTML report will skip"; \
	  else \
	    echo "chromium: not installed, and installing needs root (apt-get install chromium);" \
	      "the browser test of the HTML report will skip"; \
	  fi; }

bench: $(STAMP)
	$(BIN)/python bench/inspect_speed.py
	$(BIN)/python bench/memory_per_row.py
	$(BIN)/python bench/train.py
	$(BIN)/python bench/boosting.py
	$(BIN)/python bench/memory.py
	$(BIN)/python bench/parquet.py

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

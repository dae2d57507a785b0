# Two commands do all set-up on a fresh machine: `make demo` and `make test`.
# Heavy assets (Delta jars, model weights, the compiled llama-server) live in the user cache
# ($WEBSCALE_RL_CACHE, default ~/.cache/webscale-rl) so every clone on the machine reuses them.

PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
WAREHOUSE ?= demo-warehouse
PYTEST_ARGS ?=

.PHONY: venv setup demo test test-fast ui browser clean help

help:
	@echo "make demo      install what is missing, then run the whole pipeline on a small real sample"
	@echo "make test      install what is missing, run ruff, then the whole test suite"
	@echo "make test-fast unit and Spark tests only"
	@echo "make docs      build the documentation site (mkdocs-material) into site/"
	@echo "make ui        MLflow UI on http://127.0.0.1:5000 for the demo warehouse"

$(BIN)/.installed: pyproject.toml requirements.lock
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Python 3.11+ is required (found %s)" % sys.version.split()[0])'
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -c requirements.lock -e ".[local,dev]"
	@touch $@

venv: $(BIN)/.installed

# The training stack (torch, TRL) only for the tests and training, not for the demo.
$(BIN)/.installed-rl: $(BIN)/.installed
	$(BIN)/pip install --quiet -c requirements.lock -e ".[local,dev,rl]"
	@touch $@

setup: venv
	$(BIN)/webscale-rl setup

demo: setup
	$(BIN)/webscale-rl demo --warehouse $(WAREHOUSE)

# Lint and format check (ruff, configured in pyproject.toml); `make test` runs it first.
.PHONY: lint
lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

# pytest exit code 5 means "no tests ran": that must fail, not pass silently.
# Everything: tests/unit, tests/spark and tests/e2e (the real model, a cluster, killed runs, notebooks, the UI).
test: lint setup $(BIN)/.installed-rl $(BIN)/.installed-docs browser
	@$(BIN)/python -m pytest $(PYTEST_ARGS); rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "error: pytest collected no tests" >&2; exit 1; fi; exit $$rc

# Unit and Spark tests only (no whole runs, no extra JVMs, no real model): a few minutes on 2 cores.
test-fast: venv
	@$(BIN)/python -m pytest tests/unit tests/spark -m "not real_model and not spark_processes" $(PYTEST_ARGS); rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "error: pytest collected no tests" >&2; exit 1; fi; exit $$rc

# The documentation site: docs/*.md through mkdocs-material into site/; --strict fails on a broken
# link or anchor. ("docs" is also a folder, hence .PHONY.)
.PHONY: docs
$(BIN)/.installed-docs: $(BIN)/.installed
	$(BIN)/pip install --quiet -c requirements.lock -e ".[local,dev,docs]"
	@touch $@

docs: $(BIN)/.installed-docs
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --site-dir site

# MLflow UI on 127.0.0.1 for the demo warehouse's store (or $MLFLOW_TRACKING_URI when set).
UI_PORT ?= 5000
ui: venv
	$(BIN)/mlflow ui --host 127.0.0.1 --port $(UI_PORT) --workers 1 \
	  --backend-store-uri "$${MLFLOW_TRACKING_URI:-sqlite:///$(abspath $(WAREHOUSE))/_mlflow/mlflow.db}"

# Headless Chromium for the UI test (Debian's package; installed once, as root, when missing).
browser:
	@command -v chromium >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    apt-get update -qq && apt-get install -y -qq chromium; \
	  else echo "warning: Debian's chromium is missing; the MLflow UI test will be skipped (apt-get install chromium)" >&2; fi; }

clean:
	rm -rf $(WAREHOUSE) $(WAREHOUSE)-input spark-warehouse metastore_db derby.log .pytest_cache

# Two commands do all the set-up on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint typecheck unit bench venv system-deps clean

# The hot path is compiled with mypyc (setup.py) next to its source, so the install is
# redone whenever a Python module changes: a stale compiled module would shadow the edit.
$(STAMP): pyproject.toml setup.py $(wildcard streams/*.py agents/*.py schemas/*.py)
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	@touch $(STAMP)

venv: $(STAMP)

# Prometheus (with promtool) and Alertmanager (with amtool) come from Debian, and so does
# the headless Chromium the digest test renders the HTML report in.
DEBIAN_PACKAGES := prometheus prometheus-alertmanager chromium fonts-dejavu-core
system-deps:
	@if command -v promtool >/dev/null && command -v prometheus >/dev/null && command -v amtool >/dev/null \
		&& command -v chromium >/dev/null; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		echo "Installing Debian packages: $(DEBIAN_PACKAGES)"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $(DEBIAN_PACKAGES) >/dev/null; \
	else \
		echo "Missing system packages. Install them with:"; \
		echo "  sudo apt-get install -y --no-install-recommends $(DEBIAN_PACKAGES)"; \
		exit 1; \
	fi

demo: $(STAMP)
	$(BIN)/salespulse demo

lint: $(STAMP)
	$(BIN)/ruff check streams agents schemas tests setup.py
	$(BIN)/ruff format --check streams agents schemas tests setup.py

typecheck: $(STAMP)
	$(BIN)/mypy

test: $(STAMP) system-deps lint typecheck
	$(BIN)/python -m pytest -q -p no:cacheprovider

bench: $(STAMP)
	$(BIN)/salespulse bench

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache

# Two commands do all the set-up on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint typecheck unit bench venv system-deps clean

# The package is installed as a built wheel (its hot path compiled with mypyc, setup.py),
# not in editable mode, so the tests import `salespulse.*` exactly as users get it. The
# install is redone whenever a file of the package changes, in any subfolder.
# constraints.txt pins the libraries whose private parts the runtime patches (CI and the
# Docker image install with it too).
PACKAGE_FILES := $(shell find streams agents schemas -type f \( -name '*.py' -o -name '*.json' -o -name '*.toml' -o -name '*.ttf' -o -name '*.txt' \))
$(STAMP): pyproject.toml setup.py constraints.txt $(PACKAGE_FILES)
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	@rm -rf build/lib* build/bdist*  # a wheel would also pack files left there by an older layout
	$(BIN)/python -m pip install --quiet --constraint constraints.txt '.[test]'
	@touch $(STAMP)

venv: $(STAMP)

# Prometheus (with promtool) and Alertmanager (with amtool) come from Debian, and so does
# the headless Chromium the digest test renders the HTML report in. The Persian digest's
# font ships inside the package (streams/report/typefaces).
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
	$(BIN)/ruff check streams agents schemas tests dashboards setup.py
	$(BIN)/ruff format --check streams agents schemas tests dashboards setup.py

# The package, then the dashboards' builder (mypy takes a package or files, not both).
typecheck: $(STAMP)
	$(BIN)/mypy
	$(BIN)/mypy dashboards/build_dashboards.py

# Most tests wait on brokers and worker processes, so several test processes share two
# cores well. They steal work from each other (worksteal): with xdist's default split, one
# process kept a queue of long tests to itself and ran alone for minutes at the end. The
# few that measure latency under a load of their own run alone afterwards.
PYTEST := $(BIN)/python -m pytest -q -p no:cacheprovider
TEST_PROCESSES ?= 6
test: $(STAMP) system-deps lint typecheck
	$(PYTEST) -n $(TEST_PROCESSES) --dist worksteal -m "not serial"
	$(PYTEST) -m serial

bench: $(STAMP)
	$(BIN)/salespulse bench

# Compiled modules left next to the sources by an editable install would shadow them.
clean:
	rm -rf $(VENV) build .mypy_cache .ruff_cache .pytest_cache *.egg-info
	find streams agents schemas -name '*.so' -delete

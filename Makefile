# ephemesh — the two commands a newcomer needs: `make run` and `make test`.
SHELL := /bin/bash
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
HOST ?= 127.0.0.1
PORT ?= 8080
STAMP := $(VENV)/.installed
DEB_PACKAGES := chromium fonts-noto-color-emoji redis-server coturn iproute2 iptables

.PHONY: run test lint tsc typecheck pytest deps debs bench vectors traces clean

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q -U pip

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q -e '.[test,bench]'
	touch $(STAMP)

deps: $(STAMP)

# Debian packages the suite uses (headless Chromium, redis-server, coturn, ip/tc), installed when missing.
debs:
	@missing=""; for p in $(DEB_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:$$missing"; \
	  if [ "$$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi; \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends $$missing; \
	fi

run: $(STAMP)
	$(BIN)/ephemesh serve --host $(HOST) --port $(PORT)

# JS dev tools (typescript, pinned in package-lock.json) for the JSDoc type check; the page needs no build.
NODE_STAMP := node_modules/.package-lock.json
$(NODE_STAMP): package.json package-lock.json
	npm ci --no-audit --no-fund --silent
	touch $(NODE_STAMP)

lint: $(STAMP) $(NODE_STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(MAKE) --no-print-directory tsc

# tsc --noEmit --checkJs --strict (+ the flags in tsconfig.json) over web/js: zero errors.
tsc: $(NODE_STAMP)
	node_modules/.bin/tsc -p tsconfig.json

typecheck: $(STAMP)
	$(BIN)/mypy

pytest: $(STAMP) debs
	$(BIN)/pytest $(PYTEST_ARGS)

test: $(STAMP) debs
	$(MAKE) --no-print-directory lint
	$(MAKE) --no-print-directory typecheck
	$(MAKE) --no-print-directory pytest

vectors: $(STAMP)
	$(BIN)/python scripts/gen_vectors.py

# recorded room traces (tests/vectors/traces/): the behavioural contract between the Python and JS cores
traces: $(STAMP)
	$(BIN)/python scripts/gen_traces.py

# y-webrtc's signaling server, the baseline of the capacity benchmark (npm registry; not committed)
YWEBRTC := /tmp/ywebrtc
$(YWEBRTC)/node_modules/y-webrtc/bin/server.js:
	mkdir -p $(YWEBRTC) && npm install --silent --no-audit --no-fund --prefix $(YWEBRTC) y-webrtc

bench: $(STAMP) $(YWEBRTC)/node_modules/y-webrtc/bin/server.js
	$(BIN)/python -m bench.run_all

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache node_modules

# Tidings — two commands: `make run` and `make test`. Everything else is a step of those.
SHELL := bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help
MAKEFLAGS += --no-builtin-rules

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
INSTALLED := $(VENV)/.installed
GEN_ROOT := clients/python/src
GEN_DIR := $(GEN_ROOT)/tidings/v1
GENERATED := $(GEN_DIR)/.generated
PROTOS := $(sort $(wildcard proto/tidings/v1/*.proto))
NODE_INSTALLED := node_modules/.installed
BUF := node_modules/.bin/buf
TS_DIR := clients/typescript
TS_GENERATED := $(TS_DIR)/gen/.generated
TS_INSTALLED := $(TS_DIR)/node_modules/.installed
PYTEST_ARGS ?=

.PHONY: help setup run test lint fmt gen clean bench browser gen-ts test-ts soak

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-8s %s\n", $$1, $$2}'

setup: $(INSTALLED) $(GENERATED) $(NODE_INSTALLED) $(TS_INSTALLED) $(TS_GENERATED) ## create .venv, install, generate code

$(INSTALLED): pyproject.toml clients/python/pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --upgrade pip
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e clients/python -e '.[dev]'
	@touch $@

# Python stubs for tidings.v1, generated into the client package (the server imports them
# from there). Never edited by hand, never committed.
$(GENERATED): $(PROTOS) $(INSTALLED)
	rm -rf $(GEN_DIR) && mkdir -p $(GEN_DIR)
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/python -m grpc_tools.protoc -Iproto \
	  --python_out=$(GEN_ROOT) --grpc_python_out=$(GEN_ROOT) \
	  --mypy_out=quiet:$(GEN_ROOT) --mypy_grpc_out=quiet:$(GEN_ROOT) $(PROTOS)
	printf '"""Generated from proto/tidings/v1 by `make gen`. Do not edit."""\n' > $(GEN_DIR)/__init__.py
	@touch $@

$(NODE_INSTALLED): package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	@touch $@

gen: $(GENERATED) ## generate code from proto/

# TypeScript messages and service descriptors for clients/typescript, by `buf generate`
# with the local protoc-gen-es from the root node_modules (see buf.gen.yaml).
$(TS_GENERATED): $(PROTOS) buf.gen.yaml $(NODE_INSTALLED)
	$(BUF) generate
	@touch $@

$(TS_INSTALLED): $(TS_DIR)/package.json $(TS_DIR)/package-lock.json
	cd $(TS_DIR) && npm ci --no-audit --no-fund --loglevel=error
	@touch $@

gen-ts: $(TS_GENERATED) ## generate the TypeScript client code from proto/

test-ts: setup ## type-check and test the TypeScript client (node --test)
	node_modules/.bin/tsc -p $(TS_DIR)
	cd $(TS_DIR) && node --import tsx --test test/*.test.ts

run: setup ## start engine + bridge on SQLite (insecure development mode)
	@echo
	@echo "  Tidings is starting in insecure development mode (no tokens; everyone is admin)."
	@echo "  gRPC  127.0.0.1:50051    HTTP + WebSocket  http://127.0.0.1:8000"
	@echo
	@echo "  In another terminal, send a notification to user 42 and watch it arrive:"
	@echo "    .venv/bin/tidings listen --user 42"
	@echo "    .venv/bin/tidings send --user 42 --type welcome --title 'Hello from Tidings'"
	@echo "  or with curl:"
	@echo "    curl -s -X POST localhost:8000/api/v1/notifications -H 'content-type: application/json' \\"
	@echo "         -d '{\"user_id\": \"42\", \"type\": \"welcome\", \"title\": \"Hello\"}'"
	@echo "    curl -s localhost:8000/api/v1/notifications -H 'X-Tidings-User: 42'"
	@echo
	$(BIN)/tidings serve --insecure

test: setup lint browser ## lint, then the whole test suite
	$(BIN)/pytest -n 2 --dist loadfile $(PYTEST_ARGS)
	$(MAKE) --no-print-directory test-ts

# Debian's Chromium for the browser tests (Playwright cannot download its own here).
browser: ## install Chromium for the browser tests (apt; needs root), unless present
	@test -x /usr/bin/chromium || { \
	  echo "installing chromium with apt-get"; \
	  apt-get -o DPkg::Lock::Timeout=300 update -qq && DEBIAN_FRONTEND=noninteractive \
	    apt-get -o DPkg::Lock::Timeout=300 install -y -qq chromium >/dev/null; }

lint: setup ## ruff, mypy --strict, buf lint/format/breaking
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy server bridge tidingsd clients/python/src/tidings/client
	$(BIN)/mypy tests bench
	$(BUF) lint
	$(BUF) format -d --exit-code
	@against=$$(git describe --tags --abbrev=0 --match 'v*' 2>/dev/null || true); \
	if [ -z "$$against" ] && git rev-parse -q --verify HEAD~1 >/dev/null; then against=HEAD~1; fi; \
	if [ -n "$$against" ]; then echo "buf breaking against $$against"; \
	  $(BUF) breaking --against ".git#ref=$$against"; \
	else echo "buf breaking: no earlier commit to compare with"; fi

# The comparison benchmark (bench/run.py, bench/README.md): Tidings against reference servers,
# 5–8 minutes; results in bench/results/, a report appended to docs/BENCHMARKS.md.
# BENCH_ARGS passes flags through, e.g. make bench BENCH_ARGS=--quick
BENCH_ARGS ?=
BENCH_INSTALLED := $(VENV)/.bench-installed
$(BENCH_INSTALLED): pyproject.toml $(INSTALLED)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[dev,bench]'
	@touch $@

bench: setup $(BENCH_INSTALLED) ## run the comparison benchmark (5–8 min; BENCH_ARGS=--quick for a short one)
	ulimit -n 65536 || ulimit -n hard || true; TIDINGS_BENCH_VIA_MAKE=1 $(BIN)/python -m bench.run $(BENCH_ARGS)

# The soak (not in make test; docs/RELIABILITY.md): the WebSocket protocol fuzz with
# SOAK_EXAMPLES examples (make test runs 2 000), then bench/soak.py — 1 000 browser + 200
# gRPC sessions with traffic for 10 minutes; fails when memory grows, sessions or
# connections stay, the WAL passes its bound, or a notification goes missing.
SOAK_EXAMPLES ?= 20000
SOAK_ARGS ?=
soak: setup $(BENCH_INSTALLED) ## fuzz with 20 000 examples, then a 10-minute soak (SOAK_ARGS=--minutes 2)
	TIDINGS_FUZZ_EXAMPLES=$(SOAK_EXAMPLES) $(BIN)/pytest tests/bridge/test_ws_fuzz.py -q $(PYTEST_ARGS)
	ulimit -n 65536 || ulimit -n hard || true; $(BIN)/python -m bench.soak $(SOAK_ARGS)

fmt: setup ## format Python and proto files in place
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .
	$(BUF) format -w

clean: ## remove everything the build made
	rm -rf $(VENV) node_modules $(GEN_DIR) .mypy_cache .ruff_cache .pytest_cache
	rm -rf $(TS_DIR)/node_modules $(TS_DIR)/gen

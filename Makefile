# sundial — developer entry points. `make test` and `make demo` install what they need themselves.
SHELL := /bin/bash
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
PYTEST_ARGS ?=
CHAOS_ARGS ?=  # e.g. CHAOS_ARGS="--seed 7 --json chaos.json"
FANOUT_ARGS ?=  # e.g. FANOUT_ARGS="--items 20000 --json fanout.json" (default: 1,000,000 items)

.PHONY: test demo deps system-deps venv binaries lint typecheck pytest cluster-up cluster-down \
        bench bench-deps bench-full bench-quick bench-fanout chaos manifests clean

test: lint typecheck deps pytest  ## everything CI runs (cheap checks first)

deps: system-deps venv binaries

system-deps:  ## Debian packages: PostgreSQL and Redis servers, openssl, curl
	@hack/system-deps.sh

venv: $(VENV)/.installed
$(VENV)/.installed: pyproject.toml
	@test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test]'
	@touch $@

bench-deps: venv $(VENV)/.bench $(VENV)-arq/.installed
$(VENV)/.bench: pyproject.toml
	$(BIN)/pip install -q -e '.[test,bench]'
	@touch $@
$(VENV)-arq/.installed:  # arq pins redis<6, the operator needs newer: its own venv, its own process
	@test -x $(VENV)-arq/bin/python || $(PY) -m venv $(VENV)-arq
	$(VENV)-arq/bin/pip install -q 'arq==0.28.0'
	@touch $@

binaries:  ## etcd, kube-apiserver, kube-controller-manager, helm, robfig-next (built once, cached)
	@hack/build-binaries.sh >/dev/null
	@hack/build-robfig.sh >/dev/null

lint: venv
	$(BIN)/ruff check operator tests bench hack
	$(BIN)/ruff format --check operator tests bench hack
	$(BIN)/lint-imports

typecheck: venv
	$(BIN)/mypy

pytest: venv
	CI=$${CI:-true} $(BIN)/pytest -q -ra $(PYTEST_ARGS)

cluster-up: deps  ## a local control plane in .cluster/; prints the KUBECONFIG export line
	@hack/cluster.sh up

cluster-down:
	@hack/cluster.sh down

demo: deps  ## local control plane + operator (embedded defaults) + example CronConfigs
	@hack/demo.sh

bench: deps bench-deps  ## 1,000 every-minute schedules: sundial spread and aligned vs the native CronJob controller and arq
	$(BIN)/python bench/scale.py --configs 1000 --minutes 1

bench-full: deps bench-deps  ## 100, 1,000 and 10,000, http jobs, sustained throughput, the plot
	$(BIN)/python bench/scale.py --configs 100,1000,10000 --minutes 3 --kinds all \
	    --sustained 1000,2000,5000 --plot docs/bench-lag.png --json bench-full.json

bench-quick: deps
	$(BIN)/python bench/fire_lag.py --configs 1000 --seconds 60

bench-fanout: deps  ## one fan-out run of a 1,000,000-item source in process: RSS every second, flat or not
	$(BIN)/python bench/fanout_memory.py $(FANOUT_ARGS)

chaos: deps  ## 200 CronConfigs through 3 minutes of kills and outages; exit 1 on any wrong slot
	$(BIN)/python bench/chaos.py $(CHAOS_ARGS)

manifests: venv binaries
	@hack/render-manifests.sh

clean:
	rm -rf $(VENV) .cluster .mypy_cache .ruff_cache .pytest_cache

# tradepulse-vault: the two commands a newcomer needs are `make up` and `make test`.
SHELL := /bin/bash
.ONESHELL:
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

VENV ?= .venv
PY := $(VENV)/bin/python
DEPS_STAMP := $(VENV)/.deps-$(shell sha1sum pyproject.toml | cut -c1-12)
PYTEST_ARGS ?=
# pytest-xdist workers for `make test`, one test file per worker at a time (--dist loadfile: a
# module's tests keep their order and share its module-scoped servers). The tests mostly wait on
# servers, leases and the engine, so three workers on two cores take the suite from about 25 min
# to about 10 (docs/benchmarks-setup.md, "Three test workers by default"). TEST_WORKERS=0 runs
# one process.
TEST_WORKERS ?= 3

.PHONY: help setup system-deps toolchain kube lint unit integration e2e test up up-apply down \
	fresh-check up-cluster down-cluster

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-12s %s\n", $$1, $$2}'

# Each phase says how long it took, and appends the same line to $TRADEPULSE_PHASE_LOG when
# set (.ci/run sums them up at its end: tools/phase_times.py).
phase_start = t0=$$(date +%s)
phase_end = line="make: $@ took $$(( $$(date +%s) - t0 )) s"; echo "$$line" >&2; \
	if [ -n "$${TRADEPULSE_PHASE_LOG:-}" ]; then echo "$$line" >> "$$TRADEPULSE_PHASE_LOG"; fi

$(DEPS_STAMP): pyproject.toml
	$(phase_start)
	echo "setup: creating $(VENV) with the pinned Python dependencies (cold about 2 min)" >&2
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	rm -f $(VENV)/.deps-*
	touch $@
	$(phase_end)

setup: $(DEPS_STAMP) ## create .venv with pinned Python dependencies (incl. the bao binary)

system-deps: ## install the Debian packages in tools/system-packages.txt if missing (needs root)
	$(phase_start)
	bash tools/system-deps.sh
	$(phase_end)

toolchain: ## build or reuse the Pulumi CLI + plugins (cache outside the repo)
	$(phase_start)
	bash tools/toolchain/build.sh
	$(phase_end)

kube: ## build or reuse kube-apiserver + kubectl only (the integration tests' API server)
	$(phase_start)
	bash tools/toolchain/build.sh kube-apiserver
	$(phase_end)

lint: setup ## ruff and mypy (strict on kernel/, infra/, rotation/ and the CrossGuard pack)
	$(phase_start)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy
	MYPYPATH=policies/guard $(VENV)/bin/mypy --strict -p tradepulse_guard
	$(phase_end)

unit: setup ## unit tests only (Pulumi mocks, no servers)
	$(PY) -m pytest -m "not integration and not e2e" $(PYTEST_ARGS)

integration: setup system-deps kube ## integration tests (real OpenBao, PostgreSQL, kube-apiserver)
	$(PY) -m pytest -m integration $(PYTEST_ARGS)

e2e: setup system-deps toolchain ## end-to-end tests with the real Pulumi engine
	source tools/toolchain/env.sh
	$(PY) -m pytest -m e2e $(PYTEST_ARGS)

test: setup system-deps toolchain lint ## everything CI runs: lint, unit, integration, e2e
	$(phase_start)
	source tools/toolchain/env.sh
	$(PY) -m pytest -n $(TEST_WORKERS) --dist loadfile $(PYTEST_ARGS)
	$(phase_end)

up: setup system-deps ## start local OpenBao, PostgreSQL, kube-apiserver and `pulumi up --stack local`
	# kube-apiserver + kubectl come from the toolchain build even with a system Pulumi.
	if [ -z "$${TRADEPULSE_SYSTEM_PULUMI:-}" ]; then bash tools/toolchain/build.sh && source tools/toolchain/env.sh;
	else bash tools/toolchain/build.sh kube-apiserver; fi
	$(PY) tools/localenv.py up

up-apply: setup ## apply the local stack after a bump: only what it rotates (WHOLE_STACK=1: all)
	if [ -z "$${TRADEPULSE_SYSTEM_PULUMI:-}" ]; then source tools/toolchain/env.sh; fi
	$(PY) tools/localenv.py apply $${WHOLE_STACK:+--whole-stack}

fresh-check: ## run .ci/run in a temp clone with every user-level cache empty (the new-machine path)
	bash tools/fresh-check.sh

down: ## stop what `make up` started (OpenBao, PostgreSQL, etcd + kube-apiserver)
	$(PY) tools/localenv.py down

up-cluster: setup ## a three-node OpenBao raft cluster on loopback, to try failover (tools/raftcluster.py)
	$(PY) tools/raftcluster.py up

down-cluster: ## stop what `make up-cluster` started
	$(PY) tools/raftcluster.py down

# Marquee: `make run` and `make test` are the two commands a fresh machine needs.
SHELL := /bin/bash
.DEFAULT_GOAL := help

# Builds live outside the clone so that fresh clones (and CI) reuse them.
export CARGO_TARGET_DIR ?= $(HOME)/.cache/marquee/target
# `make run` serves a release build, 4 to 9 times faster than a debug one
# (BENCHMARKS.md, "What make run serves"); tests and tools use the debug one.
SERVE := $(CARGO_TARGET_DIR)/release/marquee
MARQUEE := $(CARGO_TARGET_DIR)/debug/marquee
RELEASE_BUILD := cargo build --locked --release -p marquee

.PHONY: help run test bootstrap cluster cluster-down status build build-release migrate seed serve openapi lint unit e2e first-run drill

help: ## List the targets
	@grep -E '^[a-z0-9-]+:.*## ' $(MAKEFILE_LIST) | awk -F ':.*## ' '{printf "  make %-13s %s\n", $$1, $$2}'

run: ## Install what is missing, start the cluster, load the demo catalogue, serve the API (each step timed)
	@MARQUEE_BUILD="$(RELEASE_BUILD)" MARQUEE_BIN="$(SERVE)" scripts/run

test: bootstrap cluster lint unit e2e first-run ## Run the whole suite against the local cluster, then a first run on an empty one

bootstrap: ## Install missing packages and tools (Debian/Ubuntu)
	@scripts/bootstrap

cluster: ## Start the local cluster (a no-op for what already runs)
	@scripts/cluster up

cluster-down: ## Stop the local cluster; data stays in var/
	@scripts/cluster down

status: ## Show every cluster component with pid, port and health
	@scripts/cluster status

build: ## Build the debug binary the tests and tools use
	cargo build --locked -p marquee

build-release: ## Build the release binary make run serves
	$(RELEASE_BUILD)

migrate: build-release ## Apply migrations to the catalog and every shard
	$(SERVE) migrate

seed: build-release ## Load the demo catalogue from data/
	$(SERVE) seed

serve: build-release ## Serve the API on https://localhost:8443 (docs at /docs)
	@echo "serving https://localhost:8443  (docs: https://localhost:8443/docs, stop with Ctrl-C)"
	$(SERVE) serve

openapi: build ## Regenerate the checked-in spec openapi/marquee.json
	$(MARQUEE) openapi --out openapi/marquee.json

lint: ## Formatting, clippy with warnings as errors, and the alert rules' and dashboard's checks
	cargo fmt --all --check
	cargo clippy --locked --workspace --all-targets -- -D warnings
	scripts/ops-check

unit: ## Unit and integration tests (nextest, in parallel)
	cargo nextest run --locked --workspace --no-fail-fast

e2e: build ## The served binary: a shard failover, readiness and contract fuzzing
	scripts/e2e

drill: cluster ## Kill every node's primary in turn, five times: failover times and no acknowledged write lost
	scripts/failover-drill

first-run: build-release ## make run on an empty cluster of its own until ready, then the README's examples against it
	scripts/first-run

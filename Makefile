# Marquee: `make run` and `make test` are the two commands a fresh machine needs.
SHELL := /bin/bash
.DEFAULT_GOAL := help

# Builds live outside the clone so that fresh clones (and CI) reuse them.
export CARGO_TARGET_DIR ?= $(HOME)/.cache/marquee/target
MARQUEE := $(CARGO_TARGET_DIR)/debug/marquee

.PHONY: help run test bootstrap cluster cluster-down status build migrate seed serve openapi lint unit e2e

help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F ':.*## ' '{printf "  make %-13s %s\n", $$1, $$2}'

run: bootstrap cluster build migrate seed serve ## Install what is missing, start the cluster, load the demo catalogue, serve the API

test: bootstrap cluster lint unit e2e ## Run the whole suite against the local cluster

bootstrap: ## Install missing packages and tools (Debian/Ubuntu)
	@scripts/bootstrap

cluster: ## Start the local cluster (a no-op for what already runs)
	@scripts/cluster up

cluster-down: ## Stop the local cluster; data stays in var/
	@scripts/cluster down

status: ## Show every cluster component with pid, port and health
	@scripts/cluster status

build: ## Build the marquee binary
	cargo build --locked -p marquee

migrate: build ## Apply migrations to the catalog and every shard
	$(MARQUEE) migrate

seed: build ## Load the demo catalogue from data/
	$(MARQUEE) seed

serve: build ## Serve the API on https://localhost:8443 (docs at /docs)
	@echo "serving https://localhost:8443  (docs: https://localhost:8443/docs, stop with Ctrl-C)"
	$(MARQUEE) serve

openapi: build ## Regenerate the checked-in spec openapi/marquee.json
	$(MARQUEE) openapi --out openapi/marquee.json

lint: ## Formatting and clippy with warnings as errors
	cargo fmt --all --check
	cargo clippy --locked --workspace --all-targets -- -D warnings

unit: ## Unit and integration tests (nextest, in parallel)
	cargo nextest run --locked --workspace --no-fail-fast

e2e: build ## The served binary: readiness drill and contract fuzzing
	scripts/e2e

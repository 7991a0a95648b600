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
#   make release         static binaries for linux/amd64 and linux/arm64 and SHA256SUMS in dist/
#   make image           container image localhost/boxtap (only the static binary), loaded into
#                        Docker and into containerd's k8s.io namespace
#
# Without a Go at least as new as go.mod's on PATH (or in /usr/local/go), every target first
# installs that toolchain into .cache/go/ (scripts/go-toolchain.sh; BOXTAP_GO_PREFIX moves it).

SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c

# Find Go even when PATH lacks it (CI shells, sudo).
export PATH := $(PATH):/usr/local/go/bin
export GOFLAGS := -mod=mod
# GO is the go command: from the environment if set, else what go-toolchain.sh finds or installs.
# Its directory goes first on PATH, so scripts and tests that run `go` get the same one.
ifeq ($(origin GO),undefined)
ifneq ($(MAKECMDGOALS),clean)
GO := $(shell PATH="$(PATH)" scripts/go-toolchain.sh)
ifeq ($(GO),)
$(error no Go toolchain: scripts/go-toolchain.sh failed (see its message above))
endif
export PATH := $(dir $(GO)):$(PATH)
endif
endif
export GO

FUZZTIME ?= 30s
export FUZZTIME
TEST_TIMEOUT ?= 40m
export TEST_TIMEOUT

.PHONY: all build generate check-generate vet test demo fuzz soak deps clean release image

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
# tcpdump and tshark, and the rows of the newer cases; prints the table and writes it to BENCHMARKS.md.
# BENCH_ROUNDS (3), BENCH_SECONDS (10), BENCH_WARMUP (3), BENCH_CASES (small,tools,neighbour,big,filter,telemetry,h2c,burst,https,uprobe);
# BENCH_BURST_RING passes --ring-size to the burst case (boxtap stopped 200 ms every 2 s).
# A target is met only when every round meets it; a round in which wrk saw errors is invalid.
# bench-check runs the same measurements and exits non-zero when a target is missed.
.PHONY: bench bench-check mutate
bench:
	scripts/bench-deps.sh
	$(MAKE) build
	$(GO) run ./internal/benchrun
	@echo "== user-space hot path (Go benchmarks)"
	$(GO) test -run '^$$' -bench 'HandleSmallResponses|HandleH2cResponses|SmallResponses|AppendJSON$$|AppendText$$' -benchmem ./tracer/ ./httpstream/ ./output/
	@echo "== what the OCI hook adds to a container's start (20 starts each, alternating), and the host tracer's memory for 100 containers"
	$(GO) test -run '^$$' -bench 'HookStartCost|HookHostMemory' -benchtime 1x ./cmd/boxtap/

# Release builds use exactly go.mod's Go version (installed if needed), so the same commit
# gives the same bytes on any machine. VERSION defaults to `git describe --tags --always --dirty`.
DIST ?= dist
release:
	scripts/release.sh $(DIST)

# IMAGE names the image; the DaemonSet in examples/kubernetes/ runs localhost/boxtap:latest.
IMAGE ?= localhost/boxtap
image: release
	scripts/image.sh $(DIST) $(IMAGE)

bench-check:
	scripts/bench-deps.sh
	$(MAKE) build
	$(GO) run ./internal/benchrun -check

# Never run by CI (about an hour on 2 cores); see scripts/mutate.sh and TESTING.md.
mutate:
	scripts/mutate.sh

clean:
	rm -rf bin dist

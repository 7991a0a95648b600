#!/usr/bin/env bash
# check-generate.sh: fail when the committed bpf2go output under bpf/ no longer matches what
# `go generate ./bpf/...` produces from the sources. It regenerates in a temporary copy of the
# tree, so the working tree is never modified.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
go=${GO:-go}
tmp=$(mktemp -d "${TMPDIR:-/tmp}/boxtap-check-generate.XXXXXX")
trap 'rm -rf "$tmp"' EXIT

if [ ! -d "$root/bpf" ]; then
  echo "check-generate: no bpf/ directory, nothing to check"
  exit 0
fi

tar -C "$root" --exclude=./.git --exclude=./bin --exclude=./dist --exclude=./.cache -cf - . | tar -C "$tmp" -xf -
if ! (cd "$tmp" && "$go" generate ./bpf/...); then
  echo "check-generate: go generate ./bpf/... failed (is clang installed? run scripts/ensure-deps.sh)" >&2
  exit 1
fi
if ! diff -r -q "$root/bpf" "$tmp/bpf" >&2; then
  echo "generated eBPF objects are stale: run make generate and commit" >&2
  exit 1
fi
echo "check-generate: bpf/ generated files are up to date"

#!/usr/bin/env bash
# fuzz.sh: run every fuzz target of the module for FUZZTIME each (default 30s).
# Targets are discovered with `go test -list '^Fuzz' ./...`; a package may hold several.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
go=${GO:-go}
fuzztime=${FUZZTIME:-30s}

# `go test -list` prints a package's matching names, then one "ok  <pkg> <time>" line.
targets=$("$go" test -list '^Fuzz' ./... | awk '
  /^Fuzz/ { names[n++] = $1; next }
  /^ok/   { for (i = 0; i < n; i++) print $2, names[i]; n = 0; next }
          { n = 0 }')

if [ -z "$targets" ]; then
  echo "fuzz: no fuzz targets found"
  exit 0
fi
count=$(printf '%s\n' "$targets" | wc -l)
echo "fuzz: $count targets, $fuzztime each"

failed=()
# count_inputs DIR: how many inputs a fuzz corpus directory holds (0 if none).
count_inputs() { if [ -d "$1" ]; then find "$1" -type f | wc -l; else echo 0; fi; }

log=$(mktemp)
trap 'rm -f "$log"' EXIT
while read -r pkg name; do
  echo "fuzz: $pkg $name"
  dir="$("$go" list -f '{{.Dir}}' "$pkg")/testdata/fuzz/$name"
  before=$(count_inputs "$dir")
  if ! "$go" test -run '^$' -fuzz "^${name}\$" -fuzztime "$fuzztime" "$pkg" 2>&1 | tee "$log"; then
    after=$(count_inputs "$dir")
    # Go's fuzzing engine sometimes reports "context deadline exceeded" when
    # fuzztime ends while a worker is still minimising an input (golang/go
    # issue 48127): no input failed and no crasher was written. Anything
    # else, or any new crasher, is a failure.
    if [ "$after" -eq "$before" ] && grep -q 'context deadline exceeded' "$log" &&
       ! grep -qE '^\s+(fuzz_test|.*_test)\.go:[0-9]+:|panic:|Failing input written' "$log"; then
      echo "fuzz: $pkg $name: the engine stopped late at the end of fuzztime (no failing input, no crasher); counted as passed"
    else
      failed+=("$pkg $name")
    fi
  fi
done <<<"$targets"

if [ ${#failed[@]} -gt 0 ]; then
  printf 'fuzz: FAILED: %s\n' "${failed[@]}" >&2
  echo "fuzz: see the output above; a crashing input is saved under the package's testdata/fuzz/<FuzzName>/ (commit it as a regression seed once fixed)" >&2
  exit 1
fi
echo "fuzz: all $count targets passed"

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
while read -r pkg name; do
  echo "fuzz: $pkg $name"
  if ! "$go" test -run '^$' -fuzz "^${name}\$" -fuzztime "$fuzztime" "$pkg"; then
    failed+=("$pkg $name")
  fi
done <<<"$targets"

if [ ${#failed[@]} -gt 0 ]; then
  printf 'fuzz: FAILED: %s\n' "${failed[@]}" >&2
  echo "fuzz: see the output above; a crashing input is saved under the package's testdata/fuzz/<FuzzName>/ (commit it as a regression seed once fixed)" >&2
  exit 1
fi
echo "fuzz: all $count targets passed"

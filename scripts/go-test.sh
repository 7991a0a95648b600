#!/usr/bin/env bash
# go-test.sh: run the module's tests in two passes.
#   1. unit packages, in parallel, quiet unless something fails;
#   2. integration packages (those whose tests import internal/itest, plus itest itself),
#      one package at a time (-p 1: they share Docker, cgroups and ports) and verbose, so a
#      CI log shows what ran.
# Both passes run with -v, so that skipped tests can be counted; the unit pass shows only
# what is not a passing test's name. At the end the script prints the number of skipped
# tests of both passes and lists them; with CI=true any skip is a failure (integration
# tests fail instead of skipping there, through internal/itest's Require helpers).
# Both passes always run with the race detector (-race), and the integration tests then
# build the boxtap binary they run with it too (internal/itest/race.go): a data race
# anywhere fails the run. The exit status is non-zero if either pass failed.
# Extra `go test` flags may be passed in GOTESTFLAGS (e.g. GOTESTFLAGS='-run TestFoo').
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
go=${GO:-go}
timeout=${TEST_TIMEOUT:-40m}
itest=github.com/boxtap/boxtap/internal/itest
# shellcheck disable=SC2206
extra=(${GOTESTFLAGS:-})

mapfile -t all < <("$go" list ./...)
mapfile -t integration < <("$go" list -f '{{.ImportPath}}{{range .TestImports}} {{.}}{{end}}{{range .XTestImports}} {{.}}{{end}}' ./... |
  awk -v itest="$itest" '$1 == itest { print $1; next } { for (i = 2; i <= NF; i++) if ($i == itest) { print $1; next } }')
mapfile -t unit < <(printf '%s\n' "${all[@]}" | grep -vxF -f <(printf '%s\n' "${integration[@]}" "") || true)

status=0
logs=$(mktemp -d)
trap 'rm -rf "$logs"' EXIT

# run_pass LOG FILTER ARGS...: go test ARGS, its output kept in LOG and shown without the
# lines matching FILTER; returns go test's status.
run_pass() {
  local log=$1 filter=$2
  shift 2
  set +e
  "$go" test "$@" 2>&1 | tee "$log" | grep --line-buffered -Ev "$filter"
  local rc=${PIPESTATUS[0]}
  set -e
  return "$rc"
}

start=$SECONDS
: >"$logs/unit"
if [ ${#unit[@]} -gt 0 ]; then
  echo "go-test: unit packages (${#unit[@]})"
  # Quiet like go test without -v: passing tests' names are dropped.
  run_pass "$logs/unit" '^=== (RUN|PAUSE|CONT|NAME) |^ *--- PASS: |^PASS$' \
    -race -count=1 -v -timeout "$timeout" "${extra[@]}" "${unit[@]}" || status=1
fi
echo "go-test: unit pass took $((SECONDS - start))s"

start=$SECONDS
: >"$logs/integration"
if [ ${#integration[@]} -gt 0 ]; then
  echo "go-test: integration packages (${#integration[@]}): ${integration[*]}"
  # -v shows every test's result and logs; the RUN/PAUSE/CONT markers are dropped as noise.
  run_pass "$logs/integration" '^=== (RUN|PAUSE|CONT|NAME) ' \
    -race -count=1 -p 1 -v -timeout "$timeout" "${extra[@]}" "${integration[@]}" || status=1
fi
echo "go-test: integration pass took $((SECONDS - start))s"

# A skipped test or subtest prints "--- SKIP: Name (0.00s)", indented per subtest level.
skipped=$(cat "$logs/unit" "$logs/integration" | grep -E '^ *--- SKIP: ' || true)
nskipped=0
[ -z "$skipped" ] || nskipped=$(printf '%s\n' "$skipped" | wc -l)
echo "go-test: $nskipped skipped tests (unit $(grep -cE '^ *--- SKIP: ' "$logs/unit" || true), integration $(grep -cE '^ *--- SKIP: ' "$logs/integration" || true))"
if [ "$nskipped" -gt 0 ]; then
  printf '%s\n' "$skipped" | sed 's/^ */go-test:   /'
  if [ "${CI:-}" = true ]; then
    echo "go-test: FAILED: CI=true allows no skipped test; each one above must run or fail (internal/itest Require)" >&2
    status=1
  fi
fi

if [ $status -ne 0 ]; then
  echo "go-test: FAILED (see the FAIL lines above)" >&2
fi
exit $status

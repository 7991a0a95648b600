#!/usr/bin/env bash
# go-test.sh: run the module's tests in two passes.
#   1. unit packages, in parallel, quiet unless something fails;
#   2. integration packages (those whose tests import internal/itest, plus itest itself),
#      one package at a time (-p 1: they share Docker, cgroups and ports) and verbose, so a
#      CI log shows what ran.
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
start=$SECONDS
if [ ${#unit[@]} -gt 0 ]; then
  echo "go-test: unit packages (${#unit[@]})"
  "$go" test -race -count=1 -timeout "$timeout" "${extra[@]}" "${unit[@]}" || status=1
fi
echo "go-test: unit pass took $((SECONDS - start))s"

start=$SECONDS
if [ ${#integration[@]} -gt 0 ]; then
  echo "go-test: integration packages (${#integration[@]}): ${integration[*]}"
  # -v shows every test's result and logs; the RUN/PAUSE/CONT markers are dropped as noise.
  set +e
  "$go" test -race -count=1 -p 1 -v -timeout "$timeout" "${extra[@]}" "${integration[@]}" 2>&1 |
    grep --line-buffered -Ev '^=== (RUN|PAUSE|CONT|NAME) '
  rc=${PIPESTATUS[0]}
  set -e
  [ "$rc" -eq 0 ] || status=1
fi
echo "go-test: integration pass took $((SECONDS - start))s"

if [ $status -ne 0 ]; then
  echo "go-test: FAILED (see the FAIL lines above)" >&2
fi
exit $status

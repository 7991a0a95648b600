#!/usr/bin/env bash
# Mutation testing (make mutate): go-gremlins mutates the code of each package and runs that
# package's unit tests against every mutant; a mutant the tests do not notice "lived".
# Not part of make test or CI: it takes about an hour on 2 cores.
#
#   MUTATE_PKGS      packages to mutate (default: httpstream output tracer)
#   MUTATE_WORKERS   parallel mutants (default 1, so the machine stays usable)
#   MUTATE_TIMEOUT   gremlins' timeout coefficient (default 100). gremlins bounds each mutant's
#                    `go test`, build included, by the coverage run's time (often 0.3 s, from the
#                    build cache) times this; with 10, a busy machine reported most mutants of
#                    httpstream as timed out while they only waited for the compiler.
#   MUTATE_OUT       directory for the per-package JSON results (default bin/mutate)
#   MUTATE_FLAGS     more gremlins flags, e.g. the mutators that are off by default:
#                    "--invert-logical --invert-loopctrl --invert-assignments --remove-self-assignments"
#
# gremlins runs as `go run module@version` so that its own dependencies never enter go.mod;
# the version is pinned here and the module proxy's checksum database verifies it.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="${PATH}:/usr/local/go/bin"
GREMLINS="github.com/go-gremlins/gremlins/cmd/gremlins@v0.6.0"
pkgs=${MUTATE_PKGS:-httpstream output tracer}
out=${MUTATE_OUT:-bin/mutate}
mkdir -p "$out"

for p in $pkgs; do
  echo "== mutate ./$p"
  # Each run copies the module to a temporary directory per worker: the work tree is not changed.
  "${GO:-go}" run "$GREMLINS" unleash \
    --workers "${MUTATE_WORKERS:-1}" --test-cpu 1 \
    --timeout-coefficient "${MUTATE_TIMEOUT:-100}" ${MUTATE_FLAGS:-} \
    --output "$out/$p.json" "./$p" | tee "$out/$p.log"
done

echo "== mutation score per package (efficacy = killed / (killed + lived))"
for p in $pkgs; do
  printf '%-12s ' "$p"
  grep -E 'Test efficacy|Killed:' "$out/$p.log" | tr '\n' ' '
  echo
done

#!/usr/bin/env bash
# Long soak of `boxtap trace` (make soak): TestSoak with BOXTAP_SOAK=full pushes at least
# 1,000,000 responses through a traced container, half of them over 100,000 short-lived
# connections, and checks completeness, lost records, boxtap's RSS/fd trend and the
# kernel's socket storage. `make test` runs the same test in its short form.
#
#   scripts/soak.sh                  SOAK_TIMEOUT (default 60m) bounds the run
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/ensure-deps.sh
export CI="${CI:-true}" BOXTAP_SOAK=full GOFLAGS=-mod=mod
exec "${GO:-go}" test -count=1 -v -timeout "${SOAK_TIMEOUT:-60m}" -run '^TestSoak$' ./cmd/boxtap/

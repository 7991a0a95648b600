#!/usr/bin/env bash
# bench-deps.sh: what `make bench` needs beyond the test dependencies.
#
# Runs scripts/ensure-deps.sh (Debian packages such as nginx, wrk, tcpdump and Docker;
# containerd and dockerd started), then installs tshark, the optional reference tool,
# when it is missing. Idempotent.
set -euo pipefail
export PATH="/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin:${PATH:-}"

here=$(cd "$(dirname "$0")" && pwd)
"$here/ensure-deps.sh"

if ! command -v tshark >/dev/null 2>&1; then
  echo "bench-deps: installing tshark (reference capture tool)"
  # wireshark-common asks whether non-root users may capture; the default (no) is fine.
  if ! { apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends tshark; }; then
    echo "bench-deps: could not install tshark; the bench leaves its row out" >&2
  fi
fi

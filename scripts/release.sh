#!/usr/bin/env bash
# release.sh [DIR]: static boxtap binaries for linux/amd64 and linux/arm64 in DIR (default
# dist/), named boxtap-linux-<arch>, and DIR/SHA256SUMS beside them.
#
# Built with exactly the Go version go.mod names (scripts/go-toolchain.sh --exact installs it
# when needed), CGO_ENABLED=0, -trimpath, stripped (-s -w), without VCS stamping, and with
# VERSION (default: git describe --tags --always --dirty) stamped into `boxtap version`:
# builds of the same commit give the same bytes.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
dir=${1:-$root/dist}
arches=(${RELEASE_ARCHES:-amd64 arm64})

say() { printf 'release: %s\n' "$*" >&2; }

go=$("$root/scripts/go-toolchain.sh" --exact)
version=${VERSION:-$(git -C "$root" describe --tags --always --dirty 2>/dev/null || echo dev)}
mkdir -p "$dir"
dir=$(cd "$dir" && pwd)
rm -f "$dir/SHA256SUMS"

cd "$root"
for arch in "${arches[@]}"; do
  out=$dir/boxtap-linux-$arch
  say "building $out ($version, $("$go" env GOVERSION), linux/$arch)"
  CGO_ENABLED=0 GOOS=linux GOARCH=$arch GOFLAGS=-mod=readonly \
    "$go" build -trimpath -buildvcs=false -ldflags "-s -w -X main.version=$version" -o "$out" ./cmd/boxtap
done
(cd "$dir" && sha256sum "${arches[@]/#/boxtap-linux-}" >SHA256SUMS)
say "wrote $dir/SHA256SUMS:"
sed 's/^/  /' "$dir/SHA256SUMS" >&2

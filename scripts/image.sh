#!/usr/bin/env bash
# image.sh DIST IMAGE: a container image holding nothing but the static release binary
# DIST/boxtap-linux-<this machine's arch> as /boxtap (its entrypoint), tagged IMAGE:<version>
# and IMAGE:latest, loaded into Docker and, when containerd answers, into containerd's k8s.io
# namespace (where the kubelet looks). No registry and no base image are involved.
set -euo pipefail

die() { printf 'image: ERROR: %s\n' "$*" >&2; exit 1; }
say() { printf 'image: %s\n' "$*" >&2; }

[ $# -eq 2 ] || die "usage: scripts/image.sh DIST IMAGE (e.g. scripts/image.sh dist localhost/boxtap)"
dist=$1 image=$2
containerd_sock=${CONTAINERD_ADDRESS:-/run/containerd/containerd.sock}

case "$(uname -m)" in
  x86_64) arch=amd64 ;;
  aarch64) arch=arm64 ;;
  *) die "no release binary for machine type $(uname -m)" ;;
esac
bin=$dist/boxtap-linux-$arch
[ -x "$bin" ] || die "$bin not found; run make release first"
version=$("$bin" version | awk 'NR == 1 { print $2 }')
[ -n "$version" ] || die "$bin version printed no version"

command -v docker >/dev/null 2>&1 || die "the docker CLI is needed to build the image (apt-get install docker.io)"
stage=$(mktemp -d "${TMPDIR:-/tmp}/boxtap-image.XXXXXX")
trap 'rm -rf "$stage"' EXIT
install -m 0755 "$bin" "$stage/boxtap"

# One layer, one file, fixed owner and time: the layer's bytes depend on the binary alone.
tar --owner=0 --group=0 --numeric-owner --mtime=@0 -C "$stage" -cf - boxtap |
  docker import \
    -c 'ENTRYPOINT ["/boxtap"]' \
    -c "LABEL org.opencontainers.image.title=boxtap org.opencontainers.image.version=$version" \
    - "$image:$version" >/dev/null
docker tag "$image:$version" "$image:latest"
size=$(docker image inspect --format '{{.Size}}' "$image:$version")
say "built $image:$version and $image:latest ($size bytes) in Docker"

if command -v ctr >/dev/null 2>&1 && [ -S "$containerd_sock" ]; then
  docker save "$image:$version" "$image:latest" | ctr --address "$containerd_sock" -n k8s.io images import - >/dev/null
  say "imported $image:$version and $image:latest into containerd ($containerd_sock, namespace k8s.io)"
else
  say "not imported into containerd: no ctr command or no socket at $containerd_sock"
fi

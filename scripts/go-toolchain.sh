#!/usr/bin/env bash
# go-toolchain.sh [--exact]: print the path of a go command that builds this module, installing
# the Go toolchain that go.mod names when the machine has none that will do.
#
#   (default)  a go on PATH at least as new as go.mod's toolchain (or go) line is used as it is;
#   --exact    only exactly that version will do (make release: same commit, same bytes).
#
# Otherwise the toolchain is installed from the Go module proxy's golang.org/toolchain module,
# the same zip that GOTOOLCHAIN=auto fetches, into $BOXTAP_GO_PREFIX/<version> (default
# .cache/go/ in the repository). The zip is kept in $BOXTAP_GO_DOWNLOADS (default
# .cache/go/dl) and verified before every install: its h1: hash (the go.sum hash of a module
# zip) must equal the line recorded in scripts/go-toolchain.sum, which came from the Go
# checksum database. Progress goes to stderr; stdout carries only the go command's path.
#
# Environment: BOXTAP_GO_PREFIX, BOXTAP_GO_DOWNLOADS, BOXTAP_GO_PROXY (default: the first
# URL in GOPROXY, else https://proxy.golang.org).
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
sums=$root/scripts/go-toolchain.sum

say() { printf 'go-toolchain: %s\n' "$*" >&2; }
die() { printf 'go-toolchain: ERROR: %s\n' "$*" >&2; exit 1; }

exact=
case "${1:-}" in
  "") ;;
  --exact) exact=1 ;;
  *) die "unknown argument '$1' (use --exact or nothing)" ;;
esac

# wanted_version: go.mod's toolchain line if it has one, else "go" + its go line.
wanted_version() {
  awk '$1 == "toolchain" { t = $2 } $1 == "go" && g == "" { g = "go" $2 } END { print (t != "" ? t : g) }' "$root/go.mod"
}

# new_enough HAVE WANT: HAVE (e.g. go1.26.8) is WANT or newer.
new_enough() {
  [ "$(printf '%s\n%s\n' "${1#go}" "${2#go}" | sort -V | head -n 1)" = "${2#go}" ]
}

# usable GO WANT: GO runs and is the version we need; prints its version either way.
usable() {
  local have
  have=$("$1" env GOVERSION 2>/dev/null) || return 1
  printf '%s' "$have"
  if [ -n "$exact" ]; then [ "$have" = "$2" ]; else new_enough "$have" "$2"; fi
}

go_arch() {
  case "$(uname -m)" in
    x86_64 | amd64) echo amd64 ;;
    aarch64 | arm64) echo arm64 ;;
    *) die "no Go toolchain for machine type $(uname -m) in scripts/go-toolchain.sum; install Go $want by hand and put it on PATH" ;;
  esac
}

proxy_url() {
  if [ -n "${BOXTAP_GO_PROXY:-}" ]; then echo "${BOXTAP_GO_PROXY%/}"; return; fi
  local first=${GOPROXY:-}
  first=${first%%[,|]*}
  case "$first" in
    http://* | https://*) echo "${first%/}" ;;
    *) echo https://proxy.golang.org ;;
  esac
}

# need_tools: the commands the install uses; Debian's packages are installed when missing.
need_tools() {
  local -a missing=() pkgs=()
  local entry
  for entry in curl:curl unzip:unzip openssl:openssl ca-certificates:/etc/ssl/certs/ca-certificates.crt; do
    if [[ ${entry#*:} == /* ]]; then [ -e "${entry#*:}" ] && continue; else command -v "${entry#*:}" >/dev/null 2>&1 && continue; fi
    missing+=("${entry#*:}"); pkgs+=("${entry%%:*}")
  done
  [ ${#pkgs[@]} -eq 0 ] && return 0
  if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
    say "installing ${pkgs[*]} (needed to fetch and check the toolchain)"
    { apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${pkgs[@]}"; } >&2 ||
      die "apt-get install ${pkgs[*]} failed; install them by hand"
  else
    die "missing ${missing[*]} to install the Go toolchain; install ${pkgs[*]} (or Go $want) first"
  fi
}

# h1_of_zip ZIP DIR: unzip ZIP into DIR and print the zip's h1: hash, computed as Go's
# dirhash.Hash1 does: sha256 over the sorted lines "<sha256 hex>  <file name>\n" of its files.
h1_of_zip() {
  unzip -q "$1" -d "$2" || return 1
  (cd "$2" && find . -type f -printf '%P\0' | LC_ALL=C sort -z | xargs -0 -r sha256sum) |
    openssl dgst -sha256 -binary | base64 -w0 | sed 's/^/h1:/'
}

install_toolchain() {
  local arch version zip url expected got part
  arch=$(go_arch)
  version=v0.0.1-$want.linux-$arch
  expected=$(awk -v v="$version" '$1 == "golang.org/toolchain" && $2 == v { print $3 }' "$sums")
  [ -n "$expected" ] || die "no checksum for golang.org/toolchain@$version in scripts/go-toolchain.sum; add the Sum that 'go mod download -json golang.org/toolchain@$version' prints"
  need_tools
  mkdir -p "$downloads" "$prefix"
  zip=$downloads/golang.org-toolchain@$version.zip
  if [ -s "$zip" ]; then
    say "using the downloaded $zip"
  else
    url=$(proxy_url)/golang.org/toolchain/@v/$version.zip
    say "downloading $url"
    part=$(mktemp "$downloads/.part-XXXXXX") # a concurrent install downloads to its own file
    curl -fsSL --max-time 900 -o "$part" "$url" || { rm -f "$part"; die "download of $url failed; check access to the Go module proxy (BOXTAP_GO_PROXY)"; }
    mv "$part" "$zip"
  fi
  stage=$(mktemp -d "$prefix/.install-XXXXXX")
  got=$(h1_of_zip "$zip" "$stage") || { rm -f "$zip"; die "$zip is not a readable zip (removed); run again to download it anew"; }
  if [ "$got" != "$expected" ]; then
    rm -f "$zip"
    die "checksum mismatch for golang.org/toolchain@$version: got $got, scripts/go-toolchain.sum has $expected (download removed)"
  fi
  say "verified golang.org/toolchain@$version $got"
  if [ -x "$dest/bin/go" ] && usable "$dest/bin/go" "$want" >/dev/null; then
    return 0 # a concurrent install finished first
  fi
  rm -rf "${dest:?}"
  mv -T "$stage/golang.org/toolchain@$version" "$dest"
}

want=$(wanted_version)
[[ $want == go1.* ]] || die "cannot read the Go version from $root/go.mod"
prefix=${BOXTAP_GO_PREFIX:-$root/.cache/go}
downloads=${BOXTAP_GO_DOWNLOADS:-$prefix/dl}
dest=$prefix/$want
stage=
trap '[ -z "$stage" ] || rm -rf "$stage"' EXIT

if found=$(command -v go 2>/dev/null); then
  if have=$(usable "$found" "$want"); then
    echo "$found"
    exit 0
  fi
  if [ -n "$exact" ]; then need="not exactly"; else need="older than"; fi
  reason="the go on PATH ($found) is ${have:-unusable}, $need $want"
else
  reason="no go on PATH"
fi

if [ -x "$dest/bin/go" ] && usable "$dest/bin/go" "$want" >/dev/null; then
  echo "$dest/bin/go"
  exit 0
fi

say "go.mod needs $want; $reason: installing $want from the Go module proxy into $dest"
start=$SECONDS
install_toolchain
have=$(usable "$dest/bin/go" "$want") || die "the installed $dest/bin/go does not run as $want (it says '${have:-nothing}')"
say "installed $have in $dest in $((SECONDS - start))s (go command: $dest/bin/go)"
echo "$dest/bin/go"

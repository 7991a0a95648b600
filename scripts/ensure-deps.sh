#!/usr/bin/env bash
# ensure-deps.sh: make this Debian machine ready for boxtap's tests (or demo).
#
#   scripts/ensure-deps.sh          everything the test suite needs: Debian packages,
#                                   containerd + dockerd running, bpffs mounted
#   scripts/ensure-deps.sh --demo   only what `boxtap demo` needs: root, cgroup v2, BTF, bpffs
#
# Idempotent: installs only missing packages and starts only daemons that do not answer.
# Works with systemd as PID 1 (systemctl) and without it (daemons started with setsid/nohup,
# logs in /var/log/boxtap-ci/).
set -euo pipefail

# Debian puts daemons and admin tools in sbin; a CI shell may not have it on PATH.
export PATH="/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin:${PATH:-}"

LOG_DIR=${BOXTAP_CI_LOG_DIR:-/var/log/boxtap-ci}
CONTAINERD_SOCK=${BOXTAP_CI_CONTAINERD_SOCK:-/run/containerd/containerd.sock}
DAEMON_WAIT_SECONDS=${DAEMON_WAIT_SECONDS:-60}
# Extra daemon arguments, only for exercising the start path with a second, private pair of
# daemons (other sockets and state dirs; the docker CLI then needs DOCKER_HOST) while the
# machine's own daemons keep running. Word-split on purpose.
CONTAINERD_EXTRA_ARGS=${BOXTAP_CI_CONTAINERD_ARGS:-}
DOCKERD_EXTRA_ARGS=${BOXTAP_CI_DOCKERD_ARGS:-}

say() { printf 'ensure-deps: %s\n' "$*"; }
die() { printf 'ensure-deps: ERROR: %s\n' "$*" >&2; exit 1; }

mode=all
case "${1:-}" in
  "") ;;
  --demo) mode=demo ;;
  -h|--help) sed -n '2,10p' "$0"; exit 0 ;;
  *) die "unknown argument '$1' (use --demo or no argument)" ;;
esac

[ "$(id -u)" -eq 0 ] || die "must run as root (boxtap loads eBPF programs and manages daemons); rerun with sudo"

systemd_is_init() {
  # sd_booted(3): systemd is PID 1 iff /run/systemd/system exists.
  [ -d /run/systemd/system ] && [ "$(ps -p 1 -o comm= 2>/dev/null || true)" = systemd ]
}

# ---------------------------------------------------------------------------
# Packages: each Debian package is mapped to a file or command that proves it is installed.
# ---------------------------------------------------------------------------
# "package:proof" where proof is a command name, or an absolute path to a file.
# gcc and libc6-dev: the race detector the tests run with needs cgo; linux-libc-dev: the
# x86 <asm/ptrace.h> that make generate compiles bpf/tls.c with; libssl-dev: the static
# libssl.a the statically linked OpenSSL test server is built with.
TEST_PACKAGES=(
  "docker.io:dockerd"
  "containerd:containerd"
  "containerd:ctr"
  "runc:runc"
  "podman:podman"
  "clang:clang"
  "gcc:gcc"
  "libc6-dev:/usr/include/stdio.h"
  "linux-libc-dev:/usr/include/x86_64-linux-gnu/asm/ptrace.h"
  "llvm:llvm-strip"
  "libbpf-dev:/usr/include/bpf/bpf_helpers.h"
  "bpftool:bpftool"
  "nftables:nft"
  "wrk:wrk"
  "nginx:nginx"
  "python3:/usr/bin/python3"
  "libssl3:/usr/share/doc/libssl3/copyright"
  "libssl-dev:/usr/lib/x86_64-linux-gnu/libssl.a"
  "tcpdump:tcpdump"
  "curl:curl"
  "nghttp2-client:h2load"
  "prometheus:/usr/bin/prometheus"
  "iproute2:ip"
  "libcap2-bin:setcap"
  "util-linux:nsenter"
  "util-linux:mountpoint"
)
DEMO_PACKAGES=(
  "util-linux:mountpoint"
)

present() {
  local proof=$1
  if [[ $proof == /* ]]; then [ -e "$proof" ]; else command -v "$proof" >/dev/null 2>&1; fi
}

install_missing() {
  local -a wanted=("$@") missing=()
  local entry pkg proof
  for entry in "${wanted[@]}"; do
    pkg=${entry%%:*}; proof=${entry#*:}
    if ! present "$proof"; then
      # de-duplicate (util-linux appears twice)
      [[ " ${missing[*]-} " == *" $pkg "* ]] || missing+=("$pkg")
    fi
  done
  if [ ${#missing[@]} -eq 0 ]; then
    say "packages: all present"
    return 0
  fi
  command -v apt-get >/dev/null 2>&1 || die "missing packages (${missing[*]}) and no apt-get: install them by hand"
  say "installing missing packages: ${missing[*]}"

  # Without systemd, package scripts would start daemons through /etc/init.d (dockerd with its
  # own containerd). We start daemons ourselves below, so forbid that during the install.
  local policy=/usr/sbin/policy-rc.d created_policy=
  if ! systemd_is_init && [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' >"$policy" && chmod 0755 "$policy" && created_policy=1
  fi
  local rc=0
  apt-get update -q || rc=$?
  if [ $rc -eq 0 ]; then
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}" || rc=$?
  fi
  [ -z "$created_policy" ] || rm -f "$policy"
  [ $rc -eq 0 ] || die "apt-get failed (exit $rc) installing: ${missing[*]}; check network access and /etc/apt/sources.list"

  for entry in "${wanted[@]}"; do
    pkg=${entry%%:*}; proof=${entry#*:}
    present "$proof" || die "package $pkg installed but $proof is still missing"
  done
}

# ---------------------------------------------------------------------------
# Daemons
# ---------------------------------------------------------------------------
containerd_answers() { timeout 10 ctr --address "$CONTAINERD_SOCK" version >/dev/null 2>&1; }
docker_answers() { timeout 10 docker version --format '{{.Server.Version}}' >/dev/null 2>&1; }

# wait_for NAME CHECK_FN PID LOG: poll until CHECK_FN succeeds, bounded.
wait_for() {
  local name=$1 check=$2 pid=$3 log=$4 i
  for ((i = 0; i < DAEMON_WAIT_SECONDS; i++)); do
    if "$check"; then return 0; fi
    if [ -n "$pid" ] && ! kill -0 "$pid" 2>/dev/null; then
      die "$name exited during start-up; see $log (last line: $(tail -n 1 "$log" 2>/dev/null))"
    fi
    sleep 1
  done
  die "$name did not answer within ${DAEMON_WAIT_SECONDS}s; see $log"
}

# start_background NAME LOG CMD...: start a daemon detached from this shell, print its PID.
start_background() {
  local name=$1 log=$2; shift 2
  mkdir -p "$LOG_DIR"
  printf '\n==== %s: starting %s\n' "$(date -Is)" "$*" >>"$log"
  setsid nohup "$@" </dev/null >>"$log" 2>&1 &
  echo $!
}

ensure_containerd() {
  if containerd_answers; then say "containerd: running"; return 0; fi
  if systemd_is_init; then
    say "containerd: starting with systemctl"
    systemctl start containerd || die "systemctl start containerd failed; see: journalctl -u containerd"
    wait_for containerd containerd_answers "" "journalctl -u containerd"
  else
    local log=$LOG_DIR/containerd.log pid
    say "containerd: starting in the background (log: $log)"
    # shellcheck disable=SC2086
    pid=$(start_background containerd "$log" containerd $CONTAINERD_EXTRA_ARGS)
    wait_for containerd containerd_answers "$pid" "$log"
  fi
  say "containerd: running"
}

ensure_dockerd() {
  if docker_answers; then say "dockerd: running"; return 0; fi
  if systemd_is_init; then
    say "dockerd: starting with systemctl"
    systemctl start docker || die "systemctl start docker failed; see: journalctl -u docker"
    wait_for dockerd docker_answers "" "journalctl -u docker"
  else
    local log=$LOG_DIR/dockerd.log pid
    # A pid file left by a dead dockerd makes the next one refuse to start.
    if [ -f /var/run/docker.pid ] && ! kill -0 "$(cat /var/run/docker.pid 2>/dev/null)" 2>/dev/null; then
      rm -f /var/run/docker.pid
    fi
    say "dockerd: starting in the background (log: $log)"
    # shellcheck disable=SC2086
    pid=$(start_background dockerd "$log" dockerd --containerd="$CONTAINERD_SOCK" $DOCKERD_EXTRA_ARGS)
    wait_for dockerd docker_answers "$pid" "$log"
  fi
  say "dockerd: running"
}

# ---------------------------------------------------------------------------
# Kernel prerequisites
# ---------------------------------------------------------------------------
ensure_bpffs() {
  if mountpoint -q /sys/fs/bpf 2>/dev/null; then return 0; fi
  mkdir -p /sys/fs/bpf 2>/dev/null || true
  if mount -t bpf bpf /sys/fs/bpf 2>/dev/null; then
    say "bpffs: mounted at /sys/fs/bpf"
  else
    say "warning: could not mount bpffs at /sys/fs/bpf (only needed for pinning)"
  fi
}

check_kernel() {
  [ -r /sys/kernel/btf/vmlinux ] || die "kernel BTF missing (/sys/kernel/btf/vmlinux); boxtap needs a kernel built with CONFIG_DEBUG_INFO_BTF=y"
  awk '$3 == "cgroup2" { found = 1 } END { exit !found }' /proc/self/mounts \
    || die "no cgroup v2 mount found in /proc/self/mounts; mount one (e.g. mount -t cgroup2 none /sys/fs/cgroup/unified)"
}

first_word_after() { # first_word_after PATTERN: print the token after PATTERN on stdin's first matching line
  awk -v pat="$1" '{ for (i = 1; i < NF; i++) if ($i == pat) { print $(i + 1); exit } }'
}

summary() {
  local kernel docker_v containerd_v runc_v clang_v
  kernel=$(uname -r)
  if [ "$mode" = demo ]; then
    say "ready (demo): kernel $kernel, cgroup2 $(awk '$3 == "cgroup2" { print $2; exit }' /proc/self/mounts), BTF present"
    return 0
  fi
  docker_v=$(timeout 10 docker version --format '{{.Server.Version}} (API {{.Server.APIVersion}})' 2>/dev/null || echo unknown)
  containerd_v=$(containerd --version 2>/dev/null | awk '{ print $3 }')
  runc_v=$(runc --version 2>/dev/null | first_word_after version)
  clang_v=$(clang --version 2>/dev/null | first_word_after version)
  say "ready: kernel $kernel; docker $docker_v; containerd ${containerd_v:-unknown}; runc ${runc_v:-unknown}; clang ${clang_v:-unknown}"
}

check_kernel
if [ "$mode" = demo ]; then
  install_missing "${DEMO_PACKAGES[@]}"
  ensure_bpffs
else
  install_missing "${TEST_PACKAGES[@]}"
  ensure_bpffs
  ensure_containerd
  ensure_dockerd
fi
summary

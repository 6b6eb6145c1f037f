#!/usr/bin/env bash
# The whole test suite, as CI runs it (.ci/run calls exactly this).
#
# Installs what the tests need (idempotently; root on Debian 12), then runs the format check,
# clippy with warnings as errors, and every test. Leaves no mount or process behind.
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf '\n== %s\n' "$*"; }

# Every temporary directory of this run (tests mount inside theirs) lives under one
# directory of its own, so the last-resort cleanup below touches only what this run made.
run_tmp="$(mktemp -d "${TMPDIR:-/tmp}/litefs-test.XXXXXX")"
export TMPDIR="$run_tmp"

# Tests unmount in Drop and kill their children; this is the last resort when a test binary
# itself was killed (e.g. by a timeout): lazily unmount LiteFS mounts under this run's
# directory, stop this checkout's litefs daemons started inside it, and remove it.
cleanup() {
  local target pid exe
  target="$(pwd)/target"
  # A test process blocked on a dead in-process FUSE server cannot even be killed: abort
  # the connection first (fusectl, mounted only if needed), then detach the mount.
  awk -v d="$run_tmp/" '$1 == "litefs" && index($2, d) == 1 { print $2 }' /proc/mounts |
    while read -r mnt; do
      mountpoint -q /sys/fs/fuse/connections ||
        mount -t fusectl none /sys/fs/fuse/connections 2>/dev/null || true
      dev="$(awk -v m="$mnt" '$5 == m { print $3 }' /proc/self/mountinfo)"
      echo 1 > "/sys/fs/fuse/connections/${dev#*:}/abort" 2>/dev/null || true
      umount -l "$mnt" 2>/dev/null || true
    done
  for exe in /proc/[0-9]*/exe; do
    pid="${exe#/proc/}"; pid="${pid%/exe}"
    case "$(readlink "$exe" 2>/dev/null)" in
      "$target"/*/litefs)
        # Only daemons whose config lives in this run's directory.
        tr '\0' ' ' < "/proc/$pid/cmdline" 2>/dev/null | grep -q -- "$run_tmp/" &&
          kill -9 "$pid" 2>/dev/null || true ;;
    esac
  done
  # Network namespaces of the partition test (tests/partition.rs deletes its own in Drop).
  ip netns list 2>/dev/null | awk '$1 ~ /^lfst-[0-9]+$/ { print $1 }' |
    xargs -r -n1 ip netns delete 2>/dev/null || true
  rm -rf "$run_tmp" 2>/dev/null || true
}
trap cleanup EXIT

# Debian packages the tests use: `lz4` (reference LZ4 frames in tests/lz4_interop.rs) and
# `sqlite3` (a second, independent SQLite client in the mount tests), `python3` (its sqlite3
# module is the writer process of the crash tests), `e2fsprogs` (chattr, to make an LTX
# directory refuse writes in the exit-99 test), `iproute2` and `nftables` (network
# namespaces and the packet drop of the partition test).
missing=()
for pkg in lz4 sqlite3 python3 e2fsprogs iproute2 nftables; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if ((${#missing[@]})); then
  log "installing ${missing[*]}"
  if [ "$(id -u)" -ne 0 ]; then
    echo "scripts/test.sh: need root to apt-get install ${missing[*]}" >&2
    exit 1
  fi
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi

# FUSE-over-io_uring (kernel >= 6.14) is off unless this module parameter says Y; the first
# test run below requires it (fuse.transport: uring refuses to mount without it).
if [ -e /sys/module/fuse/parameters/enable_uring ]; then
  [ "$(cat /sys/module/fuse/parameters/enable_uring)" = Y ] ||
    echo Y > /sys/module/fuse/parameters/enable_uring
else
  echo "scripts/test.sh: this kernel has no FUSE-over-io_uring; the uring test run will fail" >&2
fi

log "cargo fmt --check"
cargo fmt --all -- --check

# The workspace is the root package and perf/ (litefs-perf); fuzz/ is a workspace of its own.
log "cargo clippy --workspace --all-targets -- -D warnings"
cargo clippy --workspace --all-targets -- -D warnings

# Every test once with the FUSE-over-io_uring transport, then every integration test (the
# real-mount ones; unit tests do not mount) again on /dev/fuse: tests/common reads
# LITEFS_TEST_FUSE_TRANSPORT into every mount and config it makes.
log "tests (FUSE transport: uring)"
if cargo nextest --version >/dev/null 2>&1; then
  LITEFS_TEST_FUSE_TRANSPORT=uring cargo nextest run --workspace --no-fail-fast
  log "integration tests (FUSE transport: devfuse)"
  LITEFS_TEST_FUSE_TRANSPORT=devfuse cargo nextest run --workspace --no-fail-fast -E 'kind(test)'
else
  LITEFS_TEST_FUSE_TRANSPORT=uring cargo test --workspace --no-fail-fast
  log "integration tests (FUSE transport: devfuse)"
  LITEFS_TEST_FUSE_TRANSPORT=devfuse cargo test --workspace --no-fail-fast --tests
fi
# nextest does not run doc tests.
cargo test --workspace --doc

log "benches compile"
cargo bench --no-run >/dev/null

# Only built here (debug, sharing the test build): a run takes minutes and mounts; see
# perf/README.md.
log "perf harness builds"
cargo build -p litefs-perf

log "all tests passed"

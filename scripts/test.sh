#!/usr/bin/env bash
# The whole test suite, as CI runs it (.ci/run calls exactly this).
#
# Installs what the tests need (idempotently; root on Debian 12), then runs the format check,
# clippy with warnings as errors, and every test. Leaves no mount or process behind.
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf '\n== %s\n' "$*"; }

# Debian packages the tests use: `lz4` (reference LZ4 frames in tests/lz4_interop.rs) and
# `sqlite3` (a second, independent SQLite client in the mount tests).
missing=()
for pkg in lz4 sqlite3; do
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

log "cargo fmt --check"
cargo fmt --all -- --check

# The workspace is the root package and perf/ (litefs-perf); fuzz/ is a workspace of its own.
log "cargo clippy --workspace --all-targets -- -D warnings"
cargo clippy --workspace --all-targets -- -D warnings

log "tests"
if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --workspace --no-fail-fast
else
  cargo test --workspace --no-fail-fast
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

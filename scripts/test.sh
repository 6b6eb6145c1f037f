#!/usr/bin/env bash
# The whole test suite, as CI runs it (.ci/run calls exactly this).
#
# Installs what the tests need (idempotently; root on Debian 12), then runs the format check,
# clippy with warnings as errors, and every test. Leaves no mount or process behind.
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf '\n== %s\n' "$*"; }

# Tests unmount in Drop and kill their children; this is the last resort when a test binary
# itself was killed (e.g. by a timeout): lazily unmount every LiteFS mount under the temp
# directory and stop every process running this checkout's litefs binary.
cleanup() {
  local target dir pid exe
  target="$(pwd)/target"
  dir="${TMPDIR:-/tmp}"
  awk -v d="$dir/" '$1 == "litefs" && index($2, d) == 1 { print $2 }' /proc/mounts |
    while read -r mnt; do umount -l "$mnt" 2>/dev/null || true; done
  for exe in /proc/[0-9]*/exe; do
    pid="${exe#/proc/}"; pid="${pid%/exe}"
    case "$(readlink "$exe" 2>/dev/null)" in
      "$target"/*/litefs) kill -9 "$pid" 2>/dev/null || true ;;
    esac
  done
}
trap cleanup EXIT

# Debian packages the tests use: `lz4` (reference LZ4 frames in tests/lz4_interop.rs) and
# `sqlite3` (a second, independent SQLite client in the mount tests), `python3` (its sqlite3
# module is the writer process of the crash tests), `e2fsprogs` (chattr, to make an LTX
# directory refuse writes in the exit-99 test).
missing=()
for pkg in lz4 sqlite3 python3 e2fsprogs; do
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

log "cargo clippy --all-targets -- -D warnings"
cargo clippy --all-targets -- -D warnings

log "tests"
if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --no-fail-fast
else
  cargo test --no-fail-fast
fi
# nextest does not run doc tests.
cargo test --doc

log "benches compile"
cargo bench --no-run >/dev/null

log "all tests passed"

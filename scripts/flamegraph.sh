#!/usr/bin/env bash
# Records where the CPU goes during one perf workload and writes a flamegraph SVG.
#
#   scripts/flamegraph.sh [workload] [transport] [output.svg]
#   (environment: FLAMEGRAPH_SCALE, default 0.2; FLAMEGRAPH_DIR, default /var/tmp)
#
# workload: a litefs-perf workload (default wal_normal); transport: uring or devfuse (default
# uring). The harness runs SQLite and the mount in one process, so the graph shows client,
# daemon and kernel (FUSE, ext4, io_uring) together; the FUSE worker threads are the
# `fuse-ring-*` / `fuse-*` stacks. Needs root. Installs linux-perf (apt) and inferno
# (crates.io) if missing, and builds with frame pointers into target/flamegraph so the
# regular build is untouched.
set -euo pipefail
cd "$(dirname "$0")/.."

workload="${1:-wal_normal}"
transport="${2:-uring}"
out="${3:-perf/flamegraph-$workload-$transport.svg}"
scale="${FLAMEGRAPH_SCALE:-0.2}"
# Where the harness creates its targets. On ext4 without a journal (these VMs' root file
# system) file creation is several times slower for minutes after many deletions
# (docs/ARCHITECTURE.md §8): point this at a freshly made file system for a clean profile.
base_dir="${FLAMEGRAPH_DIR:-/var/tmp}"

if ! command -v perf >/dev/null 2>&1; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq linux-perf >/dev/null
fi
if ! command -v inferno-flamegraph >/dev/null 2>&1; then
  cargo install --locked inferno
fi
export PATH="$HOME/.cargo/bin:$PATH"
if [ "$transport" = uring ] && [ -e /sys/module/fuse/parameters/enable_uring ]; then
  echo Y > /sys/module/fuse/parameters/enable_uring
fi

# Frame pointers (Rust and the bundled SQLite) make `perf record -g` stacks complete without
# DWARF unwinding, whose sample files run to gigabytes.
export CARGO_TARGET_DIR=target/flamegraph
RUSTFLAGS="-C force-frame-pointers=yes" CFLAGS="-fno-omit-frame-pointer -O2" \
  cargo build --release -p litefs-perf
bin="$CARGO_TARGET_DIR/release/litefs-perf"

work="$(mktemp -d "$base_dir/litefs-flamegraph.XXXXXX")"
trap 'rm -rf "$work"' EXIT
perf record -e cpu-clock -F 1999 -g -o "$work/perf.data" -- \
  "$bin" --workloads "$workload" --transports "$transport" --scale "$scale" --runs 1 \
  --dir "$work"
perf script -i "$work/perf.data" 2>/dev/null | inferno-collapse-perf > "$work/folded"
inferno-flamegraph --title "litefs $workload ($transport, scale $scale)" \
  < "$work/folded" > "$out"
echo "flamegraph: $out ($(wc -l < "$work/folded") distinct stacks)"

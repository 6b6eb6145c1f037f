#!/usr/bin/env bash
# The main job on an embedded default: builds litefs and mounts a single-node primary with a
# static lease, using scripts/litefs.sample.yml. Mount point and data directory default to
# /tmp/litefs-demo/{mnt,data}; override with LITEFS_MOUNT_DIR / LITEFS_DATA_DIR.
set -euo pipefail
cd "$(dirname "$0")/.."
export LITEFS_MOUNT_DIR="${LITEFS_MOUNT_DIR:-/tmp/litefs-demo/mnt}"
export LITEFS_DATA_DIR="${LITEFS_DATA_DIR:-/tmp/litefs-demo/data}"
mkdir -p "$LITEFS_MOUNT_DIR" "$LITEFS_DATA_DIR"
cargo build --release --quiet
exec target/release/litefs mount -config scripts/litefs.sample.yml "$@"

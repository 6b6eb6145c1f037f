#!/bin/sh
# How long `litefs mount` takes to start on a large database (BASELINES.md: a 10 GB database
# in at most 2 s): after a clean stop (page checksums saved, docs/ARCHITECTURE.md §4.2) with
# warm and with dropped caches, and after `kill -9` (no saved checksums: the whole database is
# read). Prints one line per start and the median of each kind.
#
#   perf/start.sh [GB] [DIR]      (root; defaults: 10 GB under /var/tmp/litefs-start)
#
# Needs about 2 × GB of free space in DIR (the database and its import snapshot) and Python's
# sqlite3 module. Builds target/release/litefs first. Leaves no mount or process behind, and
# removes DIR at the end (it refuses a DIR that is not empty and was not made by it).
set -eu

GB=${1:-10}
DIR=${2:-/var/tmp/litefs-start}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
LITEFS=$ROOT/target/release/litefs
PORT=20290
RUNS=3

(cd "$ROOT" && cargo build --release --bin litefs)

PID=
cleanup() {
    if [ -n "$PID" ] && kill -0 "$PID" 2>/dev/null; then
        kill -9 "$PID" 2>/dev/null || true
        wait "$PID" 2>/dev/null || true
    fi
    umount -l "$DIR/mnt" 2>/dev/null || true
}
trap cleanup EXIT INT TERM

# Only a directory this script made (marked) or an empty one is ever removed.
if [ -e "$DIR" ] && [ ! -e "$DIR/.litefs-start" ] && [ -n "$(ls -A "$DIR")" ]; then
    echo "refusing to use $DIR: not empty and not made by $0" >&2
    exit 1
fi
umount -l "$DIR/mnt" 2>/dev/null || true
rm -rf "$DIR"
mkdir -p "$DIR/mnt"
touch "$DIR/.litefs-start"
cat > "$DIR/litefs.yml" <<EOF
fuse:
  dir: $DIR/mnt
data:
  dir: $DIR/data
http:
  addr: 127.0.0.1:$PORT
lease:
  type: static
  advertise-url: http://127.0.0.1:$PORT
EOF

# Starts the daemon (PID); sets ELAPSED to the seconds until it reported the mount (its
# recovery is done by then). Not run in a subshell: PID must stay set here.
start() {
    : > "$DIR/log"
    t0=$(date +%s.%N)
    "$LITEFS" mount -config "$DIR/litefs.yml" >> "$DIR/log" 2>&1 &
    PID=$!
    while ! grep -q "LiteFS mounted to" "$DIR/log"; do
        if ! kill -0 "$PID" 2>/dev/null; then
            cat "$DIR/log" >&2
            echo "litefs mount exited during startup" >&2
            exit 1
        fi
        sleep 0.005
    done
    t1=$(date +%s.%N)
    ELAPSED=$(echo "$t1 - $t0" | bc)
}

stop_clean() {
    kill -TERM "$PID"
    wait "$PID" || true
    PID=
}

stop_kill() {
    kill -9 "$PID"
    wait "$PID" 2>/dev/null || true
    PID=
    umount -l "$DIR/mnt" 2>/dev/null || true
}

median() {
    sort -n | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'
}

echo "building a $GB GB database ($(awk "BEGIN { printf \"%d\", $GB * 1e9 / 4096 }") pages of 4 KiB)..." >&2
python3 - "$DIR/big.db" "$GB" <<'EOF'
import sqlite3, sys
path, gb = sys.argv[1], float(sys.argv[2])
rows = int(gb * 1e9 / 4000)
c = sqlite3.connect(path)
c.execute("PRAGMA journal_mode=off")
c.execute("PRAGMA synchronous=off")
c.execute("CREATE TABLE t(id INTEGER PRIMARY KEY, v BLOB)")
c.execute("WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < ?) "
          "INSERT INTO t SELECT i, randomblob(4000) FROM n", (rows,))
c.commit()
EOF
start
"$LITEFS" import -url "http://127.0.0.1:$PORT" -name big.db "$DIR/big.db" >&2
rm -f "$DIR/big.db"
# A small transaction, so the newest LTX file is a commit's and not the import's snapshot
# (a start re-applies the newest file).
python3 -c "import sqlite3, sys; c = sqlite3.connect(sys.argv[1]); c.execute('INSERT INTO t(v) VALUES (1)'); c.commit()" "$DIR/mnt/big.db"
stop_clean
size=$(du -sh "$DIR/data/dbs/big.db/database" | cut -f1)
echo "database file: $size" >&2

: > "$DIR/warm"; : > "$DIR/cold"; : > "$DIR/killed"; : > "$DIR/killed_warm"
for run in $(seq "$RUNS"); do
    start; stop_clean; echo "$ELAPSED" >> "$DIR/warm"
    echo "run $run: after a clean stop, warm caches: $ELAPSED s"
    sync; echo 3 > /proc/sys/vm/drop_caches
    start; stop_kill; echo "$ELAPSED" >> "$DIR/cold"
    echo "run $run: after a clean stop, caches dropped: $ELAPSED s"
    start; stop_kill; echo "$ELAPSED" >> "$DIR/killed"
    echo "run $run: after kill -9, file not cached (no saved checksums: the whole database is read): $ELAPSED s"
    start; stop_clean; echo "$ELAPSED" >> "$DIR/killed_warm"
    echo "run $run: after kill -9, file in the page cache (the start before read it): $ELAPSED s"
done
echo "median start of a $size database: clean stop $(median < "$DIR/warm") s warm, \
$(median < "$DIR/cold") s cold; after kill -9 $(median < "$DIR/killed") s from disk, \
$(median < "$DIR/killed_warm") s cached (goal ≤ 2 s)"
rm -rf "$DIR"

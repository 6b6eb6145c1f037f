#!/usr/bin/env bash
# Seeds the fuzz corpora (fuzz/corpus/<target>/, git-ignored) with valid inputs: Go-written
# golden LTX files, their LZ4 page blocks, and a WAL and a hot journal written by sqlite3.
set -euo pipefail
cd "$(dirname "$0")"
golden=../../shared/golden
mkdir -p corpus/{ltx_decode,lz4_frame,wal_reader,journal_reader,stream_frames}
cp "$golden"/*.ltx corpus/ltx_decode/
for f in "$golden"/lz4-*.ltx; do
  size=$(stat -c %s "$f")
  tail -c +101 "$f" | head -c $((size - 116)) > "corpus/lz4_frame/$(basename "$f").lz4"
done
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
# A WAL with three transactions, copied while the writer still holds it open.
sqlite3 "$tmp/w.db" <<SQL
PRAGMA page_size=512; PRAGMA journal_mode=WAL; PRAGMA wal_autocheckpoint=0;
CREATE TABLE t(x); INSERT INTO t VALUES (randomblob(700)); INSERT INTO t VALUES (randomblob(90));
.shell cp $tmp/w.db-wal corpus/wal_reader/three-txns.wal
SQL
# A hot journal: a spilling transaction copied mid-flight (first byte picks the page size).
sqlite3 "$tmp/j.db" <<SQL
PRAGMA page_size=512; CREATE TABLE t(x);
WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM n WHERE i<40) INSERT INTO t SELECT randomblob(300) FROM n;
PRAGMA cache_size=2; BEGIN; UPDATE t SET x = randomblob(300);
.shell { printf '\001'; cat $tmp/j.db-journal; } > corpus/journal_reader/hot.journal
ROLLBACK;
SQL
# A stream: pos map for "db" at TXID 3.
printf '\x00\x00\x00\x01\x00\x00\x00\x02db\x00\x00\x00\x00\x00\x00\x00\x03\x9d\x81\xa6\x0d\x39\xfb\x47\x60' \
  > corpus/stream_frames/posmap
ls corpus/* | head -50

"""A SQLite writer for the crash tests: inserts rows with increasing ids, synchronous=FULL,
and prints the last id of each transaction only after COMMIT returned (so every printed id
is a transaction SQLite reported as durable). Runs until killed or until an error.
Arguments: PATH JOURNAL_MODE NEXT_ID [WAL_AUTOCHECKPOINT_PAGES]."""
import sqlite3
import sys

path, mode, next_id = sys.argv[1], sys.argv[2], int(sys.argv[3])
conn = sqlite3.connect(path, isolation_level=None, timeout=5)
conn.execute(f"PRAGMA journal_mode={mode}")
conn.execute("PRAGMA synchronous=FULL")
if len(sys.argv) > 4:
    conn.execute(f"PRAGMA wal_autocheckpoint={int(sys.argv[4])}")
conn.execute("CREATE TABLE IF NOT EXISTS t(id INTEGER PRIMARY KEY, v BLOB)")
while True:
    # Every seventh transaction is larger (20 rows, some overflow pages).
    count = 20 if next_id % 7 == 0 else 1
    conn.execute("BEGIN")
    for k in range(count):
        size = 200 + ((next_id + k) * 37) % 3000
        conn.execute("INSERT INTO t VALUES (?, randomblob(?))", (next_id + k, size))
    conn.execute("COMMIT")
    next_id += count
    sys.stdout.write(f"{next_id - 1}\n")
    sys.stdout.flush()

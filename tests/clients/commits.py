"""Commits COUNT single-row transactions to DB (creating table t) in journal mode MODE, one
connection, autocommit; prints the row count at the end."""
import sqlite3
import sys

path, mode, count = sys.argv[1], sys.argv[2], int(sys.argv[3])
conn = sqlite3.connect(path, isolation_level=None, timeout=10)
conn.execute(f"PRAGMA journal_mode={mode}")
conn.execute("CREATE TABLE IF NOT EXISTS t(id INTEGER PRIMARY KEY, v BLOB)")
for i in range(count):
    # Varying sizes so some transactions touch overflow pages.
    conn.execute("INSERT INTO t(v) VALUES (randomblob(?))", (100 + (i * 53) % 2000,))
print(conn.execute("SELECT count(*) FROM t").fetchone()[0])

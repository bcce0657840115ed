#!/usr/bin/env python3
"""pit-writer.py DB LOG [FILLER_MB]
A writer for point-in-time tests: WAL mode, small transactions in a tight loop until SIGTERM, its own
wal_checkpoint(TRUNCATE) every 500 transactions (an application that checkpoints), and a log line
"k committed_at_ms" after each commit so a test can tell which transactions a restored state holds.
Transaction k inserts event k and rewrites an older event and a counter: a state after k commits is
known exactly (see expectedState in test/e2e/point-in-time.test.ts)."""
import os, signal, sqlite3, sys, time

db_path, log_path = sys.argv[1], sys.argv[2]
filler_mb = int(sys.argv[3]) if len(sys.argv) > 3 else 0
stop = False
def on_term(*_):
    global stop
    stop = True
signal.signal(signal.SIGTERM, on_term)
signal.signal(signal.SIGINT, on_term)

db = sqlite3.connect(db_path, timeout=30, isolation_level=None)
db.execute("PRAGMA journal_mode=WAL")
db.execute("PRAGMA busy_timeout=30000")
db.execute("CREATE TABLE IF NOT EXISTS events(id INTEGER PRIMARY KEY, v INTEGER NOT NULL, pad TEXT NOT NULL)")
db.execute("CREATE TABLE IF NOT EXISTS counters(id INTEGER PRIMARY KEY, v INTEGER NOT NULL)")
db.execute("CREATE TABLE IF NOT EXISTS filler(id INTEGER PRIMARY KEY, b BLOB)")
if db.execute("SELECT count(*) FROM counters").fetchone()[0] == 0:
    db.execute("BEGIN")
    for i in range(97):
        db.execute("INSERT INTO counters VALUES(?, 0)", (i,))
    for i in range(filler_mb * 16):
        db.execute("INSERT INTO filler(b) VALUES(randomblob(65536))")
    db.execute("COMMIT")

log = open(log_path, "w")
lines = []
k = 0
while not stop:
    k += 1
    db.execute("BEGIN IMMEDIATE")
    db.execute("INSERT INTO events VALUES(?, ?, ?)", (k, k * 31 % 1000003, "%0200d" % k))
    db.execute("UPDATE events SET v = v + ? WHERE id = ?", (k, 1 + (k * 2654435761 // 7) % k))
    db.execute("UPDATE counters SET v = v + ? WHERE id = ?", (k, k % 97))
    db.execute("COMMIT")
    lines.append("%d %d\n" % (k, int(time.time() * 1000)))
    if k % 500 == 0:
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    if len(lines) >= 200:
        log.write("".join(lines)); log.flush(); lines = []
    if k == 1:
        open(log_path + ".started", "w").write("1")
log.write("".join(lines))
log.close()
db.close()

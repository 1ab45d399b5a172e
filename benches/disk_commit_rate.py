#!/usr/bin/env python3
"""The disk's commit rate, as the reference beside intake figures.

SQLite in WAL mode with synchronous=FULL (fabflow's settings), in a file in
DIR (default: the current directory; use the disk the daemon's database is
on): single-row commits per second, and rows per second at 50 rows a commit.

    python3 benches/disk_commit_rate.py [--dir DIR] [--seconds S]
"""
import argparse
import os
import sqlite3
import tempfile
import time


def rate(conn, rows_per_commit, seconds):
    done = 0
    started = time.perf_counter()
    while time.perf_counter() - started < seconds:
        with conn:
            conn.executemany(
                "INSERT INTO t (payload) VALUES (?)",
                [("x" * 200,)] * rows_per_commit,
            )
        done += 1
    took = time.perf_counter() - started
    return done / took, done * rows_per_commit / took


def measure(directory, seconds, rows_per_commit=(1,)):
    """{rows a commit: (commits/s, rows/s)} in a new file in `directory`."""
    with tempfile.TemporaryDirectory(dir=directory) as tmp:
        path = os.path.join(tmp, "commit-rate.db")
        conn = sqlite3.connect(path, isolation_level=None)
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA synchronous = FULL")
        conn.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, payload TEXT)")
        conn.isolation_level = ""
        rates = {n: rate(conn, n, seconds) for n in rows_per_commit}
        conn.close()
    return rates


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dir", default=".")
    parser.add_argument("--seconds", type=float, default=3.0)
    args = parser.parse_args()
    rates = measure(args.dir, args.seconds, (1, 50))
    print(f"single-row commits/s: {rates[1][0]:.0f}")
    print(f"rows/s at 50 rows a commit: {rates[50][1]:.0f}")

if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""SQLite intake beside the disk's commit rate, measured in the same run.

Each run measures the disk's single-row commit rate (SQLite, WAL,
synchronous=FULL: benches/disk_commit_rate.py) in the database's directory,
then, for each binary given, starts `fabflow run` with the intake-only
configuration (benches/intake_only.toml: no fleet works in the background)
on a new database file and free ports, runs the intake load generator
(benches/intake_load.rs: single POSTs, `--clients` closed-loop clients, on
this machine), and stops the daemon; then measures the disk again. The
reference of a run is the mean of the two disk figures. With two binaries
(`--against`), their order alternates from run to run, so that a machine
whose speed drifts favours neither.

Printed per run and binary: orders/s, p50 and p99 latency, the daemon's CPU
seconds and peak RSS, the disk's single-row commits/s and the ratio of the
two; then the median ratio per binary. Only the Python standard library is
used. Build first:

    cargo build --release --bin fabflow --bench intake_load
    python3 benches/intake_sqlite.py                      # 3 runs of 20,000 orders
    python3 benches/intake_sqlite.py --against OTHER/fabflow --runs 5
    python3 benches/intake_sqlite.py --slow-fsync-us 50   # a disk with slower flushes

With --slow-fsync-us N, every fsync of this script (the disk reference) and
of the daemons it starts takes N microseconds longer (benches/slow_fsync.c,
built with `cc` and loaded with LD_PRELOAD): the same machine with a disk
whose cache flush is slower, to see how the ratio depends on the disk.

See docs/benchmarks.md.
"""

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from cluster_intake import load_generator, parse_load  # noqa: E402
from crash_harness import Daemon, free_port, log  # noqa: E402
from disk_commit_rate import measure  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent


def disk_rate(directory, seconds):
    """Single-row commits per second in a new SQLite file in `directory`."""
    return measure(directory, seconds)[1][0]


def cpu_seconds(pid):
    """User + system CPU seconds of a live process."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = int(fields[11]) + int(fields[12])
    return ticks / 100.0


def peak_rss_mb(pid):
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def slower_disk(args):
    """Runs this script again with benches/slow_fsync.c preloaded."""
    library = Path(args.dir) / "slow_fsync.so"
    Path(args.dir).mkdir(parents=True, exist_ok=True)
    built = subprocess.run(["cc", "-O2", "-shared", "-fPIC", "-o", str(library),
                            str(ROOT / "benches" / "slow_fsync.c"), "-ldl"],
                           capture_output=True, text=True)
    if built.returncode != 0:
        raise SystemExit(f"building benches/slow_fsync.c failed:\n{built.stderr}")
    env = dict(os.environ, SLOW_FSYNC_US=str(args.slow_fsync_us), LD_PRELOAD=str(library.resolve()))
    log(f"every fsync {args.slow_fsync_us} us longer (benches/slow_fsync.c)")
    os.execve(sys.executable, [sys.executable] + sys.argv, env)


def run_one(args, fabflow, work, label):
    """One daemon on a new database, one load run; what it measured."""
    db_dir = Path(tempfile.mkdtemp(prefix="intake-", dir=args.dir))
    http_port, mqtt_port = free_port(), free_port()
    config = (ROOT / "benches" / "intake_only.toml").read_text()
    config = config.replace('url = "sqlite://target/intake-bench.db"',
                            f'url = "sqlite://{db_dir / "intake.db"}"')
    config = config.replace('listen = "127.0.0.1:8081"', f'listen = "127.0.0.1:{http_port}"')
    config = config.replace('listen = "127.0.0.1:1884"', f'listen = "127.0.0.1:{mqtt_port}"')
    path = work / f"{label}.toml"
    path.write_text(config)
    daemon = None
    try:
        token = subprocess.run([fabflow, "tokens", "create", "--config", str(path), "--role", "brand",
                                "--scope", "demo-brand", "--name", "bench"],
                               capture_output=True, text=True, check=True).stdout.strip().splitlines()[-1]
        base = f"http://127.0.0.1:{http_port}"
        daemon = Daemon(fabflow, path, work / f"{label}.log", base)
        daemon.start()
        before = cpu_seconds(daemon.process.pid)
        ran = subprocess.run([load_generator(args), "--url", base, "--token", token,
                              "--clients", str(args.clients), "--orders", str(args.orders),
                              "--warmup", str(args.warmup)],
                             capture_output=True, text=True)
        result = parse_load(ran.stdout)
        if result is None or ran.returncode != 0:
            raise SystemExit(f"intake_load failed ({ran.returncode}):\n{ran.stdout}{ran.stderr}")
        result["cpu"] = cpu_seconds(daemon.process.pid) - before
        result["rss"] = peak_rss_mb(daemon.process.pid)
        return result
    finally:
        if daemon:
            daemon.stop()
        shutil.rmtree(db_dir, ignore_errors=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--fabflow", default=str(ROOT / "target" / "release" / "fabflow"))
    parser.add_argument("--against", help="a second fabflow binary, run in turn with the first")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--orders", type=int, default=20000)
    parser.add_argument("--warmup", type=int, default=200)
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--dir", default=str(ROOT / "target"),
                        help="where the databases (and the disk reference's file) go; default target/")
    parser.add_argument("--reference-seconds", type=float, default=3.0)
    parser.add_argument("--load-bin", help="the intake_load binary (default: the newest built)")
    parser.add_argument("--slow-fsync-us", type=int, default=0,
                        help="make every fsync this many microseconds longer (a slower disk; "
                             "benches/slow_fsync.c, needs cc)")
    args = parser.parse_args()
    if args.slow_fsync_us > 0 and os.environ.get("SLOW_FSYNC_US") != str(args.slow_fsync_us):
        slower_disk(args)  # does not return
    binaries = [args.fabflow] + ([args.against] if args.against else [])
    for binary in binaries:
        if not Path(binary).exists():
            raise SystemExit(f"{binary} not found: cargo build --release --bin fabflow")
    Path(args.dir).mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="fabflow-intake-sqlite-"))
    rows = []
    try:
        for run in range(1, args.runs + 1):
            first = disk_rate(args.dir, args.reference_seconds)
            order = binaries if run % 2 == 1 else list(reversed(binaries))
            measured = {}
            for binary in order:
                label = f"run{run}-{binaries.index(binary) + 1}"
                measured[binary] = run_one(args, binary, work, label)
                r = measured[binary]
                log(f"run {run}, {binary}: {r['rate']:.0f} orders/s, p99 {r['p99']:.1f} ms, "
                    f"daemon CPU {r['cpu']:.2f} s")
            second = disk_rate(args.dir, args.reference_seconds)
            reference = (first + second) / 2
            log(f"run {run}: the disk took {first:.0f} and {second:.0f} single-row commits/s")
            for binary in binaries:
                rows.append((run, binary, reference, measured[binary]))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print()
    slower = f", every fsync {args.slow_fsync_us} us longer" if args.slow_fsync_us else ""
    print(f"{args.clients} clients, {args.orders} orders a run, database in {args.dir}{slower}")
    print()
    print("| run | binary | orders/s | p50 ms | p99 ms | daemon CPU s | peak RSS MB "
          "| disk single-row commits/s | orders/s / disk |")
    print("| ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for run, binary, reference, r in rows:
        print(f"| {run} | {binary} | {r['rate']:.0f} | {r['p50']:.2f} | {r['p99']:.2f} | {r['cpu']:.2f} "
              f"| {r['rss']:.0f} | {reference:.0f} | {r['rate'] / reference:.2f} |")
    print()
    for binary in binaries:
        ratios = [r["rate"] / reference for _, b, reference, r in rows if b == binary]
        p99s = [r["p99"] for _, b, _, r in rows if b == binary]
        print(f"{binary}: median ratio {statistics.median(ratios):.2f} "
              f"(min {min(ratios):.2f}, max {max(ratios):.2f}), worst p99 {max(p99s):.1f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""Intake on PostgreSQL with one, two and three daemons, and the time a
daemon's factories take to change hands after it is killed.

For each daemon count it makes a fresh database, starts Mosquitto (the
external broker several daemons share) and N `fabflow run` daemons with the
intake-only configuration (benches/intake_only.toml: no fleet works in the
background), and runs the intake load generator (benches/intake_load.rs)
with its clients spread over the daemons in turn. With two or more daemons it
then SIGKILLs the daemon holding the most leases, `--kills` times (restarting
it in between, once the leases have spread again), and measures from the
kill until every lease it held is held by another daemon (read from the
`leases` table, by the database's clock).

As a reference measured in the same run it prints the database's
single-row commit rate (pgbench, one client, `INSERT` of one row per
transaction).

Only the Python standard library is used; psql and pgbench must be on the
PATH (or in --pg-bin), and mosquitto too. Build first:
    cargo build --release --bin fabflow --bench intake_load
    benches/cluster_intake.py --postgres postgres://postgres@127.0.0.1:5432/postgres
See docs/benchmarks.md.
"""

import argparse
import glob
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.parse
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from crash_harness import Daemon, free_port, log  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent


def tool(args, name):
    """The path of a PostgreSQL client tool."""
    if args.pg_bin:
        return str(Path(args.pg_bin) / name)
    found = shutil.which(name)
    if not found:
        raise SystemExit(f"{name} not found: put it on the PATH or pass --pg-bin")
    return found


def psql(args, url, sql):
    done = subprocess.run([tool(args, "psql"), url, "-v", "ON_ERROR_STOP=1", "-At", "-c", sql],
                          capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"psql failed: {done.stderr.strip()}")
    return done.stdout


def database_url(base, name):
    return urllib.parse.urlsplit(base)._replace(path=f"/{name}").geturl()


def commit_rate(args, url, seconds):
    """Single-row commits per second, one client (pgbench)."""
    psql(args, url, "CREATE TABLE IF NOT EXISTS bench_commit (n integer)")
    with tempfile.NamedTemporaryFile("w", suffix=".sql", delete=False) as script:
        script.write("INSERT INTO bench_commit VALUES (1);\n")
    try:
        done = subprocess.run([tool(args, "pgbench"), "-n", "-c", "1", "-j", "1", "-T", str(seconds),
                               "-f", script.name, url], capture_output=True, text=True)
    finally:
        os.unlink(script.name)
    found = re.search(r"tps = ([0-9.]+)", done.stdout)
    if done.returncode != 0 or not found:
        raise SystemExit(f"pgbench failed: {done.stderr.strip() or done.stdout.strip()}")
    return float(found.group(1))


def live_leases(args, url):
    """{lease name: owner} of the leases not expired, by the database's clock."""
    rows = psql(args, url, "SELECT name, owner FROM leases "
                           "WHERE expires_ms > (extract(epoch FROM clock_timestamp()) * 1000)::bigint")
    return dict(line.split("|", 1) for line in rows.splitlines() if "|" in line)


def all_leases(args, url):
    rows = psql(args, url, "SELECT name FROM leases")
    return {line for line in rows.splitlines() if line}


def load_generator(args):
    if args.load_bin:
        return args.load_bin
    built = [p for p in glob.glob(str(ROOT / "target" / "release" / "deps" / "intake_load-*"))
             if os.access(p, os.X_OK) and not p.endswith(".d")]
    if not built:
        raise SystemExit("intake_load not built: cargo build --release --bench intake_load (or pass --load-bin)")
    return max(built, key=os.path.getmtime)


def parse_load(text):
    rate = re.search(r"throughput: ([0-9.]+) orders/s", text)
    p = re.search(r"p50 ([0-9.]+)\s+p90 ([0-9.]+)\s+p99 ([0-9.]+)\s+max ([0-9.]+)", text)
    errors = re.search(r"errors: (\d+)", text)
    if not rate or not p:
        return None
    return {"rate": float(rate.group(1)), "p50": float(p.group(1)), "p99": float(p.group(3)),
            "max": float(p.group(4)), "errors": int(errors.group(1)) if errors else None}


def wait_for_port(port, process, limit_s=10):
    """Waits until something listens on 127.0.0.1:port (the broker started)."""
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"mosquitto exited with {process.returncode}; see mosquitto.log")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.05)
    raise SystemExit(f"mosquitto did not listen on port {port} within {limit_s} s")


def run_cluster(args, fabflow, count, work):
    name = f"fabflow_intake_{os.getpid()}_{count}"
    psql(args, args.postgres, f"CREATE DATABASE {name}")
    url = database_url(args.postgres, name)
    mqtt_port = free_port()
    (work / "mosquitto.conf").write_text(f"listener {mqtt_port} 127.0.0.1\nallow_anonymous true\n")
    broker = subprocess.Popen(["mosquitto", "-c", str(work / "mosquitto.conf")],
                              stdout=subprocess.DEVNULL, stderr=open(work / "mosquitto.log", "ab"))
    daemons = []
    try:
        wait_for_port(mqtt_port, broker)
        base = (ROOT / "benches" / "intake_only.toml").read_text()
        base = base.replace('url = "sqlite://target/intake-bench.db"', f'url = "{url}"')
        base = base.replace('type = "embedded"\nlisten = "127.0.0.1:1884"',
                            f'type = "external"\nhost = "127.0.0.1"\nport = {mqtt_port}')
        ports = [free_port() for _ in range(count)]
        configs = []
        for n, port in enumerate(ports):
            text = base.replace('listen = "127.0.0.1:8081"', f'listen = "127.0.0.1:{port}"')
            text += f'\n[cluster]\ndaemon_id = "bench-{n + 1}"\n'
            if args.lease_ms:
                margin = max(1000, args.lease_ms // 3)
                text += (f"lease_ms = {args.lease_ms}\nrenew_interval_ms = {max(500, args.lease_ms // 5)}\n"
                         f"renew_margin_ms = {margin}\n")
            path = work / f"daemon-{count}-{n + 1}.toml"
            path.write_text(text)
            configs.append(path)
        token = subprocess.run([fabflow, "tokens", "create", "--config", str(configs[0]), "--role", "brand",
                                "--scope", "bench", "--name", "bench"],
                               capture_output=True, text=True, check=True).stdout.strip().splitlines()[-1]
        bases = [f"http://127.0.0.1:{port}" for port in ports]
        daemons = [Daemon(fabflow, path, work / f"daemon-{count}-{n + 1}.log", b)
                   for n, (path, b) in enumerate(zip(configs, bases))]
        for daemon in daemons:
            daemon.start()
        reference = commit_rate(args, url, args.reference_seconds)
        log(f"{count} daemon(s) up; the database takes {reference:.0f} single-row commits/s")
        command = [load_generator(args), "--token", token, "--clients", str(args.clients),
                   "--orders", str(args.orders), "--warmup", str(args.warmup)]
        for b in bases:
            command += ["--url", b]
        ran = subprocess.run(command, capture_output=True, text=True)
        (work / f"load-{count}.txt").write_text(ran.stdout + ran.stderr)
        result = parse_load(ran.stdout)
        if result is None or ran.returncode != 0:
            raise SystemExit(f"intake_load failed ({ran.returncode}):\n{ran.stdout}{ran.stderr}")
        result["reference"] = reference
        log(f"{count} daemon(s): {result['rate']:.0f} orders/s, p50 {result['p50']:.1f} ms, "
            f"p99 {result['p99']:.1f} ms, errors {result['errors']}")

        takeovers = []
        lease_s = (args.lease_ms or 10000) / 1000
        if count >= 2:
            names = all_leases(args, url)
            for kill in range(args.kills):
                # Wait until the leases are spread over every daemon again.
                deadline = time.monotonic() + 10 * lease_s + 60
                while True:
                    live = live_leases(args, url)
                    owners = set(live.values())
                    if len(live) == len(names) and len(owners) == min(count, len(names)):
                        break
                    if time.monotonic() > deadline:
                        raise SystemExit(f"leases never spread again: {live}")
                    time.sleep(0.2)
                by_owner = {}
                for lease, owner in live.items():
                    by_owner.setdefault(owner, []).append(lease)
                owner = max(by_owner, key=lambda o: len(by_owner[o]))
                victim = next(d for d, c in zip(daemons, configs) if f'daemon_id = "{owner}"' in c.read_text())
                held = by_owner[owner]
                victim.kill()
                killed = time.monotonic()
                while True:
                    live = live_leases(args, url)
                    if all(live.get(lease) not in (None, owner) for lease in held):
                        break
                    if time.monotonic() - killed > 10 * lease_s + 60:
                        raise SystemExit(f"{held} not taken over: {live}")
                    time.sleep(0.05)
                took = time.monotonic() - killed
                takeovers.append(took)
                log(f"kill {kill + 1}: {owner} held {len(held)} lease(s); taken over in {took:.2f} s")
                victim.start()
        result["takeovers"] = takeovers
        return result
    finally:
        for daemon in daemons:
            daemon.stop()
        broker.terminate()
        broker.wait()
        if not args.keep:
            psql(args, args.postgres, f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--postgres", required=True, help="a PostgreSQL URL allowed to CREATE DATABASE")
    parser.add_argument("--daemons", default="1,2,3", help="daemon counts to run, in order")
    parser.add_argument("--orders", type=int, default=20000)
    parser.add_argument("--warmup", type=int, default=200)
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--kills", type=int, default=3, help="take-overs measured per count of 2 or more")
    parser.add_argument("--lease-ms", type=int,
                        help="[cluster] lease_ms (renewal every fifth, margin a third); default: the daemon's defaults")
    parser.add_argument("--reference-seconds", type=int, default=5)
    parser.add_argument("--bin-dir", default=str(ROOT / "target" / "release"))
    parser.add_argument("--load-bin", help="the intake_load binary (default: the newest built)")
    parser.add_argument("--pg-bin", help="directory of psql and pgbench")
    parser.add_argument("--keep", action="store_true", help="keep the work directory and databases")
    args = parser.parse_args()
    fabflow = str(Path(args.bin_dir) / "fabflow")
    if not Path(fabflow).exists():
        raise SystemExit(f"{fabflow} not found: cargo build --release --bin fabflow (or pass --bin-dir)")
    if not shutil.which("mosquitto"):
        raise SystemExit("mosquitto not found (apt-get install mosquitto)")
    work = Path(tempfile.mkdtemp(prefix="fabflow-cluster-intake-"))
    log(f"work directory {work}")
    results = {}
    try:
        for count in [int(c) for c in args.daemons.split(",") if c.strip()]:
            results[count] = run_cluster(args, fabflow, count, work)
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    print()
    print(f"| daemons | orders/s | p50 ms | p99 ms | errors | database commits/s (same run) | take-over after a kill (s) |")
    print("| ---: | ---: | ---: | ---: | ---: | ---: | --- |")
    for count, r in results.items():
        takeovers = ", ".join(f"{t:.2f}" for t in r["takeovers"]) or "-"
        print(f"| {count} | {r['rate']:.0f} | {r['p50']:.1f} | {r['p99']:.1f} | {r['errors']} | "
              f"{r['reference']:.0f} | {takeovers} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""Crash harness: feed orders over HTTP while the daemon is killed with SIGKILL
again and again, then check that nothing accepted was lost and nothing was made
twice.

The daemon (`fabflow run`) and the simulated fleet (`fabflow-sim fleet`) run as
separate processes: the fleet's machines keep running while the daemon is dead,
and log every job token they start (read back through the fleet's control API).
Couriers are simulated by `fabflow-sim couriers`, which keeps polling through
the restarts. The broker is the daemon's embedded one (it dies with it) or,
with `--broker mosquitto`, a Mosquitto started by the harness, to which an
MQTT subscriber (mosquitto_sub, persistent session, QoS 1) stays connected.

At the end it checks:
  1. every order that got a 2xx exists and is delivered;
  2. no job token was started twice on any machine (the machines' own logs);
  3. every event reached the broker at least once: the outbox backlog is 0
     and, with --broker mosquitto, the subscriber saw every event id that
     GET /v1/events lists.
It prints the figures (kills survived, orders, restart times) and exits 1 if
a check fails.

Only the Python standard library is used. Build first:
    cargo build --release
    benches/crash_harness.py --orders 2000 --kills 20
The issue's figure: --orders 10000 --kills 50 (see docs/reliability.md).

On PostgreSQL (--postgres URL, which needs --broker mosquitto): --daemons N
daemons share the database and the broker, orders go to them in turn, and the
kills go round them; --restart-broker restarts Mosquitto (SIGTERM; it keeps
its sessions on disk) halfway through the kills, and --pg-restart-cmd CMD runs CMD (e.g. a `pg_ctl restart`) there too.
A fresh database is made for the run (psql must be on the PATH).
"""

import argparse
import json
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SKUS = ["tee-black-m", "tote-natural", "mug-white", "phone-case"]
BBOX = (52.45, 13.30, 52.57, 13.52)


def log(message):
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http(method, url, token=None, body=None, key=None, timeout=10):
    """(status, parsed body); status 0 when no answer arrived."""
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method=method)
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    if data is not None:
        request.add_header("Content-Type", "application/json")
    if key:
        request.add_header("Idempotency-Key", key)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            raw = response.read()
            return response.status, json.loads(raw) if raw else None
    except urllib.error.HTTPError as err:
        raw = err.read()
        try:
            return err.code, json.loads(raw) if raw else None
        except ValueError:
            return err.code, raw.decode(errors="replace")
    except (OSError, ValueError):
        return 0, None


class Daemon:
    """`fabflow run`, killed and restarted on demand; logs appended to one file."""

    def __init__(self, binary, config, log_path, base):
        self.binary, self.config, self.base = binary, config, base
        self.log = open(log_path, "ab")
        self.process = None
        self.restarts = []  # seconds from start to a healthy /healthz

    def start(self, timeout=120):
        began = time.monotonic()
        self.process = subprocess.Popen(
            [self.binary, "run", "--config", str(self.config)],
            stdout=self.log, stderr=subprocess.STDOUT,
        )
        while time.monotonic() - began < timeout:
            if self.process.poll() is not None:
                raise SystemExit(f"daemon exited with {self.process.returncode}; see its log")
            status, _ = http("GET", f"{self.base}/healthz", timeout=2)
            if status == 200:
                self.restarts.append(time.monotonic() - began)
                return
            time.sleep(0.1)
        raise SystemExit("daemon did not become healthy")

    def kill(self):
        self.process.send_signal(signal.SIGKILL)
        self.process.wait()

    def stop(self):
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()


def order_body(rng, index):
    lines = {}
    for _ in range(rng.randint(1, 3)):
        sku = rng.choice(SKUS)
        lines[sku] = lines.get(sku, 0) + rng.randint(1, 2)
    return {
        "external_ref": f"harness-{index:05d}",
        "customer": {
            "name": "Harness customer",
            "lat": round(rng.uniform(BBOX[0], BBOX[2]), 5),
            "lon": round(rng.uniform(BBOX[1], BBOX[3]), 5),
        },
        "lines": [{"sku": s, "quantity": q} for s, q in sorted(lines.items())],
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--orders", type=int, default=2000)
    parser.add_argument("--kills", type=int, default=20)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--bin-dir", default=str(ROOT / "target" / "release"))
    parser.add_argument("--time-scale", type=float, default=600.0,
                        help="simulated seconds per real second (daemon and fleet)")
    parser.add_argument("--fleet-copies", type=int, default=1, metavar="N",
                        help="run N of each of the demo fleet's Modbus machines (fabflow-sim fleet --copies): "
                             "a floor sized to the orders")
    parser.add_argument("--couriers", type=int, default=20, help="simulated couriers (capacity 40 each)")
    parser.add_argument("--rate", type=float, default=50.0, help="orders per second fed")
    parser.add_argument("--kill-gap", type=float, nargs=2, default=(2.0, 8.0), metavar=("MIN", "MAX"),
                        help="seconds between kills, drawn uniformly")
    parser.add_argument("--deliver-timeout", type=float, default=1800.0,
                        help="real seconds to wait for every order to be delivered")
    parser.add_argument("--broker", choices=["embedded", "mosquitto"], default="embedded")
    parser.add_argument("--keep", action="store_true", help="keep the work directory")
    parser.add_argument("--postgres", metavar="URL",
                        help="run on PostgreSQL: a server URL (a fresh database is made on it)")
    parser.add_argument("--daemons", type=int, default=1, help="daemons on the shared database (PostgreSQL)")
    parser.add_argument("--lease-ms", type=int, default=6000, help="[cluster] lease_ms with several daemons")
    parser.add_argument("--restart-broker", action="store_true",
                        help="restart Mosquitto halfway through the kills")
    parser.add_argument("--pg-restart-cmd", metavar="CMD",
                        help="a shell command that restarts PostgreSQL, run halfway through the kills")
    args = parser.parse_args()
    if args.daemons > 1 and not args.postgres:
        parser.error("--daemons needs --postgres (SQLite takes one daemon)")
    if args.postgres and args.broker != "mosquitto":
        parser.error("--postgres needs --broker mosquitto (daemons share one external broker)")

    fabflow = Path(args.bin_dir) / "fabflow"
    sim = Path(args.bin_dir) / "fabflow-sim"
    for binary in (fabflow, sim):
        if not binary.exists():
            raise SystemExit(f"{binary} not found: run `cargo build --release` (or pass --bin-dir)")
    rng = random.Random(args.seed)
    work = Path(tempfile.mkdtemp(prefix="fabflow-crash-"))
    log(f"work directory {work}")
    children = []
    daemons = []
    started = time.monotonic()
    broker_restarted_at = None
    keep_on_failure = False
    try:
        # The fleet, with its control API (start logs).
        fleet = subprocess.Popen(
            [str(sim), "fleet", "--time-scale", str(args.time_scale), "--control", "127.0.0.1:0",
             "--seed", str(args.seed), "--copies", str(args.fleet_copies)],
            stdout=subprocess.PIPE, stderr=open(work / "fleet.log", "wb"), text=True,
        )
        children.append(fleet)
        machines, control = [], None
        while control is None:
            line = fleet.stdout.readline()
            if not line:
                raise SystemExit("the fleet stopped before printing its control address")
            parts = line.rstrip("\n").split("\t")
            if parts[0] == "control":
                control = parts[1]
            elif len(parts) == 4:
                machines.append(parts)
        log(f"fleet: {len(machines)} Modbus machines, control API {control}")

        # The daemon's configuration: the demo's, on a file in the work
        # directory, free ports, more couriers, the fleet's machines.
        http_port, mqtt_port = free_port(), free_port()
        config = (ROOT / "config" / "demo.toml").read_text()
        if args.postgres:
            database = f"fabflow_crash_{os.getpid()}"
            made = subprocess.run(["psql", args.postgres, "-v", "ON_ERROR_STOP=1", "-c", f"CREATE DATABASE {database}"],
                                  capture_output=True, text=True)
            if made.returncode != 0:
                raise SystemExit(f"creating database {database} failed: {made.stderr.strip()}")
            url = urllib.parse.urlsplit(args.postgres)._replace(path=f"/{database}").geturl()
            config = config.replace('url = "sqlite://fabflow-demo.db"', f'url = "{url}"')
            log(f"database {url}")
        else:
            config = config.replace('url = "sqlite://fabflow-demo.db"', f'url = "sqlite://{work}/harness.db"')
        config = config.replace('listen = "127.0.0.1:8080"', 'listen = "127.0.0.1:HTTP_PORT"')
        config = re.sub(r"^time_scale = .*$", f"time_scale = {args.time_scale}", config, flags=re.M)
        mosquitto = None
        if args.broker == "mosquitto":
            if not all(shutil.which(tool) for tool in ("mosquitto", "mosquitto_sub", "mosquitto_pub")):
                raise SystemExit("--broker mosquitto needs mosquitto, mosquitto_sub and mosquitto_pub (apt-get install mosquitto mosquitto-clients)")
            # Mosquitto started as root drops to its own user, which must
            # be able to write its database (else it keeps nothing across
            # the restart, and says so only in its log).
            store = work / "mosquitto-data"
            store.mkdir()
            store.chmod(0o777)
            work.chmod(0o711)
            (work / "mosquitto.conf").write_text(
                f"listener {mqtt_port} 127.0.0.1\nallow_anonymous true\npersistence true\n"
                f"persistence_location {store}/\nmax_queued_messages 1000000\n"
                # Every packet in and out, for the post-mortem of a lost event.
                "log_type all\nlog_timestamp_format %H:%M:%S\n")
            mosquitto = subprocess.Popen(["mosquitto", "-c", str(work / "mosquitto.conf")],
                                         stdout=subprocess.DEVNULL, stderr=open(work / "mosquitto.log", "wb"))
            children.append(mosquitto)
            time.sleep(0.5)
            config = config.replace('type = "embedded"\nlisten = "127.0.0.1:1883"',
                                    f'type = "external"\nhost = "127.0.0.1"\nport = {mqtt_port}')
        else:
            config = config.replace('listen = "127.0.0.1:1883"', f'listen = "127.0.0.1:{mqtt_port}"')
        # The demo's own couriers ride too (a courier nobody rides for would
        # miss every stop it is given).
        demo_couriers = re.findall(r'\[\[couriers\]\]\s*\nid = "([^"]+)"', config)
        extra = [f"h-{n:02d}" for n in range(args.couriers)]
        couriers = demo_couriers + extra
        for n, courier in enumerate(extra):
            config += (f'\n[[couriers]]\nid = "{courier}"\nzone = "berlin"\n'
                       f"lat = {52.48 + 0.004 * (n % 20):.4f}\nlon = {13.36 + 0.006 * (n // 20 + n % 7):.4f}\ncapacity = 40\n")
        for factory, machine, model, address in machines:
            config += (f'\n[[machines]]\nid = "{machine}"\nfactory = "{factory}"\nmodel = "{model}"\n'
                       f'address = "{address}"\npoll_interval_ms = 200\nrequest_timeout_ms = 1000\n')
        ports = [http_port] + [free_port() for _ in range(args.daemons - 1)]
        configs = []
        for n, port in enumerate(ports):
            text = config.replace("HTTP_PORT", str(port))
            if args.postgres:
                margin = max(1000, args.lease_ms // 3)
                text += (f'\n[cluster]\ndaemon_id = "harness-{n + 1}"\nlease_ms = {args.lease_ms}\n'
                         f"renew_interval_ms = {max(500, args.lease_ms // 5)}\nrenew_margin_ms = {margin}\n")
            path = work / f"harness-{n + 1}.toml"
            path.write_text(text)
            configs.append(path)
        config_path = configs[0]
        check = subprocess.run([str(fabflow), "check-config", str(config_path)], capture_output=True, text=True)
        if check.returncode != 0:
            raise SystemExit(f"check-config failed:\n{check.stdout}{check.stderr}")

        def token(role, scope):
            out = subprocess.run([str(fabflow), "tokens", "create", "--config", str(config_path),
                                  "--role", role, "--scope", scope, "--name", "harness"],
                                 capture_output=True, text=True, check=True)
            return out.stdout.strip().splitlines()[-1]

        brand, admin, operator = token("brand", "acme"), token("admin", "*"), token("operator", "*")
        courier_tokens = [(c, token("courier", c)) for c in couriers]
        bases = [f"http://127.0.0.1:{port}" for port in ports]
        base = bases[0]
        # The subscriber is listening before any daemon starts: a daemon's
        # first events (each machine's first state) go out at once.
        subscriber = None
        if mosquitto:
            subscriber = subprocess.Popen(
                ["mosquitto_sub", "-h", "127.0.0.1", "-p", str(mqtt_port), "-t", "fabflow/v1/events/#",
                 "-q", "1", "-c", "-i", "crash-harness", "-F", "%U %t %p"],
                stdout=open(work / "events.txt", "wb"), stderr=subprocess.DEVNULL)
            children.append(subscriber)
            probe_deadline = time.monotonic() + 60
            while b"fabflow/v1/events/harness.probe" not in (work / "events.txt").read_bytes():
                if time.monotonic() > probe_deadline:
                    raise SystemExit("the subscriber saw no probe message in 60 s")
                subprocess.run(["mosquitto_pub", "-h", "127.0.0.1", "-p", str(mqtt_port), "-q", "1",
                                "-t", "fabflow/v1/events/harness.probe", "-m", "{}"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                time.sleep(0.2)
            log("subscriber listening")

        daemons = [Daemon(str(fabflow), path, work / f"daemon-{n + 1}.log", url)
                   for n, (path, url) in enumerate(zip(configs, bases))]
        daemon = daemons[0]
        for one in daemons:
            one.start()
        log(f"{len(daemons)} daemon(s) up at {', '.join(bases)}")

        courier_cmd = [str(sim), "couriers", "--api", base, "--poll-ms", "300",
                       "--operator-token", operator, "--brand-token", brand]
        for c, t in courier_tokens:
            courier_cmd += ["--courier", f"{c}={t}"]
        riders = subprocess.Popen(courier_cmd, stdout=open(work / "couriers.log", "wb"), stderr=subprocess.STDOUT)
        children.append(riders)

        # Feed the orders; each is retried with its key until it gets an
        # answer (a 2xx is "accepted": it must never be lost).
        accepted, refused = {}, []
        lock = threading.Lock()
        feeding = threading.Event()
        feeding.set()

        def send(index):
            body = order_body(random.Random(args.seed * 1_000_003 + index), index)
            attempt = index
            while True:
                to = bases[attempt % len(bases)]
                attempt += 1
                status, answer = http("POST", f"{to}/v1/orders", brand, body, key=f"harness-{index:05d}")
                if 200 <= status < 300 and isinstance(answer, dict) and "id" in answer:
                    with lock:
                        accepted[index] = answer["id"]
                    return
                if status in (0, 429, 503):
                    time.sleep(0.3)
                    continue
                with lock:
                    refused.append((index, status, answer))
                return

        def feed():
            with ThreadPoolExecutor(max_workers=8) as pool:
                for index in range(args.orders):
                    pool.submit(send, index)
                    time.sleep(1.0 / args.rate)
            feeding.clear()


        feeder = threading.Thread(target=feed)
        feeder.start()

        # Kill at random moments, during the feed and after it.
        restart_failures = []
        for kill in range(args.kills):
            time.sleep(rng.uniform(*args.kill_gap))
            if kill == args.kills // 2:
                if args.restart_broker and mosquitto:
                    # A restart as an operator does it (the broker saves its
                    # sessions and queued messages to disk and loads them
                    # again); a SIGKILLed broker without persistence loses
                    # what it queued for subscribers, which no publisher can
                    # prevent.
                    mosquitto.send_signal(signal.SIGTERM)
                    mosquitto.wait()
                    time.sleep(1.0)
                    mosquitto = subprocess.Popen(["mosquitto", "-c", str(work / "mosquitto.conf")],
                                                 stdout=subprocess.DEVNULL, stderr=open(work / "mosquitto.log", "ab"))
                    children.append(mosquitto)
                    broker_restarted_at = time.time()
                    log("broker restarted")
                if args.pg_restart_cmd:
                    # Output to a file, not a pipe: a server started by the
                    # command keeps the pipe open and the run would wait for
                    # its end for ever.
                    with open(work / "pg-restart.log", "ab") as restart_log:
                        restarted = subprocess.run(args.pg_restart_cmd, shell=True, stdin=subprocess.DEVNULL,
                                                   stdout=restart_log, stderr=subprocess.STDOUT, timeout=120)
                    if restarted.returncode != 0:
                        restart_failures.append(f"--pg-restart-cmd exited {restarted.returncode} (see pg-restart.log)")
                    log(f"PostgreSQL restarted (exit {restarted.returncode})")
            victim = daemons[kill % len(daemons)]
            victim.kill()
            time.sleep(rng.uniform(0.0, 1.0))
            victim.start()
            with lock:
                done = len(accepted)
            log(f"kill {kill + 1}/{args.kills} ({victim.config.name}): restarted in {victim.restarts[-1]:.2f} s; "
                f"{done} orders accepted")
        feeder.join()
        log(f"feeding done: {len(accepted)} accepted, {len(refused)} refused")

        # Wait for every accepted order to be delivered.
        deadline = time.monotonic() + args.deliver_timeout
        states = {}
        while True:
            states, after = {}, None
            while True:
                url = f"{base}/v1/orders?limit=500" + (f"&after={after}" if after else "")
                status, page = http("GET", url, admin, timeout=30)
                if status != 200:
                    time.sleep(1)
                    continue
                for order in page["items"]:
                    states[order["id"]] = order["state"]
                after = page.get("next")
                if not after:
                    break
            delivered = sum(1 for i in accepted.values() if states.get(i) == "delivered")
            if delivered == len(accepted) or time.monotonic() > deadline:
                break
            log(f"{delivered}/{len(accepted)} delivered")
            time.sleep(10)

        # Let the outbox drain, then check.
        failures = list(restart_failures)
        if mosquitto and (work / "mosquitto.log").exists():
            saved = (work / "mosquitto.log").read_text(errors="replace")
            if "Error saving" in saved:
                failures.append("mosquitto could not save its sessions (see mosquitto.log): the restart lost them")
        for _ in range(120):
            status, overview = http("GET", f"{base}/v1/overview", admin)
            if status == 200 and overview.get("outbox_backlog") == 0:
                break
            time.sleep(1)
        else:
            failures.append(f"outbox backlog not drained: {overview.get('outbox_backlog') if isinstance(overview, dict) else overview}")
        missing = [i for i in accepted.values() if i not in states]
        undelivered = [i for i in accepted.values() if i in states and states[i] != "delivered"]
        if missing:
            failures.append(f"{len(missing)} accepted orders missing, e.g. {missing[:3]}")
        if undelivered:
            failures.append(f"{len(undelivered)} accepted orders not delivered, e.g. {undelivered[:3]}")
        if refused:
            failures.append(f"{len(refused)} orders refused, e.g. {refused[:2]}")
        status, fleet_status = http("GET", f"{control}/machines")
        starts = 0
        for machine in fleet_status or []:
            started_tokens = machine.get("started", [])
            starts += len(started_tokens)
            twice = sorted({t for t in started_tokens if started_tokens.count(t) > 1})
            if twice:
                failures.append(f"machine {machine['id']} started tokens twice: {twice[:10]}")
        events_listed = 0
        if subscriber:
            time.sleep(2)
            subscriber.terminate()
            subscriber.wait()
            seen = {}  # event id -> when the subscriber got it (Unix seconds)
            for line in open(work / "events.txt", encoding="utf-8", errors="replace"):
                arrived, _, rest = line.partition(" ")
                _, _, payload = rest.partition(" ")
                try:
                    seen.setdefault(json.loads(payload)["id"], float(arrived))
                except (ValueError, KeyError, TypeError):
                    pass
            after, unseen, listed = None, [], []
            while True:
                url = f"{base}/v1/events?limit=500" + (f"&after={after}" if after else "")
                status, page = http("GET", url, admin, timeout=30)
                if status != 200:
                    failures.append(f"GET /v1/events answered {status}")
                    break
                for event in page["items"]:
                    events_listed += 1
                    listed.append(event)
                    if event["id"] not in seen:
                        unseen.append(event)
                after = page.get("next")
                if not after:
                    break
            if unseen:
                failures.append(f"{len(unseen)} of {events_listed} events never reached the subscriber, e.g. "
                                f"{[e['id'] for e in unseen[:3]]}")
                # When they were due: the events around each in the log,
                # when those arrived, and the broker's restart.
                if broker_restarted_at:
                    log(f"broker restarted at {broker_restarted_at:.3f}")
                arrived = [seen.get(event["id"]) for event in listed]
                for index, event in enumerate(listed):
                    if arrived[index] is not None:
                        continue
                    before = next((t for t in reversed(arrived[:index]) if t is not None), None)
                    later = next((t for t in arrived[index + 1:] if t is not None), None)
                    log(f"unseen {event['id']} {event['kind']} at {event.get('at')}: the events listed "
                        f"before and after it arrived at {before} and {later}")

        elapsed = time.monotonic() - started
        restarts = [t for one in daemons for t in one.restarts[1:]]
        print(json.dumps({
            "orders_fed": args.orders, "accepted": len(accepted),
            "delivered": sum(1 for i in accepted.values() if states.get(i) == "delivered"),
            "kills_survived": len(restarts), "restart_seconds_mean": round(sum(restarts) / len(restarts), 2) if restarts else None,
            "restart_seconds_max": round(max(restarts), 2) if restarts else None,
            "machine_starts": starts, "events_checked": events_listed, "broker": args.broker,
            "daemons": args.daemons, "database": "postgres" if args.postgres else "sqlite",
            "wall_seconds": round(elapsed, 1), "failures": failures,
        }, indent=2))
        for one in daemons:
            one.stop()
        keep_on_failure = bool(failures)
        return 1 if failures else 0
    finally:
        for one in daemons:
            one.stop()
        for child in reversed(children):
            if child.poll() is None:
                child.send_signal(signal.SIGINT)
                try:
                    child.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    child.kill()
        if args.keep or keep_on_failure:
            log(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""Side-by-side routing benchmark: fabflow's router, PyVRP and VROOM on the
Solomon (VRPTW) and Li & Lim (PDPTW) instances, same time budget each.

Every solution is re-checked here (capacity, time windows, pairing and
precedence, each customer exactly once) and its distance recomputed with exact
Euclidean distances (unrounded doubles), whatever the solver used inside.
PyVRP and VROOM need integer matrices: travel times are scaled by SCALE and
rounded *up* (so a route feasible for them is feasible with exact times) and
distances are scaled and rounded.

Usage (see routing_peer.sh, which makes the venv):
  python benches/routing_peer.py --cmd "target/release/fabflow route" --time-limit-ms 1000 \
      [--families solomon,lilim] [--instances C101,lr101] [--solvers fabflow,pyvrp,vroom] \
      [--objective distance|vehicles] [--seed 1] [--out docs/benchmarks-routing.md]
"""

import argparse
import csv
import json
import math
import os
import shlex
import subprocess
import sys
import time
import warnings
from datetime import timedelta

SCALE = 1000
EPS = 1e-6


# ---------------------------------------------------------------- instances


def parse_solomon(path):
    with open(path) as f:
        lines = [l.strip() for l in f]
    lines = [l for l in lines if l]
    name = lines[0]
    vi = next(i for i, l in enumerate(lines) if l.upper().startswith("NUMBER"))
    vehicles, capacity = (int(x) for x in lines[vi + 1].split())
    ci = next(i for i, l in enumerate(lines) if l.upper().startswith("CUST "))
    nodes = []
    for l in lines[ci + 1:]:
        f = l.split()
        nodes.append(dict(id=int(f[0]), x=float(f[1]), y=float(f[2]), demand=int(float(f[3])),
                          ready=float(f[4]), due=float(f[5]), service=float(f[6]),
                          pickup=0, delivery=0))
    return dict(name=name, kind="solomon", vehicles=vehicles, capacity=capacity, nodes=nodes)


def parse_lilim(path):
    with open(path) as f:
        lines = [l.strip() for l in f if l.strip()]
    vehicles, capacity, _speed = lines[0].split()
    nodes = []
    for l in lines[1:]:
        f = l.split()
        nodes.append(dict(id=int(f[0]), x=float(f[1]), y=float(f[2]), demand=int(float(f[3])),
                          ready=float(f[4]), due=float(f[5]), service=float(f[6]),
                          pickup=int(f[7]), delivery=int(f[8])))
    name = os.path.splitext(os.path.basename(path))[0]
    return dict(name=name, kind="lilim", vehicles=int(vehicles), capacity=int(capacity), nodes=nodes)


def dist(inst, a, b):
    na, nb = inst["nodes"][a], inst["nodes"][b]
    return math.hypot(na["x"] - nb["x"], na["y"] - nb["y"])


def check(inst, routes):
    """Re-simulates routes (lists of node ids, depot excluded).
    Returns (ok, reason, vehicles, distance)."""
    nodes = inst["nodes"]
    n = len(nodes)
    depot = nodes[0]
    seen = {}
    total = 0.0
    used = 0
    for r, route in enumerate(routes):
        if not route:
            continue
        used += 1
        if inst["kind"] == "solomon":
            load = sum(nodes[i]["demand"] for i in route if 0 < i < n)
        else:
            load = 0
        if load > inst["capacity"] + 0:
            return False, f"route {r}: start load {load} > capacity", 0, 0.0
        t = depot["ready"]
        prev = 0
        d = 0.0
        for pos, i in enumerate(route):
            if not (0 < i < n):
                return False, f"route {r}: bad node {i}", 0, 0.0
            if i in seen:
                return False, f"node {i} visited twice", 0, 0.0
            seen[i] = (r, pos)
            node = nodes[i]
            if inst["kind"] == "solomon":
                load -= node["demand"]
            else:
                load += node["demand"]
                if node["pickup"]:  # a delivery: its pickup must be earlier on this route
                    if seen.get(node["pickup"], (None,))[0] != r:
                        return False, f"delivery {i} before or without its pickup", 0, 0.0
                if load > inst["capacity"]:
                    return False, f"route {r}: load {load} > capacity at {i}", 0, 0.0
            d += dist(inst, prev, i)
            t = max(t + dist(inst, prev, i), node["ready"])
            if t > node["due"] + EPS:
                return False, f"route {r}: node {i} served at {t:.4f} > due {node['due']}", 0, 0.0
            t += node["service"]
            prev = i
        d += dist(inst, prev, 0)
        t += dist(inst, prev, 0)
        if t > depot["due"] + EPS:
            return False, f"route {r}: back at {t:.4f} > {depot['due']}", 0, 0.0
        total += d
    missing = [i for i in range(1, n) if i not in seen]
    if missing:
        return False, f"{len(missing)} nodes unserved (first {missing[:5]})", 0, 0.0
    if used > inst["vehicles"]:
        return False, f"{used} routes > fleet {inst['vehicles']}", 0, 0.0
    return True, "", used, total


def load_bks(data_dir, family):
    rows = {}
    with open(os.path.join(data_dir, family, "BKS.csv")) as f:
        for row in csv.DictReader(f):
            rows[row["instance"]] = (int(row["bks_vehicles"]), float(row["best_known_cost"]))
    return rows


def bks_for(bks, name, objective):
    """(vehicles, distance, objective the BKS is for)."""
    if objective == "distance" and name + "_distance" in bks:
        v, d = bks[name + "_distance"]
        return v, d, "distance"
    v, d = bks[name]
    return v, d, "vehicles"


def instance_class(name):
    head = name.rstrip("0123456789")
    digits = name[len(head):]
    return head.upper() + digits[:1] if digits else head.upper()


# ---------------------------------------------------------------- solvers


def run_fabflow(cmd, path, inst, tl_ms, seed, objective):
    fmt = inst["kind"]
    argv = shlex.split(cmd) + ["--format", fmt, "--time-limit-ms", str(tl_ms), "--seed", str(seed),
                               "--objective", objective, path]
    start = time.perf_counter()
    out = subprocess.run(argv, capture_output=True, text=True)
    elapsed = time.perf_counter() - start
    if out.returncode != 0:
        raise RuntimeError(f"fabflow exited {out.returncode}: {out.stderr.strip()}")
    result = json.loads(out.stdout)
    return result["routes"], elapsed


def scaled_time(d):
    return int(math.ceil(d * SCALE - 1e-9))


def run_pyvrp(inst, tl_ms, seed, objective):
    import pyvrp
    from pyvrp.stop import MaxRuntime

    nodes = inst["nodes"]
    depot = nodes[0]
    m = pyvrp.Model()
    locs = [m.add_location(x=nd["x"], y=nd["y"]) for nd in nodes]
    d = m.add_depot(locs[0], tw_early=scaled_time(depot["ready"]), tw_late=int(depot["due"] * SCALE))
    fixed = 0 if objective == "distance" else 10_000 * SCALE * 10
    m.add_vehicle_type(num_available=inst["vehicles"], capacity=[inst["capacity"]], start_depot=d,
                       end_depot=d, tw_early=int(depot["ready"] * SCALE),
                       tw_late=int(depot["due"] * SCALE), fixed_cost=fixed)
    # Keys: ("c", client index) or ("l"/"u", shipment index) -> node id.
    ids = {}
    if inst["kind"] == "solomon":
        for nd in nodes[1:]:
            m.add_client(locs[nd["id"]], delivery=[nd["demand"]],
                         service_duration=scaled_time(nd["service"]),
                         tw_early=scaled_time(nd["ready"]), tw_late=int(nd["due"] * SCALE))
            ids[("c", len(ids))] = nd["id"]
    else:
        k = 0
        for nd in nodes[1:]:
            if nd["delivery"]:
                dn = nodes[nd["delivery"]]
                m.add_shipment(locs[nd["id"]], locs[dn["id"]],
                               pickup_tw_early=scaled_time(nd["ready"]),
                               pickup_tw_late=int(nd["due"] * SCALE),
                               pickup_service_duration=scaled_time(nd["service"]),
                               delivery_tw_early=scaled_time(dn["ready"]),
                               delivery_tw_late=int(dn["due"] * SCALE),
                               delivery_service_duration=scaled_time(dn["service"]),
                               amount=[nd["demand"]])
                ids[("l", k)] = nd["id"]
                ids[("u", k)] = dn["id"]
                k += 1
    for a in range(len(nodes)):
        for b in range(len(nodes)):
            if a != b:
                e = dist(inst, a, b)
                m.add_edge(locs[a], locs[b], distance=int(round(e * SCALE)), duration=scaled_time(e))
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = m.solve(stop=MaxRuntime(tl_ms / 1000.0), seed=seed, display=False)
    elapsed = time.perf_counter() - start
    routes = []
    for r in res.best.routes():
        route = []
        for act in r.schedule():
            if act.is_depot():
                continue
            if act.is_client():
                route.append(ids[("c", act.idx)])
            elif act.is_pickup():
                route.append(ids[("l", act.idx)])
            elif act.is_delivery():
                route.append(ids[("u", act.idx)])
        routes.append(route)
    return routes, elapsed


def run_vroom(inst, tl_ms, seed, objective, timeout=True):
    import numpy as np
    import vroom

    nodes = inst["nodes"]
    n = len(nodes)
    depot = nodes[0]
    durations = np.zeros((n, n), dtype=np.uint32)
    costs = np.zeros((n, n), dtype=np.uint32)
    for a in range(n):
        for b in range(n):
            e = dist(inst, a, b)
            durations[a, b] = scaled_time(e)
            costs[a, b] = int(round(e * SCALE))
    inp = vroom.Input()
    inp.set_durations_matrix(profile="car", matrix_input=durations)
    inp.set_costs_matrix(profile="car", matrix_input=costs)
    fixed = 0 if objective == "distance" else 10_000 * SCALE * 10
    for v in range(inst["vehicles"]):
        inp.add_vehicle(vroom.Vehicle(v + 1, start=0, end=0, capacity=[inst["capacity"]],
                                      time_window=vroom.TimeWindow(int(depot["ready"] * SCALE),
                                                                   int(depot["due"] * SCALE)),
                                      costs=vroom.VehicleCosts(fixed=fixed)))

    def tw(nd):
        return [vroom.TimeWindow(scaled_time(nd["ready"]), int(nd["due"] * SCALE))]

    if inst["kind"] == "solomon":
        for nd in nodes[1:]:
            inp.add_job(vroom.Job(nd["id"], location=nd["id"], default_service=scaled_time(nd["service"]),
                                  delivery=[nd["demand"]], time_windows=tw(nd)))
    else:
        for nd in nodes[1:]:
            if nd["delivery"]:
                dn = nodes[nd["delivery"]]
                inp.add_shipment(
                    vroom.ShipmentStep(nd["id"], location=nd["id"],
                                       default_service=scaled_time(nd["service"]), time_windows=tw(nd)),
                    vroom.ShipmentStep(dn["id"], location=dn["id"],
                                       default_service=scaled_time(dn["service"]), time_windows=tw(dn)),
                    amount=vroom.Amount([nd["demand"]]))
    start = time.perf_counter()
    limit = timedelta(milliseconds=tl_ms) if timeout else None
    sol = inp.solve(exploration_level=5, nb_threads=1, timeout=limit)
    elapsed = time.perf_counter() - start
    routes = {}
    for row in sol.routes.itertuples():
        if row.type in ("job", "pickup", "delivery"):
            routes.setdefault(row.vehicle_id, []).append(int(row.id))
    return list(routes.values()), elapsed


# ---------------------------------------------------------------- main


def fmt_gap(g):
    return "" if g is None else f"{g:.2f}"


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "shared", "data", "routing"))
    ap.add_argument("--families", default="solomon,lilim")
    ap.add_argument("--instances", default="", help="comma-separated subset, e.g. C101,lr101")
    ap.add_argument("--solvers", default="fabflow,pyvrp,vroom",
                    help="any of fabflow, pyvrp, vroom (with the time limit), vroom-untimed")
    ap.add_argument("--cmd", default="target/release/fabflow route", help="fabflow command prefix")
    ap.add_argument("--time-limit-ms", type=int, default=1000)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--objective", choices=["distance", "vehicles"], default="distance")
    ap.add_argument("--out", default="", help="append the markdown here (default: stdout only)")
    ap.add_argument("--json-out", default="", help="write raw results here")
    ap.add_argument("--from-json", default="", help="render the table from earlier raw results")
    ap.add_argument("--doubtful", default="",
                    help="comma-separated instances whose BKS looks wrong: marked `?` and left "
                         "out of the summary, e.g. R109,RC103 (distance objective)")
    args = ap.parse_args()

    solvers = [s for s in args.solvers.split(",") if s]
    subset = {s.lower() for s in args.instances.split(",") if s}
    results = []
    if args.from_json:
        with open(args.from_json) as f:
            results = json.load(f)
        solvers = [s for s in solvers if all(s in r["solvers"] for r in results)]
    for family in [f for f in args.families.split(",") if f and not args.from_json]:
        bks = load_bks(args.data, family)
        folder = os.path.join(args.data, family)
        for file in sorted(os.listdir(folder)):
            if not file.endswith(".txt"):
                continue
            name = file[:-4]
            if subset and name.lower() not in subset:
                continue
            path = os.path.join(folder, file)
            inst = parse_solomon(path) if family == "solomon" else parse_lilim(path)
            bv, bd, bobj = bks_for(bks, name, args.objective)
            row = dict(family=family, instance=name, cls=instance_class(name), bks_vehicles=bv,
                       bks_distance=bd, bks_objective=bobj, solvers={})
            for solver in solvers:
                try:
                    if solver == "fabflow":
                        routes, secs = run_fabflow(args.cmd, path, inst, args.time_limit_ms, args.seed,
                                                   args.objective)
                    elif solver == "pyvrp":
                        routes, secs = run_pyvrp(inst, args.time_limit_ms, args.seed, args.objective)
                    elif solver == "vroom":
                        routes, secs = run_vroom(inst, args.time_limit_ms, args.seed, args.objective)
                    elif solver == "vroom-untimed":  # VROOM's own stopping rule
                        routes, secs = run_vroom(inst, args.time_limit_ms, args.seed, args.objective,
                                                 timeout=False)
                    else:
                        raise ValueError(f"unknown solver {solver}")
                    ok, reason, veh, d = check(inst, routes)
                except Exception as err:  # a solver failing is a result, not a crash
                    ok, reason, veh, d, secs = False, f"error: {err}", 0, 0.0, 0.0
                gap = (d - bd) / bd * 100.0 if ok else None
                row["solvers"][solver] = dict(ok=ok, reason=reason, vehicles=veh, distance=d, gap=gap,
                                              seconds=secs)
                print(f"{name:8s} {solver:8s} ok={ok} veh={veh} dist={d:.2f} gap={fmt_gap(gap)} "
                      f"t={secs:.2f}s {reason}", file=sys.stderr, flush=True)
            results.append(row)

    doubtful = {s.lower() for s in args.doubtful.split(",") if s}
    lines = []
    cmdline = " ".join(shlex.quote(a) for a in sys.argv)
    lines.append(f"Command: `python {cmdline}`\n")
    lines.append(f"Objective: {args.objective}; time limit {args.time_limit_ms} ms per instance; "
                 f"seed {args.seed}. Gap = (distance - BKS distance) / BKS distance, distances "
                 "recomputed here with exact Euclidean; `!` marks a BKS under the other objective; "
                 "`x` an infeasible or failed run.\n")
    header = "| instance | BKS veh | BKS dist |" + "".join(
        f" {s} veh | {s} dist | {s} gap % | {s} s |" for s in solvers)
    lines.append(header)
    lines.append("|" + "---|" * (3 + 4 * len(solvers)))
    for row in results:
        mark = "" if row["bks_objective"] == args.objective else " !"
        mark += " ?" if row["instance"].lower() in doubtful else ""
        cells = [row["instance"] + mark, str(row["bks_vehicles"]), f"{row['bks_distance']:.2f}"]
        for s in solvers:
            r = row["solvers"][s]
            if r["ok"]:
                cells += [str(r["vehicles"]), f"{r['distance']:.2f}", fmt_gap(r["gap"]), f"{r['seconds']:.2f}"]
            else:
                cells += ["x", "x", "x", f"{r['seconds']:.2f}"]
        lines.append("| " + " | ".join(cells) + " |")
    lines.append("")
    # Summaries per family and per class.
    lines.append("Summary: mean gap over feasible runs; vehicles over BKS (sum); runs at the BKS "
                 "vehicle count and their mean gap (the hierarchical comparison); infeasible runs.\n")
    lines.append("| group | n |" + "".join(f" {s} mean gap % | {s} veh over BKS | {s} at BKS veh | "
                                           f"{s} gap there % | {s} infeasible |" for s in solvers))
    lines.append("|" + "---|" * (2 + 5 * len(solvers)))
    groups = []
    counted = [r for r in results if r["instance"].lower() not in doubtful]
    if doubtful:
        lines.insert(len(lines) - 2, f"Left out of the summary (`?`, BKS doubtful): {', '.join(sorted(doubtful))}.\n")
    for family in dict.fromkeys(r["family"] for r in counted):
        fam = [r for r in counted if r["family"] == family]
        groups.append((f"**{family}**", fam))
        for cls in dict.fromkeys(r["cls"] for r in fam):
            groups.append((cls, [r for r in fam if r["cls"] == cls]))
    for label, rows in groups:
        cells = [label, str(len(rows))]
        for s in solvers:
            ok = [r for r in rows if r["solvers"][s]["ok"]]
            mean = sum(r["solvers"][s]["gap"] for r in ok) / len(ok) if ok else None
            over = sum(r["solvers"][s]["vehicles"] - r["bks_vehicles"] for r in ok)
            same = [r for r in ok if r["solvers"][s]["vehicles"] == r["bks_vehicles"]]
            same_mean = sum(r["solvers"][s]["gap"] for r in same) / len(same) if same else None
            cells += [fmt_gap(mean), f"{over:+d}", str(len(same)), fmt_gap(same_mean),
                      str(len(rows) - len(ok))]
        lines.append("| " + " | ".join(cells) + " |")
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out:
        with open(args.out, "a") as f:
            f.write(text + "\n")
    if args.json_out:
        with open(args.json_out, "w") as f:
            json.dump(results, f, indent=1)


if __name__ == "__main__":
    main()

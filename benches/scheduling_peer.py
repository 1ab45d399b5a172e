#!/usr/bin/env python3
"""Side-by-side production-scheduling benchmark: fabflow's shop scheduler
(`fabflow schedule`) and Google OR-Tools CP-SAT on the flexible job-shop
instances of ../shared/data/scheduling (Brandimarte mk*, Hurink rdata la*),
same time budget each.

CP-SAT gets the standard interval model: per operation an interval, per
capable machine an optional interval of that machine's time with a presence
literal (exactly one present), NoOverlap per machine, precedence inside each
job, minimise the makespan; 2 workers. Every schedule of either solver is
checked here (every operation once, on a capable machine for its time, job
order, one operation at a time per machine) and its makespan recomputed; an
infeasible one counts as a failure, not a result.

Usage (see scheduling_peer.sh, which makes the venv):
  python benches/scheduling_peer.py --cmd "target/release/fabflow schedule" \\
      --time-limit-ms 1000 [--time-limit-ms 10000] [--instances mk01,la01] \\
      [--solvers fabflow,cpsat] [--seed 1] [--data ../shared/data/scheduling] \\
      [--json target/scheduling-bench.json] [--out docs/benchmarks.md]
  python benches/scheduling_peer.py --from-json target/scheduling-bench.json --out docs/benchmarks.md

With --out, the tables replace the text between the markers
`<!-- scheduling-results:begin -->` and `<!-- scheduling-results:end -->`.
"""

import argparse
import csv
import json
import os
import shlex
import subprocess
import sys
import time


def parse_fjsp(path):
    with open(path) as f:
        lines = [l.split() for l in f if l.strip()]
    jobs_count, machines = int(lines[0][0]), int(lines[0][1])
    jobs = []
    for fields in lines[1 : 1 + jobs_count]:
        t = [int(x) for x in fields]
        i, ops = 1, []
        for _ in range(t[0]):
            k = t[i]
            i += 1
            ops.append({t[i + 2 * p]: t[i + 2 * p + 1] for p in range(k)})
            i += 2 * k
        jobs.append(ops)
    return dict(machines=machines, jobs=jobs)


def check(instance, operations):
    """Returns (makespan, None) for a feasible schedule, else (None, reason)."""
    jobs = instance["jobs"]
    placed = {}
    for op in operations:
        j, o, m, s = int(op["job"]), int(op["op"]), int(op["machine"]), int(op["start"])
        if not (0 <= j < len(jobs) and 0 <= o < len(jobs[j])):
            return None, f"unknown operation {j}/{o}"
        if (j, o) in placed:
            return None, f"operation {j}/{o} twice"
        if m not in jobs[j][o]:
            return None, f"operation {j}/{o} on machine {m}, which cannot run it"
        if s < 0:
            return None, f"operation {j}/{o} starts before 0"
        placed[(j, o)] = (m, s, s + jobs[j][o][m])
    for j, ops in enumerate(jobs):
        for o in range(len(ops)):
            if (j, o) not in placed:
                return None, f"operation {j}/{o} missing"
            if o > 0 and placed[(j, o)][1] < placed[(j, o - 1)][2]:
                return None, f"operation {j}/{o} starts before {j}/{o - 1} ends"
    by_machine = {}
    for key, (m, s, e) in placed.items():
        by_machine.setdefault(m, []).append((s, e, key))
    for m, items in by_machine.items():
        items.sort()
        for a, b in zip(items, items[1:]):
            if b[0] < a[1]:
                return None, f"machine {m}: {b[2]} starts before {a[2]} ends"
    return max(e for (_, _, e) in placed.values()), None


def run_fabflow(cmd, path, limit_ms, seed):
    args = shlex.split(cmd) + [
        "--format", "fjsp", "--time-limit-ms", str(limit_ms), "--seed", str(seed), path,
    ]
    started = time.perf_counter()
    done = subprocess.run(args, capture_output=True, text=True)
    elapsed = time.perf_counter() - started
    if done.returncode != 0:
        return dict(error=done.stderr.strip()[:200], time=elapsed)
    out = json.loads(done.stdout)
    return dict(operations=out["operations"], reported=out["makespan"], time=elapsed,
                iterations=out.get("iterations"))


def run_cpsat(instance, limit_ms, seed):
    from ortools.sat.python import cp_model

    started = time.perf_counter()
    jobs = instance["jobs"]
    horizon = sum(max(op.values()) for ops in jobs for op in ops)
    model = cp_model.CpModel()
    per_machine = {}
    starts, ends, choices = {}, {}, {}
    for j, ops in enumerate(jobs):
        for o, alts in enumerate(ops):
            lo, hi = min(alts.values()), max(alts.values())
            start = model.NewIntVar(0, horizon, f"s{j}_{o}")
            duration = model.NewIntVar(lo, hi, f"d{j}_{o}")
            end = model.NewIntVar(0, horizon, f"e{j}_{o}")
            model.NewIntervalVar(start, duration, end, f"i{j}_{o}")
            starts[(j, o)], ends[(j, o)] = start, end
            if len(alts) == 1:
                (m, p), = alts.items()
                per_machine.setdefault(m, []).append(
                    model.NewIntervalVar(start, p, end, f"i{j}_{o}_{m}"))
                choices[(j, o)] = [(m, None)]
                continue
            literals = []
            for m, p in alts.items():
                present = model.NewBoolVar(f"x{j}_{o}_{m}")
                s = model.NewIntVar(0, horizon, f"s{j}_{o}_{m}")
                e = model.NewIntVar(0, horizon, f"e{j}_{o}_{m}")
                per_machine.setdefault(m, []).append(
                    model.NewOptionalIntervalVar(s, p, e, present, f"i{j}_{o}_{m}"))
                model.Add(start == s).OnlyEnforceIf(present)
                model.Add(end == e).OnlyEnforceIf(present)
                model.Add(duration == p).OnlyEnforceIf(present)
                literals.append((m, present))
            model.AddExactlyOne(lit for _, lit in literals)
            choices[(j, o)] = literals
        for o in range(1, len(ops)):
            model.Add(starts[(j, o)] >= ends[(j, o - 1)])
    for intervals in per_machine.values():
        model.AddNoOverlap(intervals)
    makespan = model.NewIntVar(0, horizon, "makespan")
    model.AddMaxEquality(makespan, [ends[(j, len(ops) - 1)] for j, ops in enumerate(jobs)])
    model.Minimize(makespan)
    solver = cp_model.CpSolver()
    solver.parameters.max_time_in_seconds = max(limit_ms / 1000.0 - (time.perf_counter() - started), 0.01)
    solver.parameters.num_workers = 2
    solver.parameters.random_seed = seed
    status = solver.Solve(model)
    elapsed = time.perf_counter() - started
    if status not in (cp_model.OPTIMAL, cp_model.FEASIBLE):
        return dict(error=solver.StatusName(status), time=elapsed)
    operations = []
    for (j, o), literals in choices.items():
        machine = next(m for m, lit in literals if lit is None or solver.Value(lit))
        operations.append(dict(job=j, op=o, machine=machine, start=solver.Value(starts[(j, o)])))
    return dict(operations=operations, reported=solver.Value(makespan), time=elapsed,
                status=solver.StatusName(status))


def load_bounds(data):
    bounds = {}
    with open(os.path.join(data, "bounds.csv")) as f:
        for row in csv.DictReader(f):
            bounds[row["instance"]] = dict(
                lower=int(row["lower"]), upper=int(row["upper"]),
                optimum=int(row["optimum"]) if row["optimum"] else None)
    return bounds


def render(results, limits, solvers):
    out = []
    for limit in limits:
        out.append(f"#### {limit / 1000:g} s per instance\n")
        head = "| instance | best known |"
        rule = "| --- | ---: |"
        for s in solvers:
            head += f" {s} makespan | {s} gap % | {s} time s |"
            rule += " ---: | ---: | ---: |"
        out += [head, rule]
        families = {}
        for r in [r for r in results if r["limit_ms"] == limit]:
            row = f"| {r['instance']} | {r['upper']} |"
            family = r["instance"].split("/")[0]
            for s in solvers:
                x = r[s]
                if x.get("makespan") is None:
                    row += f" failed: {x.get('error', '?')[:40]} | | {x['time']:.2f} |"
                    families.setdefault((family, s), []).append(None)
                else:
                    row += f" {x['makespan']} | {x['gap']:.2f} | {x['time']:.2f} |"
                    families.setdefault((family, s), []).append(x["gap"])
            out.append(row)
        out.append("")
        out.append("| family | " + " | ".join(
            f"{s} mean gap % | {s} mean gap %, beaten bounds as 0" for s in solvers) + " |")
        out.append("| --- |" + " ---: | ---: |" * len(solvers))
        for family in sorted({f for f, _ in families}):
            cells = []
            for s in solvers:
                gaps = families.get((family, s), [])
                if not gaps or any(g is None for g in gaps):
                    failed = sum(g is None for g in gaps)
                    solved = [g for g in gaps if g is not None]
                    mean = f" (mean of the other {len(solved)}: {sum(solved) / len(solved):.2f})" if solved else ""
                    cells.append(f"{failed} failed{mean} |")
                else:
                    clamped = [max(g, 0.0) for g in gaps]
                    cells.append(f"{sum(gaps) / len(gaps):.2f} | {sum(clamped) / len(clamped):.2f}")
            out.append(f"| {family} ({len(families[(family, solvers[0])])}) | " + " | ".join(cells) + " |")
        out.append("")
    return "\n".join(out)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--cmd", default="target/release/fabflow schedule")
    parser.add_argument("--time-limit-ms", type=int, action="append", dest="limits")
    parser.add_argument("--instances", default="")
    parser.add_argument("--solvers", default="fabflow,cpsat")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--data", default=os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data", "scheduling"))
    parser.add_argument("--json", default="target/scheduling-bench.json")
    parser.add_argument("--out")
    parser.add_argument("--from-json", help="re-render the tables of an earlier run's --json file")
    args = parser.parse_args()
    limits = args.limits or [1000]
    solvers = args.solvers.split(",")
    if args.from_json:
        with open(args.from_json) as f:
            results = json.load(f)
        limits = sorted({r["limit_ms"] for r in results})
        write(render(results, limits, solvers), args.out)
        return
    bounds = load_bounds(args.data)
    wanted = set(x for x in args.instances.split(",") if x)
    names = [n for n in bounds if not wanted or n.split("/")[-1] in wanted]
    results = []
    for limit in limits:
        for name in names:
            path = os.path.join(args.data, name + ".txt")
            instance = parse_fjsp(path)
            row = dict(instance=name, limit_ms=limit, upper=bounds[name]["upper"])
            for s in solvers:
                if s == "fabflow":
                    x = run_fabflow(args.cmd, path, limit, args.seed)
                elif s == "cpsat":
                    x = run_cpsat(instance, limit, args.seed)
                else:
                    sys.exit(f"unknown solver {s}")
                if "operations" in x:
                    makespan, problem = check(instance, x.pop("operations"))
                    if problem:
                        x = dict(error="infeasible: " + problem, time=x["time"])
                    else:
                        if makespan != x["reported"]:
                            x["note"] = f"reported {x['reported']}, checked {makespan}"
                        x["makespan"] = makespan
                        x["gap"] = 100.0 * (makespan - row["upper"]) / row["upper"]
                row[s] = x
            results.append(row)
            print(json.dumps(row), flush=True)
    if args.json:
        os.makedirs(os.path.dirname(args.json) or ".", exist_ok=True)
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)
    write(render(results, limits, solvers), args.out)


def write(text, out):
    print(text)
    if out:
        with open(out) as f:
            doc = f.read()
        begin, end = "<!-- scheduling-results:begin -->", "<!-- scheduling-results:end -->"
        if begin in doc and end in doc:
            head, rest = doc.split(begin, 1)
            _, tail = rest.split(end, 1)
            doc = head + begin + "\n" + text + "\n" + end + tail
        else:
            doc += "\n" + begin + "\n" + text + "\n" + end + "\n"
        with open(out, "w") as f:
            f.write(doc)


if __name__ == "__main__":
    main()

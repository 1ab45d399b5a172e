#!/usr/bin/env python3
"""Peer benchmark: fabflow's forecast models against Nixtla's statsforecast.

Runs the protocol of the shared benchmark data's forecast/README.md (hold out
the last 8 weeks, forecast 8, RMSSE and MAE) on real weekly demand
and on seeded synthetic intermittent series, for fabflow and statsforecast,
and prints a markdown table for docs/benchmarks.md. Each tool is timed two
ways (`--views`), so that like is held against like:

- `fit`: fit + predict on series already in memory. statsforecast:
  `StatsForecast.forecast` on a DataFrame (imports and loading not counted);
  fabflow: `benches/forecast_fit.rs` (`--fit-cmd`), which parses the CSV
  first and times `forecast_all` alone.
- `command`: the whole program run on the CSV file, as a user runs it.
  fabflow: `fabflow forecast` (`--cmd`; process start, reading, fit,
  writing); statsforecast: `benches/statsforecast_command.py` in the same
  Python (interpreter start, imports, `pandas.read_csv`, fit, CSV out).

Every pairing is printed: each view against the best peer model in the same
view, and (as the tables before 2026-12-04 did) fabflow's command against
statsforecast's in-memory fit.

Protocol, per data set:
- hold out the last `--holdout` periods (8) of every series; fit on the rest;
- forecast `--horizon` periods (8);
- RMSSE per series: RMSE over the holdout divided by the RMSE of the one-step
  naive forecast in sample (sqrt(mean(diff(train)^2))); series whose training
  part is constant (scale 0) are left out of the RMSSE mean and counted;
- MAE: mean absolute error over every series and step;
- mean RMSSE over series is the headline.

statsforecast models: CrostonClassic, CrostonOptimized, CrostonSBA,
TSB(alpha_d, alpha_p) with --tsb-alpha-d/--tsb-alpha-p (default 0.1/0.1, the
constants of classic Croston; TSB has no optimised variant in statsforecast),
ADIDA, IMAPA; each timed alone with n_jobs=1 (or --n-jobs), and all six in
one call. With --n-jobs N, fabflow runs with --threads N.

Usage (from the crate root, after `cargo build --release`):

    cargo build --release
    benches/forecast_peer.sh                      # target/release/fabflow forecast
    benches/forecast_peer.sh --data PATH --repeat 11 --skip-synthetic
    benches/forecast_peer.sh --skip-real --n-jobs 2   # both tools on 2 cores

The fit bench is built with `cargo bench --bench forecast_fit --no-run`
(forecast_peer.sh does it); the newest target/release/deps/forecast_fit-*
is used unless --fit-cmd names one. The command prefix gets `--input FILE --horizon H --model M` appended and must
print `unique_id,ds,y_hat` CSV on standard output.
"""

import argparse
import glob
import io
import json
import math
import os
import platform
import resource
import shlex
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np
import pandas as pd

HERE = os.path.dirname(os.path.abspath(__file__))
CRATE = os.path.dirname(HERE)
# The shared benchmark data sits beside the checkout (../shared/data/).
DEFAULT_DATA = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "shared", "data", "forecast", "bike_sales_weekly.csv")
FABFLOW_MODELS = [
    "auto",
    "combination",
    "ses",
    "croston",
    "croston_optimized",
    "sba",
    "tsb",
    "adida",
    "imapa",
    "mean",
    "zero",
]


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--cmd",
        default=os.path.join(CRATE, "target", "release", "fabflow") + " forecast",
        help="fabflow forecasting command prefix (default: target/release/fabflow forecast)",
    )
    parser.add_argument(
        "--fit-cmd",
        default=None,
        help="fabflow in-memory fit bench (default: the newest target/release/deps/forecast_fit-*)",
    )
    parser.add_argument(
        "--views",
        default="fit,command",
        help="how to time each tool: fit (in memory), command (whole program), or both (default)",
    )
    parser.add_argument("--data", default=DEFAULT_DATA, help="real data, long CSV")
    parser.add_argument("--holdout", type=int, default=8)
    parser.add_argument("--horizon", type=int, default=8)
    parser.add_argument("--models", default=",".join(FABFLOW_MODELS), help="fabflow models")
    parser.add_argument("--synthetic-series", type=int, default=10_000)
    parser.add_argument("--synthetic-length", type=int, default=104, help="weeks, before holdout split")
    parser.add_argument("--seed", type=int, default=20240601)
    parser.add_argument("--repeat", type=int, default=5, help="timed rounds; the median is reported")
    parser.add_argument("--tsb-alpha-d", type=float, default=0.1)
    parser.add_argument("--tsb-alpha-p", type=float, default=0.1)
    parser.add_argument(
        "--n-jobs",
        type=int,
        default=1,
        help="cores for each tool: statsforecast's n_jobs and fabflow's --threads (default 1, the headline)",
    )
    parser.add_argument("--skip-real", action="store_true")
    parser.add_argument("--skip-synthetic", action="store_true")
    parser.add_argument("--skip-statsforecast", action="store_true", help="fabflow rows only")
    parser.add_argument("--workdir", default=None, help="where to write the CSV files (default: a temporary directory)")
    return parser.parse_args(argv)


def synthetic(n_series, length, seed):
    """Intermittent weekly demand: Bernoulli occurrence x integer sizes.

    A third of the series keep their demand probability, a third drift linearly
    to another, a third jump to another at a random week (new product, event,
    obsolescence). Sizes are 1 + Poisson(lambda) for even series and
    ceil(Gamma(k, theta)) for odd ones. Probabilities are drawn in [0.05, 0.6].
    """
    rng = np.random.default_rng(seed)
    ids = np.empty(n_series * length, dtype=object)
    values = np.empty(n_series * length)
    for index in range(n_series):
        p0 = rng.uniform(0.05, 0.6)
        p1 = rng.uniform(0.05, 0.6)
        pattern = index % 3
        if pattern == 0:
            probability = np.full(length, p0)
        elif pattern == 1:
            probability = np.linspace(p0, p1, length)
        else:
            change = rng.integers(length // 4, 3 * length // 4)
            probability = np.where(np.arange(length) < change, p0, p1)
        occurs = rng.random(length) < probability
        if index % 2 == 0:
            sizes = 1 + rng.poisson(rng.uniform(0.5, 5.0), length)
        else:
            sizes = np.ceil(rng.gamma(rng.uniform(0.5, 3.0), rng.uniform(1.0, 4.0), length))
            sizes = np.maximum(sizes, 1)
        start = index * length
        ids[start : start + length] = f"syn_{index:05d}"
        values[start : start + length] = occurs * sizes
    dates = pd.date_range("2020-01-05", periods=length, freq="W-SUN")
    return pd.DataFrame(
        {"unique_id": ids, "ds": np.tile(dates.values, n_series), "y": values}
    )


def split(df, holdout):
    df = df.sort_values(["unique_id", "ds"], kind="stable")
    position = df.groupby("unique_id").cumcount(ascending=False)
    train = df[position >= holdout].reset_index(drop=True)
    test = df[position < holdout].reset_index(drop=True)
    return train, test


def scales(train):
    """sqrt(mean squared one-step naive error) per series."""
    def scale(values):
        values = np.asarray(values, dtype=float)
        if values.size < 2:
            return 0.0
        return float(np.sqrt(np.mean(np.diff(values) ** 2)))

    return train.groupby("unique_id")["y"].apply(scale)


def score(test, forecast, column, scale):
    merged = test.merge(forecast[["unique_id", "ds", column]], on=["unique_id", "ds"], how="left")
    missing = int(merged[column].isna().sum())
    if missing:
        raise SystemExit(f"{column}: {missing} holdout rows have no forecast")
    merged["error"] = merged["y"] - merged[column]
    per_series = merged.groupby("unique_id")["error"].apply(lambda e: float(np.sqrt(np.mean(e**2))))
    joined = pd.DataFrame({"rmse": per_series, "scale": scale.reindex(per_series.index)})
    usable = joined[joined["scale"] > 0]
    rmsse = float((usable["rmse"] / usable["scale"]).mean())
    mae = float(merged["error"].abs().mean())
    return rmsse, mae, len(joined) - len(usable)


def run_fabflow(cmd, path, horizon, model, n_jobs=1):
    """One run: the forecast, wall seconds and CPU seconds (user + system)."""
    argv = shlex.split(cmd) + ["--input", path, "--horizon", str(horizon), "--model", model]
    if n_jobs != 1:
        argv += ["--threads", str(n_jobs)]
    return timed_command(argv)


def timed_command(argv):
    """Runs a forecasting command that prints `unique_id,ds,y_hat` CSV: the
    forecast, wall seconds and CPU seconds (user + system, its children's
    included)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    result = subprocess.run(argv, capture_output=True, text=True)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if result.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} failed ({result.returncode}):\n{result.stderr}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    forecast = pd.read_csv(io.StringIO(result.stdout), parse_dates=["ds"], dtype={"unique_id": str})
    return forecast, wall, cpu


def find_fit_cmd():
    """The newest forecast_fit bench binary under target/release/deps."""
    candidates = [
        path
        for path in glob.glob(os.path.join(CRATE, "target", "release", "deps", "forecast_fit-*"))
        if os.access(path, os.X_OK) and not path.endswith(".d")
    ]
    if not candidates:
        raise SystemExit("no forecast_fit bench: run `cargo bench --bench forecast_fit --no-run` or pass --fit-cmd")
    return max(candidates, key=os.path.getmtime)


def run_fabflow_fit(fit_cmd, path, horizon, model, workdir):
    """One run of the in-memory bench: the forecast, and the median wall and
    CPU seconds of one fit of every series (the bench repeats the fit for at
    least 0.2 s and reports the median)."""
    output = os.path.join(workdir, f"fit-{model}.csv")
    argv = shlex.split(fit_cmd) + ["--input", path, "--horizon", str(horizon), "--model", model, "--output", output]
    result = subprocess.run(argv, capture_output=True, text=True)
    if result.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} failed ({result.returncode}):\n{result.stderr}")
    figures = json.loads(result.stdout.strip().splitlines()[-1])
    forecast = pd.read_csv(output, parse_dates=["ds"], dtype={"unique_id": str})
    cpu = figures["cpu_s"] if figures["cpu_s"] is not None else math.nan
    return forecast, figures["wall_s"], cpu


def run_statsforecast_command(path, horizon, label, args):
    """One run of benches/statsforecast_command.py as its own process, timed
    like `fabflow forecast`: the forecast, wall and CPU seconds."""
    argv = [
        sys.executable,
        os.path.join(HERE, "statsforecast_command.py"),
        "--input",
        path,
        "--horizon",
        str(horizon),
        "--model",
        label,
        "--tsb-alpha-d",
        str(args.tsb_alpha_d),
        "--tsb-alpha-p",
        str(args.tsb_alpha_p),
        "--n-jobs",
        str(args.n_jobs),
    ]
    return timed_command(argv)


def statsforecast_models(alpha_d, alpha_p):
    from statsforecast.models import (
        ADIDA,
        IMAPA,
        TSB,
        CrostonClassic,
        CrostonOptimized,
        CrostonSBA,
    )

    return [
        ("CrostonClassic", lambda: CrostonClassic()),
        ("CrostonOptimized", lambda: CrostonOptimized()),
        ("CrostonSBA", lambda: CrostonSBA()),
        (f"TSB({alpha_d},{alpha_p})", lambda: TSB(alpha_d=alpha_d, alpha_p=alpha_p, alias=f"TSB({alpha_d},{alpha_p})")),
        ("ADIDA", lambda: ADIDA()),
        ("IMAPA", lambda: IMAPA()),
    ]


def run_statsforecast(train, horizon, freq, makers, n_jobs=1):
    """One run of fit + predict: the forecast, wall seconds and CPU seconds
    (this process's, plus that of worker processes when n_jobs > 1)."""
    from statsforecast import StatsForecast

    models = [make() for _, make in makers]
    sf = StatsForecast(models=models, freq=freq, n_jobs=n_jobs)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu_start = time.process_time()
    start = time.perf_counter()
    forecast = sf.forecast(df=train, h=horizon)
    wall = time.perf_counter() - start
    cpu = time.process_time() - cpu_start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu += (after.ru_utime - children.ru_utime) + (after.ru_stime - children.ru_stime)
    if "unique_id" not in forecast.columns:
        forecast = forecast.reset_index()
    forecast["unique_id"] = forecast["unique_id"].astype(str)
    return forecast, wall, cpu


def infer_freq(train):
    one = train[train["unique_id"] == train["unique_id"].iloc[0]]["ds"]
    freq = pd.infer_freq(one)
    if freq is None:
        raise SystemExit("cannot infer the frequency of the data")
    return freq


def bench(name, df, args, workdir, rows):
    """Runs every model `args.repeat` times, interleaving tools and models in
    each round so that load from other processes hits both alike; reports the
    median wall and CPU time of each."""
    train, test = split(df, args.holdout)
    scale = scales(train)
    path = os.path.join(workdir, "train.csv")
    train.assign(ds=train["ds"].dt.strftime("%Y-%m-%d")).to_csv(path, index=False)
    series = train["unique_id"].nunique()
    print(f"[{name}] {series} series, {len(train)} training rows, holdout {args.holdout}, horizon {args.horizon}", file=sys.stderr)
    views = [v for v in args.views.split(",") if v]
    for view in views:
        if view not in ("fit", "command"):
            raise SystemExit(f"--views: {view!r} is neither fit nor command")
    jobs = []
    for model in [m for m in args.models.split(",") if m]:
        if "command" in views:
            jobs.append(("fabflow command", model, lambda model=model: run_fabflow(args.cmd, path, args.horizon, model, args.n_jobs)))
        if "fit" in views and args.n_jobs == 1:
            jobs.append(("fabflow fit", model, lambda model=model: run_fabflow_fit(args.fit_cmd, path, args.horizon, model, workdir)))
    if not args.skip_statsforecast:
        freq = infer_freq(train)
        train_sf = train[["unique_id", "ds", "y"]].copy()
        makers = statsforecast_models(args.tsb_alpha_d, args.tsb_alpha_p)
        for label, make in makers:
            if "fit" in views:
                jobs.append(("statsforecast fit", label, lambda make=make, label=label: run_statsforecast(train_sf, args.horizon, freq, [(label, make)], args.n_jobs)))
            if "command" in views:
                jobs.append(("statsforecast command", label, lambda label=label: run_statsforecast_command(path, args.horizon, label, args)))
        if "fit" in views:
            jobs.append(("statsforecast fit", "all six in one call", lambda: run_statsforecast(train_sf, args.horizon, freq, makers, args.n_jobs)))
    walls = {(tool, model): [] for tool, model, _ in jobs}
    cpus = {(tool, model): [] for tool, model, _ in jobs}
    forecasts = {}
    for round_index in range(args.repeat):
        for tool, model, job in jobs:
            forecast, wall, cpu = job()
            walls[(tool, model)].append(wall)
            cpus[(tool, model)].append(cpu)
            forecasts[(tool, model)] = forecast
        print(f"[{name}] round {round_index + 1}/{args.repeat} done", file=sys.stderr)
    for tool, model, _ in jobs:
        forecast = forecasts[(tool, model)]
        wall = statistics.median(walls[(tool, model)])
        cpu = statistics.median(cpus[(tool, model)])
        if model == "all six in one call":
            rows.append((name, tool, model, math.nan, math.nan, wall, cpu, 0))
            continue
        column = "y_hat" if "y_hat" in forecast.columns else [c for c in forecast.columns if c not in ("unique_id", "ds")][0]
        rmsse, mae, skipped = score(test, forecast, column, scale)
        rows.append((name, tool, model, rmsse, mae, wall, cpu, skipped))
        print(f"[{name}] {tool} {model}: RMSSE {rmsse:.4f} MAE {mae:.4f} wall {wall:.3f}s cpu {cpu:.3f}s", file=sys.stderr)


# fabflow's models whose forecasts are statsforecast's (docs/benchmarks.md):
# held against each other model for model.
SAME_MODEL = [
    ("croston", "CrostonClassic"),
    ("croston_optimized", "CrostonOptimized"),
    ("sba", "CrostonSBA"),
    ("adida", "ADIDA"),
    ("imapa", "IMAPA"),
]


def milliseconds(seconds):
    """Three significant figures, in milliseconds."""
    value = seconds * 1000
    return f"{value:.3g}" if value < 100 else f"{value:.0f}"


def table(rows, args, argv):
    import statsforecast

    lines = []
    lines.append("Command:")
    lines.append("")
    lines.append("```sh")
    lines.append("benches/forecast_peer.sh " + " ".join(shlex.quote(a) for a in argv))
    lines.append("```")
    lines.append("")
    lines.append(
        f"statsforecast {statsforecast.__version__}, numpy {np.__version__}, pandas {pd.__version__}, "
        f"Python {platform.python_version()}, {os.cpu_count()} CPUs ({platform.machine()}), load average "
        f"{os.getloadavg()[0]:.1f} at the end. "
        + (
            "One process, one thread each. "
            if args.n_jobs == 1
            else f"{args.n_jobs} cores each (fabflow `--threads {args.n_jobs}`, statsforecast `n_jobs={args.n_jobs}`). "
        )
        + f"Times are medians of {args.repeat} "
        "rounds, tools and models interleaved in each round. "
        "`fit`: fit and forecast of every series already in memory (fabflow: `benches/forecast_fit.rs`, itself the "
        "median of repeated fits; statsforecast: `StatsForecast.forecast` on a DataFrame, imports and loading not "
        "counted). `command`: the whole program on the CSV file (fabflow: `fabflow forecast`; statsforecast: "
        "`benches/statsforecast_command.py`: interpreter start, imports, `read_csv`, fit, CSV out). "
        "CPU is user + system time of that work"
        + (" (statsforecast's worker processes included)." if args.n_jobs != 1 else ".")
    )
    lines.append("")

    def find(subset, tool, model):
        found = [row for row in subset if row[1] == tool and row[2] == model]
        return found[0] if found else None

    def best(subset, tool):
        peers = [row for row in subset if row[1] == tool and not math.isnan(row[3])]
        return min(peers, key=lambda row: row[3]) if peers else None

    for data in sorted({row[0] for row in rows}, key=lambda d: d != "real"):
        subset = [row for row in rows if row[0] == data]
        skipped = max(row[7] for row in subset)
        lines.append(f"### {data}" + (f" ({skipped} series with a constant training part left out of RMSSE)" if skipped else ""))
        lines.append("")
        lines.append("| tool | view | model | mean RMSSE | MAE | wall (ms) | CPU (ms) | wall speed-up vs the best peer, same view |")
        lines.append("|---|---|---|---:|---:|---:|---:|---:|")
        for _, tool, model, rmsse, mae, wall, cpu, _ in subset:
            name, view = tool.split(" ")
            peer = best(subset, f"statsforecast {view}")
            rmsse_text = "" if math.isnan(rmsse) else f"{rmsse:.4f}"
            mae_text = "" if math.isnan(mae) else f"{mae:.4f}"
            cpu_text = "" if math.isnan(cpu) else milliseconds(cpu)
            ratio = f"{peer[5] / max(wall, 1e-9):.1f}x ({peer[2]})" if peer else ""
            lines.append(f"| {name} | {view} | {model} | {rmsse_text} | {mae_text} | {milliseconds(wall)} | {cpu_text} | {ratio} |")
        lines.append("")
        for fabflow_view, peer_view, what in [
            ("fit", "fit", "in memory against in memory"),
            ("command", "command", "whole command against whole command"),
            ("command", "fit", "fabflow's whole command against statsforecast's in-memory fit (the pairing of the tables before 2026-12-04)"),
        ]:
            auto = find(subset, f"fabflow {fabflow_view}", "auto")
            peer = best(subset, f"statsforecast {peer_view}")
            if not auto or not peer:
                continue
            verdict = "at least as good as" if auto[3] <= peer[3] else "worse than"
            cpu_ratio = "" if math.isnan(auto[6]) else f", CPU time {peer[6] / max(auto[6], 1e-9):.1f}x"
            lines.append(
                f"- {what}: fabflow auto, mean RMSSE {auto[3]:.4f}, {verdict} the best statsforecast model "
                f"({peer[2]}, {peer[3]:.4f}); wall time {peer[5] / max(auto[5], 1e-9):.1f}x its speed{cpu_ratio}."
            )
        auto = find(subset, "fabflow fit", "auto")
        six = find(subset, "statsforecast fit", "all six in one call")
        if auto and six:
            lines.append(
                f"- the same task in memory: fabflow auto fits every candidate model and backtests them; "
                f"statsforecast fitting its six models in one call (no backtest, no choice) takes "
                f"{six[5] / max(auto[5], 1e-9):.1f}x auto's wall time."
            )
        pairs = []
        for view in ("fit", "command"):
            for ours, theirs in SAME_MODEL:
                a = find(subset, f"fabflow {view}", ours)
                b = find(subset, f"statsforecast {view}", theirs)
                if a and b:
                    pairs.append(f"{ours} {b[5] / max(a[5], 1e-9):.1f}x")
            if pairs:
                lines.append(f"- model for model, {view}, fabflow's speed over statsforecast's (same forecasts): " + ", ".join(pairs) + ".")
            pairs = []
        lines.append("")
    return "\n".join(lines)


def main(argv):
    args = parse_args(argv)
    if "fit" in args.views and args.n_jobs == 1 and args.fit_cmd is None:
        args.fit_cmd = find_fit_cmd()
    rows = []
    with tempfile.TemporaryDirectory() as temporary:
        workdir = args.workdir or temporary
        os.makedirs(workdir, exist_ok=True)
        if not args.skip_real:
            real = pd.read_csv(args.data, parse_dates=["ds"], dtype={"unique_id": str})
            real_dir = os.path.join(workdir, "real")
            os.makedirs(real_dir, exist_ok=True)
            bench("real", real, args, real_dir, rows)
        if not args.skip_synthetic:
            data = synthetic(args.synthetic_series, args.synthetic_length, args.seed)
            label = f"synthetic ({args.synthetic_series} series x {args.synthetic_length} weeks, seed {args.seed})"
            synthetic_dir = os.path.join(workdir, "synthetic")
            os.makedirs(synthetic_dir, exist_ok=True)
            bench(label, data, args, synthetic_dir, rows)
    print(table(rows, args, argv))


if __name__ == "__main__":
    main(sys.argv[1:])

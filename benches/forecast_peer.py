#!/usr/bin/env python3
"""Peer benchmark: fabflow's forecast models against Nixtla's statsforecast.

Runs the protocol of the shared benchmark data's forecast/README.md (hold out
the last 8 weeks, forecast 8, RMSSE and MAE) on real weekly demand
and on seeded synthetic intermittent series, for fabflow (through its command
line, so wall time includes process start, reading the CSV and writing the
forecast) and for statsforecast (fit + predict of `StatsForecast.forecast` on a
DataFrame already in memory; imports and data loading excluded), and prints a
markdown table for docs/benchmarks.md.

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

The command prefix gets `--input FILE --horizon H --model M` appended and must
print `unique_id,ds,y_hat` CSV on standard output.
"""

import argparse
import io
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
    jobs = []
    for model in [m for m in args.models.split(",") if m]:
        jobs.append(("fabflow", model, lambda model=model: run_fabflow(args.cmd, path, args.horizon, model, args.n_jobs)))
    if not args.skip_statsforecast:
        freq = infer_freq(train)
        train_sf = train[["unique_id", "ds", "y"]].copy()
        makers = statsforecast_models(args.tsb_alpha_d, args.tsb_alpha_p)
        for label, make in makers:
            jobs.append(("statsforecast", label, lambda make=make, label=label: run_statsforecast(train_sf, args.horizon, freq, [(label, make)], args.n_jobs)))
        jobs.append(("statsforecast", "all six in one call", lambda: run_statsforecast(train_sf, args.horizon, freq, makers, args.n_jobs)))
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
        column = "y_hat" if tool == "fabflow" else [c for c in forecast.columns if c not in ("unique_id", "ds")][0]
        rmsse, mae, skipped = score(test, forecast, column, scale)
        rows.append((name, tool, model, rmsse, mae, wall, cpu, skipped))
        print(f"[{name}] {tool} {model}: RMSSE {rmsse:.4f} MAE {mae:.4f} wall {wall:.3f}s cpu {cpu:.3f}s", file=sys.stderr)


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
        f"rounds, tools and models interleaved in each round. fabflow: the whole command (process start, CSV "
        f"read and parse, fit, CSV write); statsforecast: `StatsForecast(n_jobs={args.n_jobs}).forecast` on a DataFrame "
        f"already in memory (import and loading not counted). CPU is user + system time of that work"
        + (" (statsforecast's worker processes included)." if args.n_jobs != 1 else ".")
    )
    lines.append("")
    for data in sorted({row[0] for row in rows}, key=lambda d: d != "real"):
        subset = [row for row in rows if row[0] == data]
        peers = [row for row in subset if row[1] == "statsforecast" and not math.isnan(row[3])]
        best_peer = min(peers, key=lambda row: row[3]) if peers else None
        skipped = max(row[7] for row in subset)
        lines.append(f"### {data}" + (f" ({skipped} series with a constant training part left out of RMSSE)" if skipped else ""))
        lines.append("")
        header = "| tool | model | mean RMSSE | MAE | wall (s) | CPU (s) |"
        rule = "|---|---|---:|---:|---:|---:|"
        if best_peer:
            header += f" wall speed-up vs {best_peer[2]} |"
            rule += "---:|"
        lines.append(header)
        lines.append(rule)
        for _, tool, model, rmsse, mae, wall, cpu, _ in subset:
            rmsse_text = "" if math.isnan(rmsse) else f"{rmsse:.4f}"
            mae_text = "" if math.isnan(mae) else f"{mae:.4f}"
            line = f"| {tool} | {model} | {rmsse_text} | {mae_text} | {wall:.4f} | {cpu:.4f} |"
            if best_peer:
                line += f" {best_peer[5] / max(wall, 1e-9):.1f}x |"
            lines.append(line)
        lines.append("")
        if best_peer:
            auto = [row for row in subset if row[1] == "fabflow" and row[2] == "auto"]
            if auto:
                a = auto[0]
                verdict = "at least as good as" if a[3] <= best_peer[3] else "worse than"
                lines.append(
                    f"fabflow auto: mean RMSSE {a[3]:.4f}, {verdict} the best statsforecast model "
                    f"({best_peer[2]}, {best_peer[3]:.4f}); wall time {best_peer[5] / a[5]:.1f}x its speed, "
                    f"CPU time {best_peer[6] / max(a[6], 1e-6):.1f}x."
                )
                lines.append("")
    return "\n".join(lines)


def main(argv):
    args = parse_args(argv)
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

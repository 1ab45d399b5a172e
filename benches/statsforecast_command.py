#!/usr/bin/env python3
"""statsforecast as a command, the peer of `fabflow forecast`: reads a long
CSV (`unique_id,ds,y`), fits one model per series, writes `unique_id,ds,y_hat`
CSV to standard output. `benches/forecast_peer.py` times it as a whole
process (interpreter start, imports, reading, fit, writing), beside the whole
`fabflow forecast` command.

    python benches/statsforecast_command.py --input FILE --horizon H --model IMAPA

Models: CrostonClassic, CrostonOptimized, CrostonSBA, TSB (with --tsb-alpha-d,
--tsb-alpha-p), ADIDA, IMAPA. The frequency is inferred from the first
series' dates. (statsforecast 2.x runs these models in compiled code of its
own, `statsforecast._lib`; there is no JIT compilation in the timed process.)
"""

import argparse
import sys


def main(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--input", required=True)
    parser.add_argument("--horizon", type=int, required=True)
    parser.add_argument("--model", required=True)
    parser.add_argument("--tsb-alpha-d", type=float, default=0.1)
    parser.add_argument("--tsb-alpha-p", type=float, default=0.1)
    parser.add_argument("--n-jobs", type=int, default=1)
    args = parser.parse_args(argv)

    import pandas as pd
    from statsforecast import StatsForecast

    # The same models and frequency inference as the peer benchmark's fits.
    from forecast_peer import infer_freq, statsforecast_models

    makers = dict(statsforecast_models(args.tsb_alpha_d, args.tsb_alpha_p))
    # "TSB" alone names the TSB of the given constants.
    label = next((name for name in makers if name.split("(")[0] == args.model.split("(")[0]), None)
    if label is None:
        raise SystemExit(f"--model {args.model!r}: expected one of {', '.join(makers)}")
    model = makers[label]()

    df = pd.read_csv(args.input, parse_dates=["ds"], dtype={"unique_id": str})
    freq = infer_freq(df)
    forecast = StatsForecast(models=[model], freq=freq, n_jobs=args.n_jobs).forecast(df=df, h=args.horizon)
    if "unique_id" not in forecast.columns:
        forecast = forecast.reset_index()
    column = [c for c in forecast.columns if c not in ("unique_id", "ds")][0]
    out = forecast[["unique_id", "ds", column]].rename(columns={column: "y_hat"})
    out["ds"] = out["ds"].dt.strftime("%Y-%m-%d")
    out.to_csv(sys.stdout, index=False)


if __name__ == "__main__":
    main(sys.argv[1:])

#!/bin/sh
# Runs benches/forecast_peer.py in its own virtual environment with statsforecast.
#
#   benches/forecast_peer.sh [--cmd "target/release/fabflow forecast"] [options of forecast_peer.py]
#
# FORECAST_BENCH_VENV: where the venv lives (default: target/bench-venv); it is created on first use. STATSFORECAST_SPEC: what pip installs
# (default statsforecast==2.1.1, the version the published numbers come from).
set -eu
here=$(cd "$(dirname "$0")" && pwd)
venv=${FORECAST_BENCH_VENV:-$here/../target/bench-venv}
spec=${STATSFORECAST_SPEC:-statsforecast==2.1.1}
if [ ! -x "$venv/bin/python" ]; then
    python3 -m venv "$venv"
fi
if ! "$venv/bin/python" -c "import statsforecast, pandas, numpy" 2>/dev/null; then
    "$venv/bin/pip" install --quiet "$spec"
fi
# The in-memory fit bench of fabflow (benches/forecast_fit.rs).
(cd "$here/.." && cargo bench --quiet --bench forecast_fit --no-run)
exec "$venv/bin/python" "$here/forecast_peer.py" "$@"

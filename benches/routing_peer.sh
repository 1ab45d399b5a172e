#!/usr/bin/env bash
# Runs benches/routing_peer.py in a venv with PyVRP and VROOM installed.
# The venv lives in $ROUTING_BENCH_VENV (default: target/bench-venv).
# Every argument is passed to the script, for example:
#   benches/routing_peer.sh --cmd "target/release/fabflow route" --time-limit-ms 1000
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
venv="${ROUTING_BENCH_VENV:-target/bench-venv}"
if [ ! -x "$venv/bin/python" ]; then
    python3 -m venv "$venv"
fi
if ! "$venv/bin/python" -c "import pyvrp, vroom" 2>/dev/null; then
    "$venv/bin/pip" install --quiet pyvroom pyvrp
fi
exec nice -n 10 "$venv/bin/python" "$here/routing_peer.py" "$@"

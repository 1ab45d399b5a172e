#!/usr/bin/env bash
# Runs benches/scheduling_peer.py in a venv with OR-Tools (CP-SAT) installed.
# The venv lives in $SCHEDULING_BENCH_VENV (default: target/bench-venv).
# Every argument is passed to the script, for example:
#   benches/scheduling_peer.sh --cmd "target/release/fabflow schedule" \
#       --time-limit-ms 1000 --time-limit-ms 10000 --out docs/benchmarks.md
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
venv="${SCHEDULING_BENCH_VENV:-target/bench-venv}"
if [ ! -x "$venv/bin/python" ]; then
    python3 -m venv "$venv"
fi
if ! "$venv/bin/python" -c "import ortools" 2>/dev/null; then
    "$venv/bin/pip" install --quiet ortools
fi
exec nice -n 10 "$venv/bin/python" "$here/scheduling_peer.py" "$@"

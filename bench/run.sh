#!/usr/bin/env bash
# Every benchmark, each figure beside its baseline from the same run.
#   bash bench/run.sh          full sizes (takes a while: a million open orders)
#   bash bench/run.sh --small  the small mode CI runs so the benchmarks cannot rot
set -euo pipefail
cd "$(dirname "$0")"
python=${PYTHON:-python3}
if [ "${1:-}" = "--small" ]; then
  $python throughput.py --orders 2000
  $python latency.py --rate 200 --seconds 5
  $python state.py --orders 3000 --probes 200
else
  $python throughput.py --orders 20000
  $python latency.py --rate "${LATENCY_RATE:-1000}" --seconds 30
  $python state.py --orders 1000000
fi

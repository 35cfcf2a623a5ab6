#!/usr/bin/env bash
# Every benchmark, each figure beside its baseline from the same run.
#   bash bench/run.sh          full sizes (takes a while: a million open orders)
#   bash bench/run.sh --small  the small mode CI runs so the benchmarks cannot rot
# Latency (c) runs at half the events/s that (b) measured just before.
set -euo pipefail
cd "$(dirname "$0")"
python=${PYTHON:-python3}
half_of_b() { tee /dev/stderr | awk '$1 == "(b)" { gsub(",", "", $5); print int($5 / 2) }'; }
if [ "${1:-}" = "--small" ]; then
  $python core.py --orders 2000
  rate=$($python throughput.py --orders 2000 2>&1 | half_of_b)
  $python latency.py --rate "$rate" --seconds 5
  $python state.py --orders 3000 --probes 200 --finished 500
  $python api.py --orders 20000 --requests 50
else
  $python core.py --orders 20000 --repeat 3
  rate=$($python throughput.py --orders 20000 2>&1 | half_of_b)
  $python latency.py --rate "$rate" --seconds 30
  $python state.py --orders 1000000
  $python api.py --orders 1000000
fi

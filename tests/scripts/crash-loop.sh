#!/usr/bin/env bash
# Long crash runs: the crash tests of tests/crash.rs with many kill cycles, in release mode.
#
#   tests/scripts/crash-loop.sh [CYCLES [ROUNDS]]     defaults: 500 cycles, 1 round
#
# Each round draws a fresh seed (printed as WERK_CRASH_SEED=...); the script stops at the first
# failing round, so the last seed printed replays it:
#   WERK_CRASH_SEED=<seed> WERK_CRASH_CYCLES=<cycles> cargo test --release --test crash -- --nocapture
# A failed crash run keeps its data directory (its path is printed) for inspection.
set -euo pipefail
cd "$(dirname "$0")/../.."

cycles=${1:-500}
rounds=${2:-1}
cargo build --release --tests --quiet
for round in $(seq 1 "$rounds"); do
  echo "== crash-loop: round $round of $rounds, $cycles cycles ($(date -u +%FT%TZ))"
  WERK_CRASH_CYCLES=$cycles cargo test --release --quiet --test crash -- --nocapture
done
echo "== crash-loop: $rounds round(s) of $cycles cycles passed"

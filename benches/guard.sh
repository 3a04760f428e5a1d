#!/bin/bash
# Regression guard: instructions per job through werk's core (parse, apply, journal encode,
# reply), counted by callgrind, which is deterministic: the same code gives the same count on
# any machine with the same toolchain, so a change that makes the hot path heavier shows up
# without timing noise.
#
#   benches/guard.sh            compare with benches/guard-baseline.txt (fails if > +3 %)
#   benches/guard.sh --update   write the current count as the new baseline
#
# Needs valgrind (Debian: apt-get install valgrind). Takes about 10 s.
set -euo pipefail
cd "$(dirname "$0")/.."
JOBS=20000
cargo build --release --quiet --bin werk-bench
OUT=$(mktemp)
trap 'rm -f "$OUT"' EXIT
valgrind --tool=callgrind --callgrind-out-file="$OUT" \
  target/release/werk-bench --mode core --jobs $JOBS >/dev/null 2>"$OUT.log" || { cat "$OUT.log"; exit 2; }
total=$(grep -E "refs:" "$OUT.log" | sed -E 's/.*refs: *//; s/,//g')
rm -f "$OUT.log"
per_job=$((total / JOBS))
echo "instructions per job (PUSH + FETCH + ACK through the core): $per_job"
baseline_file=benches/guard-baseline.txt
if [ "${1:-}" = "--update" ]; then
  echo "$per_job" >"$baseline_file"
  echo "baseline updated"
  exit 0
fi
baseline=$(cat "$baseline_file")
limit=$((baseline * 103 / 100))
echo "baseline: $baseline (limit $limit, +3 %)"
if [ "$per_job" -gt "$limit" ]; then
  echo "FAIL: the hot path got heavier; profile with: valgrind --tool=callgrind target/release/werk-bench --mode core --jobs $JOBS"
  exit 1
fi
echo "ok"

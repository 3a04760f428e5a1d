#!/bin/bash
# Compaction and recovery at one million queued jobs (docs/BENCHMARKS.md, "Journal at 1M jobs").
#
#   benches/journal-1m.sh [EXTRA_WERK_FLAGS...]
#
# Starts a release werk on 127.0.0.1:7519 with a fresh data directory, pushes 1,000,000 jobs
# shaped {"jid":...,"jobtype":"Load","args":[1,"string",3],"queue":"bench"} with werk-bench
# (PUSHB of 100 over 4 connections), prints the server's RSS, the compaction log lines (each
# with the slowest loop turn while it ran and before it) and the files on disk; then stops werk
# with TERM, restarts it on the same directory, and prints the recovery line and the RSS after
# recovery. Everything talks to 127.0.0.1 only and stops by itself.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --quiet
PORT=${PORT:-7519}
D=$(mktemp -d /tmp/werk-bench-1m.XXXX)
trap 'kill $PID 2>/dev/null || true; rm -rf "$D" "$D.log" "$D.log2"' EXIT
rss() { grep -E "VmRSS|VmHWM" "/proc/$1/status" | tr -s ' \t\n' ' '; echo; }
wait_listening() { for _ in $(seq 1 300); do grep -q "listening on" "$1" && return 0; sleep 0.1; done; return 1; }

echo "machine: $(nproc) cores, $(uname -m), $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2)"
target/release/werk -b 127.0.0.1:$PORT -w 127.0.0.1:0 -d "$D" "$@" >"$D.log" 2>&1 &
PID=$!
wait_listening "$D.log"
target/release/werk-bench --url tcp://127.0.0.1:$PORT --mode push --connections 4 \
  --jobs 1000000 --batch 100 --pid $PID
# Let a compaction that is still running finish.
for _ in $(seq 1 300); do
  n_started=$(ls "$D" | grep -c '^journal-' || true)
  [ "$n_started" -le 1 ] && break
  sleep 0.1
done
echo "after the push: $(rss $PID)"
grep "compaction" "$D.log" | sed 's/^I [^ ]* //' || true
echo "files: $(ls -l "$D" | awk 'NR>1 {print $9 "=" $5}' | tr '\n' ' ')"
kill -TERM $PID; wait $PID || true
target/release/werk -b 127.0.0.1:$PORT -w 127.0.0.1:0 -d "$D" "$@" >"$D.log2" 2>&1 &
PID=$!
wait_listening "$D.log2"
grep "recovered" "$D.log2" | sed 's/^I [^ ]* //'
echo "after recovery: $(rss $PID)"
kill -TERM $PID; wait $PID || true

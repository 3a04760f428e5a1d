#!/bin/bash
# Throughput against connections, in one run: Redis LPUSH (the ceiling, persistence off), Redis
# LPUSH with appendfsync always (the same durability as werk --sync always), werk --sync always
# and werk --sync none, push and process, at 1, 10, 20 and 50 connections. Prints a table and
# writes it as TSV to ${OUT:-target/sweep.tsv} for benches/plot.py.
#
#   benches/sweep.sh                # needs redis-server and redis-benchmark for the ceiling
#   CONNS="1 20" benches/sweep.sh   # fewer points
#
# Everything talks to 127.0.0.1 only and stops by itself.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --quiet
CONNS=${CONNS:-"1 10 20 50"}
OUT=${OUT:-target/sweep.tsv}
WPORT=7569
RPORT=7570
jobs_for() { if [ "$1" -le 1 ]; then echo 5000; else echo $((2000 * $1 < 60000 ? 60000 : 2000 * $1)); fi; }
echo "machine: $(nproc) cores, $(uname -m), $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
echo "date: $(date -u +%FT%TZ), werk $(git rev-parse --short HEAD 2>/dev/null || echo '?')"
printf "conns\tredis_lpush\tredis_aof_always\talways_push\tnone_push\talways_process\tnone_process\talways_push_p99_us\tnone_push_p99_us\n" >"$OUT"

redis_rate() { # conns [aof] -> LPUSH/s (aof: appendonly, appendfsync always)
  if ! command -v redis-server >/dev/null; then echo 0; return; fi
  local d; d=$(mktemp -d /tmp/redis-sweep.XXXX)
  local aof=no; [ "${2:-}" = aof ] && aof=yes
  redis-server --port $RPORT --save "" --appendonly $aof --appendfsync always --dir "$d" \
    --daemonize no >/dev/null 2>&1 &
  local pid=$!
  for _ in $(seq 1 50); do redis-cli -p $RPORT ping >/dev/null 2>&1 && break; sleep 0.1; done
  local n; n=$(jobs_for "$1")
  redis-benchmark -p $RPORT -t lpush -c "$1" -n "$((n * 2))" -q 2>/dev/null | tr '\r' '\n' \
    | grep -oE 'LPUSH: [0-9.]+' | tail -1 | awk '{print int($2)}'
  kill $pid; wait $pid 2>/dev/null || true
  rm -rf "$d"
}

werk_rates() { # sync conns -> "push_rate process_rate push_p99"
  local d; d=$(mktemp -d /tmp/werk-sweep.XXXX)
  target/release/werk -b 127.0.0.1:$WPORT -w off -l warn -d "$d" --sync "$1" 2>/dev/null &
  local pid=$!
  for _ in $(seq 1 50); do (echo >/dev/tcp/127.0.0.1/$WPORT) 2>/dev/null && break; sleep 0.1; done
  local n; n=$(jobs_for "$2")
  local push; push=$(target/release/werk-bench --url tcp://127.0.0.1:$WPORT --mode push \
    --connections "$2" --jobs "$n" --event-loop | grep '^push:')
  local proc; proc=$(target/release/werk-bench --url tcp://127.0.0.1:$WPORT --mode process \
    --consumers "$2" --connections 4 --jobs "$((n / 2))" --event-loop | grep '^process:')
  kill $pid; wait $pid 2>/dev/null || true
  rm -rf "$d"
  local pr; pr=$(echo "$push" | sed -E 's/.*: ([0-9]+) jobs\/s.*/\1/')
  local p99; p99=$(echo "$push" | sed -E 's/.*p99 ([0-9]+) us.*/\1/')
  local cr; cr=$(echo "$proc" | sed -E 's/.*: ([0-9]+) jobs\/s.*/\1/')
  echo "$pr $cr $p99"
}

printf "%5s %12s %12s %12s %12s %6s %14s %14s %6s %6s\n" conns redis-lpush redis-aof always-push none-push ratio always-process none-process ratio lpush%
for c in $CONNS; do
  r=$(redis_rate "$c")
  ra=$(redis_rate "$c" aof)
  read -r ap ac ap99 <<<"$(werk_rates always "$c")"
  read -r np nc np99 <<<"$(werk_rates none "$c")"
  printf "%d\t%d\t%d\t%d\t%d\t%d\t%d\t%d\t%d\n" "$c" "$r" "$ra" "$ap" "$np" "$ac" "$nc" "$ap99" "$np99" >>"$OUT"
  ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "-" }'; }
  printf "%5d %12d %12d %12d %12d %6s %14d %14d %6s %6s\n" "$c" "$r" "$ra" "$ap" "$np" "$(ratio "$ap" "$np")" \
    "$ac" "$nc" "$(ratio "$ac" "$nc")" "$(ratio "$np" "$r")"
done
echo "written: $OUT (plot: python3 benches/plot.py $OUT docs/throughput.svg)"

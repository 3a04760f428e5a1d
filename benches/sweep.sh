#!/bin/bash
# Throughput against connections, in one run: Redis LPUSH (the ceiling, persistence off), Redis
# LPUSH with appendfsync always (the same durability as werk --sync always), werk --sync always
# and werk --sync none, push and process, at 1, 10, 20 and 50 connections. Each figure is the
# median of REPEAT rounds (3 by default; in each round every server runs once, in turn: runs on
# a shared VM vary by 10-30 % between minutes). Prints a table and writes the medians as TSV to
# ${OUT:-target/sweep.tsv} for benches/plot.py.
#
#   benches/sweep.sh                # needs redis-server and redis-benchmark for the ceiling
#   CONNS="1 20" benches/sweep.sh   # fewer points
#   REPEAT=5 benches/sweep.sh       # more rounds per point
#
# Everything talks to 127.0.0.1 only and stops by itself.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --quiet
CONNS=${CONNS:-"1 10 20 50"}
REPEAT=${REPEAT:-3}
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

median() { tr ' ' '\n' | grep -v '^$' | sort -g | awk '{ v[NR] = $1 } END { print (NR ? v[int((NR + 1) / 2)] : 0) }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "-" }'; }
echo "each figure: the median of $REPEAT rounds; in each round every server runs once, in turn;"
echo "each ratio: the median of the $REPEAT ratios measured within one round"
printf "%5s %10s %10s %10s %10s %10s %10s %10s %10s %10s %7s\n" conns redis-lpush redis-aof always-push none-push always/none push/lpush always-proc none-proc proc/lpush p99-us
for c in $CONNS; do
  r="" ra="" ap="" ac="" ap99="" np="" nc="" np99="" q_an="" q_al="" q_pl=""
  for _ in $(seq 1 "$REPEAT"); do
    r1=$(redis_rate "$c")
    ra="$ra $(redis_rate "$c" aof)"
    read -r p1 c1 s1 <<<"$(werk_rates always "$c")"
    read -r p2 c2 s2 <<<"$(werk_rates none "$c")"
    r="$r $r1" ap="$ap $p1" ac="$ac $c1" ap99="$ap99 $s1" np="$np $p2" nc="$nc $c2" np99="$np99 $s2"
    q_an="$q_an $(ratio "$p1" "$p2")" q_al="$q_al $(ratio "$p1" "$r1")" q_pl="$q_pl $(ratio "$c1" "$r1")"
  done
  echo "  $c connections, per round: lpush [$r ] always push [$ap ] process [$ac ] push/lpush [$q_al ] proc/lpush [$q_pl ]"
  r=$(echo "$r" | median) ra=$(echo "$ra" | median) ap=$(echo "$ap" | median)
  ac=$(echo "$ac" | median) ap99=$(echo "$ap99" | median) np=$(echo "$np" | median)
  nc=$(echo "$nc" | median) np99=$(echo "$np99" | median)
  printf "%d\t%d\t%d\t%d\t%d\t%d\t%d\t%d\t%d\n" "$c" "$r" "$ra" "$ap" "$np" "$ac" "$nc" "$ap99" "$np99" >>"$OUT"
  printf "%5d %10d %10d %10d %10d %10s %10s %10d %10d %10s %7d\n" "$c" "$r" "$ra" "$ap" "$np" \
    "$(echo "$q_an" | median)" "$(echo "$q_al" | median)" "$ac" "$nc" "$(echo "$q_pl" | median)" "$ap99"
done
echo "written: $OUT (plot: python3 benches/plot.py $OUT docs/throughput.svg)"

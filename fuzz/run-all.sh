#!/usr/bin/env bash
# Runs every fuzz target for SECONDS each (default 60), one after another, and stops at the
# first target that finds a crash (its input is then in fuzz/artifacts/<target>/).
#
#   fuzz/run-all.sh            # 60 s per target
#   fuzz/run-all.sh 300        # 5 min per target
#
# Needs cargo-fuzz (`cargo install cargo-fuzz`). Works on a stable toolchain through
# RUSTC_BOOTSTRAP=1 (cargo-fuzz needs -Z flags for the sanitizer build).
set -euo pipefail

SECONDS_EACH="${1:-60}"
case "$SECONDS_EACH" in
  '' | *[!0-9]*) echo "usage: $0 [SECONDS]" >&2; exit 2 ;;
esac

cd "$(dirname "$0")"
TARGETS=(line_reader command job_json glob journal_record journal_files core_ops http_request)

for t in "${TARGETS[@]}"; do
  echo "=== fuzz target $t: ${SECONDS_EACH}s"
  mkdir -p "corpus/$t"
  if ! RUSTC_BOOTSTRAP=1 cargo fuzz run "$t" -- -max_total_time="$SECONDS_EACH"; then
    echo "=== $t FAILED: see fuzz/artifacts/$t/ (reproduce: RUSTC_BOOTSTRAP=1 cargo fuzz run $t <file>)" >&2
    exit 1
  fi
done
echo "=== all ${#TARGETS[@]} targets ran ${SECONDS_EACH}s each without a crash"

#!/usr/bin/env bash
# Fuzz the parsers a user or a host can feed (configuration files; what hosts answer) for a
# bounded time each: `bash fuzz/run.sh [SECONDS]` (default 60). Prints the executions.
# cargo fuzz needs nightly features: RUSTC_BOOTSTRAP lets the stable toolchain build them.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-60}
command -v cargo-fuzz >/dev/null 2>&1 || cargo install cargo-fuzz --locked
export RUSTC_BOOTSTRAP=1
for target in config remote_output; do
  mkdir -p "fuzz/corpus/$target"
  log=$(mktemp)
  if ! cargo fuzz run "$target" "fuzz/corpus/$target" -- -max_total_time="$seconds" -print_final_stats=1 >"$log" 2>&1; then
    tail -n 40 "$log"
    echo "fuzz: $target found a crash (see fuzz/artifacts/$target)" >&2
    exit 1
  fi
  runs=$(awk '/stat::number_of_executed_units/ {print $2}' "$log")
  echo "fuzz: $target: ${runs:-?} executions in ${seconds}s, no crash"
  rm -f "$log"
done

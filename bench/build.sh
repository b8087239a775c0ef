#!/usr/bin/env bash
# Build+push speed through the Docker API: a cold build (new content: a new layer to push) and
# a warm one (unchanged context: the engine's cache, 0 layers pushed), 5 runs each, medians.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=bench/lib.sh
source bench/lib.sh
runs=${RUNS:-5}
bench_setup 1
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
bench_app "$work/app" bench-build 5401 "${SHIPIT_TESTBED_HOSTS%% *}"
: > "$work/cold"; : > "$work/warm"; : > "$work/cold-layers"; : > "$work/warm-layers"
for i in $(seq "$runs"); do
  head -c 1048576 /dev/urandom > "$work/app/app/noise-$i"   # 1 MiB of new content
  printf '!app/noise-%s\n' "$i" >> "$work/app/.dockerignore"
  sed -i "s|^COPY app/hello /hello|COPY app/hello /hello\nCOPY app/noise-$i /noise|" "$work/app/Dockerfile.production"
  git -C "$work/app" -c user.email=b@b -c user.name=b add -A
  git -C "$work/app" -c user.email=b@b -c user.name=b commit -qm "run $i"
  t=$(now_ns); "$shipit" -q -C "$work/app" build bench --json > "$work/out"
  secs $(( $(now_ns) - t )) >> "$work/cold"
  python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["layers_pushed"])' "$work/out" >> "$work/cold-layers"
  t=$(now_ns); "$shipit" -q -C "$work/app" build bench --json > "$work/out"
  secs $(( $(now_ns) - t )) >> "$work/warm"
  python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["layers_pushed"])' "$work/out" >> "$work/warm-layers"
done
cold=$(median < "$work/cold"); warm=$(median < "$work/warm")
printf '\nshipit build benchmark (%s runs each, medians, wall time of the whole command)\n' "$runs"
printf '  cold build+push (1 MiB new layer)  %6.3f s   layers pushed: %s\n' "$cold" "$(tr '\n' ' ' < "$work/cold-layers")"
printf '  warm build+push (unchanged)        %6.3f s   layers pushed: %s\n' "$warm" "$(tr '\n' ' ' < "$work/warm-layers")"
printf '  warm/cold = %s (goal: warm under 1 s with 0 layers pushed)\n' "$(ratio "$warm" "$cold")"
printf '{"cold":%s,"warm":%s}\n' "$cold" "$warm" > "$state/bench-build.json"

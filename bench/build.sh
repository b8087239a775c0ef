#!/usr/bin/env bash
# Build+push speed through the Docker API: a cold build (new content: a new layer to push) and
# a warm one (unchanged context: the engine's cache, 0 layers pushed), 5 runs each, medians;
# then the peak memory of a build whose context is 400 MB (a forgotten target/ or
# node_modules): the context is streamed, so it must stay under 150 MB.
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

# A 400 MB context: 40 files of 10 MiB the Dockerfile never copies, sent all the same.
big_mb=${BIG_CONTEXT_MB:-400}
mkdir -p "$work/app/target"
for i in $(seq $(( big_mb / 10 ))); do head -c 10485760 /dev/urandom > "$work/app/target/blob-$i"; done
printf '!target\n' >> "$work/app/.dockerignore"
git -C "$work/app" -c user.email=b@b -c user.name=b add -A
git -C "$work/app" -c user.email=b@b -c user.name=b commit -qm "big context"
t=$(now_ns)
/usr/bin/time -f '%M' -o "$work/rss" "$shipit" -q -C "$work/app" build bench --json > "$work/out"
big_secs=$(secs $(( $(now_ns) - t )))
rss_mb=$(awk '{ printf "%.1f", $1 / 1024 }' "$work/rss")
printf '  build with a %s MB context        %6.3f s   peak RSS of shipit: %s MB (goal: under 150 MB)\n' "$big_mb" "$big_secs" "$rss_mb"
printf '{"cold":%s,"warm":%s,"big_context_mb":%s,"big_context_rss_mb":%s}\n' "$cold" "$warm" "$big_mb" "$rss_mb" > "$state/bench-build.json"

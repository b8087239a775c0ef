#!/usr/bin/env bash
# Time to live against the shared floor, in one run on the testbed (issue 22's yardstick):
#   (f1, f3) `../shared/bench/floor.sh N`: a new tiny image pulled, started, gated, switched and
#       seen through nginx on N hosts at once, done by hand over SSH masters opened beforehand;
#   (s1, s3) `shipit deploy --no-build` of a new release of the hello example on N hosts: its
#       image differs from the live one by one small layer (a nonce file), built and pushed
#       before the clock starts, as the floor's is, so every host has to pull it; timed from
#       the command's start to its exit (connect, lock, state, pull, start, gate, switch,
#       verification through nginx, history, unlock);
#   (r3) a warm `shipit rollback` on 3 hosts (the previous release still runs in the idle
#       colour); then the phases of one 3-host deploy from shipit's own lines.
# RUNS rounds (default 5), the floor and shipit alternating in each; medians. The figures go to
# docs/benchmarks.md.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=bench/lib.sh
source bench/lib.sh
runs=${RUNS:-5}
floor=${FLOOR:-$(cd .. && pwd)/shared/bench/floor.sh}
[[ -f $floor ]] || { echo "ttl.sh: the shared floor is not at $floor (set FLOOR)" >&2; exit 2; }
bench_setup 3

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
read -r -a all_hosts <<< "$SHIPIT_TESTBED_HOSTS"
git_in() { git -C "$1" -c user.email=bench@shipit.test -c user.name=bench "${@:2}"; }
for spec in one:1:5401 three:3:5451; do
  IFS=: read -r app n port <<< "$spec"
  bench_app "$work/$app" "bench-ttl-$app" "$port" "${all_hosts[@]:0:$n}"
  # The hello binary in its own layer, then a small file that changes with every release.
  printf 'FROM scratch\nCOPY app/hello /hello\nCOPY nonce.txt /nonce.txt\nEXPOSE 3000\nUSER 65534:65534\nENTRYPOINT ["/hello"]\n' \
    > "$work/$app/Dockerfile.production"
  printf '*\n!app/\n!Dockerfile.production\n!nonce.txt\n' > "$work/$app/.dockerignore"
  date +%s%N > "$work/$app/nonce.txt"
  git_in "$work/$app" add -A
  git_in "$work/$app" commit -qm nonce
  "$shipit" -q -C "$work/$app" provision bench
  "$shipit" -q -C "$work/$app" deploy bench --version 0.1.0
done

# release APP VERSION: a new nonce, committed, built and pushed (not timed).
release() {
  date +%s%N > "$work/$1/nonce.txt"
  git_in "$work/$1" commit -qam "release $2"
  "$shipit" -q -C "$work/$1" build bench --version "$2" > /dev/null
}
for f in f1 f3 s1 s3 r3; do : > "$work/$f"; done
for i in $(seq "$runs"); do
  for spec in one:1 three:3; do
    IFS=: read -r app n <<< "$spec"
    bash "$floor" "$n" >> "$work/f$n"
    release "$app" "1.$i.0"
    t=$(now_ns)
    "$shipit" -q -C "$work/$app" deploy bench --no-build --version "1.$i.0"
    secs $(( $(now_ns) - t )) >> "$work/s$n"
  done
  t=$(now_ns)
  "$shipit" -q -C "$work/three" rollback bench
  secs $(( $(now_ns) - t )) >> "$work/r3"
  "$shipit" -q -C "$work/three" rollback bench   # forward again, for the next round
done
release three 9.0.0
"$shipit" -C "$work/three" deploy bench --no-build --version 9.0.0 2> "$work/phases" > /dev/null
phases=$(grep -E '^ *(Found|Started|Healthy|Switched|Verified|Deployed) ' "$work/phases" | sed 's/^ */    /')

m() { median < "$work/$1"; }
printf '\ntime to live against the shared floor (%s rounds, medians; testbed hosts on this machine)\n' "$runs"
for n in 1 3; do
  printf '  %s host(s): floor.sh %6.3f s   shipit deploy %6.3f s   ratio %s (goal <= 1.5)   [floor %s; shipit %s]\n' \
    "$n" "$(m "f$n")" "$(m "s$n")" "$(ratio "$(m "s$n")" "$(m "f$n")")" \
    "$(sort -g "$work/f$n" | tr '\n' ' ' | sed 's/ $//')" "$(sort -g "$work/s$n" | tr '\n' ' ' | sed 's/ $//')"
done
printf '  warm rollback on 3 hosts: %6.3f s (goal < 0.5 s)   [%s]\n' "$(m r3)" "$(sort -g "$work/r3" | tr '\n' ' ' | sed 's/ $//')"
printf '  phases of one 3-host deploy:\n%s\n' "$phases"
printf '{"floor_1":%s,"floor_3":%s,"deploy_1":%s,"deploy_3":%s,"rollback_3":%s}\n' \
  "$(m f1)" "$(m f3)" "$(m s1)" "$(m s3)" "$(m r3)" > "$state/bench-ttl.json"

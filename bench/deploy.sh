#!/usr/bin/env bash
# Deploy speed, in one run on the testbed, with a pushed tiny image (the hello example):
#  (a1, a3, a10) the raw floor by hand over one SSH master per host, on 1, 3 and 10 hosts at
#      once: pull (present), write the colour's env, start it (clearing systemd's start
#      limit first, as shipit does), wait for health, rewrite the upstream, nginx -t, reload;
#  (b1, b3, b10) `shipit deploy --no-build` (the image pushed already: time to live) on 1, 3 and
#      10 hosts; (d3, d10) a warm `shipit rollback` on 3 and 10 hosts; (e) shipit's peak RSS
#      during (b10); (f3) a warm switch by hand on 3 hosts, the floor of (d3); and the phases
#      of one 3-host deploy, from shipit's own lines.
# Each is run 5 times (medians). verify_window is 0 (one verification pass): the floor does no
# verification at all. The images are present on the hosts here; time to live with a new image
# to pull, against the shared floor (../shared/bench/floor.sh) in the same run, is
# bench/ttl.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=bench/lib.sh
source bench/lib.sh
runs=${RUNS:-5}
bench_setup 10

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
read -r -a all_hosts <<< "$SHIPIT_TESTBED_HOSTS"
bench_app "$work/one" bench-one 5101 "${all_hosts[0]}"
bench_app "$work/three" bench-three 5151 "${all_hosts[@]:0:3}"
bench_app "$work/ten" bench-ten 5201 "${all_hosts[@]:0:10}"
bench_app "$work/floor" bench-floor 5301 "${all_hosts[@]:0:10}"
for app in one three ten floor; do "$shipit" -q -C "$work/$app" provision bench; done

# Two releases of each app, built and pushed once, deployed once so hosts have the images.
for app in one three ten; do
  for v in 1.0.0 2.0.0; do "$shipit" -q -C "$work/$app" deploy bench --version "$v"; done
done

# The floor, by hand: the image and colours of bench-floor, driven by plain ssh.
image=$("$shipit" -q -C "$work/floor" build bench --version 1.0.0)
dir=/etc/shipit/bench-floor/bench
# floor_once HOST_INDEX COLOUR PORT
floor_once() {
  local colour=$2 port=$3 host_port=${all_hosts[$1]##*:} sock="$work/floor-$1.sock"
  sshc() { ssh -S "$sock" -p "$host_port" root@127.0.0.1 "$@"; }
  ssh -i "$SHIPIT_TESTBED_KEY" -o UserKnownHostsFile="$SHIPIT_TESTBED_KNOWN_HOSTS" -o StrictHostKeyChecking=yes \
    -o ControlMaster=yes -o ControlPersist=30 -S "$sock" -p "$host_port" -fN root@127.0.0.1
  sshc "docker image inspect '$image' >/dev/null 2>&1 || docker pull -q '$image' >/dev/null
        printf 'SHIPIT_IMAGE=%s\nSHIPIT_PORT=%s\n' '$image' $port > $dir/$colour.env
        : > $dir/$colour.app.env
        systemctl reset-failed bench-floor_bench@$colour 2>/dev/null
        systemctl restart bench-floor_bench@$colour"
  sshc "until curl -sf --max-time 0.2 127.0.0.1:$port/health >/dev/null; do sleep 0.025; done"
  sshc "printf 'server 127.0.0.1:$port;\n' > $dir/upstream.conf.tmp &&
        mv $dir/upstream.conf.tmp $dir/upstream.conf &&
        nginx -t -q && systemctl reload nginx"
  ssh -S "$sock" -O exit -p "$host_port" root@127.0.0.1 2>/dev/null || true
}
# floor_on N COLOUR PORT: the floor on the first N hosts at once
floor_on() {
  local h pids=()
  for h in $(seq 0 $(( $1 - 1 ))); do floor_once "$h" "$2" "$3" & pids+=("$!"); done
  wait "${pids[@]}"
}
floor_on 10 green 5302   # warm-up: the image is pulled everywhere
# The floor of a warm rollback by hand on the first N hosts, over SSH masters opened before
# (as shipit's are kept): rewrite the upstream to the other running colour, nginx -t, reload.
floor_masters() {
  local h
  for h in $(seq 0 $(( $1 - 1 ))); do
    ssh -S "$work/sw-$h.sock" -O exit -p "${all_hosts[$h]##*:}" root@127.0.0.1 2>/dev/null || true
    ssh -i "$SHIPIT_TESTBED_KEY" -o UserKnownHostsFile="$SHIPIT_TESTBED_KNOWN_HOSTS" -o StrictHostKeyChecking=yes \
      -o ControlMaster=yes -o ControlPersist=60 -S "$work/sw-$h.sock" -p "${all_hosts[$h]##*:}" -fN root@127.0.0.1
  done
}
floor_switch() {
  local h pids=()
  for h in $(seq 0 $(( $1 - 1 ))); do
    ssh -S "$work/sw-$h.sock" -p "${all_hosts[$h]##*:}" root@127.0.0.1 \
      "printf 'server 127.0.0.1:$2;\n' > $dir/upstream.conf.tmp && mv $dir/upstream.conf.tmp $dir/upstream.conf &&
       nginx -t -q && systemctl reload nginx" & pids+=("$!")
  done
  wait "${pids[@]}"
}
# cold APP N: stop the idle colour of APP on its first N hosts, so that the next deploy starts
# a container as the floor does (a deploy of a release the idle colour already runs is a warm
# switch, which would not be time to live).
cold() {
  local h pids=()
  for h in "${all_hosts[@]:0:$2}"; do
    host_sh "$h" "live=\$(sed -n 's/^# live: //p' /etc/shipit/$1/bench/upstream.conf)
      if [ \"\$live\" = blue ]; then idle=green; else idle=blue; fi
      systemctl stop $1_bench@\$idle" & pids+=("$!")
  done
  wait "${pids[@]}"
}
for f in a1 a3 a10 f3 b1 b3 b10 d3 d10 e; do : > "$work/$f"; done
for i in $(seq "$runs"); do
  if (( i % 2 )); then c=blue p=5301; else c=green p=5302; fi
  for n in 1 3 10; do
    t=$(now_ns); floor_on "$n" $c $p; secs $(( $(now_ns) - t )) >> "$work/a$n"
    if [[ $c == blue ]]; then c=green p=5302; else c=blue p=5301; fi
  done
  # Both floor colours run now: a warm switch by hand to the one not serving.
  floor_masters 3
  if (( i % 2 )); then p=5302; else p=5301; fi
  t=$(now_ns); floor_switch 3 $p; secs $(( $(now_ns) - t )) >> "$work/f3"

  v=$(( i % 2 ? 1 : 2 )).0.0
  for n in one:1 three:3 ten:10; do
    app=${n%%:*} k=${n##*:}
    cold "bench-$app" "$k"
    t=$(now_ns)
    /usr/bin/time -f '%M' -o "$work/rss" "$shipit" -q -C "$work/$app" deploy bench --no-build --version "$v"
    secs $(( $(now_ns) - t )) >> "$work/b$k"
    if (( k == 10 )); then echo $(( $(tail -n 1 "$work/rss") / 1024 )) >> "$work/e"; fi
    if (( k > 1 )); then
      t=$(now_ns); "$shipit" -q -C "$work/$app" rollback bench; secs $(( $(now_ns) - t )) >> "$work/d$k"
      "$shipit" -q -C "$work/$app" rollback bench   # back to $v, for the next round's deploy
    fi
  done
done
# The phases of one 3-host deploy (a container started), as shipit reports them.
"$shipit" -q -C "$work/three" deploy bench --no-build --version 1.0.0
cold bench-three 3
"$shipit" -C "$work/three" deploy bench --no-build --version 2.0.0 2> "$work/phases" >/dev/null
phases=$(grep -E '^ *(Found|Started|Healthy|Switched|Verified|Deployed) ' "$work/phases" | sed 's/^ */    /')

m() { median < "$work/$1"; }
printf '\nshipit deploy benchmark (%s runs each, medians; testbed hosts on this machine)\n' "$runs"
for n in 1 3 10; do
  printf '  %2s host(s): floor by hand %6.3f s   shipit deploy %6.3f s   ratio %s (goal <= 1.5 on 1 and 3)\n' \
    "$n" "$(m "a$n")" "$(m "b$n")" "$(ratio "$(m "b$n")" "$(m "a$n")")"
done
printf '  warm rollback: 3 hosts %6.3f s (goal < 0.5 s), 10 hosts %6.3f s; a warm switch by hand on 3 hosts %6.3f s (ratio %s)\n' \
  "$(m d3)" "$(m d10)" "$(m f3)" "$(ratio "$(m d3)" "$(m f3)")"
printf '  peak RSS of shipit deploying to 10 hosts: %s MB\n' "$(m e)"
printf '  phases of one 3-host deploy:\n%s\n' "$phases"
printf '{"floor_1":%s,"floor_3":%s,"floor_10":%s,"deploy_1":%s,"deploy_3":%s,"deploy_10":%s,"rollback_3":%s,"rollback_10":%s,"switch_floor_3":%s,"rss_mb":%s}\n' \
  "$(m a1)" "$(m a3)" "$(m a10)" "$(m b1)" "$(m b3)" "$(m b10)" "$(m d3)" "$(m d10)" "$(m f3)" "$(m e)" > "$state/bench-deploy.json"

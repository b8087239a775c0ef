#!/usr/bin/env bash
# Deploy speed, in one run on the testbed, with a pushed tiny image (the hello example):
#  (a) the raw floor by hand over one SSH master connection on 1 host: pull (present), write the
#      colour's env, start it, wait for health, rewrite the upstream, nginx -t, reload;
#  (b) shipit deploy on 1 host;  (c) shipit deploy on 10 hosts;  (d) warm shipit rollback on
#      10 hosts;  (e) shipit's peak RSS during (c).
# Each is run 5 times (medians). verify_window is 0 (one verification pass): the floor does no
# verification at all. shipit's figures include its build (engine cache) and push (0 layers).
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=bench/lib.sh
source bench/lib.sh
runs=${RUNS:-5}
bench_setup 10
command -v /usr/bin/time >/dev/null || DEBIAN_FRONTEND=noninteractive apt-get install -y -qq time >/dev/null

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
read -r -a all_hosts <<< "$SHIPIT_TESTBED_HOSTS"
bench_app "$work/one" bench-one 5101 "${all_hosts[0]}"
bench_app "$work/ten" bench-ten 5201 "${all_hosts[@]:0:10}"
bench_app "$work/floor" bench-floor 5301 "${all_hosts[@]:0:10}"
for app in one ten floor; do "$shipit" -q -C "$work/$app" provision bench; done

# Two releases of each app, built and pushed once, deployed once so hosts have the images.
for app in one ten; do
  for v in 1.0.0 2.0.0; do "$shipit" -q -C "$work/$app" deploy bench --version "$v"; done
done

# (a) The floor, by hand. The image and colours of bench-floor, driven by plain ssh.
image=$("$shipit" -q -C "$work/floor" build bench --version 1.0.0)
# floor_once HOST_INDEX COLOUR PORT
floor_once() {
  local colour=$2 port=$3 host_port=${all_hosts[$1]##*:} sock="$work/floor-$1.sock"
  sshc() { ssh -S "$sock" -p "$host_port" root@127.0.0.1 "$@"; }
  ssh -i "$SHIPIT_TESTBED_KEY" -o UserKnownHostsFile="$SHIPIT_TESTBED_KNOWN_HOSTS" -o StrictHostKeyChecking=yes \
    -o ControlMaster=yes -o ControlPersist=30 -S "$sock" -p "$host_port" -fN root@127.0.0.1
  sshc "docker image inspect '$image' >/dev/null 2>&1 || docker pull -q '$image' >/dev/null
        printf 'SHIPIT_IMAGE=%s\nSHIPIT_PORT=%s\n' '$image' $port > /etc/shipit/bench-floor/$colour.env
        : > /etc/shipit/bench-floor/$colour.app.env
        systemctl restart bench-floor@$colour"
  sshc "until curl -sf --max-time 0.2 127.0.0.1:$port/health >/dev/null; do sleep 0.025; done"
  sshc "printf 'server 127.0.0.1:$port;\n' > /etc/shipit/bench-floor/upstream.conf.tmp &&
        mv /etc/shipit/bench-floor/upstream.conf.tmp /etc/shipit/bench-floor/upstream.conf &&
        nginx -t -q && systemctl reload nginx"
  ssh -S "$sock" -O exit -p "$host_port" root@127.0.0.1 2>/dev/null || true
}
# floor_all COLOUR PORT: the floor on the 10 hosts at once (what this machine's 2 cores allow)
floor_all() {
  local h pids=()
  for h in $(seq 0 9); do floor_once "$h" "$1" "$2" & pids+=("$!"); done
  wait "${pids[@]}"
}
floor_all green 5302   # warm-up: the image is pulled everywhere
: > "$work/a"; : > "$work/a10"; : > "$work/b"; : > "$work/c"; : > "$work/d"; : > "$work/e"
for i in $(seq "$runs"); do
  if (( i % 2 )); then c=blue p=5301; else c=green p=5302; fi
  t=$(now_ns); floor_once 0 $c $p; secs $(( $(now_ns) - t )) >> "$work/a"
  if (( i % 2 )); then c=green p=5302; else c=blue p=5301; fi
  t=$(now_ns); floor_all $c $p; secs $(( $(now_ns) - t )) >> "$work/a10"

  v=$(( i % 2 ? 1 : 2 )).0.0
  t=$(now_ns); "$shipit" -q -C "$work/one" deploy bench --version "$v"; secs $(( $(now_ns) - t )) >> "$work/b"

  t=$(now_ns)
  /usr/bin/time -f '%M' -o "$work/rss" "$shipit" -q -C "$work/ten" deploy bench --version "$v"
  secs $(( $(now_ns) - t )) >> "$work/c"
  echo $(( $(tail -n 1 "$work/rss") / 1024 )) >> "$work/e"

  t=$(now_ns); "$shipit" -q -C "$work/ten" rollback bench; secs $(( $(now_ns) - t )) >> "$work/d"
  "$shipit" -q -C "$work/ten" rollback bench   # back to $v, for the next round's deploy
done

a=$(median < "$work/a"); a10=$(median < "$work/a10"); b=$(median < "$work/b"); c=$(median < "$work/c"); d=$(median < "$work/d"); e=$(median < "$work/e")
printf '\nshipit deploy benchmark (%s runs each, medians; testbed hosts on this machine)\n' "$runs"
printf '  (a) raw floor by hand, 1 host, one SSH master  %6.3f s   runs: %s\n' "$a" "$(tr '\n' ' ' < "$work/a")"
printf '  (a10) the same floor on 10 hosts at once       %6.3f s   runs: %s\n' "$a10" "$(tr '\n' ' ' < "$work/a10")"
printf '  (b) shipit deploy, 1 host                      %6.3f s   runs: %s\n' "$b" "$(tr '\n' ' ' < "$work/b")"
printf '  (c) shipit deploy, 10 hosts                    %6.3f s   runs: %s\n' "$c" "$(tr '\n' ' ' < "$work/c")"
printf '  (d) shipit rollback (warm), 10 hosts           %6.3f s   runs: %s\n' "$d" "$(tr '\n' ' ' < "$work/d")"
printf '  (e) shipit peak RSS during (c)                 %6s MB\n' "$e"
printf '  ratios: (b)/(a) = %s (goal <= 1.5), (c)/(b) = %s (goal <= 1.3), (d) goal < 0.5 s, (e) goal < 50 MB\n' \
  "$(ratio "$b" "$a")" "$(ratio "$c" "$b")"
printf '  the floor itself on this machine: (a10)/(a) = %s; shipit against that floor: (c)/(a10) = %s\n' \
  "$(ratio "$a10" "$a")" "$(ratio "$c" "$a10")"
printf '{"floor_1":%s,"floor_10":%s,"deploy_1":%s,"deploy_10":%s,"rollback_10":%s,"rss_mb":%s}\n' "$a" "$a10" "$b" "$c" "$d" "$e" > "$state/bench-deploy.json"

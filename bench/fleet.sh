#!/usr/bin/env bash
# bench/fleet.sh N: shipit against a simulated fleet of N light fake hosts on this machine.
#
#   bash bench/fleet.sh 10          # also 100, 500; `bash bench/fleet.sh down` removes a kept fleet
#
# Each fake host is a network, mount and PID namespace of its own (no container; tini as the
# PID namespace's init, so `pgrep`, `ps` and `ss -p` see the host's processes only), with
# per-host directories bound over /etc/shipit, /var/lib/shipit, /var/log/shipit, /etc/nginx,
# /etc/systemd/system, /etc/logrotate.d, /run, /var/lib/docker, /root (Debian's default dot
# files: this machine's .bashrc would run for every SSH command), /var/log/nginx and
# /var/log/fleet, and the stand-ins of bench/fleet/ over /usr/local/bin (first in sshd's PATH) and /usr/bin/docker (the unit's ExecStart). It runs a
# real nginx (Debian's configuration, one worker) and, once deployed, one `busybox httpd` per
# colour; its SSH is a real `sshd -i` started per connection by bench/fleet/dispatcher, one
# process for the whole fleet listening on each host's address (127.213.X.Y:22, loopback).
# shipit talks to the hosts exactly as to real ones: strict host keys, one master per host,
# tunnels for its health checks, the real nginx -t and reloads, systemd-analyze verify and
# logrotate -d at provision. The image goes through the testbed's registry (testbed/testbed.sh
# up starts it when it does not answer); the hosts' `docker pull` only records it.
#
# Then: provision, deploy v1 (build + push), and, measured: a cold `deploy --no-build` of v2
# (no SSH master left from before) and a warm `rollback` (the deploy's masters still open,
# ssh.persist's default). Per run: wall time against the model floor N x (start + gate) /
# ssh.max_parallel, where start + gate is measured on one host with the same stand-ins (from
# `systemctl restart` of a colour to the first 200 on its /health); shipit's peak RSS (VmHWM,
# sampled every 50 ms, and GNU time's), its CPU, peak open fds, threads; the SSH masters alive
# (peak, and over time in the .tsv), their RSS and CPU apart; connections (accepted by the
# dispatcher, sshd sessions that failed, the kernel's listen overflows, and shipit's own
# refused/reset/"Too many open files" messages); the mixed-version window (first to last
# switch of the hosts' upstream include, by its change time); the hosts' own CPU.
#
# Settings (environment): FLEET_PARALLEL (ssh.max_parallel written to the config, default 16),
# FLEET_START_DELAY (seconds an app copy takes to start, slept by the docker stand-in, default
# 0.4: a tiny image's `docker run` to /health on the testbed), FLEET_TIMEOUT (seconds for each
# shipit run, default 900), FLEET_DIR (state, default /var/lib/shipit-fleet), FLEET_KEEP=1
# (leave the hosts up afterwards), FLEET_PERSIST (ssh.persist for the measured runs; shipit's
# default 60 s when unset; setup runs with 30m), FLEET_NOFILE (the open files limit shipit runs under; this
# machine's is 20000, a login shell's is often 1024), FLEET_SHIPIT (a shipit binary to use instead of building
# one with cargo). Figures and their meaning: docs/benchmarks.md. Results: $FLEET_DIR/results.
# It ends only what it started: processes inside its own namespaces, its dispatcher (pid file
# checked against its command line), and the ssh masters whose command line names $FLEET_DIR.
set -euo pipefail

self=$(realpath "$0")
if [[ -z ${FLEET_UNDER_REAPER:-} ]]; then
  # Everything below is reaped by bench/fleet/reaper (PID 1 here reaps no orphans).
  FLEET_UNDER_REAPER=1 exec perl "$(dirname "$self")/fleet/reaper" "$self" "$@"
fi
cd "$(dirname "$self")/.."
repo=$PWD

usage() { echo "usage: bench/fleet.sh N (1-2000) | down" >&2; exit 2; }
[[ $# -eq 1 ]] || usage
(( EUID == 0 )) || { echo "fleet.sh: run as root (namespaces, mounts, port 22)" >&2; exit 1; }

FLEET_DIR=$(realpath -m -- "${FLEET_DIR:-/var/lib/shipit-fleet}")
PARALLEL=${FLEET_PARALLEL:-16}
START_DELAY=${FLEET_START_DELAY:-0.4}
RUN_TIMEOUT=${FLEET_TIMEOUT:-900}
limit=()   # shipit's open files limit, when FLEET_NOFILE sets one
if [[ -n ${FLEET_NOFILE:-} ]]; then limit=(prlimit "--nofile=$FLEET_NOFILE" --); fi
NET=127.213
NS=$FLEET_DIR/ns
HOSTS=$FLEET_DIR/hosts
FAKES=$FLEET_DIR/fakes
APP=$FLEET_DIR/app
LOGS=$FLEET_DIR/log
# host directory name -> mount point in the host's mount namespace
BINDS=(etc-shipit:/etc/shipit var-lib-shipit:/var/lib/shipit var-log-shipit:/var/log/shipit
  etc-nginx:/etc/nginx etc-systemd:/etc/systemd/system etc-logrotate:/etc/logrotate.d run:/run
  var-lib-docker:/var/lib/docker root:/root var-log-nginx:/var/log/nginx var-log-fleet:/var/log/fleet)

log() { printf '%s fleet: %s\n' "$(date +%T)" "$*" >&2; }
die() { log "error: $*"; exit 1; }
now() { date +%s.%N; }
elapsed() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.3f", b - a }'; }
addr_of() { printf '%s.%d.%d' "$NET" $(( ($1 - 1) / 200 )) $(( ($1 - 1) % 200 + 10 )); }

# --- teardown: only what this bench made, found by its own records --------------------------
pid_is() { # PIDFILE WORD: the pid in PIDFILE when it lives and its command line holds WORD
  local pid
  pid=$(cat "$1" 2>/dev/null) || return 1
  [[ $pid =~ ^[0-9]+$ ]] && { tr '\0' ' ' < "/proc/$pid/cmdline"; } 2>/dev/null | grep -qF -- "$2" || return 1
  printf '%s\n' "$pid"
}
masters() { # the ssh masters shipit left, by their control sockets under $FLEET_DIR
  local p
  for p in $(pgrep -x ssh || true); do
    { tr '\0' ' ' < "/proc/$p/cmdline"; } 2>/dev/null | grep -qF -- "$FLEET_DIR/" && printf '%s\n' "$p"
  done
  return 0
}
close_masters() {
  local p
  mapfile -t ps < <(masters)
  (( ${#ps[@]} == 0 )) && return 0
  for p in "${ps[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  for _ in $(seq 50); do [[ -z $(masters) ]] && break; sleep 0.1; done
  rm -rf "$FLEET_DIR/cache/shipit/ssh" "$FLEET_DIR/tmp"
  mkdir -p "$FLEET_DIR/tmp"
}
ns_pids() { # every process in one of this fleet's network namespaces
  [[ -d $NS ]] || return 0
  perl -e '
    my %ns; opendir(my $d, $ARGV[0]) or exit;
    for (grep { /^net-/ } readdir $d) { my @s = stat "$ARGV[0]/$_"; $ns{"net:[$s[1]]"} = 1 if @s }
    opendir(my $p, "/proc");
    for (grep { /^\d+$/ } readdir $p) { print "$_\n" if $ns{readlink("/proc/$_/ns/net") // ""} }' "$NS"
}
teardown() {
  local pid f n=0
  if pid=$(pid_is "$FLEET_DIR/dispatcher.pid" bench/fleet/dispatcher); then kill -TERM "$pid" 2>/dev/null || true; fi
  close_masters
  for sig in TERM KILL; do
    mapfile -t pids < <(ns_pids)
    (( ${#pids[@]} == 0 )) && break
    n=${#pids[@]}
    kill -"$sig" "${pids[@]}" 2>/dev/null || true
    for _ in $(seq 30); do [[ -z $(ns_pids) ]] && break; sleep 0.1; done
  done
  (( n == 0 )) || log "ended $n processes of the old fleet"
  if [[ -d $NS ]]; then
    for f in "$NS"/net-* "$NS"/mnt-* "$NS"/pid-*; do
      [[ -e $f ]] || continue
      umount "$f" 2>/dev/null || true
      rm -f "$f"
    done
    umount "$NS" 2>/dev/null || true
  fi
  rm -rf "$HOSTS" "$FLEET_DIR/dispatcher.pid"
  # mount points this bench had to create on the machine (empty directories)
  if [[ -f $FLEET_DIR/created-mountpoints ]]; then
    while read -r f; do rmdir "$f" 2>/dev/null || true; done < "$FLEET_DIR/created-mountpoints"
    rm -f "$FLEET_DIR/created-mountpoints"
  fi
}

if [[ $1 == down ]]; then teardown; log "fleet removed"; exit 0; fi
if [[ ! $1 =~ ^[0-9]+$ ]] || (( $1 < 1 || $1 > 2000 )); then usage; fi
N=$1

# --- what the machine needs -----------------------------------------------------------------
need=()
for pair in sshd:openssh-server nginx:nginx-light logrotate:logrotate busybox:busybox-static \
  nsenter:util-linux ip:iproute2 curl:curl perl:perl tini:tini; do
  command -v "${pair%%:*}" >/dev/null || [[ -x /usr/sbin/${pair%%:*} ]] || need+=("${pair##*:}")
done
[[ -x /usr/bin/time ]] || need+=(time)
if (( ${#need[@]} > 0 )); then
  log "installing ${need[*]}"
  policy_added=''
  if [[ ! -e /usr/sbin/policy-rc.d ]]; then   # no service starts through apt
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod 0755 /usr/sbin/policy-rc.d && policy_added=1
  fi
  DEBIAN_FRONTEND=noninteractive apt-get update -qq </dev/null >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq -o Dpkg::Options::=--force-confdef \
    -o Dpkg::Options::=--force-confold "${need[@]}" </dev/null >&2
  [[ -z $policy_added ]] || rm -f /usr/sbin/policy-rc.d
fi
BUSYBOX=$(command -v busybox)
TINI=$(command -v tini-static || command -v tini)

# The registry and the local engine of the testbed (started when they do not answer).
tb=${SHIPIT_TESTBED_DIR:-/var/lib/shipit-testbed}
if [[ ! -f $tb/env.sh ]] || ! docker info >/dev/null 2>&1 ||
  [[ $(curl -s -o /dev/null -w '%{http_code}' --max-time 3 http://registry.test:5000/v2/ || true) != 401 ]]; then
  have=1
  if [[ -f $tb/env.sh ]]; then
    # shellcheck source=/dev/null
    . "$tb/env.sh"
    read -r -a _h <<< "${SHIPIT_TESTBED_HOSTS:-x}"
    have=${#_h[@]}
  fi
  log "starting the testbed's registry (bash testbed/testbed.sh up $have)"
  bash testbed/testbed.sh up "$have" </dev/null >&2
fi
# shellcheck source=/dev/null
. "$tb/env.sh"

if [[ -n ${FLEET_SHIPIT:-} ]]; then
  shipit=$FLEET_SHIPIT
else
  cargo build --release --quiet --bin shipit
  shipit=${CARGO_TARGET_DIR:-$repo/target}/release/shipit
fi
[[ -x $shipit ]] || die "no shipit binary at $shipit"

# --- the fleet --------------------------------------------------------------------------------
t_setup=$(now)
teardown
on_exit() {
  if [[ -n ${FLEET_KEEP:-} ]]; then log "hosts kept up: bash bench/fleet.sh down removes them"; else teardown; fi
}
trap on_exit EXIT
mkdir -p "$FLEET_DIR" "$NS" "$HOSTS" "$FAKES" "$LOGS" "$FLEET_DIR/ssh" "$FLEET_DIR/tmp" "$FLEET_DIR/cache"
chmod 755 "$FLEET_DIR" "$FLEET_DIR/ssh"
# Namespace files are bound on a private mount (as `ip netns` does with /run/netns).
mount --bind "$NS" "$NS"
mount --make-private "$NS"

[[ -f $FLEET_DIR/ssh/host_ed25519 ]] || ssh-keygen -q -t ed25519 -N '' -C fleet-host -f "$FLEET_DIR/ssh/host_ed25519"
[[ -f $FLEET_DIR/ssh/id_ed25519 ]] || ssh-keygen -q -t ed25519 -N '' -C fleet-client -f "$FLEET_DIR/ssh/id_ed25519"
install -m 0600 "$FLEET_DIR/ssh/id_ed25519.pub" "$FLEET_DIR/ssh/authorized_keys"
cat > "$FLEET_DIR/ssh/sshd_config" <<EOF
# sshd -i per connection on the fake hosts (bench/fleet/dispatcher); OpenSSH's defaults
# otherwise (MaxSessions 10, AllowTcpForwarding yes, MaxStartups irrelevant: no listener).
HostKey $FLEET_DIR/ssh/host_ed25519
AuthorizedKeysFile $FLEET_DIR/ssh/authorized_keys
PermitRootLogin prohibit-password
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
PrintMotd no
PrintLastLog no
PidFile none
LogLevel INFO
EOF

cp bench/fleet/docker bench/fleet/systemctl bench/fleet/journalctl "$FAKES/"
printf 'start_delay=%s\nbusybox=%s\nactive_units=docker.service containerd.service\n' \
  "$START_DELAY" "$BUSYBOX" > "$FAKES/fleet.conf"
chmod 0755 "$FAKES"/docker "$FAKES"/systemctl "$FAKES"/journalctl

# Debian's nginx configuration, with one worker (an idle host costs little).
rm -rf "$FLEET_DIR/nginx-template"
cp -a /etc/nginx "$FLEET_DIR/nginx-template"
sed -i 's/^worker_processes .*/worker_processes 1;/' "$FLEET_DIR/nginx-template/nginx.conf"

# Mount points the host namespaces need on this machine (empty directories if missing).
: > "$FLEET_DIR/created-mountpoints"
for b in "${BINDS[@]}"; do
  if [[ ! -d ${b#*:} ]]; then mkdir -p "${b#*:}" && echo "${b#*:}" >> "$FLEET_DIR/created-mountpoints"; fi
done

# One host: its directories; its network, mount and PID namespaces (kept as files; the PID
# namespace's init is tini, which reaps the host's orphans), its /proc, its nginx.
cat > "$FLEET_DIR/host-up.sh" <<EOF
#!/bin/sh
# host-up.sh I: create fake host I (written by bench/fleet.sh).
set -e
i=\$1 h=$HOSTS/\$1
mkdir -p "\$h"
for d in ${BINDS[*]%%:*}; do mkdir -p "\$h/\$d"; done
rmdir "\$h/etc-nginx" && cp -a "$FLEET_DIR/nginx-template" "\$h/etc-nginx"
mkdir -p "\$h/run/sshd" "\$h/run/fleet-systemd" "\$h/root/.docker" && chmod 0755 "\$h/run/sshd"
chmod 0700 "\$h/root" "\$h/root/.docker"
cp /usr/share/base-files/dot.bashrc "\$h/root/.bashrc"
cp /usr/share/base-files/dot.profile "\$h/root/.profile"
touch "$NS/net-\$i" "$NS/mnt-\$i" "$NS/pid-\$i"
rm -f "\$h/run/.up"
unshare --net="$NS/net-\$i" --mount="$NS/mnt-\$i" --pid="$NS/pid-\$i" --fork --propagation private -- sh -c '
  set -e
  ip link set lo up
  for b in ${BINDS[*]}; do mount --bind "$HOSTS/\$1/\${b%%:*}" "\${b#*:}"; done
  mount --bind "$FAKES" /usr/local/bin
  mount --bind "$FAKES/docker" /usr/bin/docker
  mount -t proc proc /proc
  : > /run/.up
  exec $TINI -s -- sleep infinity
' sh "\$i" </dev/null >/dev/null 2>&1 &
n=0
until [ -e "\$h/run/.up" ]; do
  n=\$((n + 1)); [ "\$n" -lt 200 ] || { echo "host \$i: namespaces not ready" >&2; exit 1; }
  sleep 0.05
done
nsenter --net="$NS/net-\$i" --mount="$NS/mnt-\$i" --pid="$NS/pid-\$i" -- /usr/local/bin/systemctl start nginx.service
EOF
log "creating $N hosts"
seq "$N" | timeout 600 xargs -P 4 -n 1 sh "$FLEET_DIR/host-up.sh" || die "host setup failed"

: > "$FLEET_DIR/hosts.tsv"
: > "$FLEET_DIR/known_hosts"
hostkey=$(cut -d' ' -f1,2 "$FLEET_DIR/ssh/host_ed25519.pub")
for i in $(seq "$N"); do
  printf 'h%d %s 22 %s %s %s\n' "$i" "$(addr_of "$i")" "$NS/net-$i" "$NS/mnt-$i" "$NS/pid-$i" >> "$FLEET_DIR/hosts.tsv"
  printf '%s %s\n' "$(addr_of "$i")" "$hostkey" >> "$FLEET_DIR/known_hosts"
done
: > "$LOGS/dispatcher.log"
: > "$LOGS/sshd.log"
setsid perl bench/fleet/dispatcher "$FLEET_DIR/hosts.tsv" "$LOGS/dispatcher.log" \
  "$FLEET_DIR/ssh/sshd_config" "$LOGS/sshd.log" </dev/null >>"$LOGS/dispatcher.err" 2>&1 &
echo $! > "$FLEET_DIR/dispatcher.pid"
for _ in $(seq 100); do
  (( $(grep -c ' listen ' "$LOGS/dispatcher.log") == N )) && break
  pid_is "$FLEET_DIR/dispatcher.pid" bench/fleet/dispatcher >/dev/null || die "the dispatcher exited: $(tail -n 3 "$LOGS/dispatcher.err")"
  sleep 0.1
done
dispatcher=$(cat "$FLEET_DIR/dispatcher.pid")
setup_s=$(elapsed "$t_setup")
nginx_up=$(for i in $(seq "$N"); do [[ -s $HOSTS/$i/run/nginx.pid ]] && echo; done | wc -l)
# memory of the idle fleet: RSS summed (shared pages counted in each process) and PSS
read -r idle_kb idle_pss_kb < <(ns_pids | while read -r p; do
  awk '/^Rss:/ { r = $2 } /^Pss:/ { s = $2 } END { print r + 0, s + 0 }' "/proc/$p/smaps_rollup" 2>/dev/null
done | awk '{ r += $1; s += $2 } END { print r + 0, s + 0 }')
log "fleet up in ${setup_s}s: $N hosts at $(addr_of 1)..$(addr_of "$N"):22, nginx running on $nginx_up; idle: $(( idle_kb / 1024 )) MB RSS, $(( idle_pss_kb / 1024 )) MB PSS in all"

# --- the app ----------------------------------------------------------------------------------
rm -rf "$APP"
mkdir -p "$APP/environments"
cat > "$APP/shipit.toml" <<EOF
app = "fleet"
image = "$SHIPIT_REGISTRY/fleetbench/fleet"
version = "1.0.0"
[registry]
server = "$SHIPIT_REGISTRY"
username = "$SHIPIT_REGISTRY_USER"
[ports]
blue = 5101
green = 5102
[health]
path = "/health"
expect_json = { status = "healthy" }
timeout = "20s"
[deploy]
verify_window = "0s"
[smoke]
# 20 requests a host through nginx, as by default; the p95 threshold is raised from 400 ms:
# with 500 hosts simulated on 2 cores the burst measures this machine: p95 1.2-2.1 s and 0.4 to
# 1.25 % timeouts seen (docs/benchmarks.md)
max_p95 = "10s"
max_error_rate = 0.05
[ssh]
identity = "$FLEET_DIR/ssh/id_ed25519"
known_hosts_file = "$FLEET_DIR/known_hosts"
max_parallel = $PARALLEL
persist = "30m"   # setup only: rewritten before the measured runs (FLEET_PERSIST)
EOF
{
  printf 'domain = "fleet.test"\nhosts = [\n'
  for i in $(seq "$N"); do printf '  "root@%s",\n' "$(addr_of "$i")"; done
  printf ']\n'
} > "$APP/environments/bench.toml"
printf 'FROM scratch\nCOPY VERSION /VERSION\n' > "$APP/Dockerfile.production"
printf 'fleet bench\n' > "$APP/VERSION"
printf 'environments\n' > "$APP/.dockerignore"
commit() {
  (
    cd "$APP"
    export GIT_AUTHOR_DATE='2026-01-01T00:00:00Z' GIT_COMMITTER_DATE='2026-01-01T00:00:00Z'
    [[ -d .git ]] || git init -q
    git add -A && git -c user.email=bench@shipit.test -c user.name=bench commit -qm "$1"
  )
}
commit "fleet bench: setup"

# --- measuring ----------------------------------------------------------------------------------
res=$FLEET_DIR/results/n$N-$(date +%Y%m%dT%H%M%S)
mkdir -p "$res"
export XDG_CACHE_HOME=$FLEET_DIR/cache TMPDIR=$FLEET_DIR/tmp
overflows() { awk '/^TcpExt:/ { if (!h) { for (i = 1; i <= NF; i++) k[i] = $i; h = 1 } else { for (i = 1; i <= NF; i++) if (k[i] == "ListenOverflows" || k[i] == "ListenDrops") s += $i } } END { print s + 0 }' /proc/net/netstat; }
hostcpu() { perl bench/fleet/hostcpu "$NS" "$dispatcher" | cut -d' ' -f1; }
upstreams() { for i in $(seq "$N"); do printf '%s\n' "$HOSTS/$i/etc-shipit/fleet/bench/upstream.conf"; done; }
# window SINCE: first to last switch of the hosts' upstream include after SINCE (epoch s),
# and how many hosts switched. Its change time, not its modification time: the two-phase
# switch writes the include while staging and renames it into place at the commit, and a
# rename keeps the mtime but sets the ctime.
window() {
  upstreams | xargs stat -c '%.9Z' 2>/dev/null | awk -v since="$1" '$1 >= since { n++; if (!lo || $1 < lo) lo = $1; if ($1 > hi) hi = $1 }
    END { if (n) printf "%.3f %d\n", hi - lo, n; else print "- 0" }'
}
live_counts() { upstreams | xargs sed -n 's/^# live: //p' 2>/dev/null | sort | uniq -c | awk '{ printf "%s%s=%s", sep, $2, $1; sep = " " } END { print "" }'; }

# run NAME ARGS...: one shipit command, sampled; its figures in $res/NAME.*
run() {
  local name=$1 t0 acc0 ssh0 ov0 cpu0 code=0
  shift
  t0=$(now)
  acc0=$(wc -l < "$LOGS/dispatcher.log")
  ssh0=$(wc -l < "$LOGS/sshd.log")
  ov0=$(overflows)
  cpu0=$(hostcpu)
  perl bench/fleet/sample "$res/$name" "$FLEET_DIR/" -- "${limit[@]}" timeout -k 30 "$RUN_TIMEOUT" \
    /usr/bin/time -f '%e %U %S %M' -o "$res/$name.time" \
    "$shipit" -C "$APP" "$@" > "$res/$name.out" 2> "$res/$name.err" < /dev/null || code=$?
  local acc sessions_failed errors refused window_s wrote
  acc=$(tail -n +"$((acc0 + 1))" "$LOGS/dispatcher.log" | awk '$2 == "accept"' | wc -l)
  # sshd -i exits 255 after a normal disconnect: failures are read in sshd's own log
  sessions_failed=$(tail -n +"$((ssh0 + 1))" "$LOGS/sshd.log" |
    grep -cE 'error:|fatal:|\[preauth\]|Timeout before authentication|kex_exchange_identification|Connection reset' || true)
  errors=$(tail -n +"$((acc0 + 1))" "$LOGS/dispatcher.log" | awk '$2 == "error"' | wc -l)
  # shipit's own connection errors (the health gate's "waiting for /health: Connection reset"
  # while a copy starts is its normal not-yet answer, not counted)
  refused=$(grep -iE 'connection refused|connection reset|too many open files|resource temporarily unavailable|kex_exchange|broken pipe|connection closed|timed out' "$res/$name.err" |
    grep -vc 'waiting for ' || true)
  read -r window_s wrote < <(window "$t0")
  {
    cat "$res/$name.summary"
    printf 'exit=%s\n' "$code"
    printf 'time_line=%s\n' "$(tail -n 1 "$res/$name.time" 2>/dev/null)"
    printf 'authenticated=%s\n' "$(tail -n +"$((ssh0 + 1))" "$LOGS/sshd.log" | grep -c 'Accepted publickey' || true)"
    printf 'accepted=%s\nsessions_failed=%s\ndispatcher_errors=%s\nlisten_overflows=%s\nshipit_conn_errors=%s\n' \
      "$acc" "$sessions_failed" "$errors" "$(( $(overflows) - ov0 ))" "$refused"
    printf 'window_s=%s\nupstreams_written=%s\nlive=%s\nhosts_cpu_s=%s\n' "$window_s" "$wrote" "$(live_counts)" \
      "$(awk -v a="$cpu0" -v b="$(hostcpu)" 'BEGIN { printf "%.1f", b - a }')"
  } > "$res/$name.figures"
  log "$name: exit $code in $(sed -n 's/^wall_s=//p' "$res/$name.figures")s"
  if (( code != 0 )); then
    log "$name failed; the last lines shipit printed:"
    tail -n 15 "$res/$name.err" | sed 's/^/    /' >&2
  fi
  return 0
}
fig() { sed -n "s/^$2=//p" "$res/$1.figures"; }

run provision provision bench
[[ $(fig provision exit) == 0 ]] || die "provision failed: see $res/provision.err"
run deploy-v1 deploy bench --version 1.0.0
[[ $(fig deploy-v1 exit) == 0 ]] || die "the first deploy failed: see $res/deploy-v1.err"
# The measured runs use shipit's own ssh.persist (60 s) unless FLEET_PERSIST says otherwise.
# The setup above kept its masters 30 minutes: at 500 hosts on 2 cores a master idles more
# than 60 s between two steps of a provision and expires under shipit (docs/benchmarks.md).
if [[ -n ${FLEET_PERSIST:-} ]]; then
  sed -i "s/^persist = .*/persist = \"$FLEET_PERSIST\"/" "$APP/shipit.toml"
else
  sed -i '/^persist = /d' "$APP/shipit.toml"
fi
commit "fleet bench: measured runs"
"$shipit" -q -C "$APP" build bench --version 2.0.0 > /dev/null

# start + gate on one host, with the same stand-ins: `systemctl restart` of a colour of its
# own to the first 200 on /health (polled every 10 ms), 5 times, the median.
sg_dir=$HOSTS/1/etc-shipit/fleet/bench
sed -e 's/^SHIPIT_PORT=.*/SHIPIT_PORT=5199/' "$sg_dir/live.env" > "$sg_dir/sg.env"
cp "$sg_dir/live.app.env" "$sg_dir/sg.app.env"
for _ in 1 2 3 4 5; do
  # shellcheck disable=SC2016 # Perl's variables
  nsenter --net="$NS/net-1" --mount="$NS/mnt-1" --pid="$NS/pid-1" -- perl -MTime::HiRes=time,sleep -e '
    my $t = time;
    system("/usr/local/bin/systemctl", "restart", "fleet_bench\@sg.service") == 0 or die "restart failed\n";
    for (1 .. 2000) {
      my $code = `curl -s -o /dev/null -w "%{http_code}" --max-time 1 http://127.0.0.1:5199/health`;
      if ($code eq "200") { printf "%.4f\n", time - $t; exit 0 }
      sleep 0.01;
    }
    die "no 200 within 20 s\n";'
  nsenter --net="$NS/net-1" --mount="$NS/mnt-1" --pid="$NS/pid-1" -- /usr/local/bin/systemctl stop fleet_bench@sg.service
done > "$res/start_gate"
rm -f "$sg_dir/sg.env" "$sg_dir/sg.app.env"
start_gate=$(sort -g "$res/start_gate" | sed -n 3p)
floor=$(awk -v n="$N" -v sg="$start_gate" -v p="$PARALLEL" 'BEGIN { printf "%.3f", n * sg / p }')

close_masters   # the measured deploy connects afresh, as from a CI runner
run deploy deploy bench --no-build --version 2.0.0
run rollback rollback bench

# --- report -------------------------------------------------------------------------------------
waves=$(awk -v n="$N" -v sg="$start_gate" -v p="$PARALLEL" 'BEGIN { w = int((n + p - 1) / p); printf "%.3f", w * sg }')
mb() { echo $(( ${1:-0} / 1024 )); }
# masters_over_time RUN: live masters at 0, 10, ..., 100 % of the run (from its .tsv)
masters_over_time() {
  awk -F'\t' 'NR > 1 && $6 != "-" { t[++n] = $1; m[n] = $6 } END {
    for (k = 0; k <= 10; k++) { i = int(1 + (n - 1) * k / 10); printf "%s%s", (k ? " " : ""), m[i] } }' "$res/$1.tsv"
}
row1() {
  local r=$1 wall
  wall=$(fig "$r" wall_s)
  printf '| %s | %s | %s | %s | %s | %s / %s | %s (%s waited children) | %s | %s | %s, %s MB, %s s CPU | %s |\n' \
    "$r" "$(fig "$r" exit)" "$wall" "$(awk -v w="$wall" -v f="$floor" 'BEGIN { printf "%.2f", w / f }')" \
    "$(awk -v w="$wall" -v f="$waves" 'BEGIN { printf "%.2f", w / f }')" \
    "$(mb "$(fig "$r" peak_hwm_kb)")" "$(mb "$(fig "$r" time_line | awk '{ print $4 }')")" \
    "$(fig "$r" cpu_self_s)" "$(fig "$r" cpu_waited_children_s)" "$(fig "$r" peak_fds)" "$(fig "$r" peak_threads)" \
    "$(fig "$r" peak_masters)" "$(mb "$(fig "$r" peak_masters_rss_kb)")" "$(fig "$r" masters_cpu_s)" \
    "$(masters_over_time "$r")"
}
row2() {
  local r=$1
  printf '| %s | %s / %s | %s | %s | %s | %s | %s (%s hosts switched) | %s | %s | %s |\n' \
    "$r" "$(fig "$r" accepted)" "$(fig "$r" authenticated)" "$(fig "$r" sessions_failed)" \
    "$(fig "$r" dispatcher_errors)" "$(fig "$r" listen_overflows)" "$(fig "$r" shipit_conn_errors)" \
    "$(fig "$r" window_s)" "$(fig "$r" upstreams_written)" "$(fig "$r" live)" \
    "$(fig "$r" hosts_cpu_s)" "$(fig "$r" machine_busy_cpu_s)"
}
{
  printf '\nshipit against %d fake hosts (ssh.max_parallel %d, app start %s s): fleet set up in %s s; idle, %d MB RSS, %d MB PSS (%d kB PSS a host)\n' \
    "$N" "$PARALLEL" "$START_DELAY" "$setup_s" "$(( idle_kb / 1024 ))" "$(( idle_pss_kb / 1024 ))" "$(( idle_pss_kb / N ))"
  printf 'start + gate on one host: %s s (5 runs: %s); model floor N x (start + gate) / concurrency = %s s; in whole waves, ceil(N / concurrency) x (start + gate) = %s s\n' \
    "$start_gate" "$(tr '\n' ' ' < "$res/start_gate" | sed 's/ $//')" "$floor" "$waves"
  printf 'provision %s s (exit %s); first deploy, build and push included, %s s (exit %s)\n\n' \
    "$(fig provision wall_s)" "$(fig provision exit)" "$(fig deploy-v1 wall_s)" "$(fig deploy-v1 exit)"
  printf '| run | exit | wall s | / floor | / waves | RSS MB (VmHWM / GNU time) | shipit CPU s | peak fds | threads | ssh masters: peak, RSS, CPU | masters alive at 0, 10 .. 100 %% |\n'
  printf '| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |\n'
  row1 deploy
  row1 rollback
  printf '\n| run | connections accepted / authenticated | sshd failures | dispatcher errors | listen overflows | shipit connection errors | mixed-version window s | live after | hosts CPU s | machine CPU s |\n'
  printf '| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |\n'
  row2 deploy
  row2 rollback
  printf '\nshipit'"'"'s own account of the deploy and the rollback:\n'
  grep -hE '^ *(Found|Started|Healthy|Switched|Verified|Smoke|Deployed|Rolled back|error)' "$res/deploy.err" "$res/rollback.err" | sed 's/^ */    /'
  printf '\nshipit'"'"'s open files limit %s, ssh.persist %s; results: %s\n' "${FLEET_NOFILE:-$(ulimit -n)}" \
    "${FLEET_PERSIST:-60s (the default)}" "$res"
} | tee "$res/report.md"

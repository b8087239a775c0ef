#!/usr/bin/env bash
# shipit's main job on the local testbed, with nothing to configure: provision 3 hosts, deploy
# the hello example (v1), deploy v2 while a load runs through nginx, roll back, preview and
# promote v3, a canary of v4 under load; then examples/hello-postgres beside a real PostgreSQL
# (provisioned as an accessory, migrated, dumped, restored); show status.
# Works on a fresh Debian machine: the testbed script installs and starts what it needs.
set -euo pipefail
cd "$(dirname "$0")/.."

bash testbed/testbed.sh up 3 </dev/null
state=${SHIPIT_TESTBED_DIR:-/var/lib/shipit-testbed}
# shellcheck source=/dev/null
. "$state/env.sh"
bash examples/hello/build.sh
cargo build --release --quiet --bin shipit
shipit=$PWD/target/release/shipit
# The repository's shipit.toml and environments/local.toml deploy examples/hello to the testbed.

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
serving() {
  local port
  for port in $SHIPIT_TESTBED_HTTP_PORTS; do
    printf '  127.0.0.1:%s -> %s\n' "$port" "$(curl -s -H 'Host: hello.test' "http://127.0.0.1:$port/version")"
  done
}

# The app's store on each host (environments/local.toml mounts it): a team makes its data
# directories once, owned by the user its image runs as.
read -r -a hosts <<< "$SHIPIT_TESTBED_HOSTS"
for h in "${hosts[@]}"; do
  ssh -i "$SHIPIT_TESTBED_KEY" -o UserKnownHostsFile="$SHIPIT_TESTBED_KNOWN_HOSTS" -p "${h##*:}" root@127.0.0.1 \
    'install -d -o 65534 -g 65534 /var/lib/hello-data'
done

step "shipit provision local   (nginx, systemd, logrotate, the worker's unit and the job's timer on 3 hosts)"
"$shipit" provision local
step "shipit provision local   (again: nothing changes, nothing reloads)"
"$shipit" provision local

step "shipit deploy local --version 1.0.0   (a backup, the migration, then web and worker blue/green)"
"$shipit" deploy local --version 1.0.0
serving

step "shipit deploy local --version 2.0.0, under load (wrk: 4 connections through nginx on each host)"
pids=()
for port in $SHIPIT_TESTBED_HTTP_PORTS; do
  wrk -t1 -c4 -d10s -H 'Host: hello.test' "http://127.0.0.1:$port/version" > "$state/demo-wrk-$port.txt" 2>&1 &
  pids+=("$!")
done
sleep 1
"$shipit" deploy local --version 2.0.0
serving
step "shipit rollback local   (the previous colour is still warm: a health check and a switch)"
"$shipit" rollback local
serving
wait "${pids[@]}"
for port in $SHIPIT_TESTBED_HTTP_PORTS; do
  requests=$(awk '/requests in/ {print $1}' "$state/demo-wrk-$port.txt")
  non2xx=$(awk '/Non-2xx/ {print $NF}' "$state/demo-wrk-$port.txt")
  # `Socket errors: connect C, read R, write W, timeout T`
  read -r connect readerr write timeout <<< "$(sed -n 's/.*connect \([0-9]*\), read \([0-9]*\), write \([0-9]*\), timeout \([0-9]*\).*/\1 \2 \3 \4/p' "$state/demo-wrk-$port.txt")"
  if [[ -z ${non2xx:-} && ${connect:-0} = 0 && ${write:-0} = 0 && ${timeout:-0} = 0 ]]; then
    if [[ ${readerr:-0} = 0 ]]; then
      note="no errors, no non-2xx answers"
    else
      # wrk counts a request sent on a keep-alive connection that nginx closed as its workers
      # changed (at each switch) as a read error; browsers and HTTP clients send it again.
      note="no non-2xx answers; $readerr keep-alive connections closed by nginx's reload under a request (wrk counts them as read errors; browsers resend such a request)"
    fi
  else
    note=$(grep -E 'Non-2xx|Socket errors' "$state/demo-wrk-$port.txt" | tr -s ' ' | tr '\n' ';')
  fi
  printf '  load on 127.0.0.1:%s: %s requests, %s\n' "$port" "$requests" "$note"
done

step "shipit deploy local --version 3.0.0 --no-promote   (it waits: users keep 1.0.0, the preview gets 3.0.0)"
"$shipit" deploy local --version 3.0.0 --no-promote
serving
for port in $SHIPIT_TESTBED_HTTP_PORTS; do
  printf '  127.0.0.1:%s, Host: preview.hello.test -> %s\n' "$port" "$(curl -s -H 'Host: preview.hello.test' "http://127.0.0.1:$port/version")"
done
step "shipit promote local   (the copies that were previewed go live: a gate, a switch, verification)"
"$shipit" promote local
serving

step "shipit deploy local --version 4.0.0 --canary 10%,50%, under load   (each step judged from nginx's log)"
pids=()
for port in $SHIPIT_TESTBED_HTTP_PORTS; do
  # Bounded at 120 s, and stopped as soon as the canary ends: a slow machine (a gate that takes
  # longer) still has load through the last step.
  wrk -t1 -c4 -d120s -H 'Host: hello.test' "http://127.0.0.1:$port/version" > "$state/demo-canary-wrk-$port.txt" 2>&1 &
  pids+=("$!")
done
sleep 1
canary=0
"$shipit" deploy local --version 4.0.0 --canary 10%,50% || canary=$?
kill -INT "${pids[@]}" 2>/dev/null || true
wait "${pids[@]}" || true
(( canary == 0 )) || exit "$canary"
serving

step "shipit deploy local-noregistry --version 2.0.0   (no registry: the image goes over SSH)"
"$shipit" provision local-noregistry
"$shipit" deploy local-noregistry --version 2.0.0
for port in $SHIPIT_TESTBED_HTTP_PORTS; do
  printf '  127.0.0.1:%s -> %s\n' "$port" "$(curl -s -H 'Host: hello-ssh.test' "http://127.0.0.1:$port/version")"
done

step "shipit exec local -- store   (a one-off command in the live release, audited on the host)"
"$shipit" exec local -- store
step "shipit backups local"
"$shipit" backups local | head -n 3

step "Your database: examples/hello-postgres (PostgreSQL 15 as an accessory, SQL migrations, a pg_dump before each deploy)"
# The PostgreSQL image, built from Debian's packages (no public registry here) and pushed to the
# testbed's registry; the app's image is the hello binary on top of it, for its clients.
bash testbed/accessories.sh </dev/null >/dev/null
mkdir -p examples/hello-postgres/app
cp examples/hello/app/hello examples/hello-postgres/app/hello
# This part of the demo starts from an empty host each run: the example's site, units and
# database from an earlier run are removed first (a real database is never wiped like this).
ssh -i "$SHIPIT_TESTBED_KEY" -o UserKnownHostsFile="$SHIPIT_TESTBED_KNOWN_HOSTS" -p "${hosts[0]##*:}" root@127.0.0.1 '
  for u in $(systemctl list-units --all --plain --no-legend "hello-pg@*" "hello-pg_*" | awk "{print \$1}"); do
    systemctl disable --now "$u" 2>/dev/null
  done
  rm -rf /etc/systemd/system/hello-pg@.service /etc/systemd/system/hello-pg_* /etc/nginx/conf.d/shipit-hello-pg_local.conf \
    /etc/logrotate.d/shipit-hello-pg_local /etc/shipit/hello-pg /var/lib/shipit/hello-pg /var/log/shipit/hello-pg /var/lib/hello-pg-data
  systemctl daemon-reload && nginx -t -q && systemctl reload nginx'
# A secret of the database (in a real app: the deployer's environment or a .env beside shipit.toml).
export POSTGRES_PASSWORD="demo only: not a real password"
pg() { "$shipit" -C examples/hello-postgres "$@"; }
notes() { pg accessory exec local db -- psql -U hello -d hello -c 'table notes'; }
step "shipit provision local   (examples/hello-postgres: the database's unit, started and waited for until pg_isready)"
pg provision local
container() { pg accessory status local db | sed -n 's/.* container \([^ ]*\) pid \([^ ]*\),.*/\1 \2/p'; }
provisioned=$(container)
step "shipit deploy local --version 1.0.0   (a pg_dump, then migration 1: a table and three notes)"
pg deploy local --version 1.0.0
notes
step "shipit deploy local --version 2.0.0   (a pg_dump first, then migration 2 drops a column and two rows)"
pg deploy local --version 2.0.0
notes
id=$(pg backups local | awk 'NR == 1 {print $1}')
step "shipit backups restore local $id --yes; shipit rollback local   (the dump taken before 2.0.0 puts rows and schema back)"
pg backups restore local "$id" --yes
pg rollback local
notes
step "shipit accessory status local   (deploys, a restore and a rollback never restart it)"
pg accessory status local
now=$(container)
if [[ $now == "$provisioned" ]]; then
  echo "  the same container and pid as after provision ($now)"
else
  echo "demo.sh: the database was restarted: container and pid $provisioned after provision, $now now" >&2
  exit 1
fi

step "shipit status local   (per host: web colours, the worker, the job's last and next run)"
"$shipit" status local
step "shipit releases local"
"$shipit" releases local | head -n 6

#!/usr/bin/env bash
# shipit's main job on the local testbed, with nothing to configure: provision 3 hosts, deploy
# the hello example (v1), deploy v2 while a load runs through nginx, roll back, show status.
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

step "shipit provision local   (nginx, systemd, logrotate on 3 hosts; validated, then installed)"
"$shipit" provision local
step "shipit provision local   (again: nothing changes, nothing reloads)"
"$shipit" provision local

step "shipit deploy local --version 1.0.0"
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
  errors=$(grep -E 'Non-2xx|Socket errors' "$state/demo-wrk-$port.txt" || true)
  printf '  load on 127.0.0.1:%s: %s requests, %s\n' "$port" "$requests" "${errors:-no errors, no non-2xx answers}"
done

step "shipit deploy local-noregistry --version 2.0.0   (no registry: the image goes over SSH)"
"$shipit" provision local-noregistry
"$shipit" deploy local-noregistry --version 2.0.0
for port in $SHIPIT_TESTBED_HTTP_PORTS; do
  printf '  127.0.0.1:%s -> %s\n' "$port" "$(curl -s -H 'Host: hello-ssh.test' "http://127.0.0.1:$port/version")"
done

step "shipit status local"
"$shipit" status local
step "shipit releases local"
"$shipit" releases local | head -n 6

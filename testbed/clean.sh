#!/usr/bin/env bash
# testbed/clean.sh: remove from every testbed host what runs of the tests left there (apps named
# `t-*`; the demo's and the benches' are not), so that the next run, or a benchmark, starts on
# hosts as light as new ones. Run by testbed/test.sh first and by the benches' setup
# (bench/lib.sh); never while tests run (it removes their apps).
set -euo pipefail
state=${SHIPIT_TESTBED_DIR:-/var/lib/shipit-testbed}
# shellcheck source=/dev/null
[[ -f $state/env.sh ]] && . "$state/env.sh"

# About a hundred copies left running on each host made every docker and nginx call slower, the
# test run 10 minutes longer and the benches' figures worse. Images stay (the tests' base layers are reused). Each test still wipes what it needs.
clean_host() {
  docker exec -i "$1" sh <<'SH'
apps=$({ docker ps -a --format '{{.Label "shipit.app"}}'; ls /etc/shipit /var/lib/shipit 2> /dev/null; } | grep '^t-' | sort -u)
[ -n "$apps" ] || exit 0
units=
for app in $apps; do
  units="$units $(systemctl list-units --all --plain --no-legend "$app@*" "${app}_*" | awk '{print $1}')"
  units="$units $(systemctl list-unit-files --plain --no-legend "${app}_*.timer" | awk '{print $1}')"
done
# shellcheck disable=SC2086 # unit names: no blanks
[ -z "${units# }" ] || systemctl disable --now $units > /dev/null 2>&1
systemctl reset-failed > /dev/null 2>&1
for app in $apps; do
  docker ps -aq --filter "label=shipit.app=$app" | xargs -r docker rm -f > /dev/null 2>&1
  rm -rf /etc/nginx/conf.d/shipit-"$app".conf /etc/nginx/conf.d/shipit-"$app"_*.conf \
    /etc/systemd/system/"$app"@.service /etc/systemd/system/"$app"_* /etc/logrotate.d/shipit-"$app" \
    /etc/logrotate.d/shipit-"$app"_* /etc/shipit/"$app" /var/log/shipit/"$app" /var/lib/shipit/"$app"
done
systemctl daemon-reload
nginx -t -q 2> /dev/null && systemctl reload-or-restart nginx
echo "$(echo "$apps" | wc -l) apps left by an earlier run removed"
SH
}
# shellcheck disable=SC2086 # container names: no blanks
for c in $SHIPIT_TESTBED_CONTAINERS ${SHIPIT_TESTBED_TRIXIE_CONTAINERS:-}; do
  (out=$(clean_host "$c" 2>&1) || true; [[ -z $out ]] || echo "clean.sh: $c: $out") &
done
wait

#!/usr/bin/env bash
# The whole test suite, on a fresh Debian machine or a warm one: brings the testbed up
# (packages, dockerd, authenticated registry, test hosts; idempotent and fast when already up),
# builds the example app, then runs every test against the real parts.
set -euo pipefail
cd "$(dirname "$0")/.."

bash testbed/testbed.sh up "${SHIPIT_TEST_HOSTS:-3}" </dev/null
state=${SHIPIT_TESTBED_DIR:-/var/lib/shipit-testbed}
# shellcheck source=/dev/null
. "$state/env.sh"
if [[ -x examples/hello/build.sh ]]; then bash examples/hello/build.sh; fi
# The example app's own tests (its routes and settings), in its own target directory.
(cd examples/hello && CARGO_TARGET_DIR=target cargo test --quiet) || { echo "test.sh: the example app's tests failed" >&2; exit 1; }
# The local base images of shipit's own image (tests/packaging.rs), made before the tests so
# that a first debootstrap does not count against a test's time limit; a check when cached.
# Should it fail, the other tests still run (the packaging tests then fail, saying why).
bash testbed/bases.sh </dev/null >/dev/null || echo "test.sh: testbed/bases.sh failed" >&2

# What an earlier run of the tests left on the hosts (apps named `t-*`; the demo's are not) is
# removed first, so that a second run starts as light as the first: about a hundred copies left
# running on each host made every docker and nginx call slower, and the run 10 minutes longer.
# Images stay (the tests' base layers are reused). Each test still wipes what it needs.
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
  (out=$(clean_host "$c" 2>&1) || true; [[ -z $out ]] || echo "test.sh: $c: $out") &
done
wait

# The scripts shipit runs on hosts (POSIX sh), and the project's own shell scripts.
lint=0
shellcheck -s sh src/remote/scripts/*.sh || lint=$?
shellcheck testbed/*.sh bench/*.sh examples/hello/build.sh fuzz/run.sh .ci/run || lint=$?

# The fuzz targets (configuration files, what hosts answer), bounded in time; then every test.
# The test runner's summary comes last.
fuzz=0
if [[ ${SHIPIT_FUZZ_SECONDS:-60} != 0 ]]; then
  bash fuzz/run.sh "${SHIPIT_FUZZ_SECONDS:-60}" || fuzz=$?
fi
# cargo-nextest runs the testbed tests one at a time (.config/nextest.toml) and the others
# in parallel; a plain `cargo test` would run them all at once on the shared hosts.
if ! cargo nextest --version >/dev/null 2>&1; then
  cargo install cargo-nextest --locked
fi
tests=0
cargo nextest run --workspace --no-fail-fast "$@" || tests=$?
if (( fuzz != 0 )); then echo "test.sh: the fuzz run failed" >&2; fi
if (( lint != 0 )); then echo "test.sh: shellcheck found problems in the scripts (above)" >&2; fi
exit $(( tests != 0 ? tests : fuzz != 0 ? fuzz : lint ))

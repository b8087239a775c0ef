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

if cargo nextest --version >/dev/null 2>&1; then
  exec cargo nextest run --workspace --no-fail-fast "$@"
else
  exec cargo test --workspace --no-fail-fast "$@"
fi

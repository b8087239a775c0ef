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
# The accessories' images (PostgreSQL 15 and Redis from Debian's packages, tests/accessories.rs),
# pushed to the testbed's registry; a check of a second when they are there.
bash testbed/accessories.sh </dev/null >/dev/null || echo "test.sh: testbed/accessories.sh failed" >&2

# What an earlier run of the tests left on the hosts is removed first (testbed/clean.sh).
bash testbed/clean.sh

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

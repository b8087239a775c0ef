# Shared helpers of the bench scripts (sourced).
# shellcheck shell=bash

# Make sure the testbed has at least $1 hosts (never fewer than it has: other work may use them).
bench_setup() {
  local want=$1 have=0
  state=${SHIPIT_TESTBED_DIR:-/var/lib/shipit-testbed}
  if [[ -f $state/env.sh ]]; then
    # shellcheck source=/dev/null
    . "$state/env.sh"
    read -r -a _hosts <<< "${SHIPIT_TESTBED_HOSTS:-}"
    have=${#_hosts[@]}
  fi
  bash testbed/testbed.sh up "$(( want > have ? want : have ))" </dev/null >&2
  # shellcheck source=/dev/null
  . "$state/env.sh"
  # Measured on hosts as light as new ones: apps left by test runs slow every docker call.
  bash testbed/clean.sh >&2
  bash examples/hello/build.sh >&2
  cargo build --release --quiet --bin shipit
  # GNU time, for the peak RSS figures
  command -v /usr/bin/time >/dev/null || DEBIAN_FRONTEND=noninteractive apt-get install -y -qq time >/dev/null
  # shellcheck disable=SC2034 # used by the scripts that source this file
  shipit=$PWD/target/release/shipit
}

now_ns() { date +%s%N; }

# host_sh HOST COMMAND: run COMMAND as root on a testbed host (HOST as in SHIPIT_TESTBED_HOSTS).
host_sh() {
  ssh -i "$SHIPIT_TESTBED_KEY" -o UserKnownHostsFile="$SHIPIT_TESTBED_KNOWN_HOSTS" \
    -o StrictHostKeyChecking=yes -o BatchMode=yes -p "${1##*:}" root@127.0.0.1 "$2"
}
secs() { awk -v ns="$1" 'BEGIN { printf "%.3f\n", ns / 1e9 }'; }

# median of numbers on stdin
median() { sort -g | awk '{ a[NR] = $1 } END { if (NR % 2) print a[(NR + 1) / 2]; else printf "%.3f\n", (a[NR / 2] + a[NR / 2 + 1]) / 2 }'; }

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }'; }

# An app directory for the hello example: bench_app DIR NAME PORT HOSTS...
bench_app() {
  local dir=$1 name=$2 port=$3
  shift 3
  rm -rf "$dir"
  mkdir -p "$dir/app" "$dir/environments"
  cp examples/hello/app/hello "$dir/app/hello"
  cp examples/hello/Dockerfile.production examples/hello/.dockerignore "$dir/"
  cat > "$dir/shipit.toml" <<TOML
app = "$name"
image = "$SHIPIT_REGISTRY/bench/$name"
version = "1.0.0"
[registry]
server = "$SHIPIT_REGISTRY"
username = "$SHIPIT_REGISTRY_USER"
[ports]
blue = $port
green = $((port + 1))
[health]
path = "/health"
expect_json = { status = "healthy" }
timeout = "20s"
[deploy]
verify_window = "0s"
[ssh]
identity = "$SHIPIT_TESTBED_KEY"
known_hosts_file = "$SHIPIT_TESTBED_KNOWN_HOSTS"
max_parallel = 16
TOML
  local list=""
  for h in "$@"; do list="$list\"$h\", "; done
  printf 'domain = "%s.test"\nhosts = [%s]\n' "$name" "${list%, }" > "$dir/environments/bench.toml"
  git -C "$dir" init -q
  git -C "$dir" -c user.email=bench@shipit.test -c user.name=bench add -A
  git -C "$dir" -c user.email=bench@shipit.test -c user.name=bench commit -qm bench
}

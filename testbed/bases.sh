#!/usr/bin/env bash
# testbed/bases.sh: the local base images shipit's own Dockerfile.production is built from in
# tests, where no public registry can be reached. Idempotent; a second run only checks.
#
#   shipit-runtime-base:KEY  Debian bookworm (debootstrap minbase) + openssh-client, git,
#                            ca-certificates: what debian:bookworm-slim + apt-get gives.
#   shipit-builder-base:KEY  Debian bookworm minbase + gcc, libc6-dev, ca-certificates, this
#                            machine's Rust toolchain in /usr/local, and CARGO_HOME=/usr/local/cargo
#                            holding a copy of its crate registry (index + .crate files) with
#                            CARGO_NET_OFFLINE=true: what rust:1.95-slim-bookworm gives, plus
#                            every crate of Cargo.lock, so the build needs no network.
#
# The builder is two images: shipit-builder-toolchain:KEY (root filesystem and toolchain, one
# `docker import`, rebuilt when the toolchain changes) and, on top, the registry copy (one
# `docker build` layer of ~50 MB, redone when Cargo.lock changes).
#
# KEY changes with what went into the image: the recipe (this script's functions that shape the
# trees), the package lists, the toolchain (`rustc -vV`, `cargo -vV`) and Cargo.lock. Root
# filesystems come from debootstrap, with testbed.sh's suite, mirror choice and deb cache, and
# are cached as tarballs in $STATE/cache like testbed.sh's.
#
# Needs root, Docker and debootstrap (run `bash testbed/testbed.sh up` first). Prints
# BUILDER_IMAGE=... and RUNTIME_IMAGE=... on stdout (eval-able) and writes them to
# $STATE/bases.env; logs and timings go to stderr.
set -euo pipefail
# shellcheck source=testbed/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$(dirname "$0")/.."

STATE=$(realpath -m -- "${SHIPIT_TESTBED_DIR:-/var/lib/shipit-testbed}")
readonly STATE
readonly SUITE=bookworm
# Bump to force new images when something outside the hashed functions changes.
readonly RECIPE=1
readonly RUNTIME_INCLUDE=openssh-client,git,ca-certificates
readonly BUILDER_INCLUDE=gcc,libc6-dev,ca-certificates
readonly RUNTIME_REPO=shipit-runtime-base
readonly TOOLCHAIN_REPO=shipit-builder-toolchain
readonly BUILDER_REPO=shipit-builder-base
readonly BUILDER_PATH=/usr/local/cargo/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
HOST_CARGO_HOME=${CARGO_HOME:-$HOME/.cargo}
readonly HOST_CARGO_HOME

log() { printf '%s bases: %s\n' "$(date +%T)" "$*" >&2; }
die() {
  log "error: $*"
  exit 1
}

sha12() { sha256sum | cut -c1-12; }

# Temporary trees, removed on exit whatever happens (as testbed.sh does).
CLEANUP=()
cleanup() {
  local path
  for path in "${CLEANUP[@]}"; do
    remove_tree "$path"
  done
}
trap cleanup EXIT

lock_bases() {
  mkdir -p "$STATE/cache/debs"
  exec 8>"$STATE/.bases.lock"
  if ! flock -n 8; then
    log "another bases.sh holds $STATE/.bases.lock; waiting (up to 20 min)"
    flock -w 1200 8 || die "timed out waiting for $STATE/.bases.lock"
  fi
}

have_image() { docker image inspect "$1" >/dev/null 2>&1; }

# --- root filesystems ----------------------------------------------------------------------

# unpack_rootfs and slim_rootfs: testbed/lib.sh.


# --- the runtime base ----------------------------------------------------------------------

runtime_key() {
  {
    printf 'recipe=%s suite=%s include=%s\n' "$RECIPE" "$SUITE" "$RUNTIME_INCLUDE"
    declare -f unpack_rootfs slim_rootfs build_runtime
  } | sha12
}

build_runtime() {
  local image=$1 key=$2 build t0 out
  t0=$(now_us)
  build=$(mktemp -d "$STATE/bases.XXXXXX")
  CLEANUP+=("$build")
  unpack_rootfs "$RUNTIME_INCLUDE" "$build/rootfs"
  slim_rootfs "$build/rootfs"
  log "importing $image"
  tar -C "$build/rootfs" --numeric-owner -cf - . |
    docker import -c 'CMD ["bash"]' \
      -c 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
      -c "LABEL shipit.bases.key=\"$key\" shipit.bases.what=\"runtime: debootstrap $SUITE minbase + $RUNTIME_INCLUDE\"" \
      - "$image" >/dev/null
  remove_tree "$build"
  # What shipit needs at run time must be there (the Dockerfile then installs nothing).
  if ! out=$(docker run --rm --network none "$image" sh -ec \
    'ssh -V 2>&1; git --version; test -s /etc/ssl/certs/ca-certificates.crt' </dev/null 2>&1); then
    docker rmi "$image" >/dev/null 2>&1 || true
    die "$image lacks ssh, git or CA certificates: $out"
  fi
  log "$image built and checked in $(since_us "$t0")"
}

# --- the builder base ----------------------------------------------------------------------

toolchain_version() {
  rustc -vV && cargo -vV
}

toolchain_key() {
  {
    printf 'recipe=%s suite=%s include=%s path=%s\n' "$RECIPE" "$SUITE" "$BUILDER_INCLUDE" "$BUILDER_PATH"
    toolchain_version
    declare -f unpack_rootfs slim_rootfs install_toolchain build_toolchain
  } | sha12
}

# install_toolchain DIR SYSROOT TRIPLE: cargo and rustc with what they load and link with, laid
# out as a sysroot at /usr/local (rustc finds its sysroot relative to its own binary).
# Leaves out docs, clippy, rustfmt, rustdoc and the debugger scripts.
install_toolchain() {
  local r=$1 sysroot=$2 triple=$3
  install -m 0755 "$sysroot/bin/cargo" "$sysroot/bin/rustc" "$r/usr/local/bin/"
  cp -a "$sysroot"/lib/*.so* "$r/usr/local/lib/"
  mkdir -p "$r/usr/local/lib/rustlib"
  cp -a "$sysroot/lib/rustlib/$triple" "$r/usr/local/lib/rustlib/"
  install -d -m 0755 "$r/usr/local/cargo" "$r/usr/local/cargo/bin"
}

build_toolchain() {
  local image=$1 key=$2 build t0 sysroot triple out
  t0=$(now_us)
  sysroot=$(rustc --print sysroot)
  triple=$(rustc -vV | sed -n 's/^host: //p')
  [[ -x $sysroot/bin/cargo && -x $sysroot/bin/rustc && -d $sysroot/lib/rustlib/$triple ]] ||
    die "no complete Rust toolchain at $sysroot (bin/cargo, bin/rustc, lib/rustlib/$triple)"
  build=$(mktemp -d "$STATE/bases.XXXXXX")
  CLEANUP+=("$build")
  unpack_rootfs "$BUILDER_INCLUDE" "$build/rootfs"
  slim_rootfs "$build/rootfs"
  log "adding the Rust toolchain from $sysroot ($(rustc -V))"
  install_toolchain "$build/rootfs" "$sysroot" "$triple"
  log "importing $image"
  tar -C "$build/rootfs" --numeric-owner -cf - . |
    docker import -c 'CMD ["bash"]' \
      -c "ENV PATH=$BUILDER_PATH" -c 'ENV CARGO_HOME=/usr/local/cargo' -c 'ENV CARGO_NET_OFFLINE=true' \
      -c "LABEL shipit.bases.key=\"$key\" shipit.bases.what=\"toolchain: debootstrap $SUITE minbase + $BUILDER_INCLUDE + $(rustc -V)\"" \
      - "$image" >/dev/null
  remove_tree "$build"
  # The toolchain must compile and link inside (the linker is gcc driving rust-lld).
  if ! out=$(docker run --rm --network none "$image" sh -ec \
    'cd /tmp; printf "fn main() { println!(\"ok\"); }\n" >m.rs; rustc -O m.rs -o m; ./m; cargo -V' \
    </dev/null 2>&1) || [[ $out != ok* ]]; then
    docker rmi "$image" >/dev/null 2>&1 || true
    die "the toolchain in $image does not compile a hello world: $out"
  fi
  log "$image built and checked in $(since_us "$t0")"
}

# The registry packages of Cargo.lock, as NAME-VERSION, one a line.
locked_crates() {
  awk '
    /^\[\[package\]\]/ { name = ""; version = "" }
    /^name = /    { name = $3; gsub(/"/, "", name) }
    /^version = / { version = $3; gsub(/"/, "", version) }
    /^source = "(registry|sparse)\+/ { print name "-" version }
  ' Cargo.lock
}

# The crates of Cargo.lock that the registry here lacks.
missing_crates() {
  local crate
  while read -r crate; do
    compgen -G "$HOST_CARGO_HOME/registry/cache/*/$crate.crate" >/dev/null || printf '%s\n' "$crate"
  done < <(locked_crates)
}

ensure_crates() {
  local missing
  mapfile -t missing < <(missing_crates)
  ((${#missing[@]} > 0)) || return 0
  log "${#missing[@]} crate(s) of Cargo.lock are not in $HOST_CARGO_HOME/registry (${missing[*]:0:5}...): cargo fetch --locked"
  cargo fetch --locked </dev/null >&2 ||
    die "cargo fetch --locked failed: the builder base needs every crate of Cargo.lock; fix Cargo.lock (cargo build updates it), then re-run"
  mapfile -t missing < <(missing_crates)
  ((${#missing[@]} == 0)) || die "still missing after cargo fetch: ${missing[*]}"
}

builder_key() {
  {
    printf 'toolchain=%s\n' "$1"
    sha256sum Cargo.lock
    declare -f locked_crates build_builder
  } | sha12
}

build_builder() {
  local image=$1 key=$2 toolchain=$3 build t0
  t0=$(now_us)
  ensure_crates
  build=$(mktemp -d "$STATE/bases.XXXXXX")
  CLEANUP+=("$build")
  mkdir "$build/registry"
  # The index (crate metadata cargo resolves with) and the .crate archives; not src/, which
  # cargo extracts again from the archives.
  cp -a "$HOST_CARGO_HOME/registry/index" "$HOST_CARGO_HOME/registry/cache" "$build/registry/"
  cat >"$build/Dockerfile" <<EOF
FROM $toolchain
COPY registry /usr/local/cargo/registry
LABEL shipit.bases.key="$key" shipit.bases.what="builder: $toolchain + the crate registry for Cargo.lock $(sha256sum Cargo.lock | cut -c1-12)"
EOF
  log "building $image (registry copy: $(du -sh "$build/registry" | cut -f1))"
  docker build -q -t "$image" "$build" </dev/null >/dev/null 2>"$build/err" || {
    cat "$build/err" >&2
    die "docker build of $image failed"
  }
  remove_tree "$build"
  log "$image built in $(since_us "$t0")"
}

# --- main ----------------------------------------------------------------------------------

main() {
  local t0 rkey tkey bkey runtime toolchain builder done=() stale
  t0=$(now_us)
  mkdir -p "$STATE"
  [[ -f Cargo.lock ]] || die "Cargo.lock is missing: run \`cargo generate-lockfile\`"
  docker info >/dev/null 2>&1 || die "Docker does not answer: run \`bash testbed/testbed.sh up\`"
  if ! command -v rustc >/dev/null || ! command -v cargo >/dev/null; then
    die "rustc and cargo must be on PATH (the builder base copies this machine's toolchain)"
  fi

  rkey=$(runtime_key)
  tkey=$(toolchain_key)
  bkey=$(builder_key "$tkey")
  runtime=$RUNTIME_REPO:$rkey
  toolchain=$TOOLCHAIN_REPO:$tkey
  builder=$BUILDER_REPO:$bkey

  if ! have_image "$runtime" || ! have_image "$builder"; then
    ((EUID == 0)) || die "the base images are missing and building them needs root (debootstrap, chroot): run as root"
    lock_bases
    if ! have_image "$runtime"; then
      build_runtime "$runtime" "$rkey"
      done+=("runtime built")
    fi
    if ! have_image "$builder"; then
      if ! have_image "$toolchain"; then
        build_toolchain "$toolchain" "$tkey"
        done+=("toolchain built")
      fi
      build_builder "$builder" "$bkey" "$toolchain"
      done+=("builder built")
    fi
  fi
  ((${#done[@]} > 0)) || done=("all reused")

  printf 'BUILDER_IMAGE=%s\nRUNTIME_IMAGE=%s\n' "$builder" "$runtime" >"$STATE/bases.env.tmp"
  mv -f "$STATE/bases.env.tmp" "$STATE/bases.env"
  stale=$(docker images --format '{{.Repository}}:{{.Tag}}' --filter "reference=$RUNTIME_REPO" \
    --filter "reference=$TOOLCHAIN_REPO" --filter "reference=$BUILDER_REPO" 2>/dev/null |
    grep -vxF -e "$runtime" -e "$toolchain" -e "$builder" | tr '\n' ' ') || true
  [[ -z $stale ]] || log "note: older base images, unused now (docker rmi to free space): $stale"
  log "bases ready in $(since_us "$t0") [$(
    IFS=,
    printf '%s' "${done[*]}"
  )]: $builder $runtime"
  cat "$STATE/bases.env"
}

main "$@"

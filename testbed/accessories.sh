#!/usr/bin/env bash
# testbed/accessories.sh: the accessory images tests run beside an app (a database, a cache),
# built here from Debian packages since no public registry can be reached, and pushed to the
# testbed's registry so the test hosts pull them like any accessory image. Idempotent; a second
# run only checks.
#
#   registry.test:5000/shipit-testbed/postgres:15-KEY (and :15)  Debian bookworm (debootstrap
#       minbase) + postgresql-15. Entrypoint shipit-postgres, the official image's essentials:
#       POSTGRES_USER (default postgres), POSTGRES_PASSWORD (required unless
#       POSTGRES_HOST_AUTH_METHOD=trust), POSTGRES_DB (default: the user), POSTGRES_INITDB_ARGS,
#       /docker-entrypoint-initdb.d/*.sql and *.sh on first start; PGDATA=/var/lib/postgresql/data
#       (chowned to postgres, 0700); host connections by scram-sha-256, local ones trusted; the
#       server runs as postgres in the foreground and stops on `docker stop` (STOPSIGNAL SIGINT:
#       a fast shutdown, as the official image). Non-option arguments are run as given (`docker
#       run IMAGE pg_dump --format=custom -d "$DATABASE_URL" -f /x`): psql, pg_dump, pg_restore,
#       pg_isready are on PATH. JIT is left out (LLVM is a third of the image).
#   registry.test:5000/shipit-testbed/redis:7-KEY (and :7)  bookworm minbase + redis-server and
#       redis-tools. Entrypoint shipit-redis: redis-server as redis in the foreground, bound to
#       0.0.0.0 without protected mode, append-only in /data (chowned to redis), with
#       --requirepass "$REDIS_PASSWORD" when that is set; extra options go to redis-server;
#       non-option arguments are run as given (`redis-cli ...`).
#
# KEY changes with the recipe: this script's functions that shape an image (not the checks) and
# its package list. Each image is built (debootstrap, `docker import` of one layer: on the hosts'
# vfs driver every layer is a full copy), checked in containers here, and pushed under both tags.
# When the registry and this engine have the KEY tag already (and the short tag names it),
# nothing is done: a few requests, under a second. Only this engine has it: pushed; only the
# registry: pulled. Root filesystems are cached in $STATE/cache like bases.sh's; builds hold
# $STATE/.accessories.lock.
#
# Needs root, Docker, debootstrap and the registry (run `bash testbed/testbed.sh up` first).
# Prints POSTGRES_IMAGE=... and REDIS_IMAGE=... on stdout (eval-able) and writes them to
# $STATE/accessories.env; logs and timings go to stderr.
set -euo pipefail
# shellcheck source=testbed/lib.sh disable=SC1091 # followed with shellcheck -x
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$(dirname "$0")/.."

STATE=$(realpath -m -- "${SHIPIT_TESTBED_DIR:-/var/lib/shipit-testbed}")
readonly STATE
readonly SUITE=bookworm
# Bump to force new images when something outside the hashed functions changes.
readonly RECIPE=1
readonly REGISTRY=registry.test:5000
readonly NAMESPACE=shipit-testbed
readonly POSTGRES_INCLUDE=postgresql-15
readonly POSTGRES_TAG=15
readonly POSTGRES_PATH=/usr/lib/postgresql/15/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
readonly REDIS_INCLUDE=redis-server,redis-tools
readonly REDIS_TAG=7
readonly CHECK_BUDGET=60 # seconds for a checked container to answer
readonly MANIFEST_TYPES='application/vnd.docker.distribution.manifest.v2+json, application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.list.v2+json, application/vnd.oci.image.index.v1+json'

log() { printf '%s accessories: %s\n' "$(date +%T)" "$*" >&2; }
die() {
  log "error: $*"
  exit 1
}

sha12() { sha256sum | cut -c1-12; }

# Temporary trees and the containers of the checks, removed on exit whatever happens. Only
# containers this run started (unique names), only by name.
CLEANUP=()
CONTAINERS=()
DONE=()
CHECK_DIR=
cleanup() {
  local path name
  for name in "${CONTAINERS[@]}"; do
    docker rm -f "$name" >/dev/null 2>&1 || true
  done
  for path in "${CLEANUP[@]}"; do
    remove_tree "$path"
  done
}
trap cleanup EXIT
# Killed or interrupted, exit through the EXIT trap too (bash skips it on a fatal signal).
trap 'exit 130' INT
trap 'exit 143' TERM

lock_accessories() {
  mkdir -p "$STATE/cache/debs"
  exec 8>"$STATE/.accessories.lock"
  if ! flock -n 8; then
    log "another accessories.sh holds $STATE/.accessories.lock; waiting (up to 20 min)"
    flock -w 1200 8 || die "timed out waiting for $STATE/.accessories.lock"
  fi
}

have_image() { docker image inspect "$1" >/dev/null 2>&1; }

# The registry's credentials: from the environment, else from the testbed's env.sh.
load_credentials() {
  if [[ -z ${SHIPIT_REGISTRY_USER:-} || -z ${SHIPIT_REGISTRY_PASSWORD:-} ]]; then
    [[ -f $STATE/env.sh ]] || die "SHIPIT_REGISTRY_USER/PASSWORD unset and no $STATE/env.sh: run \`bash testbed/testbed.sh up\`"
    # shellcheck source=/dev/null
    . "$STATE/env.sh"
  fi
  [[ -n ${SHIPIT_REGISTRY_USER:-} && -n ${SHIPIT_REGISTRY_PASSWORD:-} ]] ||
    die "SHIPIT_REGISTRY_USER or SHIPIT_REGISTRY_PASSWORD is empty (source $STATE/env.sh)"
}

# registry_curl ARGS...: curl against the registry with the credentials (given on stdin, not in
# the process list).
registry_curl() {
  printf 'user = "%s:%s"\n' "$SHIPIT_REGISTRY_USER" "$SHIPIT_REGISTRY_PASSWORD" |
    curl -sS --max-time 10 -K - "$@"
}

# registry_ping: the registry answers and takes the credentials.
registry_ping() {
  local code
  code=$(registry_curl -o /dev/null -w '%{http_code}' "http://$REGISTRY/v2/") || true
  case $code in
  200) ;;
  401) die "the registry at $REGISTRY refuses the credentials of SHIPIT_REGISTRY_USER/PASSWORD" ;;
  *) die "the registry at $REGISTRY does not answer (HTTP ${code:-nothing}): run \`bash testbed/testbed.sh up\`" ;;
  esac
}

# manifest_digest REPO TAG: the digest of REPO:TAG in the registry, empty when it has no such
# tag; dies when the registry does not answer as it should.
manifest_digest() {
  local headers code
  headers=$(registry_curl -I -H "Accept: $MANIFEST_TYPES" \
    "http://$REGISTRY/v2/$NAMESPACE/$1/manifests/$2") ||
    die "the registry at $REGISTRY does not answer: run \`bash testbed/testbed.sh up\`"
  code=$(awk 'NR == 1 { print $2 }' <<<"$headers")
  case $code in
  200) awk 'tolower($1) == "docker-content-digest:" { sub(/\r$/, "", $2); print $2 }' <<<"$headers" ;;
  404) ;;
  *) die "the registry answers HTTP ${code:-nothing} for $NAMESPACE/$1:$2 (credentials of $STATE/env.sh?)" ;;
  esac
}

LOGGED_IN=''
registry_login() {
  local out
  [[ -z $LOGGED_IN ]] || return 0
  out=$(docker login "$REGISTRY" -u "$SHIPIT_REGISTRY_USER" --password-stdin \
    <<<"$SHIPIT_REGISTRY_PASSWORD" 2>&1) || die "docker login $REGISTRY failed: $out"
  LOGGED_IN=1
}

# push REF: docker push, its progress kept out of the log unless it fails.
push() {
  local out
  registry_login
  out=$(docker push "$1" </dev/null 2>&1) || die "docker push $1 failed: $out"
}

# --- root filesystems (as bases.sh) --------------------------------------------------------

# unpack_rootfs and slim_rootfs: testbed/lib.sh (the same trees as bases.sh's).


# import_tree DIR IMAGE CHANGE...: DIR as the single layer of IMAGE, with Dockerfile CHANGEs.
# A STOPSIGNAL change, which `docker import` refuses before Docker 23, is applied by a build
# step of metadata only (no layer added: on the hosts' vfs driver each layer is a full copy).
import_tree() {
  local dir=$1 image=$2 changes=() c stopsignal='' ctx out
  shift 2
  for c in "$@"; do
    case $c in
    'STOPSIGNAL '*) stopsignal=$c ;;
    *) changes+=(-c "$c") ;;
    esac
  done
  tar -C "$dir" --numeric-owner -cf - . | docker import "${changes[@]}" - "$image" >/dev/null
  [[ -n $stopsignal ]] || return 0
  ctx=$(mktemp -d "$STATE/accessories-ctx.XXXXXX")
  CLEANUP+=("$ctx")
  printf 'FROM %s\n%s\n' "$image" "$stopsignal" >"$ctx/Dockerfile"
  out=$(DOCKER_BUILDKIT=0 docker build -q -t "$image" "$ctx" </dev/null 2>&1) ||
    die "docker build ($stopsignal) of $image failed: $out"
  remove_tree "$ctx"
}

# --- checks --------------------------------------------------------------------------------

# start_checked NAME IMAGE DOCKER-RUN-ARGS...: run IMAGE as NAME (--rm) from a docker client in
# the background, attached, so that its whole log goes to $CHECK_DIR/NAME.log (even when it
# exits at once) and the client's exit status is the container's (read by stop_checked).
declare -A RUNNER=()
start_checked() {
  local name=$1 image=$2
  shift 2
  CONTAINERS+=("$name")
  docker run --rm --name "$name" "$@" "$image" </dev/null >"$CHECK_DIR/$name.log" 2>&1 &
  RUNNER[$name]=$!
}

# wait_for NAME WHAT CMD...: run CMD until it succeeds, for up to CHECK_BUDGET seconds, while the
# container runs.
wait_for() {
  local name=$1 what=$2 deadline=$((SECONDS + CHECK_BUDGET)) status
  shift 2
  until "$@" >/dev/null 2>&1; do
    if ! kill -0 "${RUNNER[$name]}" 2>/dev/null; then
      status=0
      wait "${RUNNER[$name]}" || status=$?
      tail -n 30 "$CHECK_DIR/$name.log" >&2 || true
      die "$name exited (status $status) while waiting: $what (log above)"
    fi
    if ((SECONDS >= deadline)); then
      tail -n 30 "$CHECK_DIR/$name.log" >&2 || true
      die "$name: $what within $CHECK_BUDGET s (log above)"
    fi
    sleep 0.3
  done
}

# stop_checked NAME: docker stop, then the exit status must be 0 (or 143: SIGTERM) and the
# container gone.
stop_checked() {
  local name=$1 status=0
  docker stop "$name" >/dev/null || die "docker stop $name failed"
  # docker run --rm returns once the container is removed.
  wait "${RUNNER[$name]}" || status=$?
  ! docker container inspect "$name" >/dev/null 2>&1 || die "$name is still there after docker stop"
  [[ $status == 0 || $status == 143 ]] || {
    tail -n 30 "$CHECK_DIR/$name.log" >&2 || true
    die "$name exited with status $status on docker stop, not 0 or 143 (log above)"
  }
}

# new_volume: VOL, a fresh, root-owned, empty directory to mount as a volume (removed on exit).
VOL=''
new_volume() {
  VOL=$(mktemp -d "$STATE/accessories-vol.XXXXXX")
  CLEANUP+=("$VOL")
  chmod 0755 "$VOL"
}

# --- postgres ------------------------------------------------------------------------------

# slim_postgres DIR: no JIT (LLVM and Z3: a third of the image; the server disables JIT itself
# when llvmjit.so is missing, and the entrypoint turns it off); no locale sources; no cluster or
# key made at install time.
slim_postgres() {
  local r=$1
  rm -f "$r"/usr/lib/postgresql/15/lib/llvmjit*.so
  rm -rf "$r/usr/lib/postgresql/15/lib/bitcode"
  rm -f "$r"/usr/lib/*-linux-gnu/libLLVM-14.so* "$r"/usr/lib/llvm-14/lib/libLLVM-14.so* \
    "$r"/usr/lib/*-linux-gnu/libz3.so*
  rm -rf "$r/var/lib/postgresql/15" "$r/etc/postgresql/15"
  # The sources locale-gen compiles locales from (16 MB); the server runs in C.UTF-8, built in.
  rm -rf "$r/usr/share/i18n/charmaps" "$r/usr/share/i18n/locales"
  rm -f "$r/etc/ssl/private/ssl-cert-snakeoil.key" "$r/etc/ssl/certs/ssl-cert-snakeoil.pem"
  install -d -m 2775 "$r/var/run/postgresql"
  install -d -m 0700 "$r/var/lib/postgresql/data"
  chown "$(owner_in "$r" postgres)" "$r/var/run/postgresql" "$r/var/lib/postgresql/data"
  install -d -m 0755 "$r/docker-entrypoint-initdb.d"
}

# owner_in DIR USER: USER's uid:gid in the tree DIR (dies when it has no such user).
owner_in() {
  local ids
  ids=$(awk -F: -v u="$2" '$1 == u { print $3 ":" $4 }' "$1/etc/passwd")
  [[ -n $ids ]] || die "the tree has no user $2"
  printf '%s\n' "$ids"
}

write_postgres_entrypoint() {
  cat >"$1/usr/local/bin/shipit-postgres" <<'EOF'
#!/bin/bash
# shipit-postgres: the entrypoint of shipit's testbed postgres image (testbed/accessories.sh).
#   no arguments, `postgres [OPTION...]` or `-OPTION...`: the server (initialised on first start)
#   any other command: run as given (pg_dump, psql, pg_restore, pg_isready, sh...)
set -euo pipefail
export PGDATA=${PGDATA:-/var/lib/postgresql/data}

if [[ $# -eq 0 ]]; then
  set -- postgres
elif [[ $1 == -* ]]; then
  set -- postgres "$@"
fi
[[ $1 == postgres ]] || exec "$@"
shift

log() { printf 'shipit-postgres: %s\n' "$*" >&2; }

if [[ $(id -u) == 0 ]]; then
  # A mounted volume may be empty and root's: the server's user must own it, 0700.
  mkdir -p "$PGDATA"
  find "$PGDATA" \! -user postgres -exec chown postgres:postgres '{}' +
  chmod 0700 "$PGDATA"
  install -d -o postgres -g postgres -m 2775 /var/run/postgresql
  HOME=/var/lib/postgresql exec setpriv --reuid=postgres --regid=postgres --init-groups \
    "$0" postgres "$@"
fi

if [[ ! -s $PGDATA/PG_VERSION ]]; then
  user=${POSTGRES_USER:-postgres}
  db=${POSTGRES_DB:-$user}
  auth=${POSTGRES_HOST_AUTH_METHOD:-scram-sha-256}
  if [[ -z ${POSTGRES_PASSWORD:-} && $auth != trust ]]; then
    log "error: the database is uninitialised and POSTGRES_PASSWORD is not set"
    log "set POSTGRES_PASSWORD (or POSTGRES_HOST_AUTH_METHOD=trust to allow any connection without one)"
    exit 1
  fi
  log "initialising $PGDATA (user $user, database $db, host auth $auth)"
  args=(--username="$user" --auth-local=trust --auth-host="$auth" --encoding=UTF8 --locale=C.UTF-8)
  if [[ -n ${POSTGRES_PASSWORD:-} ]]; then
    pwfile=$(mktemp)
    printf '%s\n' "$POSTGRES_PASSWORD" >"$pwfile"
    args+=(--pwfile="$pwfile")
  fi
  # shellcheck disable=SC2086 # POSTGRES_INITDB_ARGS: words, as the official image takes them
  initdb "${args[@]}" ${POSTGRES_INITDB_ARGS:-} -D "$PGDATA" >/dev/null
  [[ -z ${pwfile:-} ]] || rm -f "$pwfile"
  printf '\nhost all all all %s\n' "$auth" >>"$PGDATA/pg_hba.conf"
  printf "\nlisten_addresses = '*'\njit = off\n" >>"$PGDATA/postgresql.conf"

  # Create the database and run the init scripts on a server only the socket reaches.
  pg_ctl -D "$PGDATA" -o "-c listen_addresses=''" -w -s start
  if [[ $db != postgres ]]; then
    psql -X -q -v ON_ERROR_STOP=1 -v db="$db" -U "$user" -d postgres <<<'CREATE DATABASE :"db";'
  fi
  for f in /docker-entrypoint-initdb.d/*; do
    case $f in
    *.sql) log "running $f" && psql -X -q -v ON_ERROR_STOP=1 -U "$user" -d "$db" -f "$f" ;;
    *.sh) log "running $f" && PGUSER=$user PGDATABASE=$db bash "$f" ;;
    esac
  done
  pg_ctl -D "$PGDATA" -m fast -w -s stop
  log "initialised; starting the server"
fi

exec postgres "$@"
EOF
  chmod 0755 "$1/usr/local/bin/shipit-postgres"
}

postgres_key() {
  {
    printf 'recipe=%s suite=%s include=%s path=%s\n' "$RECIPE" "$SUITE" "$POSTGRES_INCLUDE" "$POSTGRES_PATH"
    declare -f unpack_rootfs slim_rootfs import_tree owner_in slim_postgres \
      write_postgres_entrypoint build_postgres
  } | sha12
}

build_postgres() {
  local image=$1 key=$2 build t0
  t0=$(now_us)
  build=$(mktemp -d "$STATE/accessories.XXXXXX")
  CLEANUP+=("$build")
  unpack_rootfs "$POSTGRES_INCLUDE" "$build/rootfs"
  slim_rootfs "$build/rootfs"
  slim_postgres "$build/rootfs"
  write_postgres_entrypoint "$build/rootfs"
  log "importing $image"
  import_tree "$build/rootfs" "$image" \
    'ENTRYPOINT ["/usr/local/bin/shipit-postgres"]' 'CMD ["postgres"]' \
    "ENV PATH=$POSTGRES_PATH" 'ENV PGDATA=/var/lib/postgresql/data' 'ENV LANG=C.UTF-8' \
    'EXPOSE 5432' 'STOPSIGNAL SIGINT' \
    "LABEL shipit.accessories.key=\"$key\" shipit.accessories.what=\"postgres: debootstrap $SUITE minbase + $POSTGRES_INCLUDE\""
  remove_tree "$build"
  log "$image built in $(since_us "$t0")"
}

# check_postgres IMAGE: first start on an empty root-owned volume with another user and
# database, TCP with the password (and not without), the clients in command mode, a clean stop.
check_postgres() {
  local image=$1 name vol t0 out owner
  t0=$(now_us)
  name=shipit-accessories-check-pg-$$-$RANDOM
  new_volume
  vol=$VOL
  out=$(docker run --rm --network none "$image" sh -c \
    'for f in /usr/lib/postgresql/15/bin/* /usr/lib/postgresql/15/lib/*.so; do ldd "$f" 2>/dev/null | grep "not found" | sed "s|^|$f: |"; done
     psql --version && pg_dump --version && pg_restore --version && pg_isready --version && /usr/bin/psql --version' 2>&1) ||
    die "$image: the clients do not run: $out"
  [[ $out != *"not found"* ]] || die "$image: missing libraries: $out"
  start_checked "$name" "$image" -e POSTGRES_PASSWORD=x -e POSTGRES_USER=check -e POSTGRES_DB=app \
    -v "$vol:/var/lib/postgresql/data"
  wait_for "$name" "pg_isready did not succeed on 127.0.0.1" \
    docker exec "$name" pg_isready -q -h 127.0.0.1 -U check -d app
  out=$(docker exec -e PGPASSWORD=x "$name" psql -X -tA -h 127.0.0.1 -U check -d app -c 'select 1' 2>&1) ||
    die "$name: psql over TCP with the password failed: $out"
  [[ $out == 1 ]] || die "$name: psql over TCP answered '$out', not 1"
  ! docker exec -e PGPASSWORD=wrong "$name" psql -X -h 127.0.0.1 -U check -d app -c 'select 1' >/dev/null 2>&1 ||
    die "$name: psql over TCP succeeded with a wrong password"
  owner=$(stat -c '%u:%g %a' "$vol")
  out=$(docker exec "$name" stat -c '%U %a' /var/lib/postgresql/data)
  [[ $out == "postgres 700" ]] || die "$name: PGDATA is '$out' inside, not 'postgres 700'"
  out=$(docker run --rm --network "container:$name" -e PGPASSWORD=x "$image" sh -ec \
    'pg_dump --format=custom -d postgresql://check@127.0.0.1/app -f /tmp/app.dump; pg_restore -l /tmp/app.dump >/dev/null; echo ok' 2>&1) ||
    die "$image: pg_dump/pg_restore in command mode failed: $out"
  stop_checked "$name"
  grep -q 'database system is shut down' "$CHECK_DIR/$name.log" ||
    die "$name: no 'database system is shut down' in its log"
  ! grep -qi 'warning' "$CHECK_DIR/$name.log" || log "note: $name warned: $(grep -i warning "$CHECK_DIR/$name.log" | head -n 3)"
  log "$image checked in $(since_us "$t0") (volume owner $owner, select 1 over TCP, pg_dump/pg_restore, stop)"
}

# --- redis ---------------------------------------------------------------------------------

write_redis_entrypoint() {
  cat >"$1/usr/local/bin/shipit-redis" <<'EOF'
#!/bin/sh
# shipit-redis: the entrypoint of shipit's testbed redis image (testbed/accessories.sh).
#   no arguments, `redis-server [OPTION...]` or `--OPTION...`: the server, as redis, in /data
#   any other command: run as given (redis-cli...)
set -eu
if [ $# -eq 0 ]; then
  set -- redis-server
else
  case $1 in
  -*) set -- redis-server "$@" ;;
  esac
fi
[ "$1" = redis-server ] || exec "$@"
shift
if [ "$(id -u)" = 0 ]; then
  mkdir -p /data
  find /data \! -user redis -exec chown redis:redis '{}' +
  exec setpriv --reuid=redis --regid=redis --init-groups "$0" redis-server "$@"
fi
if [ -n "${REDIS_PASSWORD:-}" ]; then
  set -- --requirepass "$REDIS_PASSWORD" "$@"
fi
cd /data
exec redis-server --bind 0.0.0.0 --protected-mode no --dir /data --appendonly yes "$@"
EOF
  chmod 0755 "$1/usr/local/bin/shipit-redis"
}

redis_key() {
  {
    printf 'recipe=%s suite=%s include=%s\n' "$RECIPE" "$SUITE" "$REDIS_INCLUDE"
    declare -f unpack_rootfs slim_rootfs import_tree owner_in write_redis_entrypoint build_redis
  } | sha12
}

build_redis() {
  local image=$1 key=$2 build t0 r
  t0=$(now_us)
  build=$(mktemp -d "$STATE/accessories.XXXXXX")
  CLEANUP+=("$build")
  r=$build/rootfs
  unpack_rootfs "$REDIS_INCLUDE" "$r"
  slim_rootfs "$r"
  rm -rf "$r"/var/lib/redis/*
  install -d -m 0755 "$r/data"
  chown "$(owner_in "$r" redis)" "$r/data"
  write_redis_entrypoint "$r"
  log "importing $image"
  import_tree "$r" "$image" \
    'ENTRYPOINT ["/usr/local/bin/shipit-redis"]' 'CMD ["redis-server"]' \
    'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' 'WORKDIR /data' \
    'EXPOSE 6379' \
    "LABEL shipit.accessories.key=\"$key\" shipit.accessories.what=\"redis: debootstrap $SUITE minbase + $REDIS_INCLUDE\""
  remove_tree "$build"
  log "$image built in $(since_us "$t0")"
}

# pong NAME [REDIS-CLI-ARGS...]: redis in container NAME answers PONG.
pong() {
  local name=$1
  shift
  [[ $(docker exec "$name" redis-cli "$@" ping 2>/dev/null) == PONG ]]
}

# check_redis IMAGE: PONG without a password; with one, NOAUTH without it and PONG with it
# (redis-cli in command mode, from another container); data in /data; clean stops.
check_redis() {
  local image=$1 name vol t0 out
  t0=$(now_us)
  name=shipit-accessories-check-redis-$$-$RANDOM
  new_volume
  vol=$VOL
  start_checked "$name" "$image" -v "$vol:/data"
  wait_for "$name" "redis-cli ping did not answer PONG" pong "$name"
  out=$(docker exec "$name" sh -c 'redis-cli set shipit ok >/dev/null && redis-cli get shipit && stat -c %U /data')
  [[ $out == $'ok\nredis' ]] || die "$name: set/get or the owner of /data gave '$out'"
  stop_checked "$name"
  [[ -d $vol/appendonlydir ]] || die "$name: no appendonlydir in the volume"

  name=shipit-accessories-check-redis-$$-$RANDOM
  start_checked "$name" "$image" -e REDIS_PASSWORD=x
  wait_for "$name" "redis-cli -a ping did not answer PONG" pong "$name" -a x --no-auth-warning
  out=$(docker exec "$name" redis-cli ping 2>&1) || true
  [[ $out == *NOAUTH* ]] || die "$name: redis-cli ping without the password answered '$out', not NOAUTH"
  out=$(docker run --rm --network "container:$name" "$image" redis-cli -a x --no-auth-warning ping 2>&1) || true
  [[ $out == PONG ]] || die "$image: redis-cli in command mode answered '$out', not PONG"
  stop_checked "$name"
  log "$image checked in $(since_us "$t0") (PONG with and without a password, NOAUTH, /data, stop)"
}

# --- main ----------------------------------------------------------------------------------

# ensure NAME TAG KEY: NAME:TAG-KEY in this engine and in the registry, and NAME:TAG with it;
# built, checked and pushed when missing. What it did goes to DONE.
ensure() {
  local name=$1 tag=$2 key=$3 ref float digest t0
  ref=$REGISTRY/$NAMESPACE/$name:$tag-$key
  float=$REGISTRY/$NAMESPACE/$name:$tag
  digest=$(manifest_digest "$name" "$tag-$key")
  if [[ -n $digest ]] && have_image "$ref"; then
    if [[ $(manifest_digest "$name" "$tag") == "$digest" ]]; then
      DONE+=("$name reused")
      return
    fi
    t0=$(now_us)
    docker tag "$ref" "$float"
    push "$float"
    log "$float pushed (it pointed elsewhere) in $(since_us "$t0")"
    DONE+=("$name :$tag pushed")
    return
  fi
  if [[ -n $digest ]]; then
    t0=$(now_us)
    registry_login
    docker pull -q "$ref" >/dev/null || die "docker pull $ref failed"
    docker tag "$ref" "$float"
    log "$ref pulled from the registry in $(since_us "$t0")"
    [[ $(manifest_digest "$name" "$tag") == "$digest" ]] || push "$float"
    DONE+=("$name pulled")
    return
  fi
  if ! have_image "$ref"; then
    ((EUID == 0)) || die "$ref is missing and building it needs root (debootstrap): run as root"
    "build_$name" "$ref" "$key"
    "check_$name" "$ref"
    [[ $(docker image inspect -f '{{len .RootFS.Layers}}' "$ref") == 1 ]] ||
      die "$ref has more than one layer (each is a full copy on the hosts' vfs driver)"
    DONE+=("$name built and checked")
  fi
  t0=$(now_us)
  docker tag "$ref" "$float"
  push "$ref"
  push "$float"
  log "$ref and :$tag pushed in $(since_us "$t0") ($(docker image inspect -f '{{.Size}}' "$ref" | awk '{ printf "%.0f MB", $1 / 1e6 }'))"
  DONE+=("$name pushed")
}

main() {
  local t0 pkey rkey pimage rimage stale
  t0=$(now_us)
  mkdir -p "$STATE"
  docker info >/dev/null 2>&1 || die "Docker does not answer: run \`bash testbed/testbed.sh up\`"
  load_credentials
  registry_ping
  pkey=$(postgres_key)
  rkey=$(redis_key)
  pimage=$REGISTRY/$NAMESPACE/postgres:$POSTGRES_TAG-$pkey
  rimage=$REGISTRY/$NAMESPACE/redis:$REDIS_TAG-$rkey

  if [[ -n $(manifest_digest postgres "$POSTGRES_TAG-$pkey") && -n $(manifest_digest redis "$REDIS_TAG-$rkey") ]] &&
    have_image "$pimage" && have_image "$rimage" &&
    [[ $(manifest_digest postgres "$POSTGRES_TAG") == "$(manifest_digest postgres "$POSTGRES_TAG-$pkey")" &&
      $(manifest_digest redis "$REDIS_TAG") == "$(manifest_digest redis "$REDIS_TAG-$rkey")" ]]; then
    DONE=("all reused")
  else
    lock_accessories
    CHECK_DIR=$(mktemp -d "$STATE/accessories-check.XXXXXX")
    CLEANUP+=("$CHECK_DIR")
    ensure postgres "$POSTGRES_TAG" "$pkey"
    ensure redis "$REDIS_TAG" "$rkey"
  fi

  printf 'POSTGRES_IMAGE=%s\nREDIS_IMAGE=%s\n' "$pimage" "$rimage" >"$STATE/accessories.env.tmp"
  mv -f "$STATE/accessories.env.tmp" "$STATE/accessories.env"
  stale=$(docker images --format '{{.Repository}}:{{.Tag}}' \
    --filter "reference=$REGISTRY/$NAMESPACE/postgres" --filter "reference=$REGISTRY/$NAMESPACE/redis" 2>/dev/null |
    grep -vxF -e "$pimage" -e "$rimage" -e "$REGISTRY/$NAMESPACE/postgres:$POSTGRES_TAG" \
      -e "$REGISTRY/$NAMESPACE/redis:$REDIS_TAG" | grep -v ':<none>$' | tr '\n' ' ') || true
  [[ -z $stale ]] || log "note: older accessory images, unused now (docker rmi to free space): $stale"
  log "accessories ready in $(since_us "$t0") [$(
    IFS=,
    printf '%s' "${DONE[*]}"
  )]: $pimage $rimage"
  cat "$STATE/accessories.env"
}

main "$@"

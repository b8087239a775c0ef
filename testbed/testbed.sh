#!/usr/bin/env bash
# testbed/testbed.sh: the real test environment for shipit, on one Debian 12 machine.
#
# Owns, all under $SHIPIT_TESTBED_DIR (default /var/lib/shipit-testbed):
#   - the Debian packages the testbed needs (installed when missing),
#   - a dockerd it starts itself when none answers (pid in dockerd.pid),
#   - an image registry with real htpasswd auth at registry.test:5000 (pid in registry.pid),
#   - an SSH client key, the test host image shipit-testhost:1 (debootstrap, cached),
#   - test hosts: containers shipit-th1..N running systemd, sshd, nginx, logrotate and Docker,
#     ssh on 127.0.0.1:2201.., http on 127.0.0.1:8001..,
#   - current-engine hosts: containers shipit-tx1..2 built from Debian 13 (trixie, docker.io 26)
#     whose engine keeps images in containerd's store (image shipit-testhost-trixie:1), ssh on
#     127.0.0.1:2291.., http on 127.0.0.1:8091..; `SHIPIT_TESTBED_TRIXIE=0` leaves them out,
#   - known_hosts and env.sh, which tests and the demo source.
# It never kills a process it did not start: only pids from its own pid files, checked against
# the program they must run. Everything is published on 127.0.0.1, except the registry, which
# listens on 0.0.0.0:5000 so the hosts' Docker reaches it through the bridge (host-gateway).
# The recipe and its figures: shared/TESTBED.md.
set -euo pipefail
# shellcheck source=testbed/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

usage() {
  cat <<'EOF'
usage: testbed/testbed.sh up [N]        start or repair the testbed with N hosts (default 3)
       testbed/testbed.sh down          remove the hosts, stop the registry (keeps dockerd, images)
       testbed/testbed.sh status        one line per part; exit 1 when a part is not up
       testbed/testbed.sh ssh N [cmd]   ssh into host N as root (tN: the trixie host shipit-txN)
Besides the N hosts, up starts 2 trixie hosts (Docker 26, containerd image store);
SHIPIT_TESTBED_TRIXIE=0 leaves them out.
state dir: ${SHIPIT_TESTBED_DIR:-/var/lib/shipit-testbed}
EOF
}

STATE=$(realpath -m -- "${SHIPIT_TESTBED_DIR:-/var/lib/shipit-testbed}")
readonly STATE
readonly IMAGE=shipit-testhost:1
# Bump when customize_rootfs changes: a cached image of another recipe is rebuilt.
readonly IMAGE_RECIPE=4
readonly SUITE=bookworm
readonly INCLUDE=systemd,systemd-sysv,dbus,openssh-server,nginx-light,logrotate,procps,curl,iproute2,ca-certificates,docker.io,sudo,python3,tcsh,fish
readonly REGISTRY=registry.test:5000
readonly REGISTRY_USER=shipit
readonly HOST_PREFIX=shipit-th
readonly PACKAGES=(docker.io docker-registry debootstrap apache2-utils openssh-client wrk curl busybox-static hyperfine shellcheck pebble faketime)
# The current-engine hosts: Debian 13's Docker (26) with containerd's image store, on the
# `native` snapshotter (overlayfs cannot nest in the outer engine's overlay, as vfs stands in for
# overlay2 on the bookworm hosts).
readonly TRIXIE_IMAGE=shipit-testhost-trixie:1
readonly TRIXIE_RECIPE=1
readonly TRIXIE_SUITE=trixie
readonly TRIXIE_INCLUDE=systemd,systemd-sysv,dbus,openssh-server,nginx,logrotate,procps,curl,iproute2,ca-certificates,docker.io,docker-cli,sudo
readonly TRIXIE_PREFIX=shipit-tx
TRIXIE_HOSTS=2
[[ ${SHIPIT_TESTBED_TRIXIE:-1} != 0 ]] || TRIXIE_HOSTS=0
readonly TRIXIE_HOSTS
readonly BOOT_BUDGET=120 # seconds for all new hosts to boot, in parallel
readonly PROBE_BUDGET=8 # seconds for a reused host to answer before it is recreated...
readonly BOOT_GRACE=30  # ...or longer while it may still be booting (started less ago than this)

KEY=$STATE/id_ed25519
KNOWN_HOSTS=$STATE/known_hosts
PASSWORD_FILE=$STATE/registry-password
readonly KEY KNOWN_HOSTS PASSWORD_FILE

log() { printf '%s testbed: %s\n' "$(date +%T)" "$*" >&2; }
die() {
  log "error: $*"
  exit 1
}

# --- small helpers -------------------------------------------------------------------------

TIMINGS=()
# timed NAME CMD...: run CMD, record how long it took under NAME for the summary line.
timed() {
  local name=$1 t0
  shift
  t0=$(now_us)
  "$@"
  TIMINGS+=("$name $(since_us "$t0")")
}

# pid_of FILE PROGRAM: print the pid recorded in FILE when that process is alive and runs
# PROGRAM (guards against a recycled pid); fail otherwise.
pid_of() {
  local file=$1 program=$2 pid arg0=''
  [[ -r $file ]] || return 1
  pid=$(<"$file")
  [[ $pid =~ ^[0-9]+$ ]] || return 1
  [[ -r /proc/$pid/cmdline ]] || return 1
  IFS= read -r -d '' arg0 <"/proc/$pid/cmdline" || true
  [[ ${arg0##*/} == "$program" ]] || return 1
  printf '%s\n' "$pid"
}

# alive PID: PID runs (a zombie does not count).
alive() {
  [[ -e /proc/$1 ]] && ! grep -q '^State:[[:space:]]*Z' "/proc/$1/status" 2>/dev/null
}

# wait_gone PID SECONDS: wait until PID has exited.
wait_gone() {
  local pid=$1 deadline=$((SECONDS + $2))
  while alive "$pid"; do
    ((SECONDS < deadline)) || return 1
    sleep 0.2
  done
}

# write_if_changed TARGET MODE: atomically replace TARGET with stdin when the content differs.
# Succeeds (0) when it wrote, fails (1) when TARGET already had that content.
write_if_changed() {
  local target=$1 mode=$2 tmp
  tmp=$(mktemp "$target.XXXXXX")
  cat >"$tmp"
  chmod "$mode" "$tmp"
  if [[ -f $target ]] && cmp -s "$tmp" "$target"; then
    rm -f "$tmp"
    chmod "$mode" "$target"
    return 1
  fi
  mv -f "$tmp" "$target"
}

# sq STRING: STRING quoted for any POSIX shell.
sq() { printf "'%s'" "${1//\'/\'\\\'\'}"; }

http_code() {
  curl -s -o /dev/null -w '%{http_code}' --max-time 3 "$@" || true
}

docker_ok() { docker info >/dev/null 2>&1; }

ssh_opts() { # PORT KNOWN_HOSTS_FILE
  printf '%s\n' -i "$KEY" -p "$1" -o IdentitiesOnly=yes -o BatchMode=yes \
    -o StrictHostKeyChecking=yes -o "UserKnownHostsFile=$2" -o ConnectTimeout=5 \
    -o LogLevel=ERROR
}

# A host is named by its key: I (1..N) for shipit-thI, tJ for the trixie host shipit-txJ.
# close_inherited_fds: in a subshell about to exec a daemon, close every descriptor above
# stderr (the state lock, and whatever lock or pipe the caller handed down), so that the daemon
# holds none of them for its whole life.
close_inherited_fds() {
  local fd n
  for fd in /proc/"$BASHPID"/fd/*; do
    n=${fd##*/}
    if [[ $n =~ ^[0-9]+$ ]] && ((n > 2)); then
      eval "exec $n>&-" 2>/dev/null || true
    fi
  done
}

host_name() {
  case $1 in
  t*) printf '%s%d' "$TRIXIE_PREFIX" "${1#t}" ;;
  *) printf '%s%d' "$HOST_PREFIX" "$1" ;;
  esac
}
host_hostname() {
  case $1 in
  t*) printf 'tx%d' "${1#t}" ;;
  *) printf 'th%d' "$1" ;;
  esac
}
host_image() {
  case $1 in
  t*) printf '%s' "$TRIXIE_IMAGE" ;;
  *) printf '%s' "$IMAGE" ;;
  esac
}
ssh_port() {
  case $1 in
  t*) printf '%d' $((2290 + ${1#t})) ;;
  *) printf '%d' $((2200 + $1)) ;;
  esac
}
http_port() {
  case $1 in
  t*) printf '%d' $((8090 + ${1#t})) ;;
  *) printf '%d' $((8000 + $1)) ;;
  esac
}

# Host containers of the testbed, by name, one a line.
host_containers() {
  docker ps -a --filter "name=^${HOST_PREFIX}[0-9]+\$" --format '{{.Names}}'
}

# Trixie host containers, by name, one a line.
trixie_containers() {
  docker ps -a --filter "name=^${TRIXIE_PREFIX}[0-9]+\$" --format '{{.Names}}'
}

CLEANUP=()
cleanup() {
  local path
  for path in "${CLEANUP[@]}"; do
    remove_tree "$path"
  done
}
trap cleanup EXIT

lock_state() {
  mkdir -p "$STATE"
  chmod 0700 "$STATE"
  exec 9>"$STATE/.lock"
  if ! flock -n 9; then
    log "another testbed.sh holds $STATE/.lock; waiting (up to 15 min)"
    flock -w 900 9 || die "timed out waiting for $STATE/.lock"
  fi
}

# --- 1. packages ---------------------------------------------------------------------------

missing_packages() {
  local p out
  for p in "${PACKAGES[@]}"; do
    if ! out=$(dpkg -s "$p" 2>/dev/null) || [[ $out != *"Status: install ok installed"* ]]; then
      printf '%s\n' "$p"
    fi
  done
}

ensure_packages() {
  local missing policy_added=''
  mapfile -t missing < <(missing_packages)
  ((${#missing[@]} > 0)) || return 0
  ((EUID == 0)) || die "packages missing (${missing[*]}) and not root: run as root"
  log "installing ${missing[*]}"
  # Keep apt from starting services (Debian's docker and docker-registry would start with
  # their own configs); this script starts what it needs itself.
  if [[ ! -e /usr/sbin/policy-rc.d ]]; then
    printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
    chmod 0755 /usr/sbin/policy-rc.d
    policy_added=1
  fi
  local rc=0 try
  export DEBIAN_FRONTEND=noninteractive NEEDRESTART_SUSPEND=1
  for try in 1 2 3; do
    rc=0
    {
      apt-get update -qq &&
        apt-get install -y -qq -o Dpkg::Options::=--force-confdef \
          -o Dpkg::Options::=--force-confold "${missing[@]}"
    } </dev/null >&2 || rc=$?
    ((rc != 0 && try < 3)) || break
    log "apt-get failed (exit $rc); retrying ($((3 - try)) left)"
    sleep $((try * 5))
  done
  [[ -z $policy_added ]] || rm -f /usr/sbin/policy-rc.d
  ((rc == 0)) || die "apt-get failed (exit $rc) installing ${missing[*]}"
}

# --- 2. /etc/hosts -------------------------------------------------------------------------

ensure_hosts_entry() {
  local resolved
  if ! grep -qE '^[[:space:]]*127\.0\.0\.1([[:space:]]+[^#[:space:]]+)*[[:space:]]+registry\.test([[:space:]]|$)' /etc/hosts; then
    log "adding '127.0.0.1 registry.test' to /etc/hosts"
    if [[ -s /etc/hosts && -n $(tail -c1 /etc/hosts) ]]; then
      printf '\n' >>/etc/hosts
    fi
    printf '127.0.0.1 registry.test\n' >>/etc/hosts
  fi
  resolved=$(getent ahostsv4 registry.test | awk 'NR == 1 { print $1 }') || resolved=''
  [[ $resolved == 127.0.0.1 ]] ||
    die "registry.test resolves to '${resolved:-nothing}', not 127.0.0.1: check /etc/hosts"
}

# --- 3. dockerd ----------------------------------------------------------------------------

# comm_of PID: the name of process PID, zombies included.
comm_of() {
  awk '/^Name:/ { print $2; exit }' "/proc/$1/status" 2>/dev/null
}

# settle_pidfile FILE NAME SECONDS: when FILE names a NAME process that is exiting, or has
# exited but is not yet reaped (a zombie until init collects it), wait for it to vanish: a
# dockerd started meanwhile takes such a pid for a live daemon and fails (shared/TESTBED.md:
# "wait until its containerd has exited"). Clears FILE if only a zombie lingers.
settle_pidfile() {
  local file=$1 name=$2 pid deadline=$((SECONDS + $3))
  [[ -r $file ]] || return 0
  pid=$(<"$file")
  [[ $pid =~ ^[0-9]+$ && $(comm_of "$pid") == "$name" ]] || return 0
  log "waiting for an earlier $name (pid $pid) to exit"
  while [[ -e /proc/$pid ]]; do
    if ((SECONDS >= deadline)); then
      if alive "$pid"; then
        log "$name (pid $pid) still runs after $3 s; the new dockerd will use it"
      else
        log "$name (pid $pid) exited but is not reaped yet; removing the stale $file"
        rm -f "$file"
      fi
      return 0
    fi
    sleep 0.2
  done
}

ensure_dockerd() {
  local pid='' deadline started=''
  if docker_ok; then
    if ! docker info --format '{{range $k, $v := .RegistryConfig.IndexConfigs}}{{$k}} {{end}}' 2>/dev/null |
      grep -qw "$REGISTRY"; then
      # registry.test resolves to 127.0.0.1, which Docker treats as insecure anyway.
      log "note: the running dockerd lacks --insecure-registry $REGISTRY (fine: it resolves to loopback)"
    fi
    return 0
  fi
  command -v dockerd >/dev/null || die "dockerd not found (package docker.io)"
  deadline=$((SECONDS + 60))
  until docker_ok; do
    ((SECONDS < deadline)) || die "dockerd did not answer 'docker info' within 60 s; see $STATE/dockerd.log"
    if [[ -z $pid ]] || ! alive "$pid"; then
      if [[ -n $started ]]; then
        tail -n 20 "$STATE/dockerd.log" >&2 || true
        die "dockerd (pid $pid) exited; see $STATE/dockerd.log"
      fi
      if pid=$(pid_of "$STATE/dockerd.pid" dockerd); then
        # Starting, or stopping: then the loop comes back here once it has exited.
        log "dockerd (pid $pid, started by testbed) does not answer yet; waiting"
      elif pid=$(pid_of /var/run/docker.pid dockerd); then
        log "a dockerd not started by testbed (pid $pid) is running; waiting for it to answer"
      else
        settle_pidfile /var/run/docker.pid dockerd 10
        settle_pidfile /var/run/docker/containerd/containerd.pid containerd 30
        log "starting dockerd (log $STATE/dockerd.log)"
        # The daemon must not inherit (and so hold) the state lock, nor a lock the caller holds
        # (`flock FILE bash testbed/test.sh` would stay locked while dockerd runs).
        (close_inherited_fds && exec setsid nohup dockerd --insecure-registry "$REGISTRY" </dev/null >"$STATE/dockerd.log" 2>&1) &
        pid=$!
        started=1
        printf '%s\n' "$pid" >"$STATE/dockerd.pid"
      fi
    fi
    sleep 0.5
  done
  # Should setsid have forked, dockerd's own pid file names the daemon we started.
  if [[ -n $started ]] && ! pid_of "$STATE/dockerd.pid" dockerd >/dev/null &&
    pid=$(pid_of /var/run/docker.pid dockerd); then
    printf '%s\n' "$pid" >"$STATE/dockerd.pid"
  fi
}

# --- 4. registry ---------------------------------------------------------------------------

registry_config() {
  cat <<EOF
# Written by testbed/testbed.sh.
version: 0.1
log:
  level: info
  fields:
    service: registry
storage:
  filesystem:
    rootdirectory: $STATE/registry/data
  delete:
    enabled: true
http:
  addr: 0.0.0.0:5000
  headers:
    X-Content-Type-Options: [nosniff]
auth:
  htpasswd:
    realm: basic-realm
    path: $STATE/registry/htpasswd
EOF
}

stop_registry() {
  local pid
  if pid=$(pid_of "$STATE/registry.pid" docker-registry); then
    log "stopping registry (pid $pid)"
    kill "$pid" 2>/dev/null || true
    wait_gone "$pid" 10 || {
      kill -KILL "$pid" 2>/dev/null || true
      wait_gone "$pid" 5 || die "registry (pid $pid) does not exit"
    }
  fi
  rm -f "$STATE/registry.pid"
}

ensure_registry() {
  local dir=$STATE/registry changed='' code pid deadline
  mkdir -p "$dir/data"
  chmod 0700 "$dir"

  if [[ ! -s $PASSWORD_FILE ]]; then
    log "generating the registry password ($PASSWORD_FILE)"
    (
      umask 077
      head -c 48 /dev/urandom | base64 -w0 | tr -dc 'A-Za-z0-9' | cut -c1-32 | tr -d '\n' >"$PASSWORD_FILE.tmp"
    )
    mv -f "$PASSWORD_FILE.tmp" "$PASSWORD_FILE"
  fi
  chmod 0600 "$PASSWORD_FILE"

  if [[ ! -s $dir/htpasswd ]] ||
    ! htpasswd -v -i "$dir/htpasswd" "$REGISTRY_USER" <"$PASSWORD_FILE" >/dev/null 2>&1; then
    (umask 077 && htpasswd -B -c -i "$dir/htpasswd.tmp" "$REGISTRY_USER" <"$PASSWORD_FILE" 2>/dev/null)
    mv -f "$dir/htpasswd.tmp" "$dir/htpasswd"
    changed=1
  fi
  if registry_config | write_if_changed "$dir/registry.yml" 0600; then
    changed=1
  fi

  if pid=$(pid_of "$STATE/registry.pid" docker-registry); then
    if [[ -n $changed ]]; then
      stop_registry
    else
      deadline=$((SECONDS + 10))
      while code=$(http_code "http://$REGISTRY/v2/") && [[ $code != 401 ]]; do
        if ((SECONDS >= deadline)); then
          log "registry (pid $pid) answers '$code' on /v2/, not 401: restarting it"
          stop_registry
          break
        fi
        sleep 0.3
      done
    fi
  fi

  if ! pid_of "$STATE/registry.pid" docker-registry >/dev/null; then
    code=$(http_code "http://$REGISTRY/v2/")
    [[ $code == 000 ]] ||
      die "port 5000 already answers ($code) from a process testbed did not start; stop it (ss -ltnp 'sport = :5000'), then re-run"
    log "starting registry on $REGISTRY (log $STATE/registry.log)"
    (cd "$dir" && close_inherited_fds && exec setsid nohup docker-registry serve "$dir/registry.yml" </dev/null >"$STATE/registry.log" 2>&1) &
    pid=$!
    printf '%s\n' "$pid" >"$STATE/registry.pid"
    deadline=$((SECONDS + 30))
    until [[ $(http_code "http://$REGISTRY/v2/") == 401 ]]; do
      if ! alive "$pid"; then
        tail -n 20 "$STATE/registry.log" >&2 || true
        die "registry exited; see $STATE/registry.log"
      fi
      ((SECONDS < deadline)) || die "registry did not answer 401 on /v2/ within 30 s; see $STATE/registry.log"
      sleep 0.2
    done
  fi

  local out
  out=$(docker login "$REGISTRY" -u "$REGISTRY_USER" --password-stdin <"$PASSWORD_FILE" 2>&1) ||
    die "docker login $REGISTRY failed: $out"
}

# --- 5. SSH client key ---------------------------------------------------------------------

ensure_key() {
  if [[ ! -s $KEY || ! -s $KEY.pub ]]; then
    log "generating the SSH client key ($KEY)"
    rm -f "$KEY" "$KEY.pub"
    ssh-keygen -q -t ed25519 -N '' -C shipit-testbed -f "$KEY"
  fi
  chmod 0600 "$KEY"
}

# --- 6. host image -------------------------------------------------------------------------

# The label an image must carry to be reused: the recipe and the client key baked into it.
# image_label [RECIPE]: the bookworm image's recipe unless told.
image_label() {
  local fp
  fp=$(ssh-keygen -l -f "$KEY.pub" | awk '{ print $2 }')
  printf 'recipe=%s key=%s' "${1:-$IMAGE_RECIPE}" "$fp"
}

# customize_rootfs ROOTFS: turn a debootstrapped tree into a test host.
customize_rootfs() {
  local r=$1
  install -d -m 0700 "$r/root/.ssh"
  install -m 0600 "$KEY.pub" "$r/root/.ssh/authorized_keys"

  install -d "$r/etc/docker"
  printf '%s\n' '{"insecure-registries":["registry.test:5000"],"storage-driver":"vfs"}' >"$r/etc/docker/daemon.json"

  # Two users as real teams have them, logging in with the same key: `deploy`, with
  # passwordless sudo (a sudoers.d line beside Debian's default sudoers, `use_pty` and all),
  # and `nosudo`, whose sudo asks for a password it does not have.
  local user
  for user in deploy nosudo; do
    chroot "$r" useradd --create-home --shell /bin/bash "$user" ||
      die "useradd $user failed in the host root filesystem"
    install -d -m 0700 "$r/home/$user/.ssh"
    install -m 0600 "$KEY.pub" "$r/home/$user/.ssh/authorized_keys"
    chroot "$r" chown -R "$user:$user" "/home/$user/.ssh"
  done
  chroot "$r" usermod -aG sudo nosudo
  printf 'deploy ALL=(ALL) NOPASSWD: ALL\n' >"$r/etc/sudoers.d/deploy"
  chmod 0440 "$r/etc/sudoers.d/deploy"

  # Users whose login shell is not a quiet sh, as real teams have them (passwordless sudo each):
  # `tcshuser` (tcsh refuses a multi-line quoted command), `fishuser` (fish), and `noisy`
  # (bash with a ~/.bashrc that greets on stdout and stderr before Debian's interactive test);
  # each shell's rc file prints, as a forgotten `echo` does.
  local shell
  for user in tcshuser:/usr/bin/tcsh fishuser:/usr/bin/fish noisy:/bin/bash; do
    shell=${user#*:}
    user=${user%%:*}
    chroot "$r" useradd --create-home --shell "$shell" "$user" ||
      die "useradd $user failed in the host root filesystem"
    install -d -m 0700 "$r/home/$user/.ssh"
    install -m 0600 "$KEY.pub" "$r/home/$user/.ssh/authorized_keys"
    printf '%s ALL=(ALL) NOPASSWD: ALL\n' "$user" >"$r/etc/sudoers.d/$user"
    chmod 0440 "$r/etc/sudoers.d/$user"
  done
  # shellcheck disable=SC2016 # expanded by the host's shells, not here
  printf 'echo "Welcome to tcsh on `hostname`"\necho "tcsh rc on stderr" > /dev/stderr\n' >"$r/home/tcshuser/.tcshrc"
  install -d "$r/home/fishuser/.config/fish"
  printf 'echo "Welcome to fish"\necho "fish rc on stderr" >&2\n' >"$r/home/fishuser/.config/fish/config.fish"
  # shellcheck disable=SC2016 # expanded by the host's shells, not here
  { printf 'echo "Welcome to $(hostname)!"\necho "Last deploy: never" >&2\n'; cat "$r/home/noisy/.bashrc"; } >"$r/home/noisy/.bashrc.new"
  mv "$r/home/noisy/.bashrc.new" "$r/home/noisy/.bashrc"
  for user in tcshuser fishuser noisy; do
    chroot "$r" chown -R "$user:$user" "/home/$user"
  done
  grep -q '^Defaults[[:space:]]*use_pty' "$r/etc/sudoers" ||
    die "the host's sudoers lacks Debian's default use_pty"
  customize_boot "$r"
}

# customize_boot ROOTFS: what every test host has: root logs in by key, host keys and
# machine-id made at first boot, sshd, nginx and Docker started at boot, no apt cache.
customize_boot() {
  local r=$1
  install -d "$r/etc/ssh/sshd_config.d"
  printf 'PermitRootLogin prohibit-password\n' >"$r/etc/ssh/sshd_config.d/shipit-testbed.conf"
  # Debian's sshd_config includes sshd_config.d first (first value wins); make sure it does.
  grep -qE '^Include /etc/ssh/sshd_config.d/\*\.conf' "$r/etc/ssh/sshd_config" ||
    sed -i '1i Include /etc/ssh/sshd_config.d/*.conf' "$r/etc/ssh/sshd_config"

  # Each host makes its own host keys at first boot.
  rm -f "$r"/etc/ssh/ssh_host_*
  cat >"$r/etc/systemd/system/ssh-hostkeys.service" <<'EOF'
[Unit]
Description=Generate missing SSH host keys
Before=ssh.service
ConditionPathExists=!/etc/ssh/ssh_host_ed25519_key

[Service]
Type=oneshot
ExecStart=/usr/bin/ssh-keygen -A
RemainAfterExit=yes

[Install]
WantedBy=multi-user.target
RequiredBy=ssh.service
EOF

  # Empty machine-id: systemd makes a fresh one at each boot.
  : >"$r/etc/machine-id"
  rm -f "$r/var/lib/dbus/machine-id"
  ln -s /etc/machine-id "$r/var/lib/dbus/machine-id"

  chroot "$r" systemctl enable ssh-hostkeys.service ssh.service nginx.service docker.service >/dev/null 2>&1 ||
    die "systemctl enable failed in the host root filesystem"
  local unit
  for unit in ssh-hostkeys ssh nginx docker; do
    [[ -L $r/etc/systemd/system/multi-user.target.wants/$unit.service ]] ||
      die "$unit.service is not enabled in the host root filesystem"
  done

  # Smaller image; apt-get update works inside when needed.
  rm -rf "$r"/var/cache/apt/archives/*.deb "$r"/var/lib/apt/lists/*
}

# customize_trixie ROOTFS: turn a debootstrapped trixie tree into a current-engine test host:
# root and `deploy` (passwordless sudo) log in with the testbed key; Docker keeps images in
# containerd's store on the `native` snapshotter; sshd, nginx and Docker start at boot.
customize_trixie() {
  local r=$1
  install -d -m 0700 "$r/root/.ssh"
  install -m 0600 "$KEY.pub" "$r/root/.ssh/authorized_keys"
  install -d "$r/etc/docker"
  printf '%s\n' '{"insecure-registries":["registry.test:5000"],"storage-driver":"native","features":{"containerd-snapshotter":true}}' >"$r/etc/docker/daemon.json"
  # Docker 26 cannot turn IPv6 off on a container's interface inside this container (its
  # /proc/sys is read-only) and then refuses to start any container, unless told to go on.
  install -d "$r/etc/systemd/system/docker.service.d"
  printf '[Service]\nEnvironment=DOCKER_ALLOW_IPV6_ON_IPV4_INTERFACE=1\n' >"$r/etc/systemd/system/docker.service.d/shipit-testbed.conf"
  chroot "$r" useradd --create-home --shell /bin/bash deploy ||
    die "useradd deploy failed in the trixie root filesystem"
  install -d -m 0700 "$r/home/deploy/.ssh"
  install -m 0600 "$KEY.pub" "$r/home/deploy/.ssh/authorized_keys"
  chroot "$r" chown -R deploy:deploy /home/deploy/.ssh
  printf 'deploy ALL=(ALL) NOPASSWD: ALL\n' >"$r/etc/sudoers.d/deploy"
  chmod 0440 "$r/etc/sudoers.d/deploy"
  customize_boot "$r"
}

# build_image IMAGE SUITE INCLUDE LABEL CUSTOMIZE: debootstrap SUITE with INCLUDE (or unpack its
# cached tree), CUSTOMIZE it, import it as IMAGE labelled LABEL.
build_image() {
  local image=$1 suite=$2 include=$3 label=$4 customize=$5 build rootfs mirror t0 base logf
  # The base tree depends on the package list: a changed list makes a new one.
  base=$STATE/cache/rootfs-$suite-$(printf %s "$include" | sha256sum | cut -c1-12).tar
  logf=$STATE/debootstrap.log
  [[ $suite == "$SUITE" ]] || logf=$STATE/debootstrap-$suite.log
  mkdir -p "$STATE/cache/debs"
  build=$(mktemp -d "$STATE/build.XXXXXX")
  CLEANUP+=("$build")
  rootfs=$build/rootfs
  mkdir "$rootfs"
  if [[ -s $base ]]; then
    log "image: unpacking the cached root filesystem ($base)"
    tar -C "$rootfs" --numeric-owner -xpf "$base"
  else
    mirror=$(debian_mirror_for "$suite")
    log "image: debootstrap $suite from $mirror (about 90 s; log $logf)"
    t0=$(now_us)
    if ! debootstrap --variant=minbase --include="$include" --cache-dir="$STATE/cache/debs" \
      "$suite" "$rootfs" "$mirror" </dev/null >"$logf" 2>&1; then
      tail -n 30 "$logf" >&2 || true
      [[ -f $rootfs/debootstrap/debootstrap.log ]] && tail -n 30 "$rootfs/debootstrap/debootstrap.log" >&2
      die "debootstrap failed; see $logf"
    fi
    log "image: debootstrap done in $(since_us "$t0"); caching the root filesystem"
    remove_mounts_below "$rootfs"
    tar -C "$rootfs" --numeric-owner --exclude='./var/cache/apt/archives/*.deb' -cf "$base.tmp" .
    mv -f "$base.tmp" "$base"
  fi
  "$customize" "$rootfs"
  log "image: importing $image"
  tar -C "$rootfs" --numeric-owner -cf - . |
    docker import -c 'CMD ["/sbin/init"]' -c "LABEL shipit.testbed=\"$label\"" - "$image" >/dev/null
  remove_tree "$build"
}

# ensure_one_image IMAGE SUITE INCLUDE RECIPE CUSTOMIZE: IMAGE as build_image makes it, unless
# an image of that recipe and key is there.
ensure_one_image() {
  local image=$1 label have
  label=$(image_label "$4")
  have=$(docker image inspect -f '{{index .Config.Labels "shipit.testbed"}}' "$image" 2>/dev/null) || have=
  if [[ $have == "$label" ]]; then
    return 0
  fi
  if [[ -n $have ]]; then
    log "image: $image was built for another key or recipe ($have); rebuilding"
  fi
  build_image "$image" "$2" "$3" "$label" "$5"
}

ensure_image() {
  ensure_one_image "$IMAGE" "$SUITE" "$INCLUDE" "$IMAGE_RECIPE" customize_rootfs
}

ensure_trixie_image() {
  ((TRIXIE_HOSTS > 0)) || return 0
  ensure_one_image "$TRIXIE_IMAGE" "$TRIXIE_SUITE" "$TRIXIE_INCLUDE" "$TRIXIE_RECIPE" customize_trixie
}

# --- 7. hosts ------------------------------------------------------------------------------

# run_args KEY: the docker run arguments of host KEY (without the image).
run_args() {
  local i=$1
  printf '%s\n' --detach --name "$(host_name "$i")" --hostname "$(host_hostname "$i")" \
    --cap-add SYS_ADMIN --cap-add NET_ADMIN --cap-add MKNOD --cap-add SYS_PTRACE \
    --security-opt seccomp=unconfined --security-opt apparmor=unconfined \
    --cgroupns=host --volume /sys/fs/cgroup:/sys/fs/cgroup:rw \
    --tmpfs /run --tmpfs /run/lock \
    --add-host registry.test:host-gateway \
    --env container=docker --stop-signal SIGRTMIN+3 \
    --publish "127.0.0.1:$(ssh_port "$i"):22" --publish "127.0.0.1:$(http_port "$i"):80"
}

# host_spec KEY IMAGE_ID: what a reusable container of host KEY must have been created with.
host_spec() {
  { run_args "$1" && printf '%s\n' "$2"; } | sha256sum | cut -c1-16
}

create_host() {
  local i=$1 image_id=$2 name args out
  name=$(host_name "$i")
  mapfile -t args < <(run_args "$i")
  docker rm -f "$name" >/dev/null 2>&1 || true
  out=$(docker run "${args[@]}" --label "shipit.testbed.spec=$(host_spec "$i" "$image_id")" \
    "$(host_image "$i")" /sbin/init 2>&1) || die "docker run $name failed: $out"
}

# check_host KEY DEADLINE OUTDIR: until DEADLINE (in $SECONDS time), scan host KEY's key and ask it
# over ssh whether systemd finished booting (running or degraded) and Docker answers. Writes
# OUTDIR/KEY.key (a known_hosts line) on success, OUTDIR/KEY.why (last reason) on failure.
check_host() {
  local i=$1 deadline=$2 out=$3 port why="no answer yet" reply left opts
  port=$(ssh_port "$i")
  while ((SECONDS < deadline)); do
    if ! ssh-keyscan -T 3 -p "$port" -t ed25519 127.0.0.1 >"$out/$i.scan" 2>/dev/null ||
      [[ ! -s $out/$i.scan ]]; then
      why="sshd does not answer on 127.0.0.1:$port"
      sleep 0.5
      continue
    fi
    left=$((deadline - SECONDS))
    ((left > 0)) || break
    mapfile -t opts < <(ssh_opts "$port" "$out/$i.scan")
    # shellcheck disable=SC2016 # expanded on the host, not here
    if reply=$(timeout "$left" ssh "${opts[@]}" root@127.0.0.1 \
      'state=$(systemctl is-system-running --wait 2>/dev/null); echo "systemd=$state";
       if docker info >/dev/null 2>&1; then echo docker=ok; else echo docker=down; fi' \
      </dev/null 2>&1); then
      :
    fi
    case $reply in
    *systemd=running*docker=ok* | *systemd=degraded*docker=ok*)
      mv -f "$out/$i.scan" "$out/$i.key"
      return 0
      ;;
    *systemd=*) why=$(printf '%s' "$reply" | tr '\n' ' ') ;;
    *) why="ssh failed: $(printf '%s' "$reply" | tr '\n' ' ' | cut -c1-200)" ;;
    esac
    sleep 1
  done
  printf '%s\n' "$why" >"$out/$i.why"
  return 1
}

# check_hosts BUDGET OUTDIR KEY...: check_host for every KEY in parallel within BUDGET seconds.
# Prints the numbers of the hosts that failed.
check_hosts() {
  local budget=$1 out=$2 deadline i
  shift 2
  deadline=$((SECONDS + budget))
  local -A pids=()
  for i in "$@"; do
    check_host "$i" "$deadline" "$out" &
    pids[$i]=$!
  done
  for i in "$@"; do
    wait "${pids[$i]}" || printf '%s\n' "$i"
  done
}

ensure_hosts() {
  local n=$1 i name out want info started age probe=$PROBE_BUDGET keys=()
  local reuse=() create=() failed=()
  local -A image_ids=()
  image_ids[$IMAGE]=$(docker image inspect -f '{{.Id}}' "$IMAGE")
  if ((TRIXIE_HOSTS > 0)); then
    image_ids[$TRIXIE_IMAGE]=$(docker image inspect -f '{{.Id}}' "$TRIXIE_IMAGE")
  fi
  out=$(mktemp -d "$STATE/check.XXXXXX")
  CLEANUP+=("$out")

  # Hosts beyond N (and trixie hosts beyond TRIXIE_HOSTS) belong to an earlier, larger testbed.
  while read -r name; do
    [[ -n $name ]] || continue
    i=${name#"$HOST_PREFIX"}
    if ((i < 1 || i > n)); then
      log "removing $name (beyond $n hosts)"
      docker rm -f "$name" >/dev/null
    fi
  done < <(host_containers)
  while read -r name; do
    [[ -n $name ]] || continue
    i=${name#"$TRIXIE_PREFIX"}
    if ((i < 1 || i > TRIXIE_HOSTS)); then
      log "removing $name (beyond $TRIXIE_HOSTS trixie hosts)"
      docker rm -f "$name" >/dev/null
    fi
  done < <(trixie_containers)

  for ((i = 1; i <= n; i++)); do keys+=("$i"); done
  for ((i = 1; i <= TRIXIE_HOSTS; i++)); do keys+=("t$i"); done
  for i in "${keys[@]}"; do
    name=$(host_name "$i")
    want=$(host_spec "$i" "${image_ids[$(host_image "$i")]}")
    info=$(docker inspect -f '{{.State.Running}} {{index .Config.Labels "shipit.testbed.spec"}} {{.State.StartedAt}}' "$name" 2>/dev/null) || info=
    if [[ $info == "true $want "* ]]; then
      reuse+=("$i")
      started=$(date -d "${info##* }" +%s 2>/dev/null) || started=0
      age=$(($(date +%s) - started))
      if ((BOOT_GRACE - age > probe)); then
        probe=$((BOOT_GRACE - age))
      fi
    else
      case $info in
      '') ;;
      true*) log "$name runs another image or spec: recreating" ;;
      *) log "$name is stopped: recreating" ;;
      esac
      create+=("$i")
    fi
  done

  REUSED=0
  if ((${#reuse[@]} > 0)); then
    mapfile -t failed < <(check_hosts "$probe" "$out" "${reuse[@]}")
    for i in "${failed[@]}"; do
      log "$(host_name "$i") is broken ($(cat "$out/$i.why" 2>/dev/null)): recreating"
      rm -f "$out/$i.why"
      create+=("$i")
    done
    REUSED=$((${#reuse[@]} - ${#failed[@]}))
  fi

  CREATED=${#create[@]}
  if ((CREATED > 0)); then
    local names=()
    for i in "${create[@]}"; do names+=("$(host_name "$i")"); done
    log "starting ${names[*]}"
    for i in "${create[@]}"; do
      create_host "$i" "${image_ids[$(host_image "$i")]}"
    done
    mapfile -t failed < <(check_hosts "$BOOT_BUDGET" "$out" "${create[@]}")
    if ((${#failed[@]} > 0)); then
      names=()
      for i in "${failed[@]}"; do
        names+=("$(host_name "$i")")
        log "$(host_name "$i") did not come up within ${BOOT_BUDGET} s: $(cat "$out/$i.why" 2>/dev/null)"
        log "last console lines of $(host_name "$i"):"
        docker logs --tail 15 "$(host_name "$i")" 2>&1 | sed 's/^/    /' >&2 || true
      done
      die "host(s) failed: ${names[*]}"
    fi
  fi

  # 8. known_hosts, rewritten each time: a recreated host has new keys.
  for i in "${keys[@]}"; do
    cat "$out/$i.key"
  done | write_if_changed "$KNOWN_HOSTS" 0644 || true
}

# --- 9. env.sh -----------------------------------------------------------------------------

write_env() {
  local n=$1 i hosts=() ports=() names=()
  for ((i = 1; i <= n; i++)); do
    hosts+=("root@127.0.0.1:$(ssh_port "$i")")
    ports+=("$(http_port "$i")")
    names+=("$(host_name "$i")")
  done
  {
    printf '# Written by testbed/testbed.sh up; source it: . %s\n' "$(sq "$STATE/env.sh")"
    printf 'export SHIPIT_TESTBED_DIR=%s\n' "$(sq "$STATE")"
    printf 'export SHIPIT_TESTBED_HOSTS=%s\n' "$(sq "${hosts[*]}")"
    printf 'export SHIPIT_TESTBED_HTTP_PORTS=%s\n' "$(sq "${ports[*]}")"
    printf 'export SHIPIT_TESTBED_CONTAINERS=%s\n' "$(sq "${names[*]}")"
    hosts=() ports=() names=()
    for ((i = 1; i <= TRIXIE_HOSTS; i++)); do
      hosts+=("root@127.0.0.1:$(ssh_port "t$i")")
      ports+=("$(http_port "t$i")")
      names+=("$(host_name "t$i")")
    done
    # The current-engine hosts (Debian 13, Docker 26 with containerd's image store).
    printf 'export SHIPIT_TESTBED_TRIXIE_HOSTS=%s\n' "$(sq "${hosts[*]}")"
    printf 'export SHIPIT_TESTBED_TRIXIE_HTTP_PORTS=%s\n' "$(sq "${ports[*]}")"
    printf 'export SHIPIT_TESTBED_TRIXIE_CONTAINERS=%s\n' "$(sq "${names[*]}")"
    printf 'export SHIPIT_TESTBED_KEY=%s\n' "$(sq "$KEY")"
    printf 'export SHIPIT_TESTBED_KNOWN_HOSTS=%s\n' "$(sq "$KNOWN_HOSTS")"
    printf 'export SHIPIT_REGISTRY=%s\n' "$(sq "$REGISTRY")"
    printf 'export SHIPIT_REGISTRY_USER=%s\n' "$(sq "$REGISTRY_USER")"
    # shellcheck disable=SC2016 # env.sh reads the password file when sourced
    printf 'SHIPIT_REGISTRY_PASSWORD=$(cat %s)\n' "$(sq "$PASSWORD_FILE")"
    printf 'export SHIPIT_REGISTRY_PASSWORD\n'
  } | write_if_changed "$STATE/env.sh" 0600 || true
}

# --- commands ------------------------------------------------------------------------------

cmd_up() {
  local n=${1:-3} t0
  if [[ ! $n =~ ^[1-9][0-9]?$ ]]; then
    die "N must be a number from 1 to 99, not '$n'"
  fi
  ((EUID == 0)) || die "run as root (installs packages, starts dockerd, edits /etc/hosts)"
  t0=$(now_us)
  lock_state
  timed packages ensure_packages
  timed hosts-file ensure_hosts_entry
  timed dockerd ensure_dockerd
  timed registry ensure_registry
  timed key ensure_key
  timed image ensure_image
  timed trixie-image ensure_trixie_image
  timed hosts ensure_hosts "$n"
  write_env "$n"
  local timings
  printf -v timings '%s, ' "${TIMINGS[@]}"
  printf 'testbed up: %d hosts and %d trixie hosts (%d reused, %d created) in %s [%s]; source %s\n' \
    "$n" "$TRIXIE_HOSTS" "$REUSED" "$CREATED" "$(since_us "$t0")" "${timings%, }" "$STATE/env.sh"
}

cmd_down() {
  local names
  lock_state
  if docker_ok; then
    mapfile -t names < <(host_containers; trixie_containers)
    if ((${#names[@]} > 0)); then
      log "removing ${names[*]}"
      docker rm -f "${names[@]}" >/dev/null
    fi
  else
    log "docker does not answer: no host containers to remove"
  fi
  stop_registry
  rm -f "$STATE/env.sh" "$KNOWN_HOSTS"
  printf 'testbed down: hosts removed, registry stopped (dockerd and images kept)\n'
}

cmd_status() {
  local ok=0 missing names pid code name i info reply opts label
  mapfile -t missing < <(missing_packages)
  if ((${#missing[@]} == 0)); then
    printf 'packages:   ok\n'
  else
    printf 'packages:   missing %s\n' "${missing[*]}"
    ok=1
  fi
  if [[ $(getent ahostsv4 registry.test | awk 'NR == 1 { print $1 }') == 127.0.0.1 ]]; then
    printf 'hosts-file: registry.test -> 127.0.0.1\n'
  else
    printf 'hosts-file: registry.test does not resolve to 127.0.0.1\n'
    ok=1
  fi
  if docker_ok; then
    if pid=$(pid_of "$STATE/dockerd.pid" dockerd); then
      printf 'dockerd:    up (pid %s, started by testbed)\n' "$pid"
    else
      printf 'dockerd:    up (not started by testbed)\n'
    fi
  else
    printf 'dockerd:    down\n'
    ok=1
  fi
  code=$(http_code "http://$REGISTRY/v2/")
  if pid=$(pid_of "$STATE/registry.pid" docker-registry); then
    if [[ -r $PASSWORD_FILE ]] &&
      [[ $(http_code -K - "http://$REGISTRY/v2/" < <(printf 'user = "%s:%s"\n' "$REGISTRY_USER" "$(<"$PASSWORD_FILE")")) == 200 ]]; then
      printf 'registry:   up (pid %s, %s without credentials, 200 with)\n' "$pid" "$code"
    else
      printf 'registry:   running (pid %s) but /v2/ answers %s and login fails\n' "$pid" "$code"
      ok=1
    fi
  else
    printf 'registry:   down (/v2/ answers %s)\n' "$code"
    ok=1
  fi
  if [[ -s $KEY ]]; then printf 'ssh-key:    %s\n' "$KEY"; else
    printf 'ssh-key:    missing\n'
    ok=1
  fi
  local image recipe
  for image in "$IMAGE" "$TRIXIE_IMAGE"; do
    recipe=$IMAGE_RECIPE
    if [[ $image == "$TRIXIE_IMAGE" ]]; then
      ((TRIXIE_HOSTS > 0)) || continue
      recipe=$TRIXIE_RECIPE
    fi
    if docker_ok && label=$(docker image inspect -f '{{index .Config.Labels "shipit.testbed"}}' "$image" 2>/dev/null); then
      if [[ -s $KEY.pub && $label == "$(image_label "$recipe")" ]]; then
        printf 'image:      %s (%s)\n' "$image" "$label"
      else
        printf 'image:      %s is stale (%s): up rebuilds it\n' "$image" "$label"
        ok=1
      fi
    else
      printf 'image:      %s missing\n' "$image"
      ok=1
    fi
  done
  if docker_ok; then
    mapfile -t names < <(host_containers | sort -V)
    ((${#names[@]} > 0)) || {
      printf 'hosts:      none\n'
      ok=1
    }
    if ((TRIXIE_HOSTS > 0)); then
      mapfile -t -O "${#names[@]}" names < <(trixie_containers | sort -V)
      [[ ${names[*]} == *"$TRIXIE_PREFIX"* ]] || {
        printf 'trixie:     no host\n'
        ok=1
      }
    fi
    for name in "${names[@]}"; do
      case $name in
      "$TRIXIE_PREFIX"*) i=t${name#"$TRIXIE_PREFIX"} ;;
      *) i=${name#"$HOST_PREFIX"} ;;
      esac
      info=$(docker inspect -f '{{.State.Status}}' "$name" 2>/dev/null) || info=gone
      if [[ $info != running ]]; then
        printf '%s: %s\n' "$name" "$info"
        ok=1
        continue
      fi
      mapfile -t opts < <(ssh_opts "$(ssh_port "$i")" "$KNOWN_HOSTS")
      # shellcheck disable=SC2016 # expanded on the host, not here
      reply=$(timeout 10 ssh "${opts[@]}" root@127.0.0.1 \
        'printf "systemd %s, " "$(systemctl is-system-running)"; printf "nginx %s, docker %s" "$(systemctl is-active nginx)" "$(systemctl is-active docker)"' \
        </dev/null 2>&1) || true
      printf '%s: running, ssh 127.0.0.1:%s, http 127.0.0.1:%s: %s\n' "$name" "$(ssh_port "$i")" \
        "$(http_port "$i")" "$(printf '%s' "$reply" | tr '\n' ' ' | cut -c1-160)"
      [[ $reply == *"nginx active, docker active"* ]] || ok=1
    done
  fi
  if [[ -f $STATE/env.sh ]]; then printf 'env:        %s\n' "$STATE/env.sh"; else
    printf 'env:        missing (run up)\n'
    ok=1
  fi
  return "$ok"
}

cmd_ssh() {
  local i=${1:-} opts
  [[ $i =~ ^t?[1-9][0-9]*$ ]] || die "usage: testbed.sh ssh N|tN [cmd...]"
  shift
  [[ -s $KNOWN_HOSTS ]] || die "$KNOWN_HOSTS is missing: run testbed/testbed.sh up"
  mapfile -t opts < <(ssh_opts "$(ssh_port "$i")" "$KNOWN_HOSTS")
  if (($# == 0)) && [[ -t 0 ]]; then
    exec ssh -t "${opts[@]}" root@127.0.0.1
  fi
  exec ssh "${opts[@]}" root@127.0.0.1 "$@"
}

main() {
  local cmd=${1:-}
  (($# == 0)) || shift
  case $cmd in
  up) cmd_up "$@" ;;
  down) cmd_down ;;
  status) cmd_status ;;
  ssh) cmd_ssh "$@" ;;
  -h | --help | help) usage ;;
  *)
    usage >&2
    exit 2
    ;;
  esac
}

main "$@"

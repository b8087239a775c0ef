#!/usr/bin/env bash
# bench/provision.sh [N]: `shipit provision` against the same work done by a well-tuned Ansible
# playbook (bench/ansible/provision.yml), on the same N testbed hosts (default 3), in one run.
#
# For each tool, from clean (both apps' files wiped, as tests/support/mod.rs `Testbed::wipe`
# does) and with no SSH master open: the first run; the re-run right after it (shipit: must
# print `0 changes, nothing reloaded`; Ansible: changed=0 on every host), which may use the
# SSH masters the first run left open (Ansible's ControlPersist=60s; shipit's own, if this
# version keeps them); and, on the side, a re-run with every master closed first. 3
# repetitions, medians of wall-clock times. After each first run every host's nginx must
# serve the new site. After an untimed warm-up of both, both sites must answer side by side
# and both apps' files must be the same, names aside (contents, modes, owners: the Jinja2
# copies must render what shipit's templates do).
#
# Prints a table and the ratios, writes the figures to $SHIPIT_TESTBED_DIR/bench-provision.json.
# Leaves the testbed up (N hosts) and both apps' files wiped.
#
# Needs root (the testbed does), python3 on the testbed hosts (Ansible does), and PyPI the first
# time (ansible-core goes into a venv in $SHIPIT_TESTBED_DIR/ansible-venv).
set -euo pipefail

readonly REPS=3
readonly SHIPIT_APP=bench-shipit
readonly ANSIBLE_APP=bench-ansible
readonly ENV_NAME=bench
# The files `shipit provision` manages on a host (src/templates.rs `render_all`): a first run
# from clean changes all of them. The playbook and the files compared below list the same.
readonly FILES_PER_HOST=5

ROOT=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")/.." && pwd)
readonly ROOT

log() { printf '%s bench: %s\n' "$(date +%T)" "$*" >&2; }
die() {
  log "error: $*"
  exit 1
}

N=${1:-3}
[[ $N =~ ^[1-9][0-9]?$ ]] || die "N must be a number from 1 to 99, not '$N'"
(($# <= 1)) || die "usage: bash bench/provision.sh [N]"

WORK=''
# close_masters: end the SSH masters either tool left running (Ansible's ControlPersist under
# $WORK/cp; shipit's, when it keeps them between runs, under its XDG_CACHE_HOME $WORK/xdg).
close_masters() {
  local sock
  while IFS= read -r -d '' sock; do
    ssh -o ControlPath="$sock" -O exit placeholder >/dev/null 2>&1 || true
  done < <(find "$WORK/cp" "$WORK/xdg" -type s -print0 2>/dev/null)
}
# open_masters: how many master sockets are open.
open_masters() { find "$WORK/cp" "$WORK/xdg" -type s 2>/dev/null | wc -l; }
cleanup() {
  local rc=$?
  [[ -n $WORK ]] || return 0
  close_masters
  if ((rc == 0)); then
    rm -rf -- "$WORK"
  else
    log "logs of the runs kept in $WORK"
  fi
}
trap cleanup EXIT

now_ns() { date +%s%N; }

# secs NS: nanoseconds as seconds with 3 decimals.
secs() { awk -v ns="$1" 'BEGIN { printf "%.3f", ns / 1e9 }'; }

# median X...: the median of numbers.
median() {
  printf '%s\n' "$@" | sort -g | awk '{ v[NR] = $1 } END { if (NR % 2) print v[(NR + 1) / 2]; else printf "%.3f\n", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}

# ratio A B: A / B with one decimal.
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.1f", a / b; else print "inf" }'; }

# json_list X...: a JSON array of numbers.
json_list() {
  local IFS=,
  printf '[%s]' "$*"
}

# --- 1. testbed and shipit -----------------------------------------------------------------

bash "$ROOT/testbed/testbed.sh" up "$N"
# shellcheck source=/dev/null
. "${SHIPIT_TESTBED_DIR:-/var/lib/shipit-testbed}/env.sh"
read -r -a HOSTS <<<"$SHIPIT_TESTBED_HOSTS"
read -r -a HTTP_PORTS <<<"$SHIPIT_TESTBED_HTTP_PORTS"
((${#HOSTS[@]} == N && ${#HTTP_PORTS[@]} == N)) ||
  die "env.sh lists ${#HOSTS[@]} hosts, expected $N"

log "cargo build --release --bin shipit"
(cd "$ROOT" && cargo build --release --bin shipit)
SHIPIT=${CARGO_TARGET_DIR:-$ROOT/target}/release/shipit
[[ $SHIPIT == /* ]] || SHIPIT=$ROOT/$SHIPIT
[[ -x $SHIPIT ]] || die "$SHIPIT is missing after the build"
# What was measured: the commit, and whether the build had uncommitted changes.
SHIPIT_REV=$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null) || SHIPIT_REV=unknown
if [[ -n $(git -C "$ROOT" status --porcelain -- src templates Cargo.toml Cargo.lock 2>/dev/null) ]]; then
  SHIPIT_REV+=" with uncommitted changes"
fi
readonly SHIPIT_REV

WORK=$(mktemp -d /tmp/shipit-bench.XXXXXX)

# The playbook's Jinja2 templates are made from shipit's own Tera templates at each run, so
# they cannot drift: the only differences are Tera's `self::` macro calls and its named
# `endmacro NAME`.
for t in nginx.conf app.service logrotate; do
  # `environment` is an Ansible keyword: the playbook calls it env_name.
  sed -e 's/self:://g' -e 's/endmacro [a-z_]*/endmacro/' -e 's/{{ environment }}/{{ env_name }}/g' \
    "$ROOT/templates/$t.tera" \
    >"$ROOT/bench/ansible/templates/$t.j2"
done

# host_port I: the ssh port of host I (0-based), from root@127.0.0.1:PORT.
host_port() { printf '%s' "${HOSTS[$1]##*:}"; }

# on_host I CMD: run CMD on host I with the system ssh client (independent of both tools).
on_host() {
  local dest=${HOSTS[$1]}
  ssh -i "$SHIPIT_TESTBED_KEY" -o IdentitiesOnly=yes -o BatchMode=yes \
    -o StrictHostKeyChecking=yes -o "UserKnownHostsFile=$SHIPIT_TESTBED_KNOWN_HOSTS" \
    -o ConnectTimeout=5 -o LogLevel=ERROR -p "${dest##*:}" "${dest%:*}" "$2" </dev/null
}

# on_all CMD: run CMD on every host in parallel; fails when any host fails (output in $WORK).
on_all() {
  local i rc=0 pids=()
  for ((i = 0; i < N; i++)); do
    on_host "$i" "$1" >"$WORK/on_all.$i" 2>&1 &
    pids+=("$!")
  done
  for ((i = 0; i < N; i++)); do
    if ! wait "${pids[$i]}"; then
      log "${HOSTS[$i]}: $(tr '\n' ' ' <"$WORK/on_all.$i" | cut -c1-300)"
      rc=1
    fi
  done
  return "$rc"
}

# Ansible runs its modules with the hosts' Python, standard library included (python3-minimal
# is not enough: its modules import shutil).
if ! on_all 'python3 -c "import shutil, tempfile, json" 2>&1'; then
  die "the testbed hosts above lack python3 with its standard library, which Ansible needs: add the Debian package python3 to the host image (INCLUDE in testbed/testbed.sh)"
fi

# --- 2. ansible-core -----------------------------------------------------------------------

VENV=$SHIPIT_TESTBED_DIR/ansible-venv
if [[ ! -x $VENV/bin/ansible-playbook || ! -e $VENV/.bench-complete ]]; then
  if ! dpkg -s python3-venv 2>/dev/null | grep -q '^Status: install ok installed'; then
    log "installing python3-venv"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv </dev/null >&2 ||
      die "apt-get install python3-venv failed"
  fi
  log "installing ansible-core from PyPI into $VENV"
  rm -rf -- "$VENV"
  /usr/bin/python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q ansible-core </dev/null >&2 || die "pip install ansible-core failed"
  touch "$VENV/.bench-complete"
fi
ANSIBLE_CORE=$("$VENV/bin/python" -c 'import ansible.release; print(ansible.release.__version__)')
readonly ANSIBLE_CORE
printf 'ansible-core %s (Python %s on the controller, %s on the hosts)\n' "$ANSIBLE_CORE" \
  "$("$VENV/bin/python" -c 'import platform; print(platform.python_version())')" \
  "$(on_host 0 'python3 -c "import platform; print(platform.python_version())"')"

# --- 3. shipit's app -----------------------------------------------------------------------

APP_DIR=$WORK/app
mkdir -p "$APP_DIR/environments"
cat >"$APP_DIR/shipit.toml" <<EOF
app = "$SHIPIT_APP"
image = "$SHIPIT_REGISTRY/bench/$SHIPIT_APP"
version = "1.0.0"

[registry]
server = "$SHIPIT_REGISTRY"
username = "$SHIPIT_REGISTRY_USER"
password_env = "SHIPIT_REGISTRY_PASSWORD"

[container]
port = 3000
memory_max = "256M"
cpu_quota = "50%"

[health]
path = "/health"
expect_json = { status = "healthy" }
timeout = "20s"

# Ports of its own (the demo's app holds the defaults, 3001 and 3002); the playbook's too.
[ports]
blue = 5701
green = 5702
EOF
{
  printf 'domain = "%s.test"\nhosts = [' "$SHIPIT_APP"
  for ((i = 0; i < N; i++)); do
    printf '%s"%s"' "$([[ $i == 0 ]] || printf ', ')" "${HOSTS[$i]}"
  done
  printf ']\n\n[ssh]\nidentity = "%s"\nknown_hosts_file = "%s"\nconnect_timeout = "5s"\n' \
    "$SHIPIT_TESTBED_KEY" "$SHIPIT_TESTBED_KNOWN_HOSTS"
} >"$APP_DIR/environments/$ENV_NAME.toml"

# --- 4. Ansible's inventory ----------------------------------------------------------------

INVENTORY=$WORK/inventory.ini
{
  printf '[testbed]\n'
  for ((i = 0; i < N; i++)); do
    printf 'th%d ansible_host=127.0.0.1 ansible_port=%s\n' $((i + 1)) "$(host_port "$i")"
  done
  printf '\n[testbed:vars]\nansible_user=root\nansible_ssh_private_key_file=%s\n' "$SHIPIT_TESTBED_KEY"
  printf "ansible_ssh_common_args='-o UserKnownHostsFile=%s -o StrictHostKeyChecking=yes'\n" \
    "$SHIPIT_TESTBED_KNOWN_HOSTS"
} >"$INVENTORY"
mkdir -p "$WORK/cp" "$WORK/xdg" "$WORK/ansible-tmp"
export ANSIBLE_CONFIG=$ROOT/bench/ansible/ansible.cfg
export ANSIBLE_SSH_CONTROL_PATH_DIR=$WORK/cp
export ANSIBLE_LOCAL_TEMP=$WORK/ansible-tmp
export ANSIBLE_NOCOLOR=1
export SHIPIT_REGISTRY SHIPIT_REGISTRY_USER SHIPIT_REGISTRY_PASSWORD

# --- 5. measurements -----------------------------------------------------------------------

# wipe: remove everything either app may have put on the hosts (Testbed::wipe), reload nginx.
wipe() {
  local app script=''
  for app in "$SHIPIT_APP" "$ANSIBLE_APP"; do
    local key=${app}_$ENV_NAME
    script+="systemctl stop '$key@blue' '$key@green' 2>/dev/null; \
rm -rf /etc/nginx/conf.d/shipit-$key.conf /etc/nginx/conf.d/.shipit-$key.conf.* \
/etc/systemd/system/$key@.service /etc/systemd/system/.$key@.service.* \
/etc/logrotate.d/shipit-$key /etc/logrotate.d/.shipit-$key.* \
/etc/shipit/$app /var/log/shipit/$app /var/lib/shipit/$app || exit 1; "
  done
  script+='systemctl daemon-reload && nginx -t -q && systemctl reload-or-restart nginx'
  on_all "$script" || die "wiping the hosts failed"
}

# check_site DOMAIN: every host's nginx answers for DOMAIN with the site's headers (after a
# reload nginx's new workers take a moment: up to 5 s).
check_site() {
  local domain=$1 i try headers
  for ((i = 0; i < N; i++)); do
    for ((try = 0; try < 50; try++)); do
      headers=$(curl -sS -o /dev/null -D - --max-time 5 -H "Host: $domain" \
        "http://127.0.0.1:${HTTP_PORTS[$i]}/" 2>&1) || true
      [[ $headers == *X-Frame-Options:* ]] && break
      sleep 0.1
    done
    [[ $headers == *X-Frame-Options:* ]] ||
      die "127.0.0.1:${HTTP_PORTS[$i]} does not serve $domain (no X-Frame-Options): $(printf '%s' "$headers" | head -3 | tr '\r\n' '  ')"
  done
}

LAST_NS=0
# timed LOG CMD...: run CMD (output to LOG), its wall-clock time in LAST_NS; fails with CMD.
timed() {
  local out=$1 t0 t1 rc=0
  shift
  t0=$(now_ns)
  "$@" >"$out" 2>&1 || rc=$?
  t1=$(now_ns)
  LAST_NS=$((t1 - t0))
  if ((rc != 0)); then
    tail -n 30 "$out" >&2
    die "$* failed (exit $rc); output above, in $out"
  fi
}

shipit_provision() { (cd "$APP_DIR" && XDG_CACHE_HOME=$WORK/xdg "$SHIPIT" provision "$ENV_NAME"); }
ansible_provision() {
  "$VENV/bin/ansible-playbook" --forks "$N" -i "$INVENTORY" "$ROOT/bench/ansible/provision.yml"
}

# recap LOG: the PLAY RECAP of an ansible-playbook run, as "host changed failed unreachable".
recap() {
  awk '/^PLAY RECAP/ { on = 1; next }
       on && / : ok=/ { c = f = u = ""
         for (i = 1; i <= NF; i++) {
           if ($i ~ /^changed=/) c = substr($i, 9)
           if ($i ~ /^failed=/) f = substr($i, 8)
           if ($i ~ /^unreachable=/) u = substr($i, 13)
         }
         print $1, c, f, u }' "$1"
}

# check_recap LOG first|rerun: every host is in the recap, none failed; a first run changed
# something on every host, a re-run nothing anywhere.
check_recap() {
  local log=$1 kind=$2 host changed failed unreachable seen=0
  while read -r host changed failed unreachable; do
    seen=$((seen + 1))
    ((failed == 0 && unreachable == 0)) || die "ansible: $host failed ($failed) or was unreachable ($unreachable); see $log"
    if [[ $kind == first ]]; then
      ((changed > 0)) || die "ansible first run: $host reports changed=0; see $log"
    else
      ((changed == 0)) || die "ansible re-run: $host reports changed=$changed, not 0; see $log"
    fi
  done < <(recap "$log")
  ((seen == N)) || die "ansible: the recap lists $seen hosts, expected $N; see $log"
}

# Untimed warm-up: the page cache holds both tools, and every host has its Docker login (the
# wipe, like Testbed::wipe, leaves it: the timed runs find it and skip the login alike).
log "warm-up (untimed)"
wipe
timed "$WORK/warmup-shipit.log" shipit_provision
timed "$WORK/warmup-ansible.log" ansible_provision
close_masters

# nginx_var APP: the prefix of the site's nginx variables (src/layout.rs `nginx_var`).
nginx_var() { printf 'shipit_%s' "$(printf '%s' "$1_$ENV_NAME" | sha256sum | cut -c1-8)"; }

# Both apps side by side after the warm-up: both sites answer, and both tools installed the
# same files with the same modes and owners, names aside (this catches a Jinja2 copy that fell
# out of step with shipit's templates before anything is measured).
log "checking that both apps coexist and that both tools installed the same files"
check_site "$SHIPIT_APP.test"
check_site "$ANSIBLE_APP.test"
# shellcheck disable=SC2016 # expanded on the host
files_of='app=$1 env=$2 key=$1_$2
for f in /etc/shipit/$app/$env/upstream.conf /etc/nginx/conf.d/shipit-$key.conf \
  /etc/systemd/system/$key@.service /etc/logrotate.d/shipit-$key /etc/shipit/$app/$env/verify.conf; do
  printf "== %s %s\n" "$f" "$(stat -c "%a %U:%G" "$f")"; sed "s/\"[0-9a-f]\{32\}\" 1;/\"TOKEN\" 1;/" "$f"
done
for d in /etc/shipit/$app/$env /var/log/shipit/$app/$env /var/lib/shipit/$app/$env; do
  printf "== %s %s\n" "$d" "$(stat -c "%a %U:%G %F" "$d")"
done'
for ((i = 0; i < N; i++)); do
  on_host "$i" "sh -c '$files_of' sh $SHIPIT_APP $ENV_NAME" >"$WORK/files.shipit.$i" ||
    die "reading $SHIPIT_APP's files on ${HOSTS[$i]} failed"
  on_host "$i" "sh -c '$files_of' sh $ANSIBLE_APP $ENV_NAME" |
    sed -e "s/$ANSIBLE_APP/$SHIPIT_APP/g" -e "s/${ANSIBLE_APP//-/_}/${SHIPIT_APP//-/_}/g" \
      -e "s/$(nginx_var "$ANSIBLE_APP")/$(nginx_var "$SHIPIT_APP")/g" \
      -e "s/shipit_${#ANSIBLE_APP}_/shipit_${#SHIPIT_APP}_/g" \
      >"$WORK/files.ansible.$i" || die "reading $ANSIBLE_APP's files on ${HOSTS[$i]} failed"
  if ! diff -u "$WORK/files.shipit.$i" "$WORK/files.ansible.$i" >"$WORK/files.diff" 2>&1; then
    cat "$WORK/files.diff" >&2
    die "${HOSTS[$i]}: the files Ansible installed differ from shipit's (diff above)"
  fi
done

# check_shipit LOG first|rerun: a first run changed every managed file on every host, a re-run
# nothing.
check_shipit() {
  if [[ $2 == first ]]; then
    grep -Eq "Provisioned $N hosts? in [0-9.]+s: $((FILES_PER_HOST * N)) changes" "$1" ||
      die "shipit's first run did not change $FILES_PER_HOST files on each host: $(tail -n 3 "$1")"
  else
    grep -q '0 changes, nothing reloaded' "$1" ||
      die "shipit's re-run changed something: $(tail -n 3 "$1")"
  fi
}
check_ansible() { check_recap "$@"; }

# measure TOOL APP REP: from clean and without SSH masters, the first run; then the re-run
# right after it (with the masters the first run left open, when the tool keeps them: Ansible
# does for 60 s); then a re-run without masters. Appends the times to TOOL_first, TOOL_rerun
# and TOOL_cold.
declare -A KEPT_MASTERS=()
shipit_first=() shipit_rerun=() shipit_cold=() ansible_first=() ansible_rerun=() ansible_cold=()
measure() {
  local tool=$1 app=$2 rep=$3
  local -n first=${tool}_first rerun=${tool}_rerun cold=${tool}_cold
  wipe
  close_masters
  timed "$WORK/$tool-first.$rep.log" "${tool}_provision"
  first+=("$(secs "$LAST_NS")")
  "check_$tool" "$WORK/$tool-first.$rep.log" first
  check_site "$app.test"
  KEPT_MASTERS[$tool]=$(open_masters)
  timed "$WORK/$tool-rerun.$rep.log" "${tool}_provision"
  rerun+=("$(secs "$LAST_NS")")
  "check_$tool" "$WORK/$tool-rerun.$rep.log" rerun
  close_masters
  timed "$WORK/$tool-cold.$rep.log" "${tool}_provision"
  cold+=("$(secs "$LAST_NS")")
  "check_$tool" "$WORK/$tool-cold.$rep.log" rerun
  close_masters
}

for ((rep = 1; rep <= REPS; rep++)); do
  log "repetition $rep of $REPS"
  measure shipit "$SHIPIT_APP" "$rep"
  measure ansible "$ANSIBLE_APP" "$rep"
  log "first run, re-run, re-run without masters: shipit ${shipit_first[-1]}s ${shipit_rerun[-1]}s ${shipit_cold[-1]}s; ansible ${ansible_first[-1]}s ${ansible_rerun[-1]}s ${ansible_cold[-1]}s"
done

# --- 6. results ----------------------------------------------------------------------------

log "wiping both apps"
wipe

S1=$(median "${shipit_first[@]}") S2=$(median "${shipit_rerun[@]}") S3=$(median "${shipit_cold[@]}")
A1=$(median "${ansible_first[@]}") A2=$(median "${ansible_rerun[@]}") A3=$(median "${ansible_cold[@]}")
R1=$(ratio "$A1" "$S1") R2=$(ratio "$A2" "$S2") R3=$(ratio "$A3" "$S3")
# kept TOOL yes|no or true|false: whether TOOL left masters open for its re-run.
kept() {
  if ((KEPT_MASTERS[$1] > 0)); then
    [[ $2 == json ]] && printf 'true' || printf 'yes'
  else
    [[ $2 == json ]] && printf 'false' || printf 'no'
  fi
}

printf '\nshipit provision (%s) vs ansible-core %s, %d hosts, median of %d (wall-clock, s)\n\n' \
  "$SHIPIT_REV" "$ANSIBLE_CORE" "$N" "$REPS"
printf '%-8s %10s %8s   %s\n' tool 'first run' 're-run' 're-run opening new SSH connections' \
  shipit "$S1" "$S2" "$S3" ansible "$A1" "$A2" "$A3"
printf '\nshipit is %sx faster on the first run, %sx on the re-run\n' "$R1" "$R2"
printf '(%sx on a re-run that opens new SSH connections)\n' "$R3"
printf 'SSH masters left open by the first run for the re-run: shipit %s, ansible %s\n' \
  "$(kept shipit text)" "$(kept ansible text)"
printf 'runs: shipit %s | %s | %s; ansible %s | %s | %s\n' "${shipit_first[*]}" \
  "${shipit_rerun[*]}" "${shipit_cold[*]}" "${ansible_first[*]}" "${ansible_rerun[*]}" \
  "${ansible_cold[*]}"

JSON=$SHIPIT_TESTBED_DIR/bench-provision.json
cat >"$JSON.tmp" <<EOF
{
  "date": "$(date -u +%Y-%m-%dT%H:%M:%SZ)",
  "hosts": $N,
  "repetitions": $REPS,
  "shipit_revision": "$SHIPIT_REV",
  "ansible_core": "$ANSIBLE_CORE",
  "shipit": {
    "first_run_s": $S1,
    "rerun_s": $S2,
    "rerun_new_connections_s": $S3,
    "kept_masters_for_rerun": $(kept shipit json),
    "runs_s": {
      "first_run": $(json_list "${shipit_first[@]}"),
      "rerun": $(json_list "${shipit_rerun[@]}"),
      "rerun_new_connections": $(json_list "${shipit_cold[@]}")
    }
  },
  "ansible": {
    "first_run_s": $A1,
    "rerun_s": $A2,
    "rerun_new_connections_s": $A3,
    "kept_masters_for_rerun": $(kept ansible json),
    "runs_s": {
      "first_run": $(json_list "${ansible_first[@]}"),
      "rerun": $(json_list "${ansible_rerun[@]}"),
      "rerun_new_connections": $(json_list "${ansible_cold[@]}")
    }
  },
  "ansible_over_shipit": {
    "first_run": $R1,
    "rerun": $R2,
    "rerun_new_connections": $R3
  }
}
EOF
mv -f "$JSON.tmp" "$JSON"
printf 'figures: %s\n' "$JSON"

//! The shell scripts shipit runs on hosts. Constant text only: arguments arrive as `$1`...
//!
//! Each script is POSIX `sh`, exits non-zero on failure with the reason on stderr, and leaves
//! no half-written file behind: files are written beside their target and renamed.

/// Print each file named in `$@` framed for `crate::provision::observe::parse`:
/// `F <mode> <owner>:<group> <size>\n<bytes>` or `N\n` when absent, and `D\n`/`N\n` for a
/// directory given as `dir:PATH`. Then the docker client config, framed the same way.
pub const OBSERVE: &str = r#"
emit() {
  if [ -f "$1" ]; then
    printf 'F %s %s\n' "$(stat -c '%a %U:%G' -- "$1")" "$(wc -c < "$1")" && cat -- "$1" || exit 1
  else
    printf 'N\n'
  fi
}
for f; do
  case $f in
    dir:*) if [ -d "${f#dir:}" ]; then printf 'D\n'; else printf 'N\n'; fi ;;
    *) emit "$f" ;;
  esac
done
emit "${DOCKER_CONFIG:-$HOME/.docker}/config.json"
"#;

/// Write stdin to `$1` (a staging path), then set mode `$2` and owner `$3`; check that `$4`
/// bytes arrived (a full disk truncates silently otherwise).
pub const STAGE: &str = r#"
set -e
umask 077
mkdir -p -- "$(dirname -- "$1")"
rm -f -- "$1"
cat > "$1"
got=$(wc -c < "$1")
if [ "$got" != "$4" ]; then
  rm -f -- "$1"
  echo "shipit: wrote $got of $4 bytes to $1 (disk full?)" >&2
  exit 1
fi
chmod "$2" -- "$1"
chown "$3" -- "$1"
"#;

/// Create directories: `$@` is a list of `MODE PATH` pairs.
pub const MKDIRS: &str = r#"
set -e
while [ "$#" -ge 2 ]; do
  install -d -m "$1" -- "$2"
  shift 2
done
"#;

/// Validate staged candidates before anything is installed: `$@` is a list of
/// `KIND STAGED FINAL` triples, KIND one of `nginx`, `systemd`, `logrotate`. Prints, on
/// failure, `shipit-refused FINAL VALIDATOR` on the first line of stderr, then its output.
pub const VALIDATE: &str = r#"
work=$(mktemp -d) || exit 1
trap 'rm -rf -- "$work"' EXIT
while [ "$#" -ge 3 ]; do
  kind=$1 staged=$2 final=$3
  shift 3
  case $kind in
    nginx)
      {
        printf 'pid %s/nginx.pid;\nerror_log stderr;\n' "$work"
        printf 'include /etc/nginx/modules-enabled/*.conf;\nevents {}\n'
        printf 'http {\ninclude /etc/nginx/mime.types;\ninclude %s;\n}\n' "$staged"
      } > "$work/nginx.conf"
      validator="nginx -t"
      out=$(nginx -t -q -c "$work/nginx.conf" 2>&1) ;;
    systemd)
      name=$(basename -- "$final")
      mkdir -p -- "$work/units"
      cp -- "$staged" "$work/units/$name"
      validator="systemd-analyze verify"
      case $name in
        *@.service) inst="${name%@.service}@blue.service"; cp -- "$staged" "$work/units/$inst" ;;
        *) inst=$name ;;
      esac
      out=$(cd "$work/units" && systemd-analyze verify --man=no -- "./$inst" 2>&1) ;;
    logrotate)
      validator="logrotate -d"
      out=$(logrotate -d -- "$staged" 2>&1)
      status=$?
      if [ "$status" -eq 0 ] && printf '%s\n' "$out" | grep -q '^error:'; then status=1; fi
      if [ "$status" -ne 0 ]; then false; else true; fi ;;
    *) echo "shipit: unknown validator $kind" >&2; exit 2 ;;
  esac
  if [ "$?" -ne 0 ]; then
    printf 'shipit-refused %s %s\n%s\n' "$final" "$validator" "$out" >&2
    exit 3
  fi
done
"#;

/// Remove staged files `$@` (after a refused validation elsewhere in the fleet).
pub const DISCARD: &str = r#"rm -f -- "$@""#;

/// Install staged files and reload what changed, all or nothing.
/// `$1` = 1 to run a full `nginx -t` after the swap, `$2` = 1 for `daemon-reload`,
/// `$3` = 1 to reload nginx; then `STAGED FINAL BACKUP` triples, STAGED `-` to remove FINAL.
/// Every previous file is kept as BACKUP (a hard link, so the swap stays atomic); on a failed
/// full check the previous files are put back and nothing is reloaded.
pub const COMMIT: &str = r#"
check=$1 daemon=$2 reload=$3
shift 3
backup() {
  while [ "$#" -ge 3 ]; do
    if [ -e "$2" ]; then ln -f -- "$2" "$3" || return 1; else rm -f -- "$3" || return 1; fi
    shift 3
  done
}
swap() {
  while [ "$#" -ge 3 ]; do
    if [ "$1" = - ]; then rm -f -- "$2" || return 1; else mv -f -- "$1" "$2" || return 1; fi
    shift 3
  done
}
restore() {
  while [ "$#" -ge 3 ]; do
    if [ -e "$3" ]; then mv -f -- "$3" "$2"; else rm -f -- "$2"; fi
    if [ "$1" != - ]; then rm -f -- "$1"; fi
    shift 3
  done
}
backup "$@" || exit 1
if ! swap "$@"; then restore "$@"; exit 1; fi
if [ "$check" = 1 ]; then
  if ! out=$(nginx -t -q 2>&1); then
    restore "$@"
    printf 'shipit-refused nginx nginx -t\n%s\n' "$out" >&2
    exit 3
  fi
fi
# systemd and nginx reload side by side.
pid=
if [ "$daemon" = 1 ]; then systemctl daemon-reload & pid=$!; fi
if [ "$reload" = 1 ]; then systemctl reload-or-restart nginx || { [ -z "$pid" ] || wait "$pid"; exit 1; }; fi
if [ -n "$pid" ]; then wait "$pid" || exit 1; fi
"#;

/// What a host holds of an app in the earlier layout (keyed by the app alone): `$1` its
/// upstream include, `$2` nginx site, `$3`/`$4` blue/green app env files, `$5`/`$6` blue/green
/// units, `$7` lock dir, `$8` the new layout's upstream include. One `KEY VALUE` line each;
/// from the app env files only their `SHIPIT_ENVIRONMENT` leaves the host.
pub const LEGACY_STATE: &str = r#"
if [ -f "$1" ]; then printf 'upstream %s\n' "$(base64 -w0 < "$1")"; else echo 'upstream -'; fi
env=$(sed -n 's/^SHIPIT_ENVIRONMENT=//p' "$3" "$4" 2>/dev/null | head -n 1)
printf 'environment %s\n' "${env:--}"
domain=$(sed -n 's/^[[:space:]]*server_name[[:space:]]*\([^;]*\);.*/\1/p' "$2" 2>/dev/null | head -n 1)
printf 'domain %s\n' "${domain:--}"
for u in "$5" "$6"; do
  a=$(systemctl is-active -- "$u" 2>/dev/null | head -n 1)
  e=$(systemctl is-enabled -- "$u" 2>/dev/null | head -n 1)
  printf 'unit %s %s\n' "${a:-unknown}" "${e:-absent}"
done
if [ -d "$7" ]; then echo 'lock held'; else echo 'lock free'; fi
if [ -f "$8" ]; then echo 'moved yes'; else echo 'moved no'; fi
"#;

/// Copy the earlier layout's state into the new one: `SOURCE TARGET` pairs, each copied (mode
/// and owner kept, written beside the target and renamed) only when the source exists and the
/// target does not.
pub const COPY_MISSING: &str = r#"
set -e
while [ "$#" -ge 2 ]; do
  if [ -e "$1" ] && [ ! -e "$2" ]; then
    mkdir -p -- "$(dirname -- "$2")"
    cp -p -- "$1" "$2.shipit-tmp~"
    mv -f -- "$2.shipit-tmp~" "$2"
  fi
  shift 2
done
"#;

/// Remove what is left of the earlier layout once none of its units runs: `$1` = 1 to
/// `daemon-reload` afterwards, then the paths (files, or the lock directory).
pub const REMOVE_LEGACY: &str = r#"
reload=$1
shift
rm -rf -- "$@" || exit 1
if [ "$reload" = 1 ]; then systemctl daemon-reload; fi
"#;

/// `docker login` with the password on stdin: `$1` user, `$2` registry.
pub const DOCKER_LOGIN: &str = r#"docker login --username "$1" --password-stdin "$2" > /dev/null"#;

/// Print each argument on its own line (used to prove quoting over SSH).
pub const ECHO_ARGS: &str = r#"for a; do printf '%s\0' "$a"; done"#;

/// A shell function printing a host's deploy state: `$1` upstream include, `$2`/`$3`
/// blue/green unit env files, `$4`/`$5` blue/green unit names, `$6`/`$7` blue/green app env
/// files, `$8` lock dir, `$9` history file, `${10}` = 1 to compare each colour's settings with
/// the ones on stdin, `${11}`/`${12}` the blue/green units of the earlier layout (keyed by the
/// app alone), `${13}` its upstream include. One `KEY VALUE` line each, file contents
/// base64-encoded (`-` when absent). The comparison happens here, on the host: only `same` or
/// `differs` leaves it, never the settings nor anything derived from them.
macro_rules! dump_state_fn {
    () => {
        r#"
b64() { if [ -f "$1" ]; then base64 -w0 < "$1"; echo; else echo -; fi; }
dump_state() {
  if [ "${10}" = 1 ]; then want=$(cat); fi
  printf 'upstream '; b64 "$1"
  printf 'env-blue '; b64 "$2"
  printf 'env-green '; b64 "$3"
  # One systemctl call for the five units: its lines come in the order asked.
  systemctl is-active -- "$4" "$5" "${11}" "${12}" nginx.service 2>/dev/null | {
    read -r blue; read -r green; read -r old_blue; read -r old_green; read -r nginx
    printf 'active-blue %s\nactive-green %s\n' "$blue" "$green"
    printf 'legacy-blue %s\nlegacy-green %s\n' "$old_blue" "$old_green"
    for c in blue:"$6" green:"$7"; do
      f=${c#*:}
      if [ "${10}" != 1 ] || [ ! -f "$f" ]; then v=-
      elif [ "$(grep -v '^SHIPIT_' "$f")" = "$want" ]; then v=same
      else v=differs; fi
      printf 'settings-%s %s\n' "${c%%:*}" "$v"
    done
    printf 'lock '; b64 "$8/info.json"
    if [ -f "$9" ]; then
      total=$(wc -l < "$9")
      first=$((total > 200 ? total - 199 : 1))
      printf 'history %s ' "$first"; tail -n 200 -- "$9" | base64 -w0; echo
    else echo 'history -'; fi
    if [ -f "${13}" ]; then echo 'legacy-upstream yes'; else echo 'legacy-upstream no'; fi
    printf 'nginx %s\n' "$nginx"
  }
}
"#
    };
}

/// Print a host's deploy state (see `dump_state_fn`; the same thirteen arguments).
pub const DEPLOY_STATE: &str = concat!(dump_state_fn!(), r#"dump_state "$@""#);

/// Take the environment lock: `$1` lock dir, `$2` holder details (JSON). `mkdir` is atomic:
/// exactly one deployer wins. Prints `acquired` and then, when state arguments follow, the
/// host's deploy state as [`DEPLOY_STATE`] does (read under the lock, in the same round trip);
/// or `held BASE64-DETAILS`.
pub const LOCK: &str = concat!(
    dump_state_fn!(),
    r#"
mkdir -p -- "$(dirname -- "$1")" || exit 1
if mkdir -- "$1" 2>/dev/null; then
  printf '%s\n' "$2" > "$1/info.json.tmp" && mv -f -- "$1/info.json.tmp" "$1/info.json" || { rm -rf -- "$1"; exit 1; }
  echo acquired
  shift 2
  if [ "$#" -ge 13 ]; then dump_state "$@"; fi
else
  printf 'held '; if [ -f "$1/info.json" ]; then base64 -w0 < "$1/info.json"; fi; echo
fi
"#
);

/// Replace a lock's holder: `$1` lock dir, `$2` the id the current holder must have (so a
/// lock taken meanwhile by someone else is never overwritten), `$3` new details.
pub const LOCK_TAKEOVER: &str = r#"
grep -qF -- "\"id\":\"$2\"" "$1/info.json" 2>/dev/null || { echo "shipit: the lock changed hands" >&2; exit 4; }
printf '%s\n' "$3" > "$1/info.json.tmp" && mv -f -- "$1/info.json.tmp" "$1/info.json"
"#;

/// Release the lock `$1` if it is held by id `$2` (or unconditionally when `$2` is empty).
pub const UNLOCK: &str = r#"
if [ -z "$2" ] || grep -qF -- "\"id\":\"$2\"" "$1/info.json" 2>/dev/null; then rm -rf -- "$1"; fi
"#;

/// Start a release in a colour: `$1` image, `$2` unit, `$3` unit env file, `$4` app env
/// file, `$5` the unit's container, `$6` the port it will publish, `$7` the upstream include,
/// `$8` the colour's unit in the earlier layout (stopped for good first: the colour is idle);
/// then the unit env lines. The app env (it holds secrets) arrives on stdin. Both files are
/// written beside their target at mode 0600 and renamed into place.
///
/// Refuses, changing nothing, to restart a colour that nginx serves (exit 5,
/// `shipit-refused-live`), and to start on a port something else holds (exit 6,
/// `shipit-port-held PORT KIND NAME`).
pub const PREPARE: &str = r#"
set -e
image=$1 unit=$2 unit_env=$3 app_env=$4 container=$5 port=$6 upstream=$7 legacy=$8
shift 8
old=$(sed -n 's/^SHIPIT_PORT=//p' "$unit_env" 2>/dev/null || true)
if [ -n "$old" ] && grep -q "^server 127\.0\.0\.1:$old max_fails" "$upstream" 2>/dev/null \
   && { systemctl is-active --quiet -- "$unit" || systemctl is-active --quiet -- "$legacy"; }; then
  echo "shipit-refused-live $unit serves port $old" >&2
  exit 5
fi
if systemctl cat -- "$legacy" > /dev/null 2>&1; then
  systemctl disable --quiet --now -- "$legacy" 2> /dev/null || systemctl stop -- "$legacy"
fi
others=$(docker ps --filter "publish=$port" --format '{{.Names}}' | grep -vxF -- "$container" || true)
if [ -n "$others" ]; then
  echo "shipit-port-held $port container $(echo $others)" >&2
  exit 6
fi
if [ -z "$(docker ps -q --filter "name=^$container\$" --filter "publish=$port")" ]; then
  holder=$(ss -Hltnp "sport = :$port" 2>/dev/null | sed -n 's/.*users:(("\([^"]*\)",pid=\([0-9]*\).*/\1 (pid \2)/p' | head -n 1)
  if [ -n "$holder" ]; then
    echo "shipit-port-held $port process $holder" >&2
    exit 6
  fi
fi
docker image inspect -- "$image" > /dev/null 2>&1 || docker pull -q -- "$image" > /dev/null
umask 077
mkdir -p -- "$(dirname -- "$app_env")"
tmp=$(mktemp -- "$app_env.XXXXXX")
cat > "$tmp"
chmod 600 -- "$tmp"
mv -f -- "$tmp" "$app_env"
tmp=$(mktemp -- "$unit_env.XXXXXX")
printf '%s\n' "$@" > "$tmp"
chmod 600 -- "$tmp"
mv -f -- "$tmp" "$unit_env"
systemctl reset-failed -- "$unit" 2> /dev/null || true
systemctl enable --quiet -- "$unit"
systemctl restart -- "$unit"
"#;

/// Which of the ports before `--` something else holds than the containers after it: one
/// `held PORT container NAMES` or `held PORT process NAME (pid N)` line per such port.
pub const PORTS_HELD: &str = r#"
ports=
while [ "$#" -gt 0 ] && [ "$1" != -- ]; do ports="$ports $1"; shift; done
[ "$#" -gt 0 ] && shift
for p in $ports; do
  others=$(docker ps --filter "publish=$p" --format '{{.Names}}' 2>/dev/null | while read -r n; do
    mine=0
    for a; do [ "$n" = "$a" ] && mine=1; done
    [ "$mine" = 1 ] || printf '%s ' "$n"
  done)
  if [ -n "$others" ]; then echo "held $p container $others"; continue; fi
  ours=0
  for a; do
    if [ -n "$(docker ps -q --filter "name=^$a\$" --filter "publish=$p" 2>/dev/null)" ]; then ours=1; fi
  done
  [ "$ours" = 1 ] && continue
  holder=$(ss -Hltnp "sport = :$p" 2>/dev/null | sed -n 's/.*users:(("\([^"]*\)",pid=\([0-9]*\).*/\1 (pid \2)/p' | head -n 1)
  if [ -n "$holder" ]; then echo "held $p process $holder"; fi
done
true
"#;

/// Who answers on a port: `$1` the container that should, `$2` the host port, `$3` the
/// container's port. One `KEY VALUE` line each: `container RUNNING IMAGE` (or `absent -`),
/// `published ADDRESS` (or `-`), `holders` (containers publishing the port), `process` (the
/// process listening on it).
pub const PORT_OWNER: &str = r#"
printf 'container %s\n' "$(docker inspect -f '{{.State.Running}} {{.Config.Image}}' -- "$1" 2>/dev/null || echo 'absent -')"
published=$(docker port -- "$1" "$3/tcp" 2>/dev/null | head -n 1)
printf 'published %s\n' "${published:--}"
printf 'holders %s\n' "$(docker ps --filter "publish=$2" --format '{{.Names}}' 2>/dev/null | tr '\n' ' ')"
printf 'process %s\n' "$(ss -Hltnp "sport = :$2" 2>/dev/null | sed -n 's/.*users:(("\([^"]*\)",pid=\([0-9]*\).*/\1 (pid \2)/p' | head -n 1)"
"#;

/// Point nginx at a colour: `$1` upstream include, `$2` its new content. Atomic rename,
/// `nginx -t` (the previous file is put back if it fails, exit 3), reload, then wait (at most
/// 5 s) until nginx's new workers run, so that every new connection sees the new upstream.
pub const SWITCH: &str = r#"
f=$1
printf '%s' "$2" > "$f.shipit-tmp~" && chmod 644 -- "$f.shipit-tmp~" || exit 1
if [ -e "$f" ]; then ln -f -- "$f" "$f.shipit-prev~" || exit 1; else rm -f -- "$f.shipit-prev~"; fi
mv -f -- "$f.shipit-tmp~" "$f" || exit 1
if ! out=$(nginx -t -q 2>&1); then
  if [ -e "$f.shipit-prev~" ]; then mv -f -- "$f.shipit-prev~" "$f"; fi
  printf 'shipit-refused %s nginx -t\n%s\n' "$f" "$out" >&2
  exit 3
fi
master=$(cat /run/nginx.pid 2>/dev/null)
old=" $(pgrep -P "$master" -x -f 'nginx: worker process' | tr '\n' ' ') "
systemctl reload nginx || exit 1
i=0
while [ "$i" -lt 250 ]; do
  fresh=1
  cur=$(pgrep -P "$master" -x -f 'nginx: worker process')
  [ -n "$cur" ] || fresh=0
  for p in $cur; do case $old in *" $p "*) fresh=0 ;; esac; done
  [ "$fresh" = 1 ] && exit 0
  sleep 0.02
  i=$((i + 1))
done
echo "shipit: nginx reloaded but its new workers did not start within 5s" >&2
exit 1
"#;

/// Stop units `$@` and keep them from starting at boot; a unit whose file is gone (of the
/// earlier layout, say) is skipped.
pub const STOP: &str = r#"
status=0
for u; do
  systemctl cat -- "$u" > /dev/null 2>&1 || continue
  systemctl disable --quiet --now -- "$u" || status=1
done
exit $status
"#;

/// The last `$2` lines a unit `$1` logged (the container's output), with those of `$3` (the
/// colour's unit in the earlier layout) when given.
pub const LOGS: &str = r#"journalctl -u "$1" ${3:+-u "$3"} -n "${2:-50}" --no-pager -o cat 2>&1"#;

/// The last `$2` lines of unit `$1` (and of `$3` when given), then what it logs from now on.
pub const FOLLOW_LOGS: &str =
    r#"exec journalctl -u "$1" ${3:+-u "$3"} -n "$2" --no-pager -o cat -f"#;

/// Maintenance on: `$1` the page (HTML on stdin) and `$2` the flag nginx tests per request.
/// Both written beside their target and renamed; no reload is needed.
pub const MAINTENANCE_ON: &str = r#"
set -e
umask 022
mkdir -p -- "$(dirname -- "$1")"
cat > "$1.shipit-tmp~"
mv -f -- "$1.shipit-tmp~" "$1"
: > "$2.shipit-tmp~"
mv -f -- "$2.shipit-tmp~" "$2"
"#;

/// Maintenance off: remove the flag `$1`.
pub const MAINTENANCE_OFF: &str = r#"rm -f -- "$1""#;

/// Append a line `$2` to the history file `$1`.
pub const RECORD: &str = r#"
mkdir -p -- "$(dirname -- "$1")" && printf '%s\n' "$2" >> "$1"
"#;

/// Remove images of repository `$1` whose `repo@digest` is not among `$2...` (the retained
/// releases). Images are pulled by digest, so the digest (not a tag) names them.
pub const PRUNE: &str = r#"
repo=$1
shift
docker image ls --digests --format '{{.Repository}}@{{.Digest}}' -- "$repo" | while read -r ref; do
  case $ref in *@\<none\>) continue ;; esac
  keep=0
  for k; do [ "$ref" = "$k" ] && keep=1; done
  if [ "$keep" = 0 ]; then docker image rm -- "$ref" > /dev/null 2>&1 && echo "$ref"; fi
done
true
"#;

/// Who the login user is and whether it may act as root, run as that user (never under
/// sudo): `user NAME`, `uid N`, then `root yes`, `sudo yes`, or `sudo no` followed by what
/// sudo said (`password` when it wants one).
pub const SUDO_PROBE: &str = r#"
printf 'user %s\nuid %s\n' "$(id -un)" "$(id -u)"
if [ "$(id -u)" = 0 ]; then echo 'root yes'; exit 0; fi
if ! command -v sudo > /dev/null 2>&1; then echo 'sudo missing'; exit 0; fi
if out=$(sudo -n true 2>&1); then echo 'sudo yes'; else printf 'sudo no %s\n' "$(printf '%s' "$out" | head -n 1)"; fi
"#;

/// What `shipit doctor` checks on a host: one `KEY VALUE` line each. `$1` is the registry
/// whose login to look for (may be empty).
pub const DOCTOR: &str = r#"
printf 'uid %s\n' "$(id -u)"
if [ "$(id -u)" = 0 ] || sudo -n true 2>/dev/null; then echo 'root yes'; else echo 'root no'; fi
printf 'docker %s\n' "$(docker info --format '{{.ServerVersion}}' 2>/dev/null || echo -)"
conf="${DOCKER_CONFIG:-$HOME/.docker}/config.json"
if [ -n "$1" ] && [ -f "$conf" ] && grep -qF "\"$1\"" "$conf"; then echo 'login yes'; else echo 'login no'; fi
printf 'nginx %s\n' "$(nginx -v 2>&1 | sed 's|.*/||' || echo -)"
printf 'nginx-active %s\n' "$(systemctl is-active nginx 2>/dev/null)"
printf 'systemd %s\n' "$(systemctl --version 2>/dev/null | head -n 1 | awk '{print $2}')"
printf 'disk %s\n' "$(df -Pk /var/lib/docker 2>/dev/null | awk 'NR == 2 {print $4}')"
printf 'clock %s\n' "$(date +%s%N)"
"#;

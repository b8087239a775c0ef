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
/// `$3` = 1 to reload nginx; then `STAGED FINAL BACKUP` triples. Every previous file is kept
/// as BACKUP (a hard link, so the swap stays atomic); on a failed full check the previous
/// files are put back and nothing is reloaded.
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
    mv -f -- "$1" "$2" || return 1
    shift 3
  done
}
restore() {
  while [ "$#" -ge 3 ]; do
    if [ -e "$3" ]; then mv -f -- "$3" "$2"; else rm -f -- "$2"; fi
    rm -f -- "$1"
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
if [ "$daemon" = 1 ]; then systemctl daemon-reload || exit 1; fi
if [ "$reload" = 1 ]; then systemctl reload-or-restart nginx || exit 1; fi
"#;

/// `docker login` with the password on stdin: `$1` user, `$2` registry.
pub const DOCKER_LOGIN: &str = r#"docker login --username "$1" --password-stdin "$2" > /dev/null"#;

/// Print each argument on its own line (used to prove quoting over SSH).
pub const ECHO_ARGS: &str = r#"for a; do printf '%s\0' "$a"; done"#;

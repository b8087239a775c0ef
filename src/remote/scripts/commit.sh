# shellcheck shell=sh
# Install staged files and reload what changed, all or nothing.
# `$1` = 1 to run a full `nginx -t` after the swap, `$2` = 1 for `daemon-reload`,
# `$3` = 1 to reload nginx; then `STAGED FINAL BACKUP` triples, STAGED `-` to remove FINAL.
# Every previous file is kept as BACKUP (a hard link, so the swap stays atomic); on a failed
# full check the previous files are put back and nothing is reloaded. nginx is reloaded with
# `reload_nginx` (reload_fn.sh), which returns once the new configuration serves.
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
if [ "$reload" = 1 ]; then reload_nginx || { [ -z "$pid" ] || wait "$pid"; exit 1; }; fi
if [ -n "$pid" ]; then wait "$pid" || exit 1; fi

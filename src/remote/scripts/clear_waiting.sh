# shellcheck shell=sh
# Nothing waits for promotion any more (after `reload_fn.sh`): `$1` `[preview]`'s include (`-`:
# none) gets `$2`, its content when nothing waits, and nginx is reloaded; then the waiting
# record `$3` goes. A host without the include (no `[preview]` now) only loses the record.
if [ "$1" != - ] && [ -f "$1" ]; then
  { printf '%s' "$2" > "$1.shipit-tmp~" && chmod 644 -- "$1.shipit-tmp~" &&
    mv -f -- "$1.shipit-tmp~" "$1"; } || exit 1
  reload_nginx || exit 1
fi
rm -f -- "$3"

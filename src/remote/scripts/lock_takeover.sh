# shellcheck shell=sh
# Replace a lock's holder: `$1` lock dir, `$2` the id the current holder must have (so a lock
# taken meanwhile by someone else is never overwritten), `$3` new details, `$4` the holder's
# lease in seconds when it is taken over for an expired lease (then the lease must still be
# expired by this host's clock: a holder that renewed meanwhile keeps it), or 0. Serialized
# with renewals by `flock` on the lock directory.
[ -d "$1" ] || { echo "shipit: the lock changed hands" >&2; exit 4; }
exec 9< "$1"
if command -v flock > /dev/null; then flock -w 10 9 || exit 1; fi
grep -qF -- "\"id\":\"$2\"" "$1/info.json" 2>/dev/null || { echo "shipit: the lock changed hands" >&2; exit 4; }
if [ "$4" -gt 0 ]; then
  renewed=$(cat -- "$1/renewed" 2>/dev/null)
  case $renewed in ''|*[!0-9]*) echo "shipit: the lock has no lease" >&2; exit 4 ;; esac
  if [ $(( $(date +%s) - renewed )) -lt "$4" ]; then echo "shipit: its holder renewed its lease meanwhile" >&2; exit 4; fi
fi
printf '%s\n' "$3" > "$1/info.json.tmp" && mv -f -- "$1/info.json.tmp" "$1/info.json" \
  && date +%s > "$1/renewed.tmp" && mv -f -- "$1/renewed.tmp" "$1/renewed"

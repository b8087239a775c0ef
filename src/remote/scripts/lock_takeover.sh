# shellcheck shell=sh
# Replace a lock's holder: `$1` lock dir, `$2` the id the current holder must have (so a
# lock taken meanwhile by someone else is never overwritten), `$3` new details.
grep -qF -- "\"id\":\"$2\"" "$1/info.json" 2>/dev/null || { echo "shipit: the lock changed hands" >&2; exit 4; }
printf '%s\n' "$3" > "$1/info.json.tmp" && mv -f -- "$1/info.json.tmp" "$1/info.json"

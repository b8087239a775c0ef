# shellcheck shell=sh
# The record of certificates issued for a site (`$1`, one `HOST-CLOCK JSON` line each). With
# `$2` (the JSON of one), it is appended with this host's clock, keeping the last 100 lines,
# written atomically and 0600; without, prints `clock SECONDS` and then the record.
if [ "$#" -ge 2 ]; then
  mkdir -p -- "$(dirname -- "$1")" || exit 1
  { tail -n 99 -- "$1" 2>/dev/null; printf '%s %s\n' "$(date +%s)" "$2"; } > "$1.tmp" \
    && chmod 600 "$1.tmp" && mv -f -- "$1.tmp" "$1"
else
  printf 'clock %s\n' "$(date +%s)"
  cat -- "$1" 2>/dev/null || true
fi

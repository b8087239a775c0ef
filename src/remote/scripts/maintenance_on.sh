# shellcheck shell=sh
# Maintenance on: `$1` the page (HTML on stdin) and `$2` the flag nginx tests per request.
# Both written beside their target and renamed; no reload is needed.
set -e
umask 022
mkdir -p -- "$(dirname -- "$1")"
cat > "$1.shipit-tmp~"
mv -f -- "$1.shipit-tmp~" "$1"
: > "$2.shipit-tmp~"
mv -f -- "$2.shipit-tmp~" "$2"

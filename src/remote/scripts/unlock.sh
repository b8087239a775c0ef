# shellcheck shell=sh
# Release the lock `$1` if it is held by id `$2` (or unconditionally when `$2` is empty).
if [ -z "$2" ] || grep -qF -- "\"id\":\"$2\"" "$1/info.json" 2>/dev/null; then rm -rf -- "$1"; fi

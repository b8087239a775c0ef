# shellcheck shell=sh
# Remove staged files `$@` (after a refused validation elsewhere in the fleet).
rm -f -- "$@"

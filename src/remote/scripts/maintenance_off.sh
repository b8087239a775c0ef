# shellcheck shell=sh
# Maintenance off: remove the flag `$1`.
rm -f -- "$1"

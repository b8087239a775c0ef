# shellcheck shell=sh
# The last `$2` lines of unit `$1` (and of `$3` when given), then what it logs from now on.
exec journalctl -u "$1" ${3:+-u "$3"} -n "$2" --no-pager -o cat -f

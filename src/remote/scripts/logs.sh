# shellcheck shell=sh
# The last `$2` lines a unit `$1` logged (the container's output), with those of `$3` (the
# colour's unit in the earlier layout) when given.
journalctl -u "$1" ${3:+-u "$3"} -n "${2:-50}" --no-pager -o cat 2>&1

# shellcheck shell=sh
# Remove what is left of the earlier layout once none of its units runs: `$1` = 1 to
# `daemon-reload` afterwards, then the paths (files, or the lock directory).
reload=$1
shift
rm -rf -- "$@" || exit 1
if [ "$reload" = 1 ]; then systemctl daemon-reload; fi

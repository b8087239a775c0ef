# shellcheck shell=sh
# The backups kept in `$1`: one `NAME BYTES MTIME` line each (MTIME in unix seconds), newest
# first.
if [ -d "$1" ]; then
  find "$1" -maxdepth 1 -type f -name '*.backup' -printf '%f %s %T@\n' | sort -r
fi
true

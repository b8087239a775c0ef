# shellcheck shell=sh
# The host's clock (`clock SECONDS`), then the backups kept in `$1`: one `NAME BYTES MTIME` line
# each (MTIME in unix seconds), newest first by this host's clock.
printf 'clock %s\n' "$(date +%s)"
if [ -d "$1" ]; then
  find "$1" -maxdepth 1 -type f -name '*.backup' -printf '%f %s %T@\n' | sort -k3,3 -rn
fi
true

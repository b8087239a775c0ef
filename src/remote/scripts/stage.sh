# shellcheck shell=sh
# Write stdin to `$1` (a staging path), then set mode `$2` and owner `$3`; check that `$4`
# bytes arrived (a full disk truncates silently otherwise).
set -e
umask 077
mkdir -p -- "$(dirname -- "$1")"
rm -f -- "$1"
cat > "$1"
got=$(wc -c < "$1")
if [ "$got" != "$4" ]; then
  rm -f -- "$1"
  echo "shipit: wrote $got of $4 bytes to $1 (disk full?)" >&2
  exit 1
fi
chmod "$2" -- "$1"
chown "$3" -- "$1"

# shellcheck shell=sh
# Take a backup: `$1` the backups directory, `$2` the release (for the file's name), `$3` how
# many to keep, `$4` the container's name, `$5` an image to pull first when the engine lacks
# it, then docker's arguments (`run ...`, mounting `$1/.incoming` where the command writes
# `$SHIPIT_BACKUP_FILE`, `/shipit-backup/backup`). The container's output goes to stdout.
#
# What the container leaves is untrusted (the image may be hostile): once it has exited, only
# root may enter `.incoming`, and only a regular file with one link is kept, its bytes copied
# into a new file of root's (0600), never moved, chmod-ed or chown-ed where it lies. A link, a
# device, a directory or nothing fails the backup (exit 4), naming what was found.
#
# The file is named from this host's clock (`YYYYMMDDTHHMMSSZ_RELEASE.backup`), and all but the
# newest `$3` are removed by age on this host's clock, never the one just taken. Prints
# `shipit-backup FILE BYTES` and each `shipit-pruned FILE` on stderr; exits with the command's
# code. Before anything runs, a backup that would not fit (twice the newest kept one's size
# against the free space of `$1`) is refused (exit 4).
dir=$1 release=$2 keep=$3 name=$4 image=$5
shift 5
umask 077
mkdir -p -- "$dir" && chmod 700 -- "$dir" || exit 1
# A backup about the size of the newest one kept needs twice its size free (the command's file,
# then its copy): refused before it starts when the disk does not have it (exit 4).
newest=$(find "$dir" -maxdepth 1 -type f -name '*.backup' -printf '%T@ %s\n' | sort -rn | head -n 1 | cut -d' ' -f2)
if [ -n "$newest" ]; then
  free=$(($(df -Pk -- "$dir" | awk 'NR == 2 {print $4}') * 1024))
  if [ "$free" -lt $((newest * 2)) ]; then
    echo "shipit: the backup would not fit: $dir has $free bytes free, and a backup the size of the newest ($newest bytes) needs $((newest * 2)) while it is taken; free space there, or lower [backup] keep" >&2
    exit 4
  fi
fi
rm -rf -- "$dir/.incoming"
mkdir -- "$dir/.incoming" && chmod 1777 -- "$dir/.incoming" || exit 1
docker rm -f -- "$name" > /dev/null 2>&1 || true
if ! docker image inspect -- "$image" > /dev/null 2>&1; then
  docker pull -q -- "$image" > /dev/null || { rm -rf -- "$dir/.incoming"; exit 125; }
fi
docker "$@" 2>&1
code=$?
chmod 700 -- "$dir/.incoming" || exit 1
refuse() {
  echo "shipit: the backup command $1: refused, nothing kept" >&2
  rm -rf -- "$dir/.incoming"
  exit 4
}
if [ "$code" != 0 ]; then
  rm -rf -- "$dir/.incoming"
  exit "$code"
fi
src=$dir/.incoming/backup
if [ -L "$src" ]; then
  refuse "left a symbolic link to \`$(readlink -- "$src")\` as \$SHIPIT_BACKUP_FILE, not a file"
elif [ ! -e "$src" ]; then
  refuse "exited 0 but wrote nothing to \$SHIPIT_BACKUP_FILE"
elif [ ! -f "$src" ]; then
  refuse "left a $(stat -c %F -- "$src") as \$SHIPIT_BACKUP_FILE, not a regular file"
elif [ "$(stat -c %h -- "$src")" != 1 ]; then
  refuse "left a file with $(stat -c %h -- "$src") hard links as \$SHIPIT_BACKUP_FILE"
elif [ ! -s "$src" ]; then
  refuse "exited 0 but wrote an empty \$SHIPIT_BACKUP_FILE"
fi
stamp=$(date -u +%Y%m%dT%H%M%SZ)
file=${stamp}_$release.backup
if [ -e "$dir/$file" ]; then file=${stamp}_$release.$$.backup; fi
tmp=$(mktemp -- "$dir/.taking.XXXXXX") || exit 1
if ! cat -- "$src" > "$tmp"; then
  rm -f -- "$tmp"
  rm -rf -- "$dir/.incoming"
  echo "shipit: could not copy the backup into $dir (disk full?)" >&2
  exit 1
fi
chmod 600 -- "$tmp" && mv -f -- "$tmp" "$dir/$file" || exit 1
rm -rf -- "$dir/.incoming"
printf 'shipit-backup %s %s\n' "$file" "$(wc -c < "$dir/$file")" >&2
# The newest `keep` by this host's clock, the one just taken among them whatever the others'
# times say.
find "$dir" -maxdepth 1 -type f -name '*.backup' ! -name "$file" -printf '%T@ %f\n' | sort -rn |
  tail -n +"$keep" | while read -r _ old; do
    rm -f -- "$dir/$old" && printf 'shipit-pruned %s\n' "$old" >&2
  done
if [ ! -f "$dir/$file" ]; then
  echo "shipit: the backup just taken ($dir/$file) is gone after pruning" >&2
  exit 1
fi
exit 0

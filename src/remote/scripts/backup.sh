# shellcheck shell=sh
# Take a backup: `$1` the backups directory, `$2` the file's name, `$3` how many to keep, `$4`
# the container's name, `$5` an image to pull first when the engine lacks it, then docker's
# arguments (`run ...`, mounting `$1/.incoming` where the
# command writes `$SHIPIT_BACKUP_FILE`). The container's output goes to stdout. The file is
# moved into the directory at mode 0600 only when the command succeeded and wrote something;
# then all but the newest `$3` backups are removed. Prints `shipit-backup FILE BYTES` and each
# `shipit-pruned FILE` on stderr; exits with the command's code (4: it wrote nothing).
dir=$1 file=$2 keep=$3 name=$4 image=$5
shift 5
umask 077
mkdir -p -- "$dir" && chmod 700 -- "$dir" || exit 1
rm -rf -- "$dir/.incoming"
mkdir -- "$dir/.incoming" && chmod 1777 -- "$dir/.incoming" || exit 1
docker rm -f -- "$name" > /dev/null 2>&1 || true
if ! docker image inspect -- "$image" > /dev/null 2>&1; then
  docker pull -q -- "$image" > /dev/null || { rm -rf -- "$dir/.incoming"; exit 125; }
fi
docker "$@" 2>&1
code=$?
if [ "$code" != 0 ]; then
  rm -rf -- "$dir/.incoming"
  exit "$code"
fi
if [ ! -s "$dir/.incoming/$file" ]; then
  rm -rf -- "$dir/.incoming"
  echo "shipit: the backup command exited 0 but wrote nothing to \$SHIPIT_BACKUP_FILE" >&2
  exit 4
fi
mv -f -- "$dir/.incoming/$file" "$dir/$file" && chown root:root -- "$dir/$file" && chmod 600 -- "$dir/$file" || exit 1
rm -rf -- "$dir/.incoming"
printf 'shipit-backup %s %s\n' "$file" "$(wc -c < "$dir/$file")" >&2
find "$dir" -maxdepth 1 -type f -name '*.backup' -printf '%f\n' | sort -r | tail -n +"$((keep + 1))" |
  while read -r old; do
    rm -f -- "$dir/$old" && printf 'shipit-pruned %s\n' "$old" >&2
  done
exit 0

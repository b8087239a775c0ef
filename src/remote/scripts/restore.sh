# shellcheck shell=sh
# Restore a backup: `$1` its path, `$2` the container's name, `$3` an image to pull first when
# the engine lacks it, then docker's arguments (`run ...`, mounting `.restore/NAME` beside the
# backup). The backup (0600, root's) is copied there readable by the container's user, inside
# the backups directory that only root may enter, and removed afterwards. Exits 4, running
# nothing, when the file is not there; else with the command's code, its output on stdout.
file=$1 name=$2 image=$3
shift 3
if [ ! -f "$file" ]; then
  echo "shipit: no backup $file" >&2
  exit 4
fi
copy="$(dirname -- "$file")/.restore/$(basename -- "$file")"
mkdir -p -- "$(dirname -- "$copy")" && chmod 755 -- "$(dirname -- "$copy")" &&
  cp -- "$file" "$copy" && chmod 644 -- "$copy" || exit 1
docker rm -f -- "$name" > /dev/null 2>&1 || true
if ! docker image inspect -- "$image" > /dev/null 2>&1; then
  docker pull -q -- "$image" > /dev/null || { rm -f -- "$copy"; exit 125; }
fi
docker "$@" 2>&1
code=$?
rm -f -- "$copy"
exit "$code"

# shellcheck shell=sh
# Restore a backup: `$1` its path (mounted read only by docker's arguments), `$2` the
# container's name, `$3` an image to pull first when the engine lacks it, then docker's
# arguments (`run ...`). Exits 4, running nothing, when the
# file is not there; else with the command's code, its output on stdout.
file=$1 name=$2 image=$3
shift 3
if [ ! -f "$file" ]; then
  echo "shipit: no backup $file" >&2
  exit 4
fi
docker rm -f -- "$name" > /dev/null 2>&1 || true
if ! docker image inspect -- "$image" > /dev/null 2>&1; then
  docker pull -q -- "$image" > /dev/null || exit 125
fi
exec docker "$@" 2>&1

# shellcheck shell=sh
# Load an image from stdin (a gzip-compressed `docker save` archive, possibly without the
# layers this engine has), then check that the engine holds image `$1` (its ID): a host runs
# exactly the image that was built. `docker load` unpacks the whole stream before it registers
# anything, so a cut stream leaves no image behind.
set -e
docker load -q > /dev/null
got=$(docker image inspect --format '{{.Id}}' -- "$1" 2> /dev/null || true)
if [ "$got" != "$1" ]; then
  echo "shipit: loaded the stream but the engine has no image $1" >&2
  exit 4
fi

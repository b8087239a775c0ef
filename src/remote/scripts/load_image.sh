# shellcheck shell=sh
# Load an image from stdin (a gzip-compressed `docker save` archive, possibly without the
# layers this engine has; after the functions of `image_fn.sh`), then print what the engine
# holds under the name `docker load` gives: `loaded ID CONFIG DIFF-ID...`, which the deploying
# machine checks against what it built. The ID is what this host runs the image by: its
# configuration's digest on an engine with its own store, on containerd's store a manifest's.
# `docker load` unpacks the whole stream before it registers anything, so a cut stream leaves
# no image behind.
set -e
out=$(docker load -q)
name=$(printf '%s\n' "$out" | sed -n 's/^Loaded image\( ID\)\{0,1\}: //p' | tail -n 1)
if [ -z "$name" ]; then
  echo "shipit: docker load named no image: $out" >&2
  exit 4
fi
store=$(store_of "$(docker info --format '{{json .DriverStatus}}')")
docker image inspect --format '{{.Id}}{{range .RootFS.Layers}} {{.}}{{end}}' -- "$name" | image_lines loaded "$store"

# shellcheck shell=sh
# Load an image from stdin (a gzip-compressed `docker save` archive, possibly without the
# layers this engine has; after the functions of `image_fn.sh`), then print what the engine
# holds under the name `docker load` gives: `loaded ID CONFIG DIFF-ID...`, which the deploying
# machine checks against what it built. The ID is what this host runs the image by: its
# configuration's digest on an engine with its own store, on containerd's store a manifest's.
# `docker load` unpacks the whole stream before it registers anything, so a cut stream leaves
# no image behind.
#
# `$1` the bytes `docker load` stages in the engine's temporary directory (the layers sent),
# `$2` the bytes it then unpacks into the data root, `$3` the bytes a serving host keeps free.
# Loads on one host run one at a time (a host-wide `flock`), and the room is checked right
# before each, per filesystem (the two directories may be one): two apps loading at once never
# both count the same free space.
set -e
mkdir -p /var/lib/shipit
exec 8> /var/lib/shipit/.image-load.lock
if command -v flock > /dev/null && ! flock -w 900 8; then
  echo "shipit: another image load on this host held /var/lib/shipit/.image-load.lock for 15 minutes" >&2
  exit 5
fi
root=$(docker info --format '{{.DockerRootDir}}')
tmp=$root/tmp
[ -d "$tmp" ] || tmp=$root
# shellcheck disable=SC2046 # the device and KiB free, two words
set -- "$1" "$2" "$3" $(df -Pk -- "$root" | awk 'NR == 2 {print $1, $4}') $(df -Pk -- "$tmp" | awk 'NR == 2 {print $1, $4}')
mib() { echo $(( ($1 + 1048575) / 1048576 )); }
if [ "$4" = "$6" ]; then
  need=$(( ($1 + $2 + $3) / 1024 ))
  if [ "$5" -lt "$need" ]; then
    echo "shipit: no room to load the image: docker load needs $(mib "$1") MiB in $tmp and then $(mib "$2") MiB in $root, one filesystem with $(( $5 / 1024 )) MiB free, and $(mib "$3") MiB are kept free for what serves; nothing was loaded" >&2
    exit 6
  fi
elif [ "$7" -lt $(( $1 / 1024 )) ] || [ "$5" -lt $(( ($2 + $3) / 1024 )) ]; then
  echo "shipit: no room to load the image: docker load needs $(mib "$1") MiB in $tmp ($(( $7 / 1024 )) MiB free) and then $(mib "$2") MiB in $root ($(( $5 / 1024 )) MiB free, $(mib "$3") MiB kept free for what serves); nothing was loaded" >&2
  exit 6
fi
out=$(docker load -q)
name=$(printf '%s\n' "$out" | sed -n 's/^Loaded image\( ID\)\{0,1\}: //p' | tail -n 1)
if [ -z "$name" ]; then
  echo "shipit: docker load named no image: $out" >&2
  exit 4
fi
store=$(store_of "$(docker info --format '{{json .DriverStatus}}')")
docker image inspect --format '{{.Id}}{{range .RootFS.Layers}} {{.}}{{end}}' -- "$name" | image_lines loaded "$store"

# shellcheck shell=sh
# What a host's engine holds, for sending it an image over SSH (after the functions of
# `image_fn.sh`; `crate::transfer::plan::HostImages::parse`): its version, storage driver and
# image store, the KiB free in its data root, then one `image ID CONFIG DIFF-ID...` line per
# image.
set -e
info=$(docker info --format '{{.ServerVersion}}|{{.Driver}}|{{.DockerRootDir}}|{{json .DriverStatus}}')
version=${info%%|*}
rest=${info#*|}
driver=${rest%%|*}
rest=${rest#*|}
root=${rest%%|*}
store=$(store_of "${rest#*|}")
printf 'engine %s\n' "$version"
printf 'driver %s\n' "$driver"
printf 'store %s\n' "$store"
printf 'free %s\n' "$(df -Pk -- "$root" | awk 'NR == 2 {print $4}')"
ids=$(docker image ls -aq --no-trunc | sort -u)
if [ -n "$ids" ]; then
  # shellcheck disable=SC2086 # one word per image ID
  docker image inspect --format '{{.Id}}{{range .RootFS.Layers}} {{.}}{{end}}' $ids | image_lines image "$store"
fi

# shellcheck shell=sh
# What a host's engine holds, for sending it an image over SSH
# (`crate::transfer::plan::HostImages::parse`): its version, storage driver and image store,
# the KiB free in its data root, then one `image ID DIFF-ID...` line per image.
set -e
info=$(docker info --format '{{.ServerVersion}}|{{.Driver}}|{{.DockerRootDir}}|{{json .DriverStatus}}')
version=${info%%|*}
rest=${info#*|}
driver=${rest%%|*}
rest=${rest#*|}
root=${rest%%|*}
status=${rest#*|}
printf 'engine %s\n' "$version"
printf 'driver %s\n' "$driver"
case $status in
  *io.containerd.snapshotter*) echo 'store containerd' ;;
  *) echo 'store graphdriver' ;;
esac
printf 'free %s\n' "$(df -Pk -- "$root" | awk 'NR == 2 {print $4}')"
ids=$(docker image ls -aq --no-trunc | sort -u)
if [ -n "$ids" ]; then
  # shellcheck disable=SC2086 # one word per image ID
  docker image inspect --format 'image {{.Id}}{{range .RootFS.Layers}} {{.}}{{end}}' $ids
fi

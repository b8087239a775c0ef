# shellcheck shell=sh
# Functions naming a host's images for `host_images.sh` and `load_image.sh`.
# `store_of DRIVER_STATUS`: `containerd` when the engine keeps images in containerd's store
# (`docker info`'s driver status names a snapshotter), else `graphdriver`.
store_of() {
  case $1 in
    *io.containerd.snapshotter*) echo containerd ;;
    *) echo graphdriver ;;
  esac
}
# `image_lines PREFIX STORE`: for each `ID DIFF-ID...` line on stdin, print `PREFIX ID CONFIG
# DIFF-ID...`, CONFIG being the digest of the image's configuration: its ID on an engine with
# its own store; on containerd's store, read from the label containerd keeps on each manifest
# in Docker's namespace (`-` when `ctr` is missing or cannot reach containerd, or the ID names
# an index).
image_lines() {
  configs=$(mktemp) || return 1
  if [ "$2" = containerd ] && command -v ctr > /dev/null 2>&1; then
    for sock in /run/containerd/containerd.sock /var/run/docker/containerd/containerd.sock; do
      [ -S "$sock" ] || continue
      ctr --address "$sock" --namespace moby content ls 2> /dev/null |
        sed -n 's/^\(sha256:[0-9a-f]*\)[[:space:]].*containerd\.io\/gc\.ref\.content\.config=\(sha256:[0-9a-f]*\).*/\1 \2/p' > "$configs"
      [ -s "$configs" ] && break
    done
  fi
  awk -v prefix="$1" -v store="$2" '
    FILENAME == ARGV[1] { config[$1] = $2; next }
    {
      c = store == "graphdriver" ? $1 : ($1 in config ? config[$1] : "-")
      line = prefix " " $1 " " c
      for (i = 2; i <= NF; i++) line = line " " $i
      print line
    }' "$configs" -
  status=$?
  rm -f -- "$configs"
  return "$status"
}

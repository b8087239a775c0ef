# shellcheck shell=sh
# Remove the images of repository `$1` (built by app `$2`) that are not among `$3...`, the
# retained releases. Images pulled from a registry are named `repo@digest`, images sent over
# SSH by their ID (`sha256:...`): an image is kept when either is listed. An image is removed
# by the name it has (its tag, else its digest). An image sent over SSH that lost its tag to a
# later build of the same tag is found among the untagged images labelled with the app (and
# never one pulled from a registry: those have a digest).
repo=$1
app=$2
shift 2
kept() {
  for k; do
    case $k in "$ref_digest" | "$id") return 0 ;; esac
  done
  return 1
}
docker image ls --digests --no-trunc --format '{{.Repository}}:{{.Tag}} {{.Repository}}@{{.Digest}} {{.ID}}' -- "$repo" |
  while read -r ref_tag ref_digest id; do
    if kept "$@"; then continue; fi
    case $ref_tag in
      *:\<none\>) name=$ref_digest ;;
      *) name=$ref_tag ;;
    esac
    case $name in *@\<none\>) continue ;; esac
    docker image rm -- "$name" > /dev/null 2>&1 && echo "$name"
  done
docker image ls --no-trunc -q --filter dangling=true --filter "label=shipit.app=$app" |
  sort -u | while read -r id; do
    ref_digest=-
    if kept "$@"; then continue; fi
    [ "$(docker image inspect --format '{{len .RepoDigests}}' -- "$id" 2> /dev/null)" = 0 ] || continue
    docker image rm -- "$id" > /dev/null 2>&1 && echo "$id"
  done
true

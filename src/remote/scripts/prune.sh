# shellcheck shell=sh
# Remove the images of repository `$1` (built by app `$2`) that nothing on this host keeps:
# `$3` is this site's state directory, and `$4...` the images it retains. Kept too: what every
# other site of any app on the host retains (its `retained` file, or for a site written by an
# older shipit, every image its history and env files name), and the image of every container,
# running or not. This site's list is written to `$3/retained` first. Images pulled from a
# registry are named `repo@digest`, images sent over SSH by their ID (`sha256:...`): an image
# is kept when either is listed. An image is removed by the name it has (its tag, else its
# digest). An image sent over SSH that lost its tag to a later build of the same tag is found
# among the untagged images labelled with the app (and never one pulled from a registry: those
# have a digest). Last, each image this site's history names that is still there and kept by
# nothing: an engine with containerd's image store lists no image known by its digest alone,
# and names an image sent over SSH by an ID of its own (the history's `runs`). Prints each
# image removed.
repo=$1
app=$2
state=$3
shift 3
umask 077
mkdir -p -- "$state" || exit 1
printf '%s\n' "$@" > "$state/retained.shipit-tmp~" && mv -f -- "$state/retained.shipit-tmp~" "$state/retained" || exit 1
work=$(mktemp -d) || exit 1
trap 'rm -rf -- "$work"' EXIT
keep=$work/keep
# `repo:tag@digest` as `repo@digest`; an ID as it is.
by_digest() { sed -n 's/^\([^@]*\/[^:@/]*\)\(:[^@]*\)\{0,1\}\(@sha256:[0-9a-f]*\).*/\1\3/p; s/^\(sha256:[0-9a-f]*\)$/\1/p'; }
# The images a history file names: each release's, and what the host ran it by.
named() {
  sed -n 's/.*"image":"\([^"]*\)".*/\1/p' "$1" 2> /dev/null
  sed -n 's/.*"runs":"\([^"]*\)".*/\1/p' "$1" 2> /dev/null
}
refs=$(named "$state/history.jsonl" | by_digest | sort -u)
# The engine's four answers asked at once (one after the other they were most of a deploy's
# last 200 ms): every container's image (one inspect for all: one each took 25-50 ms a
# container), the repository's images, the app's untagged images, and the history's images
# still there (one inspect for all, a line ` ID DIGEST... ` per image; one each took 20 ms a
# release). Nothing is removed until all four are in.
{
  containers=$(docker ps -aq --no-trunc)
  # shellcheck disable=SC2086 # container IDs: hex words
  [ -z "$containers" ] || docker inspect --format '{{.Image}}' -- $containers 2> /dev/null
} > "$work/containers" &
docker image ls --digests --no-trunc --format '{{.Repository}}:{{.Tag}} {{.Repository}}@{{.Digest}} {{.ID}}' -- "$repo" > "$work/repo" &
docker image ls --no-trunc -q --filter dangling=true --filter "label=shipit.app=$app" > "$work/dangling" &
if [ -n "$refs" ]; then
  # shellcheck disable=SC2086 # names without blanks (`by_digest`)
  docker image inspect --format ' {{.Id}} {{range .RepoDigests}}{{.}} {{end}}' -- $refs > "$work/refs" 2> /dev/null &
fi
wait
{
  printf '%s\n' "$@"
  for dir in /var/lib/shipit/*/*/; do
    dir=${dir%/}
    [ "$dir" = "${state%/}" ] && continue
    if [ -f "$dir/retained" ]; then
      cat -- "$dir/retained"
    else
      site=${dir#/var/lib/shipit/}
      { named "$dir/history.jsonl"
        sed -n 's/^SHIPIT_IMAGE=//p' /etc/shipit/"$site"/*.env 2> /dev/null; } | by_digest
    fi
  done
  cat -- "$work/containers"
} | sort -u > "$keep"
kept() {
  grep -qxF -e "$ref_digest" -e "$id" -- "$keep"
}
while read -r ref_tag ref_digest id; do
  if kept; then continue; fi
  case $ref_tag in
    *:\<none\>) name=$ref_digest ;;
    *) name=$ref_tag ;;
  esac
  case $name in *@\<none\>) continue ;; esac
  docker image rm -- "$name" > /dev/null 2>&1 && echo "$name"
done < "$work/repo"
dangling=$(sort -u "$work/dangling")
# shellcheck disable=SC2086 # image IDs: no blanks
[ -z "$dangling" ] || docker image inspect --format '{{.Id}} {{len .RepoDigests}}' -- $dangling 2> /dev/null |
  while read -r id digests; do
    [ "$digests" = 0 ] || continue
    ref_digest=-
    if kept; then continue; fi
    docker image rm -- "$id" > /dev/null 2>&1 && echo "$id"
  done
# Last, each image this site's history names that is still there and kept by nothing: an engine
# with containerd's image store lists no image known by its digest alone, and names an image sent
# over SSH by an ID of its own (the history's `runs`). A name no line holds is gone (or not known
# by it), and left alone.
if [ -n "$refs" ]; then
  found=$(cat -- "$work/refs" 2> /dev/null)
  printf '%s\n' "$refs" | while read -r ref_digest; do
    line=$(printf '%s\n' "$found" | grep -F -e " $ref_digest " | head -n 1)
    [ -n "$line" ] || continue
    id=${line# }
    id=${id%% *}
    if kept; then continue; fi
    docker image rm -- "$ref_digest" > /dev/null 2>&1 && echo "$ref_digest"
  done
fi
true

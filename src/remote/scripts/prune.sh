# shellcheck shell=sh
# Remove images of repository `$1` whose `repo@digest` is not among `$2...` (the retained
# releases). Images are pulled by digest, so the digest (not a tag) names them.
repo=$1
shift
docker image ls --digests --format '{{.Repository}}@{{.Digest}}' -- "$repo" | while read -r ref; do
  case $ref in *@\<none\>) continue ;; esac
  keep=0
  for k; do [ "$ref" = "$k" ] && keep=1; done
  if [ "$keep" = 0 ]; then docker image rm -- "$ref" > /dev/null 2>&1 && echo "$ref"; fi
done
true

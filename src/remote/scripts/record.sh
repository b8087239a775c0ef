# shellcheck shell=sh
# Record a run's outcome: append line `$2` to the history file `$1`, its `"time":0` replaced by
# the host's own clock (no deployer's clock orders anything); then write each `FILE CONTENT`
# pair after them (the fleet and who is behind), beside the file and renamed (an empty CONTENT
# removes FILE).
history=$1 line=$2
shift 2
mkdir -p -- "$(dirname -- "$history")" || exit 1
now=$(date +%s)
case $line in
  '{"time":0,'*) line="{\"time\":$now,${line#'{"time":0,'}" ;;
esac
printf '%s\n' "$line" >> "$history" || exit 1
while [ "$#" -ge 2 ]; do
  if [ -z "$2" ]; then
    rm -f -- "$1" || exit 1
  else
    printf '%s' "$2" > "$1.shipit-tmp~" && mv -f -- "$1.shipit-tmp~" "$1" || exit 1
  fi
  shift 2
done

# shellcheck shell=sh
# Append the line on stdin to the audit log `$1` (a JSON object whose `"time":0` becomes this
# host's clock): root's alone (0600, created so), never an argument anyone on the host could
# read in the process list.
umask 077
mkdir -p -- "$(dirname -- "$1")" || exit 1
IFS= read -r line || [ -n "$line" ] || exit 1
case $line in
  '{"time":0,'*) line="{\"time\":$(date +%s),${line#'{"time":0,'}" ;;
esac
printf '%s\n' "$line" >> "$1" && chmod 600 -- "$1"

# shellcheck shell=sh
# Who answers on a port: `$1` the container that should, `$2` the host port, `$3` the
# container's port. One `KEY VALUE` line each: `container RUNNING IMAGE` (or `absent -`),
# `published ADDRESS` (or `-`), then, only when that container does not publish the port,
# `holders` (containers publishing it) and `process` (the process listening on it). The usual
# answer takes one `docker inspect`.
format='{{.State.Running}} {{.Config.Image}} {{with index .NetworkSettings.Ports "'"$3"'/tcp"}}{{with index . 0}}{{.HostIp}}:{{.HostPort}}{{end}}{{end}}'
if seen=$(docker inspect -f "$format" -- "$1" 2>/dev/null); then
  running=${seen%% *}
  rest=${seen#* }
  image=${rest%% *}
  published=${rest#* }
  [ "$published" != "$rest" ] && [ -n "$published" ] || published=-
else
  running=absent image=- published=-
fi
printf 'container %s %s\npublished %s\n' "$running" "$image" "$published"
case $running:$published in
  true:*:"$2") exit 0 ;;
esac
printf 'holders %s\n' "$(docker ps --filter "publish=$2" --format '{{.Names}}' 2>/dev/null | tr '\n' ' ')"
printf 'process %s\n' "$(ss -Hltnp "sport = :$2" 2>/dev/null | sed -n 's/.*users:(("\([^"]*\)",pid=\([0-9]*\).*/\1 (pid \2)/p' | head -n 1)"

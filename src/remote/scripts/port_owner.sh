# shellcheck shell=sh
# Who answers on a port: `$1` the container that should, `$2` the host port, `$3` the
# container's port. One `KEY VALUE` line each: `container RUNNING IMAGE` (or `absent -`),
# `published ADDRESS` (or `-`), `holders` (containers publishing the port), `process` (the
# process listening on it).
printf 'container %s\n' "$(docker inspect -f '{{.State.Running}} {{.Config.Image}}' -- "$1" 2>/dev/null || echo 'absent -')"
published=$(docker port -- "$1" "$3/tcp" 2>/dev/null | head -n 1)
printf 'published %s\n' "${published:--}"
printf 'holders %s\n' "$(docker ps --filter "publish=$2" --format '{{.Names}}' 2>/dev/null | tr '\n' ' ')"
printf 'process %s\n' "$(ss -Hltnp "sport = :$2" 2>/dev/null | sed -n 's/.*users:(("\([^"]*\)",pid=\([0-9]*\).*/\1 (pid \2)/p' | head -n 1)"

# shellcheck shell=sh
# Which of the ports before `--` something else holds than the containers after it: one
# `held PORT container NAMES` or `held PORT process NAME (pid N)` line per such port. One
# `docker ps` for every port (one per port and container took 170 ms a host).
ports=
while [ "$#" -gt 0 ] && [ "$1" != -- ]; do ports="$ports $1"; shift; done
[ "$#" -gt 0 ] && shift
# Nothing listens on any of them (`ss` without `-p` reads no process's sockets) and docker
# publishes ports through its proxy, which listens on each: nobody holds them, and `docker ps`
# (most of this check's time) is not needed. With `userland-proxy` off a container's port has no
# listener, only a NAT rule: docker is asked.
if listeners=$(ss -Hltn 2>/dev/null) && ! printf '%s\n' "$listeners" |
  awk -v ports=" $ports " '{ n = split($4, a, ":"); if (index(ports, " " a[n] " ")) found = 1 }
    END { exit !found }'; then
  if ! grep -qs '"userland-proxy"[[:space:]]*:[[:space:]]*false' /etc/docker/daemon.json &&
    ! for pid in $(pidof dockerd 2>/dev/null); do tr '\0' ' ' < "/proc/$pid/cmdline"; echo; done 2>/dev/null |
      grep -q 'userland-proxy[= ]*false'; then
    exit 0
  fi
fi
published=$(docker ps --format '{{.Names}} {{.Ports}}' 2>/dev/null)
for p in $ports; do
  others=
  ours=0
  while read -r n published_ports; do
    [ -n "$n" ] || continue
    case ", $published_ports" in *":$p->"*) ;; *) continue ;; esac
    mine=0
    for a; do [ "$n" = "$a" ] && mine=1; done
    if [ "$mine" = 1 ]; then ours=1; else others="$others$n "; fi
  done <<LIST
$published
LIST
  if [ -n "$others" ]; then echo "held $p container $others"; continue; fi
  [ "$ours" = 1 ] && continue
  # Not published by a container (or as a range `docker ps` shows otherwise): who listens,
  # from one `ss` for every port (it reads every process's sockets: 50 ms a call).
  [ -n "${listening+set}" ] || listening=$(ss -Hltnp 2>/dev/null)
  holder=$(printf '%s\n' "$listening" | awk -v p=":$p" '{ a = $4; if (substr(a, length(a) - length(p) + 1) == p) { print; exit } }' |
    sed -n 's/.*users:(("\([^"]*\)",pid=\([0-9]*\).*/\1 (pid \2)/p')
  if [ -n "$holder" ]; then echo "held $p process $holder"; fi
done
true

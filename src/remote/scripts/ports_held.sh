# shellcheck shell=sh
# Which of the ports before `--` something else holds than the containers after it: one
# `held PORT container NAMES` or `held PORT process NAME (pid N)` line per such port. One
# `docker ps` for every port (one per port and container took 170 ms a host), and none when
# nothing listens on them (after the functions of `ports_fn.sh`).
ports=
while [ "$#" -gt 0 ] && [ "$1" != -- ]; do ports="$ports $1"; shift; done
[ "$#" -gt 0 ] && shift
# shellcheck disable=SC2086 # port numbers
if nobody_listens $ports; then exit 0; fi
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

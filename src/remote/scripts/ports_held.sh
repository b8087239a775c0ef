# shellcheck shell=sh
# Which of the ports before `--` something else holds than the containers after it: one
# `held PORT container NAMES` or `held PORT process NAME (pid N)` line per such port.
ports=
while [ "$#" -gt 0 ] && [ "$1" != -- ]; do ports="$ports $1"; shift; done
[ "$#" -gt 0 ] && shift
for p in $ports; do
  others=$(docker ps --filter "publish=$p" --format '{{.Names}}' 2>/dev/null | while read -r n; do
    mine=0
    for a; do [ "$n" = "$a" ] && mine=1; done
    [ "$mine" = 1 ] || printf '%s ' "$n"
  done)
  if [ -n "$others" ]; then echo "held $p container $others"; continue; fi
  ours=0
  for a; do
    if [ -n "$(docker ps -q --filter "name=^$a\$" --filter "publish=$p" 2>/dev/null)" ]; then ours=1; fi
  done
  [ "$ours" = 1 ] && continue
  holder=$(ss -Hltnp "sport = :$p" 2>/dev/null | sed -n 's/.*users:(("\([^"]*\)",pid=\([0-9]*\).*/\1 (pid \2)/p' | head -n 1)
  if [ -n "$holder" ]; then echo "held $p process $holder"; fi
done
true

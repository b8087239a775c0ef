# shellcheck shell=sh
# Start a release in a colour (after the functions of `state_fn.sh` and `ports_fn.sh`): `$1`
# image, `$2` unit, `$3` unit env file, `$4` app env file, `$5` the unit's container, `$6` the
# port it will publish, `$7` the upstream include, `$8` the colour's unit in the earlier layout
# (stopped for good first: the colour is idle); then the unit env lines. The app env (it holds
# secrets) arrives on stdin. Both files are written beside their target at mode 0600 and renamed
# into place; the unit env gets `SHIPIT_UNITS`, the digest of the units it starts with.
#
# Refuses, changing nothing, to restart the copy users get (exit 5, `shipit-refused-live`):
# the colour nginx routes to first while it runs (unless it does not answer and the `backup`
# does), or the `backup` while the first does not answer and it does. Refuses to start on a port something else
# holds (exit 6, `shipit-port-held PORT KIND NAME`).
set -e
image=$1 unit=$2 unit_env=$3 app_env=$4 container=$5 port=$6 upstream=$7 legacy=$8
shift 8
old=$(sed -n 's/^SHIPIT_PORT=//p' "$unit_env" 2>/dev/null || true)
path=$(sed -n 's/^SHIPIT_HEALTH_PATH=//p' "$unit_env" 2>/dev/null || true)
if [ -n "$old" ] && { systemctl is-active --quiet -- "$unit" || systemctl is-active --quiet -- "$legacy"; }; then
  primary=$(sed -n 's/^server 127\.0\.0\.1:\([0-9]*\) max_fails.*/\1/p' "$upstream" 2>/dev/null | head -n 1)
  fallback=$(sed -n 's/^server 127\.0\.0\.1:\([0-9]*\) backup;.*/\1/p' "$upstream" 2>/dev/null | head -n 1)
  if [ "$old" = "$primary" ] && { serves "$(probe "$old" "$path")" || ! serves "$(probe "$fallback" "$path")"; }; then
    echo "shipit-refused-live $unit serves port $old" >&2
    exit 5
  fi
  if [ "$old" = "$fallback" ] && ! serves "$(probe "$primary" "$path")" && serves "$(probe "$old" "$path")"; then
    echo "shipit-refused-live $unit serves port $old (nginx's backup, while port ${primary:-?} does not answer)" >&2
    exit 5
  fi
fi
if systemctl cat -- "$legacy" > /dev/null 2>&1; then
  systemctl disable --quiet --now -- "$legacy" 2> /dev/null || systemctl stop -- "$legacy"
fi
# Who publishes the port, in one call: this colour's own container may; anyone else may not.
# Nobody, when nothing listens on it (`nobody_listens`, ports_fn.sh).
holders=''
listening=1
if nobody_listens "$port"; then listening=0; else holders=$(docker ps --format '{{.Names}} {{.Ports}}' | while read -r name ports; do
  case ", $ports" in *":$port->"*) printf '%s ' "$name" ;; esac
done); fi
others=$(for n in $holders; do [ "$n" = "$container" ] || printf '%s ' "$n"; done)
if [ -n "$others" ]; then
  echo "shipit-port-held $port container $others" >&2
  exit 6
fi
if [ -z "$holders" ] && [ "$listening" = 1 ]; then
  holder=$(ss -Hltnp "sport = :$port" 2>/dev/null | sed -n 's/.*users:(("\([^"]*\)",pid=\([0-9]*\).*/\1 (pid \2)/p' | head -n 1)
  if [ -n "$holder" ]; then
    echo "shipit-port-held $port process $holder" >&2
    exit 6
  fi
fi
# The colour's old copy (idle: checked above) stops while the new image is pulled, both taking a
# few hundred ms, instead of one after the other. A failed pull leaves it stopped, as a failed
# start would (the deploy's undo stops this colour either way).
if ! docker image inspect -- "$image" > /dev/null 2>&1; then
  stopping=
  if systemctl is-active --quiet -- "$unit"; then
    systemctl stop -- "$unit" &
    stopping=$!
  fi
  pulled=0
  docker pull -q -- "$image" > /dev/null || pulled=$?
  [ -z "$stopping" ] || wait "$stopping" || true
  [ "$pulled" = 0 ] || exit "$pulled"
fi
umask 077
mkdir -p -- "$(dirname -- "$app_env")"
tmp=$(mktemp -- "$app_env.XXXXXX")
cat > "$tmp"
chmod 600 -- "$tmp"
mv -f -- "$tmp" "$app_env"
tmp=$(mktemp -- "$unit_env.XXXXXX")
{ printf '%s\n' "$@"; printf 'SHIPIT_UNITS=%s\n' "$(unit_sum "${unit%@*}")"; } > "$tmp"
chmod 600 -- "$tmp"
mv -f -- "$tmp" "$unit_env"
systemctl reset-failed -- "$unit" 2> /dev/null || true
# `enable` reloads systemd's units each time (150 ms): only when not enabled yet.
systemctl is-enabled --quiet -- "$unit" 2> /dev/null || systemctl enable --quiet -- "$unit"
systemctl restart -- "$unit"

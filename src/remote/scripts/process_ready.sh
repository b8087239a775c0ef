# shellcheck shell=sh
# Whether a newly started process is ready: `$1` its unit, `$2` its container, `$3` `after` or
# `command`, `$4` seconds: with `after`, it must still run after that long without a restart;
# with `command`, the rest of the arguments are run in its container (`docker exec`) until they
# exit 0, for at most that long. On failure: why on stderr, then its last log lines; exit 1.
unit=$1 container=$2 mode=$3 secs=$4
shift 4
end=$(($(date +%s) + secs))
case $mode in
  after)
    sleep "$secs"
    restarts=$(systemctl show -p NRestarts --value -- "$unit" 2> /dev/null)
    if systemctl is-active --quiet -- "$unit" && [ "${restarts:-0}" = 0 ]; then exit 0; fi
    echo "shipit: $unit is $(systemctl is-active -- "$unit" 2> /dev/null) after ${secs}s (restarted ${restarts:-?} times)" >&2 ;;
  command)
    while :; do
      if out=$(docker exec -- "$container" "$@" 2>&1); then exit 0; fi
      if [ "$(date +%s)" -ge "$end" ]; then break; fi
      sleep 0.5
    done
    echo "shipit: its readiness command did not succeed within ${secs}s; it said: $out" >&2 ;;
esac
journalctl -u "$unit" -n 20 --no-pager -o cat >&2 2> /dev/null || true
exit 1

# shellcheck shell=sh
# One accessory on its host: `$1` what to do (`up`, `restart`, `status`, `remove`,
# `remove-data`), `$2` its unit, `$3` its container, `$4` the environment's network, `$5` its
# image as configured, `$6` its environment file, `$7` seconds to wait for its health, `$8` how
# many volume directories follow, then those host directories, then its health command (none:
# running is healthy).
#
# `up`: the network and the volume directories made when missing (an existing directory is
# left as it is: it holds data), the image pulled when the engine lacks it, the unit enabled,
# started when not active; never restarted. `restart`: the same, then `systemctl restart`.
# Both wait for health (not longer once systemd has given up on the unit); exit 125 when the
# image cannot be pulled. `status`: the health
# command run once. `remove`: stopped, disabled, its unit and environment file removed;
# `remove-data` removes its volume directories too.
#
# Prints `accessory ACTIVE MAINPID ID PID IMAGE STARTED HEALTH` (`-` for what is not there):
# HEALTH `healthy`, `unhealthy`, `none` (no command) or `down`; with `unhealthy`, the health
# command's last output after it; after a failed start, the unit's last log lines. Exits 3
# when it did not become healthy in time.
mode=$1 unit=$2 container=$3 network=$4 image=$5 env_file=$6 timeout=$7 ndirs=$8
shift 8
dirs=
i=0
while [ "$i" -lt "$ndirs" ]; do
  dirs="$dirs $(printf '%s' "$1" | base64 -w0)"
  shift
  i=$((i + 1))
done
health_out=

healthy() {
  if [ "$#" = 0 ]; then
    [ "$(docker inspect -f '{{.State.Running}}' -- "$container" 2> /dev/null)" = true ]
    return
  fi
  health_out=$(timeout 10 docker exec -- "$container" "$@" 2>&1)
}

report() {
  active=$(systemctl is-active -- "$unit" 2> /dev/null) || true
  mainpid=$(systemctl show -p MainPID --value -- "$unit" 2> /dev/null) || true
  info=$(docker inspect -f '{{.Id}} {{.State.Pid}} {{.Config.Image}} {{.State.StartedAt}}' -- "$container" 2> /dev/null) ||
    info='- - - -'
  if [ "$(docker inspect -f '{{.State.Running}}' -- "$container" 2> /dev/null)" != true ]; then
    health=down
  elif [ "$#" = 0 ]; then
    health=none
  elif healthy "$@"; then
    health=healthy
  else
    health=unhealthy
  fi
  printf 'accessory %s %s %s %s\n' "${active:--}" "${mainpid:--}" "$info" "$health"
  if [ "$health" = unhealthy ]; then printf '%s\n' "$health_out" | tail -n 5; fi
}

wait_healthy() {
  deadline=$(($(date +%s) + timeout))
  while :; do
    if [ "$(docker inspect -f '{{.State.Running}}' -- "$container" 2> /dev/null)" = true ] && healthy "$@"; then
      return 0
    fi
    # A unit systemd gave up on (its restarts came too fast) will not become healthy.
    if [ "$(date +%s)" -ge "$deadline" ] || systemctl is-failed --quiet -- "$unit"; then
      report "$@"
      echo "shipit: $container was not healthy (waited up to ${timeout}s); its last log lines:" >&2
      journalctl -u "$unit" -n 15 --no-pager -o cat >&2 2> /dev/null || true
      exit 3
    fi
    sleep 1
  done
}

case $mode in
  up | restart)
    docker network inspect -- "$network" > /dev/null 2>&1 ||
      docker network create -- "$network" > /dev/null || exit 1
    for d in $dirs; do
      d=$(printf '%s' "$d" | base64 -d)
      [ -e "$d" ] || mkdir -p -- "$d" || exit 1
    done
    systemctl enable --quiet -- "$unit" || exit 1
    # Pulled before a start: a registry that lacks it is said at once, and a restart's stop
    # lasts the restart, not the download.
    if ! docker image inspect -- "$image" > /dev/null 2>&1; then
      docker pull -q -- "$image" > /dev/null || exit 125
    fi
    if [ "$mode" = restart ]; then
      systemctl restart -- "$unit" || exit 1
    elif ! systemctl is-active --quiet -- "$unit"; then
      systemctl start -- "$unit" || exit 1
    fi
    wait_healthy "$@"
    report "$@"
    ;;
  status)
    report "$@"
    ;;
  remove | remove-data)
    systemctl disable --now --quiet -- "$unit" 2> /dev/null || true
    docker rm -f -- "$container" > /dev/null 2>&1 || true
    rm -f -- "/etc/systemd/system/$unit" "$env_file" || exit 1
    systemctl daemon-reload || exit 1
    if [ "$mode" = remove-data ]; then
      for d in $dirs; do
        d=$(printf '%s' "$d" | base64 -d)
        rm -rf -- "$d" || exit 1
      done
    fi
    report
    ;;
  *)
    echo "shipit: unknown accessory mode $mode" >&2
    exit 2
    ;;
esac

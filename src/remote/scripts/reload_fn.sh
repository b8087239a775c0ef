# shellcheck shell=sh
# `reload_nginx`: reload nginx (start it if it is not running), then wait at most 15 s until its
# new workers run: a reload is asynchronous, and until then new connections may still meet the
# old configuration (a loaded host may take seconds). Shared by the scripts that reload nginx.
nginx_workers() { pgrep -P "$1" -x -f 'nginx: worker process' | tr '\n' ' '; }
reload_nginx() {
  master=$(cat /run/nginx.pid 2>/dev/null)
  old=" $(nginx_workers "$master") "
  # A running master reloads on SIGHUP, which is all nginx.service's reload does, without
  # systemd's round trip and the `nginx -s` that parses the configuration once more (40 ms a
  # switch). The pid file is trusted only if it names nginx's master; else systemd acts.
  case $(ps -o args= -p "${master:-0}" 2>/dev/null) in
    'nginx: master process'*) kill -HUP "$master" || systemctl reload-or-restart nginx || return 1 ;;
    *) systemctl reload-or-restart nginx || return 1 ;;
  esac
  i=0
  while [ "$i" -lt 750 ]; do
    now=$(cat /run/nginx.pid 2>/dev/null)
    cur=$(nginx_workers "$now")
    fresh=1
    [ -n "$cur" ] || fresh=0
    # A restarted nginx (a new master) has only new workers.
    if [ "$now" = "$master" ]; then
      for p in $cur; do case $old in *" $p "*) fresh=0 ;; esac; done
    fi
    [ "$fresh" = 1 ] && return 0
    sleep 0.02
    i=$((i + 1))
  done
  echo "shipit: nginx reloaded but its new workers did not start within 15s (master ${now:-none}, workers: ${cur:-none}; nginx's error log ends: $(tail -n 2 /var/log/nginx/error.log 2>/dev/null | tr '\n' ' '))" >&2
  return 1
}

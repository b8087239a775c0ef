# shellcheck shell=sh
# Retire a site from a host that is no longer one of its environment's (after the functions of
# `reload_fn.sh`): `$1` its key (`app_env`), `$2` its nginx site, `$3` its configuration
# directory, `$4` its logrotate rule, `$5` the app, `$6` the environment. Its units (web
# colours, processes, job timers and services) are stopped and disabled, its containers
# removed, its site taken out of nginx (validated first, put back if nginx refuses), then the
# unit files, the rule and the configuration directory (with its secrets) removed. The history
# and backups under /var/lib/shipit stay. Prints `stopped UNIT`, `removed CONTAINER`,
# `site removed` and what was left running, if anything (`still UNIT STATE`).
key=$1 site=$2 conf=$3 logrotate=$4 app=$5 env=$6
units=$(systemctl list-units --all --plain --no-legend -- "$key@*" "${key}_*" 2> /dev/null | awk '{print $1}')
files=$(systemctl list-unit-files --plain --no-legend -- "$key@*" "${key}_*" 2> /dev/null | awk '{print $1}')
for u in $units $files; do
  case $u in *@.service) continue ;; esac
  systemctl disable --now --quiet -- "$u" 2> /dev/null || systemctl stop -- "$u" 2> /dev/null || true
  systemctl reset-failed -- "$u" 2> /dev/null || true
done
for u in $units; do printf 'stopped %s\n' "$u"; done
docker ps -aq --filter "label=shipit.app=$app" --filter "label=shipit.environment=$env" |
  while read -r c; do
    n=$(docker inspect --format '{{.Name}}' -- "$c" 2> /dev/null)
    docker rm -f -- "$c" > /dev/null 2>&1 && printf 'removed %s\n' "${n#/}"
  done
if [ -e "$site" ]; then
  mv -f -- "$site" "$site.shipit-retired~" || exit 1
  if ! out=$(nginx -t -q 2>&1); then
    mv -f -- "$site.shipit-retired~" "$site"
    printf 'shipit: nginx refuses its configuration without the site, which was put back:\n%s\n' "$out" >&2
    exit 3
  fi
  rm -f -- "$site.shipit-retired~"
  reload_nginx || exit 1
  echo 'site removed'
fi
rm -f -- /etc/systemd/system/"$key"@.service /etc/systemd/system/"$key"_* "$logrotate"
rm -rf -- "$conf"
systemctl daemon-reload
for u in $units; do
  s=$(systemctl is-active -- "$u" 2> /dev/null)
  case $s in active | activating | reloading) printf 'still %s %s\n' "$u" "$s" ;; esac
done
true

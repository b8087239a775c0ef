# shellcheck shell=sh
# What `shipit doctor` checks on a host: one `KEY VALUE` line each. `$1` is the registry
# whose login to look for (may be empty).
printf 'uid %s\n' "$(id -u)"
if [ "$(id -u)" = 0 ] || sudo -n true 2>/dev/null; then echo 'root yes'; else echo 'root no'; fi
printf 'docker %s\n' "$(docker info --format '{{.ServerVersion}}' 2>/dev/null || echo -)"
printf 'arch %s\n' "$(uname -m)"
conf="${DOCKER_CONFIG:-$HOME/.docker}/config.json"
if [ -n "$1" ] && [ -f "$conf" ] && grep -qF "\"$1\"" "$conf"; then echo 'login yes'; else echo 'login no'; fi
printf 'nginx %s\n' "$(nginx -v 2>&1 | sed 's|.*/||' || echo -)"
printf 'nginx-active %s\n' "$(systemctl is-active nginx 2>/dev/null)"
printf 'systemd %s\n' "$(systemctl --version 2>/dev/null | head -n 1 | awk '{print $2}')"
printf 'disk %s\n' "$(df -Pk /var/lib/docker 2>/dev/null | awk 'NR == 2 {print $4}')"
printf 'clock %s\n' "$(date +%s%N)"

# shellcheck shell=sh
# `nobody_listens PORT...`: true when nothing listens on any of the TCP ports and docker publishes
# ports through its proxy, which listens on each: nobody holds them, and `docker ps` (30 ms, most
# of a ports check) is not needed. `ss` without `-p` reads no process's sockets. With docker's
# `userland-proxy` off a container's port has no listener, only a NAT rule: false, docker is asked.
# Shared by `ports_held.sh` and `prepare.sh`.
nobody_listens() {
  listeners=$(ss -Hltn 2>/dev/null) || return 1
  if printf '%s\n' "$listeners" |
    awk -v ports=" $* " '{ n = split($4, a, ":"); if (index(ports, " " a[n] " ")) found = 1 } END { exit !found }'; then
    return 1
  fi
  ! grep -qs '"userland-proxy"[[:space:]]*:[[:space:]]*false' /etc/docker/daemon.json &&
    ! for pid in $(pidof dockerd 2>/dev/null); do tr '\0' ' ' < "/proc/$pid/cmdline"; echo; done 2>/dev/null |
      grep -q 'userland-proxy[= ]*false'
}

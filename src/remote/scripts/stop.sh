# shellcheck shell=sh
# Stop units `$@` and keep them from starting at boot; a unit whose file is gone (of the
# earlier layout, say) is skipped. Each ends `inactive`, not `failed`: a copy stopped while its
# container was still being created (an undo right after its start) makes `docker stop` fail,
# and a failed unit is what monitoring alerts on, for a stop shipit meant.
status=0
for u; do
  systemctl cat -- "$u" > /dev/null 2>&1 || continue
  systemctl disable --quiet --now -- "$u" || status=1
  systemctl reset-failed -- "$u" 2> /dev/null || true
done
exit $status

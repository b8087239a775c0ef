# shellcheck shell=sh
# Stop units `$@` and keep them from starting at boot; a unit whose file is gone (of the
# earlier layout, say) is skipped.
status=0
for u; do
  systemctl cat -- "$u" > /dev/null 2>&1 || continue
  systemctl disable --quiet --now -- "$u" || status=1
done
exit $status

# shellcheck shell=sh
# The state of the units beside the web one: for each unit before `--`, `unit NAME STATE`
# (`systemctl is-active`); then for each `TIMER SERVICE` pair after it,
# `job TIMER|LAST|NEXT|RESULT|STATUS`: when the timer last fired and fires next, and how the
# service's last run ended (its result and exit status).
while [ "$#" -gt 0 ] && [ "$1" != -- ]; do
  printf 'unit %s %s\n' "$1" "$(systemctl is-active -- "$1" 2> /dev/null)"
  shift
done
[ "$#" -gt 0 ] && shift
while [ "$#" -ge 2 ]; do
  printf 'job %s|%s|%s|%s|%s\n' "$1" \
    "$(systemctl show -p LastTriggerUSec --value -- "$1" 2> /dev/null)" \
    "$(systemctl show -p NextElapseUSecRealtime --value -- "$1" 2> /dev/null)" \
    "$(systemctl show -p Result --value -- "$2" 2> /dev/null)" \
    "$(systemctl show -p ExecMainStatus --value -- "$2" 2> /dev/null)"
  shift 2
done
true

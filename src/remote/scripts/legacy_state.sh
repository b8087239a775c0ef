# shellcheck shell=sh
# What a host holds of an app in the earlier layout (keyed by the app alone): `$1` its
# upstream include, `$2` nginx site, `$3`/`$4` blue/green app env files, `$5`/`$6` blue/green
# units, `$7` lock dir, `$8` the new layout's upstream include. One `KEY VALUE` line each;
# from the app env files only their `SHIPIT_ENVIRONMENT` leaves the host. Without the earlier
# upstream include there is nothing to move and the rest is not read (four `systemctl` calls
# were most of a provision re-run's time on a host).
if [ ! -f "$1" ]; then
  printf 'upstream -\nenvironment -\ndomain -\nunit - -\nunit - -\nlock free\nmoved no\n'
  exit 0
fi
printf 'upstream %s\n' "$(base64 -w0 < "$1")"
env=$(sed -n 's/^SHIPIT_ENVIRONMENT=//p' "$3" "$4" 2>/dev/null | head -n 1)
printf 'environment %s\n' "${env:--}"
domain=$(sed -n 's/^[[:space:]]*server_name[[:space:]]*\([^;]*\);.*/\1/p' "$2" 2>/dev/null | head -n 1)
printf 'domain %s\n' "${domain:--}"
for u in "$5" "$6"; do
  a=$(systemctl is-active -- "$u" 2>/dev/null | head -n 1)
  e=$(systemctl is-enabled -- "$u" 2>/dev/null | head -n 1)
  printf 'unit %s %s\n' "${a:-unknown}" "${e:-absent}"
done
if [ -d "$7" ]; then echo 'lock held'; else echo 'lock free'; fi
if [ -f "$8" ]; then echo 'moved yes'; else echo 'moved no'; fi

# shellcheck shell=sh
# Remove units of the site that its configuration no longer has (`$@`, their paths): a job's
# timer is disabled and stopped, a job's service stopped, every instance of a process template
# stopped; then the files go and systemd reloads. Prints each unit removed.
for f; do
  name=$(basename -- "$f")
  case $name in
    *.timer) systemctl disable --now --quiet -- "$name" 2> /dev/null || true ;;
    *@.service) systemctl stop -- "${name%@.service}@*.service" 2> /dev/null || true
      systemctl disable --quiet -- "${name%@.service}@blue.service" "${name%@.service}@green.service" 2> /dev/null || true ;;
    *.service) systemctl stop -- "$name" 2> /dev/null || true ;;
  esac
  rm -f -- "$f" && printf '%s\n' "$name"
done
systemctl daemon-reload

# shellcheck shell=sh
# The units of site `$1` (its key) beside the web one: `file PATH` for each process template
# (`KEY_NAME@.service`), job unit (`KEY_job_NAME.service`, `.timer`) and certificate check
# (`KEY_tls_check.service`, `.timer`) installed; then for
# each timer in `$2...`, `timer NAME ENABLED ACTIVE` (`systemctl is-enabled`, `is-active`).
key=$1
shift
for f in /etc/systemd/system/"$key"_*@.service /etc/systemd/system/"$key"_job_*.service \
  /etc/systemd/system/"$key"_job_*.timer /etc/systemd/system/"$key"_tls_check.service \
  /etc/systemd/system/"$key"_tls_check.timer; do
  if [ -e "$f" ]; then printf 'file %s\n' "$f"; fi
done
for t; do
  printf 'timer %s %s %s\n' "$t" "$(systemctl is-enabled -- "$t" 2> /dev/null || true)" \
    "$(systemctl is-active -- "$t" 2> /dev/null || true)"
done
true

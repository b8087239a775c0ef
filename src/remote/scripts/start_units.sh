# shellcheck shell=sh
# Start units `$@` afresh: a failed state forgotten, enabled for boot, (re)started.
set -e
for u; do systemctl reset-failed -- "$u" 2> /dev/null || true; done
systemctl enable --quiet -- "$@"
systemctl restart -- "$@"

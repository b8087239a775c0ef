# shellcheck shell=sh
# Enable and start timers (`$@`, unit names): a job's schedule runs from now on.
set -e
systemctl enable --now --quiet -- "$@"

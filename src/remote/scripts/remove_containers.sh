# shellcheck shell=sh
# Remove containers `$@` (a one-off container whose run was cut short), running or not.
docker rm -f -- "$@" > /dev/null 2>&1
true

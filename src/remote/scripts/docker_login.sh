# shellcheck shell=sh
# `docker login` with the password on stdin: `$1` user, `$2` registry.
docker login --username "$1" --password-stdin "$2" > /dev/null

# shellcheck shell=sh
# Create directories: `$@` is a list of `MODE PATH` pairs.
set -e
while [ "$#" -ge 2 ]; do
  install -d -m "$1" -- "$2"
  shift 2
done

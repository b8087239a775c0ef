# shellcheck shell=sh
# Copy the earlier layout's state into the new one: `SOURCE TARGET` pairs, each copied (mode
# and owner kept, written beside the target and renamed) only when the source exists and the
# target does not.
set -e
while [ "$#" -ge 2 ]; do
  if [ -e "$1" ] && [ ! -e "$2" ]; then
    mkdir -p -- "$(dirname -- "$2")"
    cp -p -- "$1" "$2.shipit-tmp~"
    mv -f -- "$2.shipit-tmp~" "$2"
  fi
  shift 2
done

# shellcheck shell=sh
# Drop hosts `$3...` (retired) from the fleet record `$1` and from the record `$2` of hosts
# left behind; each file written beside itself and renamed.
fleet=$1 behind=$2
shift 2
drop() { # FILE PATTERN...
  f=$1
  shift
  [ -f "$f" ] || return 0
  grep -vxF "$@" -- "$f" > "$f.shipit-tmp~"
  [ "$?" -le 1 ] && mv -f -- "$f.shipit-tmp~" "$f"
}
for h; do
  drop "$fleet" -e "removed $h" -e "host $h" || exit 1
  if [ -f "$behind" ]; then
    grep -vF -e "\"host\":\"$h\"" -- "$behind" > "$behind.shipit-tmp~"
    [ "$?" -le 1 ] && mv -f -- "$behind.shipit-tmp~" "$behind" || exit 1
  fi
done

# shellcheck shell=sh
# A release left waiting for promotion (`deploy --no-promote`), after the functions of
# `reload_fn.sh` and `upstream_fn.sh`: `$1` upstream include and `$2` its content (the live
# colour alone: the idle colour, where the release waits, is never nginx's backup), `$3`
# `[preview]`'s include and `$4` its content (`-`: no preview), `$5` the waiting record and
# `$6` its JSON line (its `"time":0` becomes the host's clock). One reload for both includes.
stage_upstream "$1" "$2" || exit
if [ "$3" != - ]; then
  { printf '%s' "$4" > "$3.shipit-tmp~" && chmod 644 -- "$3.shipit-tmp~" &&
    mv -f -- "$3.shipit-tmp~" "$3"; } || exit 1
fi
commit_upstream "$1" || exit 1
{ mkdir -p -- "$(dirname -- "$5")" &&
  printf '%s\n' "$6" | sed "s/\"time\":0/\"time\":$(date +%s)/" > "$5.shipit-tmp~" &&
  mv -f -- "$5.shipit-tmp~" "$5"; } || exit 1

# shellcheck shell=sh
# Point nginx at a colour in one step (after the functions of `reload_fn.sh` and
# `upstream_fn.sh`): `$1` upstream include, `$2` its new content, validated, put in place,
# reloaded (every new connection sees it when this returns). Used to switch back.
stage_upstream "$1" "$2" || exit
commit_upstream "$1"

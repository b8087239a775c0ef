# shellcheck shell=sh
# The first half of a switch, while the new copy is gated (after the functions of
# `upstream_fn.sh`): `$1` upstream include, `$2` its new content, staged beside it and
# validated; nothing serves differently.
stage_upstream "$1" "$2"

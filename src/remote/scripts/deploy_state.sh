# shellcheck shell=sh
# Print a host's deploy state (after the functions of `state_fn.sh`): `$1` upstream include,
# `$2`/`$3` blue/green unit env files, `$4`/`$5` blue/green units, `$6`/`$7` blue/green app env
# files, `$8` lock dir, `$9` history file, `${10}` = 1 to compare each colour's settings with
# the ones on stdin, `${11}`/`${12}` the blue/green units of the earlier layout (keyed by the
# app alone), `${13}` its upstream include. One `KEY VALUE` line each, file contents
# base64-encoded (`-` when absent). The comparison happens on the host: only `same` or
# `differs` leaves it, never the settings nor anything derived from them.
dump_state "$@"

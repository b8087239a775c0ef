# shellcheck shell=sh
# The second half of a switch, on every host at once once all were healthy (after the
# functions of `reload_fn.sh` and `upstream_fn.sh`): `$1` upstream include, its staged
# candidate put in place and nginx reloaded.
commit_upstream "$1"

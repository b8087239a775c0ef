# shellcheck shell=sh
# Append a line `$2` to the history file `$1`.
mkdir -p -- "$(dirname -- "$1")" && printf '%s\n' "$2" >> "$1"

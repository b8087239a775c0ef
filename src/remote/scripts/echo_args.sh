# shellcheck shell=sh
# Print each argument on its own line (used to prove quoting over SSH).
for a; do printf '%s\0' "$a"; done

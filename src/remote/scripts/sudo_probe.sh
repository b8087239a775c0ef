# shellcheck shell=sh
# Who the login user is and whether it may act as root, run as that user (never under
# sudo): `user NAME`, `uid N`, `shell PATH` (its login shell), then `root yes`, `sudo yes`, or
# `sudo no` followed by what sudo said (`password` when it wants one).
printf 'user %s\nuid %s\n' "$(id -un)" "$(id -u)"
printf 'shell %s\n' "$(getent passwd "$(id -un)" | cut -d: -f7)"
if [ "$(id -u)" = 0 ]; then echo 'root yes'; exit 0; fi
if ! command -v sudo > /dev/null 2>&1; then echo 'sudo missing'; exit 0; fi
if out=$(sudo -n true 2>&1); then echo 'sudo yes'; else printf 'sudo no %s\n' "$(printf '%s' "$out" | head -n 1)"; fi

# shellcheck shell=sh
# Who the login user is and whether it may act as root, run as that user (never under
# sudo): `user NAME`, `uid N`, then `root yes`, `sudo yes`, or `sudo no` followed by what
# sudo said (`password` when it wants one).
printf 'user %s\nuid %s\n' "$(id -un)" "$(id -u)"
if [ "$(id -u)" = 0 ]; then echo 'root yes'; exit 0; fi
if ! command -v sudo > /dev/null 2>&1; then echo 'sudo missing'; exit 0; fi
if out=$(sudo -n true 2>&1); then echo 'sudo yes'; else printf 'sudo no %s\n' "$(printf '%s' "$out" | head -n 1)"; fi

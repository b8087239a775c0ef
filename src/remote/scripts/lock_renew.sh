# shellcheck shell=sh
# Renew the lease of the lock `$1` held by id `$2`: its `renewed` file gets this host's clock.
# Prints `renewed`, or `lost BASE64-DETAILS` (empty details: no lock at all) when another
# holder has it now. Serialized with takeovers by `flock` on the lock directory.
[ -d "$1" ] || { echo 'lost '; exit 0; }
exec 9< "$1"
if command -v flock > /dev/null; then flock -w 10 9 || exit 1; fi
if grep -qF -- "\"id\":\"$2\"" "$1/info.json" 2>/dev/null; then
  date +%s > "$1/renewed.tmp" && mv -f -- "$1/renewed.tmp" "$1/renewed" && echo renewed
else
  printf 'lost '; if [ -f "$1/info.json" ]; then base64 -w0 < "$1/info.json"; fi; echo
fi

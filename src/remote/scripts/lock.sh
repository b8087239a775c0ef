# shellcheck shell=sh
# Take the environment lock (after the functions of `state_fn.sh`): `$1` lock dir, `$2` holder
# details (JSON). `mkdir` is atomic: exactly one deployer wins; `renewed` holds the host's clock
# at the take (and at each renewal of the holder's lease). Prints `acquired` and then, when the
# thirteen arguments of `deploy_state.sh` follow, the host's deploy state (read under the lock,
# in the same round trip); or `held BASE64-DETAILS SECONDS-SINCE-RENEWED` (`-` when unknown).
mkdir -p -- "$(dirname -- "$1")" || exit 1
if mkdir -- "$1" 2>/dev/null; then
  if ! { printf '%s\n' "$2" > "$1/info.json.tmp" && mv -f -- "$1/info.json.tmp" "$1/info.json" \
    && date +%s > "$1/renewed.tmp" && mv -f -- "$1/renewed.tmp" "$1/renewed"; }; then
    rm -rf -- "$1"
    exit 1
  fi
  echo acquired
  shift 2
  if [ "$#" -ge 13 ]; then dump_state "$@"; fi
else
  printf 'held '; if [ -f "$1/info.json" ]; then base64 -w0 < "$1/info.json"; fi
  renewed=$(cat -- "$1/renewed" 2>/dev/null)
  case $renewed in
    ''|*[!0-9]*) echo ' -' ;;
    *) echo " $(( $(date +%s) - renewed ))" ;;
  esac
fi

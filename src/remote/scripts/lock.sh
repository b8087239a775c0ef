# shellcheck shell=sh
# Take the environment lock (after the functions of `state_fn.sh`): `$1` lock dir, `$2` holder
# details (JSON). `mkdir` is atomic: exactly one deployer wins. Prints `acquired` and then,
# when the thirteen arguments of `deploy_state.sh` follow, the host's deploy state (read under
# the lock, in the same round trip); or `held BASE64-DETAILS`.
mkdir -p -- "$(dirname -- "$1")" || exit 1
if mkdir -- "$1" 2>/dev/null; then
  if ! { printf '%s\n' "$2" > "$1/info.json.tmp" && mv -f -- "$1/info.json.tmp" "$1/info.json"; }; then
    rm -rf -- "$1"
    exit 1
  fi
  echo acquired
  shift 2
  if [ "$#" -ge 13 ]; then dump_state "$@"; fi
else
  printf 'held '; if [ -f "$1/info.json" ]; then base64 -w0 < "$1/info.json"; fi; echo
fi

# shellcheck shell=sh
# The two halves of a switch, shared by `switch.sh`, `stage_upstream.sh` and
# `commit_upstream.sh` (after `reload_fn.sh`):
# `stage_upstream FILE CONTENT` writes the candidate upstream include beside FILE and validates
# it with `nginx -t` on a configuration of its own (exit 3, `shipit-refused`, when nginx
# refuses it); `commit_upstream FILE` puts it in place (atomic rename, the previous one kept
# beside it), reloads nginx and returns once the new workers run, then points `live.env` and
# `live.app.env` at the live colour's env files (jobs run what serves).
stage_upstream() {
  printf '%s' "$2" > "$1.shipit-tmp~" && chmod 644 -- "$1.shipit-tmp~" || return 1
  work=$(mktemp -d) || return 1
  printf 'pid %s/nginx.pid;\nerror_log stderr;\nevents {}\nhttp {\nupstream shipit_candidate {\ninclude %s;\n}\nserver {\nlisten 127.0.0.1:9;\nlocation / { proxy_pass http://shipit_candidate; }\n}\n}\n' \
    "$work" "$1.shipit-tmp~" > "$work/nginx.conf"
  if ! out=$(nginx -t -q -c "$work/nginx.conf" 2>&1); then
    rm -rf -- "$work" "$1.shipit-tmp~"
    printf 'shipit-refused %s nginx -t\n%s\n' "$1" "$out" >&2
    return 3
  fi
  rm -rf -- "$work"
  mv -f -- "$1.shipit-tmp~" "$1.shipit-next~"
}
commit_upstream() {
  if [ ! -f "$1.shipit-next~" ]; then
    echo "shipit: no staged upstream beside $1 (a run cut short since it was staged?)" >&2
    return 4
  fi
  if [ -e "$1" ]; then ln -f -- "$1" "$1.shipit-prev~" || return 1; else rm -f -- "$1.shipit-prev~"; fi
  mv -f -- "$1.shipit-next~" "$1" || return 1
  reload_nginx || return 1
  live=$(sed -n 's/^# live: //p' "$1" | head -n 1)
  case $live in
    blue | green)
      dir=$(dirname -- "$1")
      for kind in env app.env; do
        ln -sfn -- "$live.$kind" "$dir/.live.$kind.shipit-tmp~" &&
          mv -Tf -- "$dir/.live.$kind.shipit-tmp~" "$dir/live.$kind" || return 1
      done ;;
  esac
}

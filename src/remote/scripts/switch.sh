# shellcheck shell=sh
# Point nginx at a colour: `$1` upstream include, `$2` its new content. Atomic rename,
# `nginx -t` (the previous file is put back if it fails, exit 3), then `reload_nginx`
# (reload_fn.sh): every new connection sees the new upstream when it returns. Then the links
# `live.env` and `live.app.env` beside it point at the live colour's env files (for jobs).
f=$1
printf '%s' "$2" > "$f.shipit-tmp~" && chmod 644 -- "$f.shipit-tmp~" || exit 1
if [ -e "$f" ]; then ln -f -- "$f" "$f.shipit-prev~" || exit 1; else rm -f -- "$f.shipit-prev~"; fi
mv -f -- "$f.shipit-tmp~" "$f" || exit 1
if ! out=$(nginx -t -q 2>&1); then
  if [ -e "$f.shipit-prev~" ]; then mv -f -- "$f.shipit-prev~" "$f"; fi
  printf 'shipit-refused %s nginx -t\n%s\n' "$f" "$out" >&2
  exit 3
fi
reload_nginx || exit 1
# Jobs run the live colour's release: `live.env` and `live.app.env` follow the switch.
live=$(printf '%s\n' "$2" | sed -n 's/^# live: //p' | head -n 1)
case $live in
  blue | green)
    dir=$(dirname -- "$f")
    for kind in env app.env; do
      ln -sfn -- "$live.$kind" "$dir/.live.$kind.shipit-tmp~" &&
        mv -Tf -- "$dir/.live.$kind.shipit-tmp~" "$dir/live.$kind" || exit 1
    done ;;
esac

# shellcheck shell=sh
# Point nginx at a colour: `$1` upstream include, `$2` its new content. Atomic rename,
# `nginx -t` (the previous file is put back if it fails, exit 3), reload, then wait (at most
# 5 s) until nginx's new workers run, so that every new connection sees the new upstream.
f=$1
printf '%s' "$2" > "$f.shipit-tmp~" && chmod 644 -- "$f.shipit-tmp~" || exit 1
if [ -e "$f" ]; then ln -f -- "$f" "$f.shipit-prev~" || exit 1; else rm -f -- "$f.shipit-prev~"; fi
mv -f -- "$f.shipit-tmp~" "$f" || exit 1
if ! out=$(nginx -t -q 2>&1); then
  if [ -e "$f.shipit-prev~" ]; then mv -f -- "$f.shipit-prev~" "$f"; fi
  printf 'shipit-refused %s nginx -t\n%s\n' "$f" "$out" >&2
  exit 3
fi
master=$(cat /run/nginx.pid 2>/dev/null)
old=" $(pgrep -P "$master" -x -f 'nginx: worker process' | tr '\n' ' ') "
systemctl reload nginx || exit 1
i=0
while [ "$i" -lt 250 ]; do
  fresh=1
  cur=$(pgrep -P "$master" -x -f 'nginx: worker process')
  [ -n "$cur" ] || fresh=0
  for p in $cur; do case $old in *" $p "*) fresh=0 ;; esac; done
  [ "$fresh" = 1 ] && exit 0
  sleep 0.02
  i=$((i + 1))
done
echo "shipit: nginx reloaded but its new workers did not start within 5s" >&2
exit 1

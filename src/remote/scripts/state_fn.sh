# shellcheck shell=sh
# The functions printing a host's deploy state, shared by `deploy_state.sh` and `lock.sh`.
# `dump_state` takes the thirteen arguments `deploy_state.sh` documents.
b64() { if [ -f "$1" ]; then base64 -w0 < "$1"; echo; else echo -; fi; }
dump_state() {
  if [ "${10}" = 1 ]; then want=$(cat); fi
  printf 'upstream '; b64 "$1"
  printf 'env-blue '; b64 "$2"
  printf 'env-green '; b64 "$3"
  # One systemctl call for the five units: its lines come in the order asked.
  systemctl is-active -- "$4" "$5" "${11}" "${12}" nginx.service 2>/dev/null | {
    read -r blue; read -r green; read -r old_blue; read -r old_green; read -r nginx
    printf 'active-blue %s\nactive-green %s\n' "$blue" "$green"
    printf 'legacy-blue %s\nlegacy-green %s\n' "$old_blue" "$old_green"
    for c in blue:"$6" green:"$7"; do
      f=${c#*:}
      if [ "${10}" != 1 ] || [ ! -f "$f" ]; then v=-
      elif [ "$(grep -v '^SHIPIT_' "$f")" = "$want" ]; then v=same
      else v=differs; fi
      printf 'settings-%s %s\n' "${c%%:*}" "$v"
    done
    printf 'lock '; b64 "$8/info.json"
    if [ -f "$9" ]; then
      total=$(wc -l < "$9")
      first=$((total > 200 ? total - 199 : 1))
      printf 'history %s ' "$first"; tail -n 200 -- "$9" | base64 -w0; echo
    else echo 'history -'; fi
    if [ -f "${13}" ]; then echo 'legacy-upstream yes'; else echo 'legacy-upstream no'; fi
    printf 'nginx %s\n' "$nginx"
  }
}

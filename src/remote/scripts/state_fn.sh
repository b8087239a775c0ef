# shellcheck shell=sh
# The functions printing a host's deploy state, shared by `deploy_state.sh` and `lock.sh`, and
# `unit_sum`, shared with `prepare.sh`. `dump_state` takes the thirteen arguments
# `deploy_state.sh` documents.
b64() { if [ -f "$1" ]; then base64 -w0 < "$1"; echo; else echo -; fi; }
# unit_sum KEY: a digest of the site's web unit and its processes' units as installed now. A
# colour records it when it starts: a later provision that changes volumes, limits or a
# process's command makes the colour's settings differ.
unit_sum() {
  for f in /etc/systemd/system/"$1"@.service /etc/systemd/system/"$1"_*@.service; do
    if [ -f "$f" ]; then cat -- "$f"; fi
  done | sha256sum | cut -c1-16
}
# probe PORT PATH: the HTTP status a copy on 127.0.0.1:PORT gives on PATH (`000`: none within a
# second), or `-` when it cannot be asked (no port, no curl).
probe() {
  if [ -z "$1" ] || ! command -v curl > /dev/null 2>&1; then echo -; return; fi
  curl -s -o /dev/null -w '%{http_code}' --max-time 1 "http://127.0.0.1:$1${2:-/}" 2> /dev/null || true
  echo
}
# answers ENV_FILE: `probe` of a colour's copy, on the port and health path its env file records.
answers() {
  probe "$(sed -n 's/^SHIPIT_PORT=//p' "$1" 2>/dev/null | head -n 1)" \
    "$(sed -n 's/^SHIPIT_HEALTH_PATH=//p' "$1" 2>/dev/null | head -n 1)"
}
# serves CODE: whether an answer (from `probe`) is one nginx passes on to users: a status other
# than 502, 503 and 504 (those, and no answer, make it try the next server).
serves() {
  case $1 in 000 | 502 | 503 | 504 | -) return 1 ;; *) return 0 ;; esac
}
# changed FILE: the names of the settings (stdin: `NAME=value` lines) that FILE lacks or holds
# with another value, or holds and stdin lacks; `SHIPIT_*` lines left out. Only names leave.
changed() {
  awk -v f="$1" '
    BEGIN { while ((getline l < f) > 0) { if (l ~ /^SHIPIT_/ || l == "") continue; k = l; sub(/=.*/, "", k); have[k] = l } }
    $0 != "" { k = $0; sub(/=.*/, "", k); want[k] = $0 }
    END {
      for (k in want) if (!(k in have) || have[k] != want[k]) print k
      for (k in have) if (!(k in want)) print k
    }' | sort | tr '\n' ' '
}
dump_state() {
  if [ "${10}" = 1 ]; then want=$(cat); fi
  state=$(dirname -- "$9")
  key=${4%@*}
  sum=$(unit_sum "$key")
  printf 'upstream '; b64 "$1"
  printf 'env-blue '; b64 "$2"
  printf 'env-green '; b64 "$3"
  # One systemctl call for the five units: its lines come in the order asked.
  systemctl is-active -- "$4" "$5" "${11}" "${12}" nginx.service 2>/dev/null | {
    read -r blue; read -r green; read -r old_blue; read -r old_green; read -r nginx
    printf 'active-blue %s\nactive-green %s\n' "$blue" "$green"
    printf 'legacy-blue %s\nlegacy-green %s\n' "$old_blue" "$old_green"
    # Whether each running colour answers: the two asked at once.
    tmp=$(mktemp -d)
    for c in blue:"$2":"$blue":"$old_blue" green:"$3":"$green":"$old_green"; do
      name=${c%%:*} rest=${c#*:}
      f=${rest%%:*} rest=${rest#*:}
      if [ "${rest%%:*}" = active ] || [ "${rest#*:}" = active ]; then
        answers "$f" > "$tmp/$name" &
      else
        echo - > "$tmp/$name"
      fi
    done
    wait
    printf 'answers-blue %s\nanswers-green %s\n' "$(cat "$tmp/blue")" "$(cat "$tmp/green")"
    rm -rf -- "$tmp"
    for c in blue:"$6":"$2" green:"$7":"$3"; do
      name=${c%%:*} rest=${c#*:}
      f=${rest%%:*} unit_env=${rest#*:}
      if [ "${10}" != 1 ] || [ ! -f "$f" ]; then v=-
      else
        v=$(printf '%s\n' "$want" | changed "$f")
        recorded=$(sed -n 's/^SHIPIT_UNITS=//p' "$unit_env" 2>/dev/null | head -n 1)
        if [ -n "$recorded" ] && [ "$recorded" != "$sum" ]; then v="${v}units "; fi
        if [ -z "$v" ]; then v=same; else v="differs ${v% }"; fi
      fi
      printf 'settings-%s %s\n' "$name" "$v"
    done
    printf 'lock '; b64 "$8/info.json"
    printf 'lock-renewed %s\n' "$(cat -- "$8/renewed" 2>/dev/null || echo -)"
    if [ -f "$9" ]; then
      total=$(wc -l < "$9")
      first=$((total > 200 ? total - 199 : 1))
      printf 'history %s ' "$first"; tail -n 200 -- "$9" | base64 -w0; echo
    else echo 'history -'; fi
    if [ -f "${13}" ]; then echo 'legacy-upstream yes'; else echo 'legacy-upstream no'; fi
    printf 'nginx %s\n' "$nginx"
    printf 'fleet '; b64 "$state/fleet"
    printf 'behind '; b64 "$state/behind"
    printf 'clock %s\n' "$(date +%s)"
    printf 'arch %s\n' "$(uname -m)"
    token=$(sed -n 's/^ *"\([0-9a-f]\{16,\}\)" 1;$/\1/p' "$(dirname -- "$1")/verify.conf" 2> /dev/null | head -n 1)
    printf 'token %s\n' "${token:--}"
  }
}

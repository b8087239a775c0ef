# shellcheck shell=sh
# The functions printing a host's deploy state, shared by `deploy_state.sh` and `lock.sh`, and
# `unit_sum`, shared with `prepare.sh`. `dump_state` takes the thirteen arguments
# `deploy_state.sh` documents.
b64() { if [ -f "$1" ]; then base64 -w0 < "$1"; echo; else echo -; fi; }
# unit_sum KEY: a digest of the site's web unit and its processes' units as installed now. A
# colour records it when it starts: a later provision that changes volumes, limits or a
# process's command makes the colour's settings differ.
unit_sum() {
  # shellcheck disable=SC2046 # the glob's matches, as words: unit paths have no blanks
  s=$(cat -- $(for f in /etc/systemd/system/"$1"@.service /etc/systemd/system/"$1"_*@.service; do
    if [ -f "$f" ]; then printf '%s\n' "$f"; fi; done) < /dev/null | sha256sum)
  printf '%.16s\n' "$s"
}
# env_value FILE NAME: the value of NAME's first `NAME=value` line in FILE (nothing when it has
# none), read by the shell itself.
env_value() {
  [ -f "$1" ] || return 0
  while IFS= read -r l || [ -n "$l" ]; do
    case $l in "$2="*) printf '%s' "${l#"$2="}"; return 0 ;; esac
  done < "$1"
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
  probe "$(env_value "$1" SHIPIT_PORT)" "$(env_value "$1" SHIPIT_HEALTH_PATH)"
}
# serves CODE: whether an answer (from `probe`) is one nginx passes on to users: a status other
# than 502, 503 and 504 (those, and no answer, make it try the next server).
serves() {
  case $1 in 000 | 502 | 503 | 504 | -) return 1 ;; *) return 0 ;; esac
}
# settings COMPARE SUM BLUE_APP_ENV GREEN_APP_ENV BLUE_UNIT_ENV GREEN_UNIT_ENV: for each colour,
# `settings-COLOUR` and `-` (COMPARE is not 1, or no app env), `same`, or `differs NAMES`: the
# settings (stdin: `NAME=value` lines) its app env lacks or holds with another value, or holds
# and stdin lacks (`SHIPIT_*` lines left out), sorted, and `units` when the unit digest its
# unit env recorded is not SUM. One awk for both; only names leave.
settings() {
  awk -v cmp="$1" -v sum="$2" -v fb="$3" -v fg="$4" -v ub="$5" -v ug="$6" '
    function key(l,   k) { k = l; sub(/=.*/, "", k); return k }
    function one(name, f, u,   r, l, k, n, i, j, t, names, have, out, rec) {
      if (cmp != 1) { print "settings-" name " -"; return }
      r = (getline l < f)
      if (r < 0) { print "settings-" name " -"; return }
      while (r > 0) {
        if (l !~ /^SHIPIT_/ && l != "") have[key(l)] = l
        r = (getline l < f)
      }
      close(f)
      n = 0
      for (k in want) if (!(k in have) || have[k] != want[k]) names[++n] = k
      for (k in have) if (!(k in want)) names[++n] = k
      for (i = 2; i <= n; i++) { t = names[i]; for (j = i - 1; j > 0 && names[j] > t; j--) names[j + 1] = names[j]; names[j + 1] = t }
      out = ""
      for (i = 1; i <= n; i++) out = out names[i] " "
      rec = ""
      while ((getline l < u) > 0) if (l ~ /^SHIPIT_UNITS=/) { rec = substr(l, 14); break }
      close(u)
      if (rec != "" && rec != sum) out = out "units "
      if (out == "") print "settings-" name " same"
      else print "settings-" name " differs " substr(out, 1, length(out) - 1)
    }
    $0 != "" { want[key($0)] = $0 }
    END { one("blue", fb, ub); one("green", fg, ug) }'
}
dump_state() {
  if [ "${10}" = 1 ]; then want=$(cat); else want=; fi
  state=${9%/*}
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
    # Whether each running colour answers: the two asked at once, each line named.
    probes=$(
      if [ "$blue" = active ] || [ "$old_blue" = active ]; then echo "blue $(answers "$2")" & fi
      if [ "$green" = active ] || [ "$old_green" = active ]; then echo "green $(answers "$3")" & fi
      wait
    )
    a_blue=- a_green=-
    while read -r c code; do
      case $c in blue) a_blue=$code ;; green) a_green=$code ;; esac
    done <<PROBES
$probes
PROBES
    printf 'answers-blue %s\nanswers-green %s\n' "$a_blue" "$a_green"
    printf '%s\n' "$want" | settings "${10}" "$sum" "$6" "$7" "$2" "$3"
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
    printf 'waiting '; b64 "$state/waiting"
    printf 'clock %s\n' "$(date +%s)"
    printf 'arch %s\n' "$(uname -m)"
    token=$(sed -n '/^ *"[0-9a-f]\{16,\}" 1;$/{s/^ *"\([0-9a-f]*\)" 1;$/\1/p;q;}' "${1%/*}/verify.conf" 2> /dev/null)
    printf 'token %s\n' "${token:--}"
  }
}

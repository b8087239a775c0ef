# shellcheck shell=sh
# Validate staged candidates before anything is installed: `$@` is a list of
# `KIND STAGED FINAL` triples, KIND one of `nginx`, `systemd`, `logrotate`. Units are verified
# in one directory, in order: a job's service comes before its timer, which names it. Prints, on
# failure, `shipit-refused FINAL VALIDATOR` on the first line of stderr, then its output.
work=$(mktemp -d) || exit 1
trap 'rm -rf -- "$work"' EXIT
while [ "$#" -ge 3 ]; do
  kind=$1 staged=$2 final=$3
  shift 3
  case $kind in
    nginx)
      {
        printf 'pid %s/nginx.pid;\nerror_log stderr;\n' "$work"
        printf 'include /etc/nginx/modules-enabled/*.conf;\nevents {}\n'
        printf 'http {\ninclude /etc/nginx/mime.types;\ninclude %s;\n}\n' "$staged"
      } > "$work/nginx.conf"
      validator="nginx -t"
      ok=1; out=$(nginx -t -q -c "$work/nginx.conf" 2>&1) || ok=0 ;;
    systemd)
      name=$(basename -- "$final")
      mkdir -p -- "$work/units"
      cp -- "$staged" "$work/units/$name"
      validator="systemd-analyze verify"
      case $name in
        *@.service) inst="${name%@.service}@blue.service"; cp -- "$staged" "$work/units/$inst" ;;
        *) inst=$name ;;
      esac
      ok=1; out=$(cd "$work/units" && systemd-analyze verify --man=no -- "./$inst" 2>&1) || ok=0
      # A timer's calendar, as systemd reads it (verify only warns about a bad one).
      if [ "$ok" = 1 ]; then
        case $name in
          *.timer)
            spec=$(sed -n 's/^OnCalendar=//p' "$staged" | head -n 1)
            if [ -n "$spec" ]; then
              validator="systemd-analyze calendar"
              out=$(systemd-analyze calendar -- "$spec" 2>&1) || ok=0
            fi ;;
        esac
      fi ;;
    logrotate)
      validator="logrotate -d"
      ok=1; out=$(logrotate -d -- "$staged" 2>&1) || ok=0
      # logrotate -d exits 0 on some errors: its `error:` lines count too.
      if printf '%s\n' "$out" | grep -q '^error:'; then ok=0; fi ;;
    *) echo "shipit: unknown validator $kind" >&2; exit 2 ;;
  esac
  if [ "$ok" = 0 ]; then
    printf 'shipit-refused %s %s\n%s\n' "$final" "$validator" "$out" >&2
    exit 3
  fi
done

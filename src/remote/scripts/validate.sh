# shellcheck shell=sh
# Validate staged candidates before anything is installed: `$@` is a list of
# `KIND STAGED FINAL` triples, KIND one of `nginx`, `systemd`, `logrotate`. Prints, on
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
      ok=1; out=$(cd "$work/units" && systemd-analyze verify --man=no -- "./$inst" 2>&1) || ok=0 ;;
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

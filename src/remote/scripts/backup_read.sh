# shellcheck shell=sh
# Read a kept backup for `shipit backups pull`: `$1` what (`sum`: its size and SHA-256 on one
# line; `cat`: its bytes on stdout), `$2` the file. Only a regular file is read, never through
# a link (exit 4 otherwise).
what=$1 file=$2
if [ -L "$file" ] || [ ! -f "$file" ]; then
  echo "shipit: $file is not a regular file" >&2
  exit 4
fi
case $what in
  sum) printf '%s %s\n' "$(stat -c %s -- "$file")" "$(sha256sum -- "$file" | cut -d' ' -f1)" ;;
  cat) exec cat -- "$file" ;;
  *)
    echo "shipit: unknown read $what" >&2
    exit 2
    ;;
esac

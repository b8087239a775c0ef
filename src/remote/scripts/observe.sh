# shellcheck shell=sh
# Print each file named in `$@` framed for `crate::provision::observe::parse`:
# `F <mode> <owner>:<group> <size>\n<bytes>` or `N\n` when absent, and `D\n`/`N\n` for a
# directory given as `dir:PATH`. Then the docker client config, framed the same way.
emit() {
  if [ -L "$1" ] && [ -f "$1" ]; then
    # The link's mode and owner (a change replaces it with a file), the size of what it names.
    printf 'F %s %s\n' "$(stat -c '%a %U:%G' -- "$1")" "$(wc -c < "$1")" && cat -- "$1" || exit 1
  elif [ -f "$1" ]; then
    printf 'F %s\n' "$(stat -c '%a %U:%G %s' -- "$1")" && cat -- "$1" || exit 1
  else
    printf 'N\n'
  fi
}
for f; do
  case $f in
    dir:*) if [ -d "${f#dir:}" ]; then printf 'D\n'; else printf 'N\n'; fi ;;
    *) emit "$f" ;;
  esac
done
emit "${DOCKER_CONFIG:-$HOME/.docker}/config.json"

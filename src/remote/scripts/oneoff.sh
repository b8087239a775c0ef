# shellcheck shell=sh
# Run a one-off container of the app and wait for it: `$1` its name (a leftover of that name,
# from a run cut short, is removed first), `$2` an image to pull first when the engine lacks it
# (`-`: none), then docker's arguments (`run --rm --name ...`). The container's output, stderr
# included, goes to stdout; the exit code is the container's (125: docker could not start it).
# With `--env-file /dev/stdin` the app env arrives on stdin, read by docker before the
# container starts.
name=$1 image=$2
shift 2
docker rm -f -- "$name" > /dev/null 2>&1 || true
if [ "$image" != - ] && ! docker image inspect -- "$image" > /dev/null 2>&1; then
  docker pull -q -- "$image" > /dev/null || exit 125
fi
exec docker "$@" 2>&1

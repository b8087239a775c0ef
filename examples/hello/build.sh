#!/usr/bin/env bash
# Build the static `hello` binary and stage it as app/hello, the one file the Docker build
# context (Dockerfile.production, FROM scratch) needs. Idempotent: run it again at will.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$here"

target=x86_64-unknown-linux-gnu
# glibc, linked statically (its static libraries come with libc6-dev): no musl target needed;
# axum and tokio need nothing else.
export RUSTFLAGS="${RUSTFLAGS:+$RUSTFLAGS }-C target-feature=+crt-static"
# Its own target dir, never the parent package's.
export CARGO_TARGET_DIR="$here/target"

cargo build --release --target "$target"

bin="$CARGO_TARGET_DIR/$target/release/hello"
# A FROM scratch image has no dynamic loader and no libc: refuse to stage anything dynamic.
linkage="$(ldd "$bin" 2>&1 || true)"
case "$linkage" in
    *"statically linked"* | *"not a dynamic executable"*) ;;
    *)
        echo "build.sh: $bin is not static:" >&2
        echo "$linkage" >&2
        exit 1
        ;;
esac

mkdir -p app
install -m 0755 "$bin" app/hello.tmp
mv -f app/hello.tmp app/hello

size="$(stat -c %s app/hello)"
echo "app/hello: $size bytes ($(( (size + 1023) / 1024 )) KiB), static"

#!/usr/bin/env bash
# Deploys without a registry (`[deploy] images = "ssh"`), in one run on the testbed, with an
# image on a realistic base: Debian bookworm from debootstrap (testbed/bases.sh's runtime base,
# tens of MB) under the hello binary and a one-line file.
#  (a) bytes sent per host: a first deploy, and a redeploy after a one-line change;
#  (b) wall time of that redeploy to 3 and 10 hosts over SSH, against the same deploy through
#      the testbed's registry (build + push + pull), each run alternately, RUNS times (medians);
#  (c) shipit's peak RSS while sending a 200 MB image (incompressible) to 10 hosts.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=bench/lib.sh
source bench/lib.sh
runs=${RUNS:-3}
bench_setup 10
eval "$(bash testbed/bases.sh 2>/dev/null)"

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
read -r -a all_hosts <<< "$SHIPIT_TESTBED_HOSTS"

# transfer_app DIR NAME PORT IMAGES(ssh|registry) HOSTS...: the hello binary on the Debian base.
transfer_app() {
  local dir=$1 name=$2 port=$3 images=$4
  shift 4
  bench_app "$dir" "$name" "$port" "$@"
  # `build_args` is a top-level key: it must come before the first table.
  { printf 'build_args = { RUNTIME_IMAGE = "%s" }\n' "$RUNTIME_IMAGE"; cat "$dir/shipit.toml"; } > "$dir/shipit.toml.new"
  mv "$dir/shipit.toml.new" "$dir/shipit.toml"
  sed -i "s/^verify_window = \"0s\"/verify_window = \"0s\"\nimages = \"$images\"/" "$dir/shipit.toml"
  # Ten hosts' vfs copies of a Debian root on 2 shared cores: give a start more than 20 s.
  sed -i 's/^timeout = "20s"/timeout = "90s"/' "$dir/shipit.toml"
  cat > "$dir/Dockerfile.production" <<'DOCKERFILE'
ARG RUNTIME_IMAGE
FROM ${RUNTIME_IMAGE}
COPY app/hello /hello
COPY release.txt /release.txt
EXPOSE 3000
USER 65534:65534
ENTRYPOINT ["/hello"]
DOCKERFILE
  echo "release 0" > "$dir/release.txt"
  # The example's .dockerignore is an allow-list: let the bench's files in too.
  printf '!release.txt\n!assets\n' >> "$dir/.dockerignore"
  commit "$dir"
}
commit() {
  git -C "$1" -c user.email=bench@shipit.test -c user.name=bench add -A
  git -C "$1" -c user.email=bench@shipit.test -c user.name=bench commit -qm bench
}
# the JSON report's largest `bytes` and `layers_sent` over the hosts
sent_bytes() { python3 -c 'import json,sys; r=json.load(sys.stdin); print(max(s["bytes"] for s in r["sent"]))'; }
sent_layers() { python3 -c 'import json,sys; r=json.load(sys.stdin); print(max(s["layers_sent"] for s in r["sent"]))'; }

transfer_app "$work/ssh3" bench-ssh3 5401 ssh "${all_hosts[@]:0:3}"
transfer_app "$work/reg3" bench-reg3 5411 registry "${all_hosts[@]:0:3}"
transfer_app "$work/ssh10" bench-ssh10 5421 ssh "${all_hosts[@]:0:10}"
transfer_app "$work/reg10" bench-reg10 5431 registry "${all_hosts[@]:0:10}"
for app in ssh3 reg3 ssh10 reg10; do "$shipit" -q -C "$work/$app" provision bench; done

# (a) the first deploy: every layer to every host
"$shipit" -q -C "$work/ssh3" deploy bench --version 1.0.0 --json > "$work/first.json"
image_bytes=$(docker image inspect --format '{{.Size}}' "$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["image"])' "$work/first.json")")
first_bytes=$(sent_bytes < "$work/first.json")
for app in reg3 ssh10 reg10; do "$shipit" -q -C "$work/$app" deploy bench --version 1.0.0 >/dev/null; done

# (b) redeploys after a one-line change, alternating ssh and registry, 3 and 10 hosts
for f in s3 r3 s10 r10 bytes layers; do : > "$work/$f"; done
for i in $(seq "$runs"); do
  for pair in ssh3:s3 reg3:r3 ssh10:s10 reg10:r10; do
    app=${pair%%:*} out=${pair##*:}
    echo "release $i" > "$work/$app/release.txt"
    commit "$work/$app"
    t=$(now_ns)
    "$shipit" -q -C "$work/$app" deploy bench --version "1.$i.0" --json > "$work/run.json"
    secs $(( $(now_ns) - t )) >> "$work/$out"
    if [[ $app == ssh3 ]]; then
      sent_bytes < "$work/run.json" >> "$work/bytes"
      sent_layers < "$work/run.json" >> "$work/layers"
    fi
  done
done

# Each host keeps vfs copies (a full root per layer and per container): free the disk the
# redeploys used before the 200 MB image comes.
on_hosts() {
  local h
  for h in "${all_hosts[@]:0:10}"; do
    host_sh "$h" "$1"
  done
}
units() { local a; for a in "$@"; do printf "'%s_bench@blue' '%s_bench@green' " "$a" "$a"; done; }
on_hosts "systemctl disable --now $(units bench-ssh3 bench-reg3 bench-ssh10 bench-reg10) 2>/dev/null; docker image prune -af >/dev/null; true"

# (c) peak RSS sending a 200 MB image (200 MiB that do not compress) to 10 hosts
transfer_app "$work/big" bench-big 5441 ssh "${all_hosts[@]:0:10}"
head -c 200M /dev/urandom > "$work/big/assets"
sed -i 's|^COPY app/hello /hello|COPY assets /assets\nCOPY app/hello /hello|' "$work/big/Dockerfile.production"
commit "$work/big"
"$shipit" -q -C "$work/big" provision bench
t=$(now_ns)
/usr/bin/time -f '%M' -o "$work/rss" "$shipit" -q -C "$work/big" deploy bench --version 1.0.0 --json > "$work/big.json"
big_secs=$(secs $(( $(now_ns) - t )))
rss_mb=$(( $(tail -n 1 "$work/rss") / 1024 ))
big_bytes=$(sent_bytes < "$work/big.json")
big_id=$(docker image inspect --format '{{.Id}}' "$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["image"])' "$work/big.json")")
# Leave the hosts' disks as they were: the 200 MB image on 10 hosts is 2 GB of vfs copies.
on_hosts "systemctl disable --now $(units bench-big) 2>/dev/null; docker image rm -f '$big_id' >/dev/null 2>&1; true"

m() { median < "$work/$1"; }
redeploy_bytes=$(m bytes)
printf '\nshipit deploys without a registry (%s runs, medians; testbed hosts on this machine)\n' "$runs"
printf '  image: %s MiB (Debian base from debootstrap + hello + one file)\n' "$(( image_bytes >> 20 ))"
printf '  bytes sent per host: first deploy %s KiB, redeploy after a one-line change %s KiB (%s layer), %s%% of the image (goal < 5%%)\n' \
  "$(( first_bytes >> 10 ))" "$(( redeploy_bytes >> 10 ))" "$(m layers)" "$(awk -v a="$redeploy_bytes" -v b="$image_bytes" 'BEGIN { printf "%.3f", 100 * a / b }')"
printf '  redeploy wall time:  3 hosts: over SSH %6.3f s, through the registry %6.3f s (ratio %s)\n' "$(m s3)" "$(m r3)" "$(ratio "$(m s3)" "$(m r3)")"
printf '                      10 hosts: over SSH %6.3f s, through the registry %6.3f s (ratio %s)\n' "$(m s10)" "$(m r10)" "$(ratio "$(m s10)" "$(m r10)")"
printf '  200 MB image to 10 hosts over SSH: %s s, %s MiB sent per host, peak RSS of shipit %s MB\n' \
  "$big_secs" "$(( big_bytes >> 20 ))" "$rss_mb"
printf '{"image_bytes":%s,"first_bytes":%s,"redeploy_bytes":%s,"ssh_3":%s,"registry_3":%s,"ssh_10":%s,"registry_10":%s,"big_seconds":%s,"big_rss_mb":%s}\n' \
  "$image_bytes" "$first_bytes" "$redeploy_bytes" "$(m s3)" "$(m r3)" "$(m s10)" "$(m r10)" "$big_secs" "$rss_mb" > "$state/bench-transfer.json"

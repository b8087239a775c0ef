#!/usr/bin/env bash
# testbed/lib.sh: helpers shared by testbed.sh and bases.sh (sourced; defines functions only).
# debian_mirror reads $SUITE, which the sourcing script sets.

now_us() { printf '%s' "${EPOCHREALTIME/[.,]/}"; }

# since_us START: seconds elapsed since START (from now_us), as "12.3s".
since_us() {
  local us=$(($(now_us) - $1))
  printf '%d.%ds' $((us / 1000000)) $(((us / 100000) % 10))
}

# remove_tree DIR: unmount whatever is still mounted below DIR (debootstrap may leave /proc,
# /sys or a bind of /dev behind when it fails), then delete DIR without crossing filesystems.
remove_tree() {
  [[ -e $1 ]] || return 0
  remove_mounts_below "$1"
  rm -rf --one-file-system -- "$1"
}

remove_mounts_below() {
  local mnt
  while read -r mnt; do
    umount -l "$mnt" 2>/dev/null || true
  done < <(awk -v d="$1/" 'index($2, d) == 1 { print $2 }' /proc/mounts | sort -r)
}

# The Debian mirror apt uses here (bookworm, not security), else deb.debian.org.
# shellcheck disable=SC2153 # SUITE is set by the sourcing script
debian_mirror() { debian_mirror_for "$SUITE"; }

# debian_mirror_for SUITE: the Debian mirror apt uses here for SUITE, else deb.debian.org.
debian_mirror_for() {
  local files=() f suite=$1
  if [[ -n ${SHIPIT_TESTBED_MIRROR:-} ]]; then
    printf '%s\n' "$SHIPIT_TESTBED_MIRROR"
    return
  fi
  for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources; do
    [[ -f $f ]] && files+=("$f")
  done
  ((${#files[@]} > 0)) && awk -v suite="$suite" '
    function flush() {
      if (types ~ /(^| )deb( |$)/ && (" " suites " ") ~ (" " suite " ") && enabled != "no" && uri != "" && !found) {
        print uri; found = 1
      }
      types = ""; suites = ""; uri = ""; enabled = ""
    }
    FNR == 1 { flush() }
    FILENAME ~ /\.sources$/ {
      if ($0 ~ /^[[:space:]]*$/) { flush(); next }
      if ($1 == "Types:") { types = $0; sub(/^Types:[[:space:]]*/, "", types) }
      if ($1 == "URIs:") uri = $2
      if ($1 == "Suites:") { suites = $0; sub(/^Suites:[[:space:]]*/, "", suites) }
      if ($1 == "Enabled:") enabled = $2
      next
    }
    /^[[:space:]]*deb[[:space:]]/ && !found {
      flush()
      i = 2
      if ($i ~ /^\[/) { while (i <= NF && $i !~ /\]$/) i++; i++ }
      if ($(i + 1) == suite) { print $i; found = 1 }
    }
    END { flush() }
  ' "${files[@]}" | grep . || printf '%s\n' http://deb.debian.org/debian
}

# Root filesystems for the images testbed/bases.sh and testbed/accessories.sh build (each hashes
# these functions into its images' keys). They use the caller's STATE, SUITE, log and die;
# debootstrap's log is $STATE/debootstrap-bases.log for both.
# unpack_rootfs INCLUDE DIR: a debootstrap minbase tree of SUITE with INCLUDE in DIR, from the
# cached tarball (named like testbed.sh's: by the package list) or made and cached now.
unpack_rootfs() {
  local include=$1 dir=$2 base mirror t0 logf
  base=$STATE/cache/rootfs-$SUITE-$(printf %s "$include" | sha12).tar
  mkdir -p "$dir"
  if [[ -s $base ]]; then
    log "unpacking the cached root filesystem of $include ($base)"
    tar -C "$dir" --numeric-owner -xpf "$base"
    return
  fi
  command -v debootstrap >/dev/null ||
    die "debootstrap is missing: run \`bash testbed/testbed.sh up\` (it installs it)"
  mirror=$(debian_mirror)
  logf=$STATE/debootstrap-bases.log
  log "debootstrap $SUITE (minbase + $include) from $mirror (about a minute; log $logf)"
  t0=$(now_us)
  if ! debootstrap --variant=minbase --include="$include" --cache-dir="$STATE/cache/debs" \
    "$SUITE" "$dir" "$mirror" </dev/null >"$logf" 2>&1; then
    tail -n 30 "$logf" >&2 || true
    [[ -f $dir/debootstrap/debootstrap.log ]] && tail -n 30 "$dir/debootstrap/debootstrap.log" >&2
    die "debootstrap failed; see $logf"
  fi
  remove_mounts_below "$dir"
  log "debootstrap done in $(since_us "$t0"); caching the root filesystem"
  tar -C "$dir" --numeric-owner --exclude='./var/cache/apt/archives/*.deb' -cf "$base.tmp" .
  mv -f "$base.tmp" "$base"
}

# slim_rootfs DIR: what Debian's -slim images leave out (documentation, manuals, translations),
# now and for packages installed later; no apt caches or logs; nothing of this machine.
slim_rootfs() {
  local r=$1
  cat >"$r/etc/dpkg/dpkg.cfg.d/shipit-slim" <<'EOF'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/groff/*
path-exclude /usr/share/info/*
path-exclude /usr/share/lintian/*
path-exclude /usr/share/linda/*
path-exclude /usr/share/locale/*
EOF
  find "$r/usr/share/doc" -mindepth 1 ! -type d ! -name copyright -delete
  find "$r/usr/share/doc" -mindepth 1 -type d -empty -delete
  rm -rf "$r"/usr/share/{man,groff,info,lintian,linda,locale}/*
  rm -rf "$r"/var/cache/apt/archives/*.deb "$r"/var/cache/apt/*.bin "$r"/var/lib/apt/lists/*
  rm -f "$r"/var/cache/debconf/*-old "$r"/var/lib/dpkg/*-old
  find "$r/var/log" -type f -delete
  : >"$r/etc/machine-id"
  [[ -L $r/etc/resolv.conf ]] || : >"$r/etc/resolv.conf"
  printf 'localhost\n' >"$r/etc/hostname"
}

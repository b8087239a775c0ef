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

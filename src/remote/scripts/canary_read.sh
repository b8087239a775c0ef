# shellcheck shell=sh
# A canary step's figures from `[canary]`'s log: `$1` the log, `$2` the byte offset the step
# started at (`-`: only the size), `$3` the new copy's port, `$4` the previous copy's. Prints
# `size BYTES`, then for each of the two `port ADDRESS REQUESTS ERRORS P95_MS` (errors: 5xx
# answers; a retried request counts for each copy that answered it; p95 from a histogram in
# milliseconds). A log rotated since the offset is read from its start.
log=$1 from=$2
size=$(stat -c %s -- "$log" 2> /dev/null || echo 0)
echo "size $size"
[ "$from" = - ] && exit 0
[ "$size" -lt "$from" ] && from=0
tail -c +"$((from + 1))" -- "$log" 2> /dev/null | awk -F'"' -v new="127.0.0.1:$3" -v old="127.0.0.1:$4" '
  {
    n = split($2, a, ", "); split($4, st, ", "); split($6, tm, ", ")
    for (i = 1; i <= n; i++) {
      p = a[i]
      if (p != new && p != old) continue
      req[p]++
      if (st[i] ~ /^5/) err[p]++
      ms = int(tm[i] * 1000)
      hist[p, ms]++
      if (ms > top[p]) top[p] = ms
    }
  }
  END {
    for (k = 0; k < 2; k++) {
      p = k ? old : new
      r = req[p] + 0; e = err[p] + 0; c = 0; p95 = 0
      for (ms = 0; r > 0 && ms <= top[p]; ms++) {
        c += hist[p, ms]
        if (c >= r * 0.95) { p95 = ms; break }
      }
      print "port", p, r, e, p95
    }
  }'

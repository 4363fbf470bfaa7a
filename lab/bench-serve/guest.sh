# The guest side of `cargo xtask bench-serve` (xtask/src/commands/bench_serve.rs), run with bash
# in a lab guest. The host prepends SERVE_SECONDS and RATE_SECONDS. Writes to $LAB_OUT:
#   rate-N.json        `ttmlat workload throughput --kind ttm` of each of 2 parallel loops
#   rate.rec.json      the recording made meanwhile (losses, episodes)
#   first.txt          "<ready_ns> <first_interval_ns>" after the start of `ttmlat live`
#   rss.tsv            "<seconds> <VmRSS kB> <VmHWM kB> <threads> <fds>" of `ttmlat serve`
#   scrape-last.txt    the last /metrics page
set -eu
# The fbdev console's blinking cursor draws into a TTM buffer from a kworker; in a 10-minute run
# on 6.12 it oopsed there (NULL deref in sys_imageblit via drm_fbdev_ttm_defio_imageblit) at
# 404 s, 50 ms after the exc_debug_kernel WARN the lab tolerates. Nothing here needs it.
echo 0 > /sys/class/graphics/fbcon/cursor_blink 2>/dev/null || true
attach_wait() { # $1 ready file, $2 pid
    for i in $(seq 1 3000); do [ -f "$1" ] && return 0; kill -0 "$2" 2>/dev/null || return 1; sleep 0.1; done
    return 1
}
now() { date +%s%N; }

# 1. The highest TTM fault rate the lab reaches: two loops in parallel under `record`.
"$TTMLAT" record -o "$LAB_OUT/rate.rec.json" --ready-file /tmp/rate.ready > "$LAB_OUT/rate.txt" 2>&1 &
REC=$!
attach_wait /tmp/rate.ready $REC || { echo "record did not attach"; cat "$LAB_OUT/rate.txt"; exit 3; }
"$TTMLAT" workload throughput --kind ttm --duration "${RATE_SECONDS}s" > "$LAB_OUT/rate-1.json" &
A=$!
"$TTMLAT" workload throughput --kind ttm --duration "${RATE_SECONDS}s" > "$LAB_OUT/rate-2.json" &
B=$!
wait $A $B
kill -INT $REC; wait $REC || { echo "record failed"; cat "$LAB_OUT/rate.txt"; exit 4; }

# 2. Time to the first interval of `ttmlat live --interval 1s` under a steady load.
"$TTMLAT" stress --scenario cross-process --threads 2 --size 8M --duration 60s --json > /dev/null 2>&1 &
ST=$!
t0=$(now)
"$TTMLAT" live --interval 1s --json --ready-file /tmp/live.ready > /tmp/live.jsonl 2> "$LAB_OUT/live.err" &
LIVE=$!
ready=
for i in $(seq 1 30000); do
    [ -z "$ready" ] && [ -f /tmp/live.ready ] && ready=$(( $(now) - t0 ))
    [ -s /tmp/live.jsonl ] && break
    kill -0 $LIVE 2>/dev/null || break
    sleep 0.01
done
first=$(( $(now) - t0 ))
[ -s /tmp/live.jsonl ] || { echo "live printed nothing"; cat "$LAB_OUT/live.err"; exit 5; }
echo "${ready:-0} $first" > "$LAB_OUT/first.txt"
kill -INT $LIVE 2>/dev/null || true; wait $LIVE || true
kill -INT $ST 2>/dev/null || true; wait $ST || true

# 3. `ttmlat serve` for SERVE_SECONDS under stress, scraped every 5 s: its memory over time.
"$TTMLAT" serve --ready-file /tmp/serve.ready > "$LAB_OUT/serve.txt" 2>&1 &
SERVE=$!
attach_wait /tmp/serve.ready $SERVE || { echo "serve did not attach"; cat "$LAB_OUT/serve.txt"; exit 6; }
"$TTMLAT" stress --scenario cross-process --threads 4 --size 16M --duration "$((SERVE_SECONDS + 30))s" --json > /dev/null 2>&1 &
ST=$!
start=$(date +%s)
while :; do
    t=$(( $(date +%s) - start ))
    [ $t -ge "$SERVE_SECONDS" ] && break
    curl -s --max-time 10 http://127.0.0.1:10471/metrics > "$LAB_OUT/scrape-last.txt" || true
    rss=$(awk '/^VmRSS:/ {print $2}' /proc/$SERVE/status)
    hwm=$(awk '/^VmHWM:/ {print $2}' /proc/$SERVE/status)
    thr=$(awk '/^Threads:/ {print $2}' /proc/$SERVE/status)
    fds=$(ls /proc/$SERVE/fd | wc -l)
    echo "$t $rss $hwm $thr $fds" >> "$LAB_OUT/rss.tsv"
    sleep 5
done
kill -INT $ST 2>/dev/null || true; wait $ST || true
kill -INT $SERVE; wait $SERVE || { echo "serve failed"; cat "$LAB_OUT/serve.txt"; exit 7; }

# The guest side of `cargo xtask bench-overhead` (xtask/src/overhead.rs), run with bash in a
# lab guest. The host prepends BT_SCRIPT (the bpftrace baseline), LOADS (the loops of
# `ttmlat workload throughput`) and LOOP_SECONDS, and appends the schedule: one
# `observe_<observer> <round>` line per run, observers rotated each round.
#
# Writes $LAB_OUT/r<round>-<observer>-<load>.json (one line of `ttmlat workload throughput`),
# r<round>-{ttmlat,hooks}.rec.json (the recordings), r<round>-{ttmlat,hooks}-<load>.cpu
# (ttmlat's CPU ticks during the loop), r<round>-bpftrace.txt (bpftrace's maps at exit) and
# r<round>-kprobes.profile (the tracefs probes' hit counts).
set -eu
command -v bpftrace >/dev/null || { echo "bpftrace is not installed on the host (apt-get install bpftrace)"; exit 2; }
loads() {
    for k in $LOADS; do
        "$TTMLAT" workload throughput --kind $k --duration ${LOOP_SECONDS}s > "$LAB_OUT/r$1-$2-$k.json"
    done
}
observe_none() { loads $1 none; }
observe_control() { loads $1 control; }
# ttmlat's own CPU time (utime + stime, clock ticks) while each loop runs.
cpu() { awk '{print $14 + $15}' /proc/$1/stat; }
ttmlat_loads() {
    for k in $LOADS; do
        c0=$(cpu $P)
        "$TTMLAT" workload throughput --kind $k --duration ${LOOP_SECONDS}s > "$LAB_OUT/r$1-$2-$k.json"
        echo $(( $(cpu $P) - c0 )) $(getconf CLK_TCK) > "$LAB_OUT/r$1-$2-$k.cpu"
    done
}
# $1 round, $2 observer name, rest: extra record arguments
run_ttmlat() {
    r=$1; name=$2; shift 2
    rm -f /tmp/ttmlat.ready
    "$TTMLAT" record -o "$LAB_OUT/r$r-$name.rec.json" --ready-file /tmp/ttmlat.ready "$@" > "$LAB_OUT/r$r-$name.txt" 2>&1 &
    P=$!
    for i in $(seq 1 600); do [ -f /tmp/ttmlat.ready ] && break; kill -0 $P 2>/dev/null || break; sleep 0.1; done
    [ -f /tmp/ttmlat.ready ] || { echo "ttmlat did not attach"; cat "$LAB_OUT/r$r-$name.txt"; exit 3; }
    # The same 2 s after attaching as bpftrace gets (below): the kernel turns kprobes into
    # jumps asynchronously after they are registered, and each observer is measured settled.
    sleep 2
    ttmlat_loads $r $name
    kill -INT $P; wait $P || { echo "ttmlat record failed"; cat "$LAB_OUT/r$r-$name.txt"; exit 4; }
}
observe_ttmlat() { run_ttmlat $1 ttmlat; }
observe_kprobes() {
    TR=/sys/kernel/tracing
    printf '%s\n' 'p:ttmcost/cost_fault ttm_bo_vm_fault' 'r1024:ttmcost/cost_fault_ret ttm_bo_vm_fault' \
        'p:ttmcost/cost_reserve ttm_bo_vm_reserve' \
        'r1024:ttmcost/cost_reserve_ret ttm_bo_vm_reserve' >> $TR/kprobe_events
    # The probes fire and evaluate the filter; nothing is written to the trace buffer.
    echo 'common_pid == 0' > $TR/events/ttmcost/filter
    echo 1 > $TR/events/ttmcost/enable
    loads $1 kprobes
    echo 0 > $TR/events/ttmcost/enable
    # kprobe_profile names events without their group.
    grep -E '^ *(ttmcost/)?cost_' $TR/kprobe_profile > "$LAB_OUT/r$1-kprobes.profile" || true
    for e in fault fault_ret reserve reserve_ret; do echo "-:ttmcost/cost_$e" >> $TR/kprobe_events; done
}
observe_hooks() { run_ttmlat $1 hooks --pid 1; }
observe_bpftrace() {
    bpftrace "$BT_SCRIPT" > "$LAB_OUT/r$1-bpftrace.txt" 2>&1 &
    P=$!
    for i in $(seq 1 1200); do grep -q '^Attaching' "$LAB_OUT/r$1-bpftrace.txt" && break; kill -0 $P 2>/dev/null || break; sleep 0.1; done
    grep -q '^Attaching' "$LAB_OUT/r$1-bpftrace.txt" || { echo "bpftrace did not attach"; cat "$LAB_OUT/r$1-bpftrace.txt"; exit 5; }
    # bpftrace prints "Attaching" before its last probes are in place.
    sleep 2
    loads $1 bpftrace
    kill -INT $P
    # bpftrace 0.17 once hung on SIGINT here: give it a minute, then kill it (noted; its
    # fault count is then unknown, the loop figures stand).
    for i in $(seq 1 600); do kill -0 $P 2>/dev/null || break; sleep 0.1; done
    if kill -0 $P 2>/dev/null; then echo hung > "$LAB_OUT/r$1-bpftrace.hung"; kill -KILL $P; fi
    wait $P || [ -f "$LAB_OUT/r$1-bpftrace.hung" ] || { echo "bpftrace failed"; cat "$LAB_OUT/r$1-bpftrace.txt"; exit 6; }
}
# Where ttmlat's kernel time goes: one more ttm loop under `record --program-costs` (the
# kernel's BPF run-time statistics). Not one of the measured runs: the statistics cost too.
profile_costs() {
    rm -f /tmp/ttmlat.ready
    "$TTMLAT" record -o "$LAB_OUT/costs.rec.json" --ready-file /tmp/ttmlat.ready --program-costs > "$LAB_OUT/costs.txt" 2>&1 &
    P=$!
    for i in $(seq 1 600); do [ -f /tmp/ttmlat.ready ] && break; kill -0 $P 2>/dev/null || break; sleep 0.1; done
    [ -f /tmp/ttmlat.ready ] || { echo "ttmlat --program-costs did not attach"; cat "$LAB_OUT/costs.txt"; exit 7; }
    "$TTMLAT" workload throughput --kind ttm --duration ${LOOP_SECONDS}s > "$LAB_OUT/costs-ttm.json"
    kill -INT $P; wait $P || { echo "ttmlat --program-costs failed"; cat "$LAB_OUT/costs.txt"; exit 8; }
}

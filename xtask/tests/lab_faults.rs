//! ttmlat under faults: nothing recorded is lost and the probes' state stays bounded.
//!
//!     cargo build --release -p probe-user
//!     cargo test -p xtask --test lab_faults -- --ignored

use anyhow::{Context, Result, ensure};
use serde_json::Value;
use xtask::{
    lab::TtmVariant,
    labtest::{num, read_json, record_start, record_stop, run_script},
};

/// The stack the lab loads, in unload order.
const UNLOAD_TTM: &str = "rmmod bochs drm_vram_helper drm_ttm_helper ttm";

fn state_entries(rec: &Value) -> (u64, u64) {
    let s = &rec["state_entries_at_end"];
    (num(&s["threads"]), num(&s["waiters"]))
}

/// A faulting thread SIGKILLed while it waits on a reservation (blocking variant: the wait is
/// in ww_mutex_lock_interruptible with mmap_lock held): its per-thread state is dropped, the
/// recording is complete, and the maps are back to empty.
#[test]
#[ignore = "boots QEMU; needs root, ./scripts/setup.sh and a release build"]
fn sigkill_during_a_reservation_wait_leaves_no_state() -> Result<()> {
    let body = format!(
        r#"{rec}$TTMLAT stress --scenario cross-process --threads 4 --size 32M --duration 120s --json --ready-file /tmp/st.ready > /dev/null 2>&1 &
ST=$!
for i in $(seq 1 600); do [ -f /tmp/st.ready ] && break; sleep 0.1; done
# The faulting threads spend most of each round asleep on the reservation (the helper
# populates a 32 MiB buffer meanwhile): kill a few rounds in, and log where they slept.
sleep 2
found=
for i in $(seq 1 2000); do
    for c in /proc/$ST/task/*/comm; do
        read -r n < $c 2>/dev/null || continue
        case $n in ttm-fault*) found=1 ;; esac
    done
    [ -n "$found" ] && break
done
for t in /proc/$ST/task/*; do echo "$(cat $t/comm 2>/dev/null) $(cat $t/wchan 2>/dev/null)"; done > $LAB_OUT/wchan.txt || true
kill -KILL $ST
wait $ST || true
sleep 1
{stop}"#,
        rec = record_start("rec", ""),
        stop = record_stop("rec", "INT"),
    );
    let run = run_script("6.1", TtmVariant::Blocking, &body)?;
    let rec = read_json(&run, "rec.json")?;
    let (threads, waiters) = state_entries(&rec);
    eprintln!(
        "after SIGKILL: episodes {} abandoned {} threads {threads} waiters {waiters}; wchan: {}",
        rec["counts"]["episodes"],
        rec["counts"]["abandoned"],
        std::fs::read_to_string(run.out_dir.join("wchan.txt"))
            .unwrap_or_default()
            .replace('\n', " ")
    );
    ensure!(
        threads == 0,
        "{threads} per-thread entries left after SIGKILL"
    );
    ensure!(waiters == 0, "{waiters} waiter entries left after SIGKILL");
    ensure!(
        rec["counts"]["episodes"]
            .as_object()
            .is_some_and(|e| !e.is_empty()),
        "nothing recorded before the kill"
    );
    Ok(())
}

/// A ring buffer too small for the burst: drops are counted, shown in the text summary and
/// kept in the recording, and the recording is still complete and valid.
#[test]
#[ignore = "boots QEMU; needs root, ./scripts/setup.sh and a release build"]
fn ring_buffer_overflow_is_counted_and_shown() -> Result<()> {
    let body = format!(
        r#"{rec}PIDS=""
for i in 1 2 3 4; do $TTMLAT workload touch --size 32M > /dev/null & PIDS="$PIDS $!"; done
for p in $PIDS; do wait $p; done
{stop}$TTMLAT show $LAB_OUT/rec.json > $LAB_OUT/show.txt
"#,
        rec = record_start("rec", "--ring-buffer-kib 4"),
        stop = record_stop("rec", "INT"),
    );
    let run = run_script("6.12", TtmVariant::Stock, &body)?;
    let rec = read_json(&run, "rec.json")?;
    let drops = num(&rec["probe_stats"]["ringbuf_drops"]);
    let summary = std::fs::read_to_string(run.out_dir.join("rec.txt"))?;
    eprintln!(
        "ring buffer drops {drops}; episodes recorded {}",
        rec["counts"]["episodes"]
    );
    ensure!(drops > 0, "a 4 KiB ring buffer did not overflow");
    ensure!(
        summary.contains(&format!("ring buffer {drops}")),
        "the text summary does not show the drops: {summary}"
    );
    let shown = std::fs::read_to_string(run.out_dir.join("show.txt"))?;
    ensure!(
        shown.contains(&format!("ringbuf_drops: {drops}")),
        "ttmlat show does not show the drops: {shown}"
    );
    Ok(())
}

/// SIGTERM (and SIGINT, in every other test) during `record`: a complete, valid file.
#[test]
#[ignore = "boots QEMU; needs root, ./scripts/setup.sh and a release build"]
fn sigterm_during_record_writes_a_complete_file() -> Result<()> {
    let body = format!(
        r#"{rec}$TTMLAT workload touch --size 3M --json > $LAB_OUT/touch.json
{stop}$TTMLAT show --json $LAB_OUT/rec.json > /dev/null
"#,
        rec = record_start("rec", ""),
        stop = record_stop("rec", "TERM"),
    );
    let run = run_script("6.12", TtmVariant::Stock, &body)?;
    let rec = read_json(&run, "rec.json")?;
    let pid = num(&read_json(&run, "touch.json")?["pid"]);
    let p = &rec["processes"][pid.to_string()];
    ensure!(
        num(&p["episodes"]) > 0,
        "the recording lost the workload: {}",
        rec["processes"]
    );
    ensure!(num(&rec["meta"]["end_unix_ns"]) > num(&rec["meta"]["start_unix_ns"]));
    Ok(())
}

/// TTM not loaded when ttmlat starts: a clear error and no file (documented behaviour: ttmlat
/// does not wait). Then TTM loaded: it works. Then bochs+ttm unloaded while ttmlat is
/// attached: ttmlat keeps running and writes a complete recording of what it saw.
#[test]
#[ignore = "boots QEMU; needs root, ./scripts/setup.sh and a release build"]
fn ttm_loaded_late_and_unloaded_while_attached() -> Result<()> {
    let body = format!(
        r#"{unload}
if $TTMLAT record -d 2s -o $LAB_OUT/early.json > $LAB_OUT/early.txt 2>&1; then echo "record ran without TTM"; exit 5; fi
[ ! -e $LAB_OUT/early.json ] || {{ echo "a file was written without TTM"; exit 6; }}
modprobe -d "$LAB_KROOT" bochs
for i in $(seq 1 100); do [ -e /dev/dri/card0 ] && break; sleep 0.1; done
{rec}$TTMLAT workload touch --size 3M --json > $LAB_OUT/touch.json
{unload}
lsmod > $LAB_OUT/lsmod.txt
sleep 1
{stop}"#,
        unload = UNLOAD_TTM,
        rec = record_start("rec", ""),
        stop = record_stop("rec", "INT"),
    );
    let run = run_script("6.12", TtmVariant::Stock, &body)?;
    let early = std::fs::read_to_string(run.out_dir.join("early.txt"))?;
    ensure!(
        early.contains("TTM"),
        "no clear message without TTM: {early}"
    );
    let lsmod = std::fs::read_to_string(run.out_dir.join("lsmod.txt"))?;
    ensure!(
        !lsmod.lines().any(|l| l.starts_with("ttm ")),
        "ttm was not unloaded while ttmlat was attached: {lsmod}"
    );
    let rec = read_json(&run, "rec.json")?;
    let pid = num(&read_json(&run, "touch.json")?["pid"]);
    let p = rec["processes"]
        .get(pid.to_string())
        .context("the recording lost the faults made before the unload")?;
    ensure!(num(&p["episodes"]) > 0);
    Ok(())
}

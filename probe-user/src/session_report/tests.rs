use std::collections::BTreeMap;

use super::*;
use crate::{
    aggregate::{WaiterTotals, new_histogram},
    attribution::{AttemptPath, EpisodePath},
    loader::StateEntries,
};

/// A session as `session::run` hands it back, with something in every part of the report.
fn outcome() -> Outcome {
    let mut total = Aggregate::new();
    for (class, values) in [
        ("uncontended", &[900u64, 1_200, 40_000][..]),
        ("retry", &[2_000_000, 3_500_000][..]),
    ] {
        let mut h = new_histogram();
        for v in values {
            h.saturating_record(*v);
        }
        total
            .histograms
            .insert((Metric::EpisodeLatency, class.into()), h);
    }
    let mut held = new_histogram();
    held.saturating_record(1_500_000);
    total
        .histograms
        .insert((Metric::WaitHeld, "retry".into()), held);
    total.episodes.insert(EpisodePath::Uncontended, 3);
    total.episodes.insert(EpisodePath::Retry, 2);
    total.episodes.insert(EpisodePath::RetryNoHandler, 1);
    total.attempts.insert(AttemptPath::Uncontended, 5);
    total.attempts.insert(AttemptPath::RetryDropped, 2);
    total.tried_attempts = 2;
    total.retry_no_handler = 1;
    total.add_holder(77, "glxgears", 4);
    total.add_holder(78, "evil\x1b[2J", 1);
    for tid in 1..=7u32 {
        total.waiters.insert(
            tid,
            WaiterTotals {
                tgid: 500,
                comm: format!("w{tid}"),
                waits: 1,
                wait_ns: 10_000 * u64::from(tid),
                held_overlap_ns: if tid == 3 {
                    0
                } else {
                    1_000 * u64::from(tid % 4 + 1)
                },
            },
        );
    }
    total.drivers.insert("bochs".into());
    let meta = Meta {
        tool_version: "0.2.0".into(),
        kernel_release: "6.1.0-57-amd64".into(),
        kernel_package: Some("linux-image-6.1.0-57-amd64-unsigned=6.1.192-3".into()),
        kernel_taint: Some(0),
        ttm_srcversion: None,
        ttm_variant: Some("stock".into()),
        hook_sites: Some("call-sites".into()),
        drivers_seen: vec!["bochs".into()],
        filters: BTreeMap::from([("comm".to_string(), "glxgears".to_string())]),
        start_unix_ns: 1_000_000_000,
        end_unix_ns: 11_500_000_000,
        ..Meta::default()
    };
    Outcome {
        total,
        holder_stacks: vec![HolderStack {
            tgid: 77,
            comm: "glxgears".into(),
            count: 3,
            frames: vec![
                "ww_mutex_unlock+0x0".into(),
                "ttm_bo_vm_fault+0x5a [ttm]".into(),
            ],
        }],
        stats: ProbeStats {
            kprobe_misses: None,
            ringbuf_drops: Some(2),
            ..ProbeStats::zero()
        },
        read_errors: vec!["reading map THREADS: Operation not permitted".into()],
        undecodable: 1,
        state_entries_at_end: Some(StateEntries::default()),
        skipped_programs: BTreeMap::from([("ttm_fault_entry".to_string(), 2)]),
        program_costs: BTreeMap::from([(
            "ttm_fault_entry".to_string(),
            ProgramCost {
                runs: 10,
                run_time_ns: 4_000,
            },
        )]),
        meta,
    }
}

/// `show` of a recording written to a file and read back prints exactly what the session
/// printed at its end.
#[test]
fn show_of_the_written_recording_equals_the_session_report() -> Result<()> {
    let session = outcome();
    let printed = of_outcome("run", &session, Some("patched"));
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("run.json");
    session.recording(Some("patched".into()))?.write(&path)?;
    let shown = of_recording("run", &Recording::read(&path)?)?;
    assert_eq!(shown, printed);
    // Not trivially equal: every part is there.
    for part in [
        "label patched",
        "srcversion —",
        "not timed (retry-no-handler): 1",
        "stalled on mmap_lock",
        "lost: ",
        "skipped by the kernel",
        LATENCY_HISTOGRAM_TITLE,
        "holder glxgears[77] released",
        "program costs",
        "READ FAILED",
    ] {
        assert!(printed.contains(part), "{part}:\n{printed}");
    }
    assert!(!printed.contains('\x1b'), "{printed}");
    Ok(())
}

/// The stalled tasks listed are the most stalled ones (held-overlap time, then total wait),
/// and the rest are counted.
#[test]
fn the_most_stalled_tasks_are_listed() {
    let text = of_outcome("run", &outcome(), None);
    let line = text
        .lines()
        .find(|l| l.contains("stalled on mmap_lock"))
        .expect("stalled line");
    // Overlaps: tid 1 → 2 µs, 2 → 3, 4 → 1, 5 → 2, 6 → 3, 7 → 4 (tid 3 none).
    let order: Vec<&str> = line
        .split(": ")
        .nth(1)
        .expect("list")
        .split(", ")
        .map(|s| s.split(' ').next().unwrap_or(""))
        .collect();
    assert_eq!(
        order,
        vec!["w7[7]", "w6[6]", "w2[2]", "w5[5]", "w1[1]", "and"],
        "{line}"
    );
    assert!(line.ends_with(", and 1 more task"), "{line}");
}

/// `live --json`'s last line carries what the session could not read.
#[test]
fn the_json_total_carries_the_read_errors() -> Result<()> {
    let session = outcome();
    let v = live_json_total(&session)?;
    assert_eq!(v["scope"], "total");
    assert_eq!(
        v["read_errors"],
        serde_json::json!(["reading map THREADS: Operation not permitted"])
    );
    assert_eq!(v["counts"]["retry_no_handler"], 1);
    let interval = live_json_interval(&session.total, &session.stats)?;
    assert_eq!(interval["scope"], "interval");
    Ok(())
}

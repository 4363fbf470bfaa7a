//! `ttmlat bench` and `ttmlat merge` against a real kernel: two bench runs of `ttmlat stress`
//! in one 6.12 lab guest, checked on the host, merged and compared with the real binary.
//!
//!     cargo build --release -p probe-user
//!     cargo test -p xtask --test lab_bench -- --ignored

use std::{fs, path::PathBuf, process::Command, time::Duration};

use anyhow::{Context, Result, ensure};
use xtask::{
    lab::{self, LabSpec},
    labtest::{self, Recording},
};

fn host(ttmlat: &PathBuf, args: &[&str]) -> Result<std::process::Output> {
    Command::new(ttmlat)
        .args(args)
        .output()
        .with_context(|| format!("running ttmlat {}", args.join(" ")))
}

/// A process's episodes in the recording (0 when it has none).
fn episodes_of(rec: &Recording, pid: u32) -> u64 {
    rec.processes.get(&pid).map_or(0, |p| p.episodes)
}

/// All episodes of a recording.
fn episodes(rec: &Recording) -> u64 {
    rec.counts.episodes.values().sum()
}

/// The checks on one bench recording of `reps` repetitions of `rounds` × `threads`.
fn check_recording(
    name: &str,
    rec: &Recording,
    reps: u32,
    rounds: u32,
    threads: u64,
) -> Result<()> {
    ensure!(
        rec.repetitions == reps,
        "{name}: repetitions {}",
        rec.repetitions
    );
    labtest::assert_nothing_lost(name, rec)?;
    let bench = rec
        .bench
        .as_ref()
        .with_context(|| format!("{name}: not a bench recording"))?;
    ensure!(
        bench.runs.len() == reps as usize,
        "{name}: {} runs",
        bench.runs.len()
    );
    let mut pids = Vec::new();
    let mut sum = 0;
    for r in &bench.runs {
        let s = &r.stress;
        let pid = s.pid;
        let helper = s
            .holder_pid
            .with_context(|| format!("{name}: repetition {} has no helper pid", r.index))?;
        ensure!(pid > 0 && helper > 0, "{name}: no pids in {r:?}");
        ensure!(
            !pids.contains(&pid),
            "{name}: two repetitions with pid {pid}"
        );
        pids.push(pid);
        ensure!(
            s.rounds_done == rounds && s.first_touch.count == u64::from(rounds) * threads,
            "{name}: stress summary {s:?}"
        );
        ensure!(s.victim.is_some(), "{name}: no victim summary");
        // The episodes attributed to the repetition are its processes' in `processes`.
        let (of_pid, of_helper) = (episodes_of(rec, pid), episodes_of(rec, helper));
        ensure!(
            r.episodes == of_pid + of_helper,
            "{name}: repetition episodes {} vs processes {of_pid} + {of_helper}",
            r.episodes,
        );
        // Every faulting thread takes one fault per round; the helper one per buffer.
        ensure!(
            of_pid >= u64::from(rounds) * threads && of_helper >= u64::from(rounds),
            "{name}: pid {pid} {of_pid} episodes, helper {of_helper} (rounds {rounds} threads {threads})"
        );
        ensure!(r.episode_p50_ns.is_some(), "{name}: no ttmlat median");
        sum += r.episodes;
    }
    // An idle guest: every TTM fault recorded is one of the stress processes'.
    let total = episodes(rec);
    eprintln!("{name}: {reps} repetitions, {total} episodes, {sum} attributed");
    ensure!(
        total == sum && bench.other_episodes == 0,
        "{name}: {total} episodes recorded, {sum} from the stress processes"
    );
    Ok(())
}

/// On 6.12 only: `bench` is ttmlat's userspace (repetitions, labels, attribution to the stress
/// processes); the kernel facts under it are tested on every kernel by lab_ttmlat.
#[test]
#[ignore = "boots QEMU; needs root, ./scripts/setup.sh and a release build"]
fn bench_records_repetitions_into_one_recording_6_12() -> Result<()> {
    let bin = labtest::ttmlat_binary()?;
    let script = r#"set -eu
STRESS="--scenario cross-process --threads 4 --size 16M"
"$TTMLAT" bench -n 2 --label a -o "$LAB_OUT/a.json" -- $STRESS --rounds 6 > "$LAB_OUT/a.txt" 2>&1 || { cat "$LAB_OUT/a.txt"; exit 3; }
"$TTMLAT" bench -n 2 --label b -o "$LAB_OUT/b.json" -- $STRESS --rounds 4 > "$LAB_OUT/b.txt" 2>&1 || { cat "$LAB_OUT/b.txt"; exit 4; }
cat "$LAB_OUT/a.txt"
"#;
    let spec = LabSpec::new("6.12", script)
        .env("TTMLAT", bin.display().to_string())
        .timeout(Duration::from_secs(600));
    let run = lab::run(&spec)?;
    ensure!(
        run.rc == 0,
        "guest failed with rc {} (run dir {}):\n{}\n{}",
        run.rc,
        run.run_dir.display(),
        run.stdout,
        run.stderr
    );
    let a_path = run.out_dir.join("a.json");
    let b_path = run.out_dir.join("b.json");
    let a = Recording::read(&a_path)?;
    let b = Recording::read(&b_path)?;
    check_recording("a", &a, 2, 6, 4)?;
    check_recording("b", &b, 2, 4, 4)?;

    // compare accepts two bench recordings.
    let (a_s, b_s) = (a_path.display().to_string(), b_path.display().to_string());
    let out = host(&bin, &["compare", &a_s, &b_s])?;
    let text = String::from_utf8_lossy(&out.stdout);
    ensure!(
        out.status.success() && text.contains("episode_latency"),
        "compare failed: {}\n{text}",
        String::from_utf8_lossy(&out.stderr)
    );

    // merge: refused for different labels, forced it sums everything.
    let merged = run.out_dir.join("merged.json");
    let m_s = merged.display().to_string();
    let out = host(&bin, &["merge", "-o", &m_s, &a_s, &b_s])?;
    ensure!(
        !out.status.success(),
        "merge of labels a and b was not refused"
    );
    let out = host(
        &bin,
        &["merge", "--force", "--label", "ab", "-o", &m_s, &a_s, &b_s],
    )?;
    ensure!(
        out.status.success(),
        "merge --force failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let m = Recording::read(&merged)?;
    ensure!(m.repetitions == 4, "merged repetitions {}", m.repetitions);
    ensure!(
        episodes(&m) == episodes(&a) + episodes(&b),
        "merged episodes {} vs {} + {}",
        episodes(&m),
        episodes(&a),
        episodes(&b)
    );
    let runs = m.bench.as_ref().map_or(0, |b| b.runs.len());
    ensure!(runs == 4, "merged runs {runs}");
    let _ = fs::remove_file(&bin);
    Ok(())
}

//! `ttmlat bench` and `ttmlat merge` against a real kernel: two bench runs of `ttmlat stress`
//! in one 6.12 lab guest, checked on the host, merged and compared with the real binary.
//!
//!     cargo build --release -p probe-user
//!     cargo test -p xtask --test lab_bench -- --ignored

use std::{fs, path::PathBuf, process::Command, time::Duration};

use anyhow::{Context, Result, ensure};
use serde_json::Value;
use xtask::{
    lab::{self, LabSpec},
    labtest,
};

fn u(v: &Value) -> u64 {
    labtest::num(v)
}

fn host(ttmlat: &PathBuf, args: &[&str]) -> Result<std::process::Output> {
    Command::new(ttmlat)
        .args(args)
        .output()
        .with_context(|| format!("running ttmlat {}", args.join(" ")))
}

/// The checks on one bench recording of `reps` repetitions of `rounds` × `threads`.
fn check_recording(name: &str, rec: &Value, reps: u64, rounds: u64, threads: u64) -> Result<()> {
    ensure!(
        u(&rec["repetitions"]) == reps,
        "{name}: repetitions {}",
        rec["repetitions"]
    );
    xtask::labtest::assert_nothing_lost(name, rec)?;
    let runs = rec["bench"]["runs"].as_array().context("bench.runs")?;
    ensure!(runs.len() as u64 == reps, "{name}: {} runs", runs.len());
    let mut pids = Vec::new();
    let mut sum = 0;
    for r in runs {
        let s = &r["stress"];
        let pid = u(&s["pid"]);
        let helper = u(&s["holder_pid"]);
        ensure!(pid > 0 && helper > 0, "{name}: no pids in {r}");
        ensure!(
            !pids.contains(&pid),
            "{name}: two repetitions with pid {pid}"
        );
        pids.push(pid);
        ensure!(
            u(&s["rounds_done"]) == rounds && u(&s["first_touch"]["count"]) == rounds * threads,
            "{name}: stress summary {s}"
        );
        ensure!(
            s["victim"]["count"].as_u64().is_some(),
            "{name}: no victim summary"
        );
        // The episodes attributed to the repetition are its processes' in `processes`.
        let of = |p: u64| labtest::entry_field(&rec["processes"], &p.to_string(), Some("episodes"));
        ensure!(
            u(&r["episodes"]) == of(pid) + of(helper),
            "{name}: repetition episodes {} vs processes {} + {}",
            r["episodes"],
            of(pid),
            of(helper)
        );
        // Every faulting thread takes one fault per round; the helper one per buffer.
        ensure!(
            of(pid) >= rounds * threads && of(helper) >= rounds,
            "{name}: pid {pid} {} episodes, helper {} (rounds {rounds} threads {threads})",
            of(pid),
            of(helper)
        );
        ensure!(
            r["episode_p50_ns"].as_u64().is_some(),
            "{name}: no ttmlat median"
        );
        sum += u(&r["episodes"]);
    }
    // An idle guest: every TTM fault recorded is one of the stress processes'.
    let total: u64 = rec["counts"]["episodes"]
        .as_object()
        .context("counts.episodes")?
        .values()
        .map(u)
        .sum();
    eprintln!("{name}: {reps} repetitions, {total} episodes, {sum} attributed");
    ensure!(
        total == sum && u(&rec["bench"]["other_episodes"]) == 0,
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
    let read = |p: &PathBuf| -> Result<Value> {
        serde_json::from_str(&fs::read_to_string(p).with_context(|| p.display().to_string())?)
            .with_context(|| p.display().to_string())
    };
    let a = read(&a_path)?;
    let b = read(&b_path)?;
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
    let m = read(&merged)?;
    ensure!(
        u(&m["repetitions"]) == 4,
        "merged repetitions {}",
        m["repetitions"]
    );
    let episodes = |r: &Value| -> u64 {
        r["counts"]["episodes"]
            .as_object()
            .map_or(0, |o| o.values().map(u).sum())
    };
    ensure!(
        episodes(&m) == episodes(&a) + episodes(&b),
        "merged episodes {} vs {} + {}",
        episodes(&m),
        episodes(&a),
        episodes(&b)
    );
    ensure!(
        m["bench"]["runs"].as_array().map_or(0, Vec::len) == 4,
        "merged runs {}",
        m["bench"]["runs"]
    );
    let _ = fs::remove_file(&bin);
    Ok(())
}

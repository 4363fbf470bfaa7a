//! `cargo xtask bench-overhead` in miniature, in the QEMU lab: one round of one-second loops
//! under every observer. Asserts only what must hold whatever the timing: every loop ran,
//! ttmlat (fentry/fexit + kprobes), the bpftrace script and the plain tracefs kprobes each
//! saw the TTM loop's faults, ttmlat restricted to pid 1 saw none, and the summary renders. The figures themselves come
//! from the benchmark command, not from this test.
//!
//!     cargo build --release -p probe-user
//!     cargo test -p xtask --test lab_overhead -- --ignored
//!
//! Needs Debian's `bpftrace` package on the host (run in the guest).

use anyhow::{Context, Result, ensure};
use xtask::{
    lab::TtmVariant,
    lab_dirs::repo_root,
    labtest,
    overhead::{self, Observer},
};

#[test]
#[ignore = "boots a QEMU guest; run with --ignored"]
fn every_observer_sees_what_it_should_6_1() -> Result<()> {
    let bt = repo_root().join("lab/overhead/ttmlat-equivalent.bt");
    let script = overhead::guest_script(1, 1, &bt.display().to_string());
    let run = labtest::run_guest("6.1", TtmVariant::Stock, &script)?;
    let (m, observed) = overhead::collect(&run.out_dir, 1).context("collecting the loops")?;
    eprintln!("{observed}");
    for o in Observer::ALL {
        for load in overhead::LOADS {
            ensure!(
                m.runs.contains_key(&(1, o, load)),
                "no {load} loop under {}",
                o.name()
            );
        }
    }
    ensure!(
        m.runs[&(1, Observer::None, "ttm")].faults > 100,
        "the TTM loop made almost no faults"
    );
    let rows = overhead::summarize(&m)?;
    let text = overhead::render(&rows, "lab_overhead");
    eprintln!("{text}");
    ensure!(text.contains("target ttm"), "{text}");
    Ok(())
}

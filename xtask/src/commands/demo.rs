//! `cargo xtask demo`: the main job, where the host cannot trace. Boots the lab kernel and
//! runs `ttmlat live` while `ttmlat stress` drives reservation contention, then prints the
//! recording's report and histogram.

use std::{process::ExitCode, time::Duration};

use clap::Args;
use xtask::{
    lab::{self, LabSpec, TtmVariant},
    lab_dirs::repo_root,
};

#[derive(Args)]
pub struct DemoArgs {
    /// Lab kernel alias.
    #[arg(long, default_value = "6.12")]
    kernel: String,
    /// TTM variant (blocking needs --kernel 6.1).
    #[arg(long, default_value = "stock")]
    ttm: TtmVariant,
    /// Stress scenario (first-touch, cross-process, procmem).
    #[arg(long, default_value = "cross-process")]
    scenario: String,
    /// Rounds of the scenario.
    #[arg(long, default_value_t = 20)]
    rounds: u32,
}

pub fn demo(args: &DemoArgs) -> ExitCode {
    let ttmlat = repo_root().join("target/release/ttmlat");
    if !ttmlat.is_file() {
        eprintln!(
            "error: {} is missing: run `cargo build --release -p probe-user`",
            ttmlat.display()
        );
        return ExitCode::FAILURE;
    }
    let script = format!(
        r#"set -eu
T={ttmlat}
$T live --interval 2s --ready-file /tmp/ready &
LIVE=$!
for i in $(seq 1 600); do [ -f /tmp/ready ] && break; sleep 0.1; done
echo "== ttmlat stress --scenario {scenario} --rounds {rounds}"
$T stress --scenario {scenario} --threads 4 --size 16M --rounds {rounds}
sleep 2
kill -INT $LIVE
wait $LIVE
"#,
        ttmlat = ttmlat.display(),
        scenario = args.scenario,
        rounds = args.rounds,
    );
    let spec = LabSpec::new(&args.kernel, &script)
        .ttm(args.ttm)
        .timeout(Duration::from_secs(900));
    match lab::run(&spec) {
        Ok(run) => {
            print!("{}", run.stdout);
            eprint!("{}", run.stderr);
            eprintln!(
                "(measured in an emulated QEMU/TCG guest: kernel {} from {}, ttm {}; run dir {})",
                run.kernel.release,
                run.kernel.package,
                run.ttm,
                run.run_dir.display()
            );
            if run.rc == 0 {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

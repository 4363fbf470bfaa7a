//! xe's own fault path (6.18+: `xe_bo_cpu_fault`, no `ttm_bo_vm_reserve`) on the newest
//! Debian kernel. QEMU has no Intel GPU, so no xe fault can be made here; what this test
//! checks is everything short of that, on the real module: `modprobe xe` (which registers
//! its PCI driver without a device), then ttmlat's discovery must plan xe's handler, its call
//! sites must be the ones binutils' `objdump` finds in the very `xe.ko` the guest loaded (an
//! independent decoder), they must attach, and the qxl fault path must still be counted
//! exactly while they are attached.
//!
//! Run with `cargo test -p xtask --test lab_xe -- --ignored`.

use std::{collections::BTreeSet, fs, process::Command};

use anyhow::{Context, Result, ensure};
use xtask::{
    lab::TtmVariant,
    labtest::{self, TouchReport, process, read_recording, read_report},
};

/// The call sites ttmlat should hook in xe, as `function+0xoffset`, from `objdump -dr` of the
/// module: a `call` whose relocation names one of the probed callees, inside xe's fault
/// handler or its fastpath. The drop (`up_read`) and the wait's start are the call itself;
/// the wait's end is the instruction after the call. The trylock's result is read where the
/// code goes on after `test %eax,%eax; je/jne X` right after the call: X and the instruction
/// after the jump (or, for any other sequence, the instruction after the call).
fn objdump_sites(ko_xz: &std::path::Path) -> Result<BTreeSet<String>> {
    let ko = std::env::temp_dir().join(format!("lab-xe-{}.ko", std::process::id()));
    let xz = Command::new("xz")
        .arg("-dc")
        .arg(ko_xz)
        .output()
        .context("running xz")?;
    ensure!(xz.status.success(), "xz -dc {} failed", ko_xz.display());
    fs::write(&ko, &xz.stdout)?;
    let mut sites = BTreeSet::new();
    for function in ["xe_bo_cpu_fault", "xe_bo_cpu_fault_fastpath"] {
        let out = Command::new("objdump")
            .args(["-dr", "--no-show-raw-insn"])
            .arg(format!("--disassemble={function}"))
            .arg(&ko)
            .output()
            .context("running objdump (binutils)")?;
        ensure!(out.status.success(), "objdump failed");
        let text = String::from_utf8_lossy(&out.stdout);
        let mut start = None;
        // (address, instruction text) in order, and (call address, callee).
        let mut insns: Vec<(u64, String)> = Vec::new();
        let mut calls: Vec<(u64, String)> = Vec::new();
        for line in text.lines() {
            let t = line.trim();
            if let Some(addr) = t.strip_suffix(&format!(" <{function}>:")) {
                start = u64::from_str_radix(addr, 16).ok();
                continue;
            }
            let Some((addr, rest)) = t.split_once(':') else {
                continue;
            };
            let Ok(a) = u64::from_str_radix(addr, 16) else {
                continue;
            };
            let rest = rest.trim_start();
            if !rest.starts_with("R_X86_64_") {
                insns.push((a, rest.to_string()));
                continue;
            }
            // A relocation line: it belongs to the call before it only if it is that call's
            // rel32 (this objdump also lists other relocations of the section).
            let Some((insn, last)) = insns.last() else {
                continue;
            };
            if !last.starts_with("call") || a != insn + 1 {
                continue;
            }
            let callee = rest.split_whitespace().nth(1).unwrap_or("");
            let callee = callee.split(['-', '+']).next().unwrap_or("");
            calls.push((*insn, callee.to_string()));
        }
        let s = start.context("objdump printed no function start")?;
        let at = |a: u64| format!("{function}+{:#x}", a - s);
        for (call, callee) in &calls {
            let after = call + 5;
            match callee.as_str() {
                "up_read" => {
                    sites.insert(at(*call));
                }
                "drm_exec_lock_obj" => {
                    sites.insert(at(*call));
                    sites.insert(at(after));
                }
                "ww_mutex_trylock" => match trylock_paths(&insns, after) {
                    Some((taken, next)) => {
                        sites.insert(at(taken));
                        sites.insert(at(next));
                    }
                    None => {
                        sites.insert(at(after));
                    }
                },
                _ => {}
            }
        }
    }
    let _ = fs::remove_file(&ko);
    Ok(sites)
}

/// For `test %eax,%eax` (or `%al`) at `after` followed by `je`/`jne X`: (X, the instruction
/// after the jump).
fn trylock_paths(insns: &[(u64, String)], after: u64) -> Option<(u64, u64)> {
    let i = insns.iter().position(|(a, _)| *a == after)?;
    let words = |k: usize| -> Vec<&str> {
        insns
            .get(k)
            .map(|(_, t)| t.split_whitespace().collect())
            .unwrap_or_default()
    };
    let test = words(i);
    if test.first() != Some(&"test") || !matches!(test.get(1), Some(&"%eax,%eax" | &"%al,%al")) {
        return None;
    }
    let jump = words(i + 1);
    if !matches!(jump.first(), Some(&"je" | &"jne")) {
        return None;
    }
    let target = u64::from_str_radix(jump.get(1)?, 16).ok()?;
    let next = insns.get(i + 2)?.0;
    Some((target, next))
}

#[test]
#[ignore = "boots the newest Debian kernel in QEMU; run with --ignored"]
fn newest_with_xe_loaded_hooks_xe_own_fault_path() -> Result<()> {
    let body = format!(
        r#"modprobe xe
grep -qw xe_bo_cpu_fault /proc/kallsyms || {{ echo "xe_bo_cpu_fault not in kallsyms"; exit 3; }}
$TTMLAT check > $LAB_OUT/check.txt 2>&1 || {{ cat $LAB_OUT/check.txt; exit 3; }}
{start}$TTMLAT workload touch --size 2M --json > $LAB_OUT/touch.json
{stop}"#,
        start = labtest::record_start("rec", ""),
        stop = labtest::record_stop("rec", "INT"),
    );
    let run = labtest::run_script("newest", TtmVariant::Stock, &body)?;
    let rec = read_recording(&run, "rec.json")?;
    let touch: TouchReport = read_report(&run, "touch.json")?;
    let handlers = &rec.meta.handlers;
    ensure!(
        handlers.iter().any(|h| h.contains("xe_bo_cpu_fault [xe]")),
        "xe's handler is not in the plan: {handlers:?}"
    );
    let points: BTreeSet<String> = rec
        .meta
        .attach_points
        .iter()
        .map(String::as_str)
        // The handler itself is a kprobe or, where trampolines are taken, an fentry.
        .filter_map(|p| {
            p.strip_prefix("kprobe:")
                .or_else(|| p.strip_prefix("fentry:")?.strip_suffix(" [xe]"))
        })
        .filter(|p| p.starts_with("xe_bo_cpu_fault"))
        .map(str::to_string)
        .collect();
    let ko = run
        .kernel
        .root
        .join("lib/modules")
        .join(&run.kernel.release)
        .join("kernel/drivers/gpu/drm/xe/xe.ko.xz");
    let mut want = objdump_sites(&ko)?;
    want.insert("xe_bo_cpu_fault".into());
    eprintln!("xe sites: ttmlat {points:?}, objdump {want:?}");
    ensure!(
        want.len() >= 5,
        "objdump found too few xe call sites ({want:?}): has xe_bo_cpu_fault changed?"
    );
    ensure!(
        points == want,
        "ttmlat hooked {points:?} in xe, objdump finds {want:?}"
    );
    // With xe's sites attached, qxl's TTM faults are still counted one for one.
    let faults = u64::try_from(touch.minflt + touch.majflt).context("negative fault counts")?;
    let attempts = process(&rec, touch.pid)?.attempts;
    ensure!(
        attempts > 0 && attempts <= faults,
        "ttmlat counted {attempts} TTM fault attempts, the workload {faults} faults"
    );
    Ok(())
}

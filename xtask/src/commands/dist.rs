//! `cargo xtask dist`: a release bundle under `target/dist/`: the ttmlat binary, shell
//! completions, man pages, the systemd unit and the Grafana dashboard.
//!
//! Completions and man pages come from the binary itself (hidden `ttmlat completions SHELL`
//! and `ttmlat man --dir DIR`), i.e. from the very clap `Cli` it parses with. Generating them
//! in probe-user's build.rs instead would need the `Cli` type there, and it pulls in most of
//! the binary's modules (every subcommand's argument struct); build.rs also already builds
//! the eBPF object, and a generator there could drift from the flags the binary accepts.

use std::{
    fs,
    path::Path,
    process::{Command, ExitCode, Stdio},
};

use anyhow::{Context, Result, bail};
use clap::Args;
use xtask::lab_dirs::repo_root;

#[derive(Args)]
pub struct DistArgs {
    /// Do not run `cargo build --release -p probe-user` first (use the existing binary).
    #[arg(long)]
    no_build: bool,
}

/// Shells and the file name each one loads completions from.
const SHELLS: [(&str, &str); 4] = [
    ("bash", "completions/ttmlat.bash"),
    ("zsh", "completions/_ttmlat"),
    ("fish", "completions/ttmlat.fish"),
    ("elvish", "completions/ttmlat.elv"),
];

fn capture(cmd: &mut Command) -> Result<Vec<u8>> {
    let what = format!("{cmd:?}");
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("could not start {what}"))?;
    if !out.status.success() {
        bail!(
            "{what} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(out.stdout)
}

fn copy(from: &Path, to: &Path) -> Result<()> {
    if let Some(dir) = to.parent() {
        fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    fs::copy(from, to)
        .with_context(|| format!("copying {} to {}", from.display(), to.display()))?;
    Ok(())
}

fn build(root: &Path) -> Result<()> {
    // bpf-linker lives under target/tools/bin (scripts/setup.sh).
    let tools = root.join("target/tools/bin");
    let path = match std::env::var_os("PATH") {
        Some(p) => {
            let mut dirs = vec![tools];
            dirs.extend(std::env::split_paths(&p));
            std::env::join_paths(dirs).context("PATH")?
        }
        None => tools.into_os_string(),
    };
    let status = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .args(["build", "--release", "-p", "probe-user"])
        .current_dir(root)
        .env("PATH", path)
        .status()
        .context("could not start cargo")?;
    if !status.success() {
        bail!("cargo build --release -p probe-user failed ({status})");
    }
    Ok(())
}

fn dist(args: &DistArgs) -> Result<()> {
    let root = repo_root();
    if !args.no_build {
        build(&root)?;
    }
    let bin = root.join("target/release/ttmlat");
    if !bin.is_file() {
        bail!(
            "{} is missing: run `cargo build --release -p probe-user`",
            bin.display()
        );
    }
    let out = root.join("target/dist");
    if out.exists() {
        fs::remove_dir_all(&out).with_context(|| format!("clearing {}", out.display()))?;
    }
    fs::create_dir_all(out.join("completions"))?;
    copy(&bin, &out.join("bin/ttmlat"))?;
    for (shell, file) in SHELLS {
        let text = capture(Command::new(&bin).args(["completions", shell]))?;
        if text.is_empty() {
            bail!("ttmlat completions {shell} printed nothing");
        }
        fs::write(out.join(file), text)?;
    }
    let man = out.join("man/man1");
    fs::create_dir_all(&man)?;
    capture(Command::new(&bin).arg("man").arg("--dir").arg(&man))?;
    if !man.join("ttmlat.1").is_file() {
        bail!("ttmlat man wrote no ttmlat.1 into {}", man.display());
    }
    copy(
        &root.join("dist/systemd/ttmlat.service"),
        &out.join("systemd/ttmlat.service"),
    )?;
    copy(
        &root.join("dist/grafana/ttmlat.json"),
        &out.join("grafana/ttmlat.json"),
    )?;
    copy(&root.join("dist/README.md"), &out.join("README.md"))?;
    let mut files = Vec::new();
    list(&out, &out, &mut files)?;
    files.sort();
    for f in files {
        println!("target/dist/{f}");
    }
    Ok(())
}

fn list(base: &Path, dir: &Path, out: &mut Vec<String>) -> Result<()> {
    for entry in fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
        let path = entry?.path();
        if path.is_dir() {
            list(base, &path, out)?;
        } else if let Ok(rel) = path.strip_prefix(base) {
            out.push(rel.display().to_string());
        }
    }
    Ok(())
}

pub fn run(args: &DistArgs) -> ExitCode {
    match dist(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

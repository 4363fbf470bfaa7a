//! Running host programs with errors that say what was run and why it failed.

use std::process::{Command, Output, Stdio};

use anyhow::{Context, Result, bail};

/// A printable form of a command line, for messages.
pub fn describe(cmd: &Command) -> String {
    let mut s = cmd.get_program().to_string_lossy().into_owned();
    for arg in cmd.get_args() {
        s.push(' ');
        s.push_str(&arg.to_string_lossy());
    }
    s
}

/// Runs `cmd` with inherited stdio; fails unless it exits successfully.
pub fn run(cmd: &mut Command) -> Result<()> {
    let what = describe(cmd);
    let status = cmd
        .status()
        .with_context(|| format!("could not start `{what}`"))?;
    if !status.success() {
        bail!("`{what}` failed ({status})");
    }
    Ok(())
}

/// Runs `cmd`, capturing output; fails (including its stderr in the
/// message) unless it exits successfully. Returns the raw output.
pub fn output(cmd: &mut Command) -> Result<Output> {
    let what = describe(cmd);
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("could not start `{what}`"))?;
    if !out.status.success() {
        bail!(
            "`{what}` failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(out)
}

/// Like [`output`], returning stdout as text.
pub fn stdout_text(cmd: &mut Command) -> Result<String> {
    let out = output(cmd)?;
    String::from_utf8(out.stdout)
        .with_context(|| format!("`{}` printed non-UTF-8 output", describe(cmd)))
}

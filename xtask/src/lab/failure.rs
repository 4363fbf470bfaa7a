//! [`LabFailure`]: why a lab run cannot be trusted, with the evidence.
//! [`super::run`] returns it inside `anyhow::Error`; callers that care about
//! the kind can `err.downcast_ref::<LabFailure>()`.

use std::fmt;
use std::path::PathBuf;

/// What went wrong.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FailureKind {
    /// Panic, oops, BUG, warning... in the console log or guest dmesg, or a
    /// bad taint flag after the command.
    KernelTrouble,
    /// The host killed QEMU after the run's timeout.
    TimedOut,
    /// bochs loaded but `/dev/dri/card0` never appeared.
    MissingCard,
    /// The guest's /init reported a set-up failure (mount, insmod, modprobe).
    GuestSetup,
    /// The guest stopped without reporting the command's exit status.
    NoExitStatus,
    /// QEMU itself failed (bad arguments, missing firmware...).
    Qemu,
}

impl fmt::Display for FailureKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::KernelTrouble => "guest kernel in trouble",
            Self::TimedOut => "timed out",
            Self::MissingCard => "no /dev/dri/card0",
            Self::GuestSetup => "guest set-up failed",
            Self::NoExitStatus => "guest stopped without an exit status",
            Self::Qemu => "qemu failed",
        })
    }
}

/// A failed lab run.
#[derive(Clone, Debug)]
pub struct LabFailure {
    pub kind: FailureKind,
    /// One-line specifics (the offending kernel message, the timeout...).
    pub detail: String,
    pub kernel: String,
    pub run_dir: PathBuf,
    pub console_log: PathBuf,
    /// Last stage the guest reached (`boot`, `mounted`, `driver`, ...).
    pub last_stage: Option<String>,
    /// Last lines of the console log.
    pub console_tail: String,
}

impl fmt::Display for LabFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "lab run on kernel {} FAILED: {}: {}",
            self.kernel, self.kind, self.detail
        )?;
        writeln!(
            f,
            "  last guest stage: {}",
            self.last_stage.as_deref().unwrap_or("(none)")
        )?;
        writeln!(f, "  run dir:     {}", self.run_dir.display())?;
        writeln!(f, "  console log: {}", self.console_log.display())?;
        writeln!(f, "--- console tail ---")?;
        write!(f, "{}", self.console_tail)
    }
}

impl std::error::Error for LabFailure {}

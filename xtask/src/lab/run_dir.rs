//! Fresh per-run directories: `target/lab/runs/<UTC time>-<alias>[-N]/`.

use std::fs;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, bail};

/// Creates a new, empty run directory under `runs` (never reuses one).
pub fn create(runs: &Path, alias: &str, now: SystemTime) -> Result<PathBuf> {
    fs::create_dir_all(runs).with_context(|| format!("could not create {}", runs.display()))?;
    let secs = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let base = format!("{}-{alias}", utc_stamp(secs));
    for n in 1..1000 {
        let name = if n == 1 {
            base.clone()
        } else {
            format!("{base}-{n}")
        };
        let dir = runs.join(name);
        match fs::create_dir(&dir) {
            Ok(()) => return Ok(dir),
            Err(e) if e.kind() == ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e).with_context(|| format!("could not create {}", dir.display())),
        }
    }
    bail!("too many runs named {base} in {}", runs.display())
}

/// `YYYYMMDD-HHMMSS` (UTC) for seconds since the epoch.
pub fn utc_stamp(secs: u64) -> String {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}{m:02}{d:02}-{:02}{:02}{:02}",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Gregorian date of a day count since 1970-01-01 (H. Hinnant's algorithm).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_utc_stamps() {
        assert_eq!(utc_stamp(0), "19700101-000000");
        assert_eq!(utc_stamp(951_782_400), "20000229-000000");
        assert_eq!(utc_stamp(1_764_156_645), "20251126-113045");
    }

    #[test]
    fn never_reuses_a_directory() -> Result<()> {
        let runs = std::env::temp_dir().join(format!("xtask-runs-{}", std::process::id()));
        let t = UNIX_EPOCH;
        let a = create(&runs, "6.1", t)?;
        let b = create(&runs, "6.1", t)?;
        fs::remove_dir_all(&runs)?;
        assert!(a.ends_with("19700101-000000-6.1"));
        assert!(b.ends_with("19700101-000000-6.1-2"));
        Ok(())
    }
}

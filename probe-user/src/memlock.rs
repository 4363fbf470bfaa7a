//! Lifting RLIMIT_MEMLOCK before anything BPF is loaded.
//!
//! Before 5.11 the kernel charges BPF maps and programs to the user's locked memory
//! (`user->locked_vm`, summed over all of that user's processes) against RLIMIT_MEMLOCK, and
//! fails `BPF_PROG_LOAD`/`BPF_MAP_CREATE` with EPERM beyond it: measured on Debian's 5.10 in the
//! lab, a second `ttmlat record` started beside a first failed `check`'s program load. From
//! 5.11 on BPF memory is charged to the memory cgroup and the limit does not matter. Like
//! libbpf-tools, ttmlat raises its limit to infinity; if it cannot on a kernel where it
//! matters, it says so and goes on (the kernel's EPERM then names the failing step).

use nix::sys::resource::{RLIM_INFINITY, Resource, setrlimit};

/// Whether BPF memory counts against RLIMIT_MEMLOCK on kernel `release` (`uname -r`): before
/// 5.11. Unparseable: assume it does.
pub fn limit_matters(release: &str) -> bool {
    let mut v = release
        .split(|c: char| !c.is_ascii_digit())
        .map(|p| p.parse::<u32>().ok());
    match (v.next().flatten(), v.next().flatten()) {
        (Some(major), Some(minor)) => (major, minor) < (5, 11),
        _ => true,
    }
}

/// Raises RLIMIT_MEMLOCK to infinity; warns if that fails on a kernel where it matters.
pub fn lift() {
    let Err(e) = setrlimit(Resource::RLIMIT_MEMLOCK, RLIM_INFINITY, RLIM_INFINITY) else {
        return;
    };
    let release = nix::sys::utsname::uname()
        .map(|u| u.release().to_string_lossy().into_owned())
        .unwrap_or_default();
    let msg = format!(
        "could not raise RLIMIT_MEMLOCK ({e}): kernel {release} charges BPF maps and programs \
         to it"
    );
    if limit_matters(&release) && nix::unistd::geteuid().is_root() {
        log::warn!("{msg}");
    } else {
        log::debug!("{msg}");
    }
}

#[cfg(test)]
mod tests {
    use super::limit_matters;

    #[test]
    fn the_limit_matters_before_5_11() {
        assert!(limit_matters("5.10.0-32-amd64"));
        assert!(limit_matters("4.19.0-27-amd64"));
        assert!(!limit_matters("5.11.0-1-amd64"));
        assert!(!limit_matters("6.1.0-57-amd64"));
        assert!(!limit_matters("7.2.13+deb14-amd64"));
        assert!(limit_matters("garbage"));
    }
}

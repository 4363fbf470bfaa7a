//! Real probes of what the kernel allows, each undone before it returns: a BPF program load
//! (closed at once), a kprobe created through the perf kprobe PMU (disabled, closed at once),
//! and a read of the lockdown mode through a securityfs mounted in a private mount namespace
//! of a short-lived thread (gone with the thread; nothing changes for the rest of the system).

use std::{
    ffi::CString,
    os::fd::{FromRawFd, OwnedFd},
};

use crate::perf_event::{self, PerfEventAttr};

/// What a probe found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    Passed,
    /// The kernel said no: errno (when a syscall failed) and what it said.
    Failed {
        errno: Option<i32>,
        message: String,
    },
    /// Not tried, and why.
    Skipped(String),
}

impl Outcome {
    fn from_errno(err: std::io::Error, what: &str) -> Self {
        Self::Failed {
            errno: err.raw_os_error(),
            message: format!("{what}: {}", errno_text(&err)),
        }
    }
}

/// "EPERM (Operation not permitted)".
pub fn errno_text(err: &std::io::Error) -> String {
    match err.raw_os_error() {
        Some(code) => {
            let errno = nix::errno::Errno::from_raw(code);
            format!("{errno:?} ({})", errno.desc())
        }
        None => err.to_string(),
    }
}

const BPF_PROG_LOAD: libc::c_long = 5;
const BPF_PROG_TYPE_SOCKET_FILTER: u32 = 1;
const BPF_PROG_TYPE_KPROBE: u32 = 2;
const BPF_FUNC_PROBE_READ_KERNEL: i32 = 113;

/// One eBPF instruction (`struct bpf_insn`).
#[repr(C)]
#[derive(Clone, Copy)]
struct Insn {
    code: u8,
    /// dst in the low nibble, src in the high one.
    regs: u8,
    off: i16,
    imm: i32,
}

const fn insn(code: u8, dst: u8, src: u8, imm: i32) -> Insn {
    Insn {
        code,
        regs: (src << 4) | dst,
        off: 0,
        imm,
    }
}

const MOV64_IMM: u8 = 0xb7; // BPF_ALU64 | BPF_MOV | BPF_K
const MOV64_REG: u8 = 0xbf; // BPF_ALU64 | BPF_MOV | BPF_X
const ADD64_IMM: u8 = 0x07; // BPF_ALU64 | BPF_ADD | BPF_K
const CALL: u8 = 0x85; // BPF_JMP | BPF_CALL
const EXIT: u8 = 0x95; // BPF_JMP | BPF_EXIT

/// `r0 = 0; exit`.
const TRIVIAL: [Insn; 2] = [insn(MOV64_IMM, 0, 0, 0), insn(EXIT, 0, 0, 0)];

/// `bpf_probe_read_kernel(fp - 8, 8, NULL); r0 = 0; exit` — the helper every ttmlat probe
/// uses, and the one confidentiality lockdown takes away.
const READS_KERNEL: [Insn; 7] = [
    insn(MOV64_REG, 1, 10, 0),
    insn(ADD64_IMM, 1, 0, -8),
    insn(MOV64_IMM, 2, 0, 8),
    insn(MOV64_IMM, 3, 0, 0),
    insn(CALL, 0, 0, BPF_FUNC_PROBE_READ_KERNEL),
    insn(MOV64_IMM, 0, 0, 0),
    insn(EXIT, 0, 0, 0),
];

/// The BPF_PROG_LOAD part of `union bpf_attr`, up to `expected_attach_type`.
#[repr(C)]
#[derive(Default)]
struct ProgLoadAttr {
    prog_type: u32,
    insn_cnt: u32,
    insns: u64,
    license: u64,
    log_level: u32,
    log_size: u32,
    log_buf: u64,
    kern_version: u32,
    prog_flags: u32,
    prog_name: [u8; 16],
    prog_ifindex: u32,
    expected_attach_type: u32,
}

/// Which program to try.
#[derive(Clone, Copy, Debug)]
pub enum Prog {
    /// A trivial socket filter: is the bpf() syscall there and allowed at all?
    SocketFilter,
    /// A kprobe program reading kernel memory, like all of ttmlat's.
    KprobeReadingKernel,
}

/// `KERNEL_VERSION(a, b, c)` of a release string like "6.12.117+deb12-amd64".
pub fn kernel_version_code(release: &str) -> u32 {
    let mut parts = release
        .split(|c: char| !c.is_ascii_digit())
        .take(3)
        .map(|p| p.parse::<u32>().unwrap_or(0));
    let a = parts.next().unwrap_or(0);
    let b = parts.next().unwrap_or(0);
    let c = parts.next().unwrap_or(0);
    (a << 16) + (b.min(255) << 8) + c.min(255)
}

fn prog_load(prog: Prog, release: &str, log: Option<&mut [u8]>) -> std::io::Result<OwnedFd> {
    let (prog_type, insns): (u32, &[Insn]) = match prog {
        Prog::SocketFilter => (BPF_PROG_TYPE_SOCKET_FILTER, &TRIVIAL),
        Prog::KprobeReadingKernel => (BPF_PROG_TYPE_KPROBE, &READS_KERNEL),
    };
    let license = c"GPL";
    let mut attr = ProgLoadAttr {
        prog_type,
        insn_cnt: insns.len() as u32,
        insns: insns.as_ptr() as u64,
        license: license.as_ptr() as u64,
        kern_version: kernel_version_code(release),
        ..Default::default()
    };
    attr.prog_name[..12].copy_from_slice(b"ttmlat_check");
    if let Some(buf) = log {
        attr.log_level = 1;
        attr.log_size = buf.len() as u32;
        attr.log_buf = buf.as_mut_ptr() as u64;
    }
    // SAFETY: attr is a fully initialised, correctly sized prefix of union bpf_attr; every
    // pointer in it (instructions, license, log buffer) outlives the call.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            BPF_PROG_LOAD,
            &attr as *const ProgLoadAttr,
            std::mem::size_of::<ProgLoadAttr>() as libc::c_uint,
        )
    };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: the kernel returned a new fd that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

/// Loads `prog` and closes it at once. On failure, the verifier's last words are in the
/// message.
pub fn bpf_prog_load(prog: Prog, release: &str) -> Outcome {
    match prog_load(prog, release, None) {
        Ok(_fd) => Outcome::Passed,
        Err(err) => {
            let mut buf = vec![0u8; 64 * 1024];
            let verifier = match prog_load(prog, release, Some(&mut buf)) {
                Ok(_) => String::new(),
                Err(_) => verifier_summary(&buf),
            };
            let mut out = Outcome::from_errno(err, "BPF_PROG_LOAD");
            if let Outcome::Failed { message, .. } = &mut out
                && !verifier.is_empty()
            {
                message.push_str(&format!("; verifier: {verifier}"));
            }
            out
        }
    }
}

/// The last non-empty line of a verifier log (where it says why).
pub fn verifier_summary(log: &[u8]) -> String {
    let end = log.iter().position(|&b| b == 0).unwrap_or(log.len());
    String::from_utf8_lossy(&log[..end])
        .lines()
        .map(str::trim)
        .rfind(|l| !l.is_empty() && !l.starts_with("processed "))
        .unwrap_or_default()
        .to_string()
}

/// The perf PMU that creates kprobes (`/sys/bus/event_source/devices/kprobe/type`), which is
/// what aya attaches entry probes with.
pub const KPROBE_PMU_TYPE: &str = "/sys/bus/event_source/devices/kprobe/type";

pub fn kprobe_pmu_type() -> Option<u32> {
    std::fs::read_to_string(KPROBE_PMU_TYPE)
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// Registers a (disabled) kprobe on `symbol` through the kprobe PMU and removes it again.
pub fn kprobe_create(pmu_type: u32, symbol: &str) -> Outcome {
    let Ok(name) = CString::new(symbol) else {
        return Outcome::Skipped(format!("bad symbol name {symbol:?}"));
    };
    let attr = PerfEventAttr {
        // config bit 0 = retprobe: an entry probe. config1 = the function, config2 = offset.
        config: 0,
        config1: name.as_ptr() as u64,
        config2: 0,
        flags: perf_event::ATTR_FLAG_DISABLED,
        ..PerfEventAttr::new(pmu_type)
    };
    // SAFETY: `name` outlives the call. Closing the fd at once removes the kprobe.
    match unsafe { perf_event::open(&attr) } {
        Ok(fd) => drop(fd),
        Err(e) => return Outcome::from_errno(e, &format!("perf_event_open(kprobe {symbol})")),
    }
    Outcome::Passed
}

/// Opens `path` for appending and closes it: tracefs's `kprobe_events` checks permission and
/// lockdown at open, and only `O_TRUNC` (not used here) would remove events.
pub fn open_for_append(path: &std::path::Path) -> Outcome {
    match std::fs::OpenOptions::new().append(true).open(path) {
        Ok(_) => Outcome::Passed,
        Err(err) => Outcome::from_errno(err, &format!("open {}", path.display())),
    }
}

/// Reads the securityfs lockdown file through a securityfs mounted in a private mount
/// namespace of a thread that exits right after (needs CAP_SYS_ADMIN). For systems where
/// securityfs is not mounted.
pub fn lockdown_from_private_securityfs() -> Result<String, String> {
    let worker = std::thread::Builder::new()
        .name("ttmlat-lockdown".into())
        .spawn(private_securityfs_read)
        .map_err(|e| format!("cannot start a thread: {e}"))?;
    worker
        .join()
        .map_err(|_| "the securityfs reader panicked".to_string())?
}

fn private_securityfs_read() -> Result<String, String> {
    fn os_err(what: &str) -> String {
        format!("{what}: {}", errno_text(&std::io::Error::last_os_error()))
    }
    // SAFETY: unshare only affects this thread (CLONE_NEWNS implies CLONE_FS, which gives the
    // thread its own fs_struct); the mount calls get valid NUL-terminated strings.
    unsafe {
        if libc::unshare(libc::CLONE_NEWNS) != 0 {
            return Err(os_err("unshare(CLONE_NEWNS)"));
        }
        // Our copies of the mounts must not propagate back to the real namespace.
        let private = libc::MS_REC | libc::MS_PRIVATE;
        let made_private = [c"/", c"/sys"].iter().any(|p| {
            libc::mount(
                std::ptr::null(),
                p.as_ptr(),
                std::ptr::null(),
                private,
                std::ptr::null(),
            ) == 0
        });
        if !made_private {
            return Err(os_err("making the private mount namespace private"));
        }
        if libc::mount(
            c"securityfs".as_ptr(),
            c"/sys/kernel/security".as_ptr(),
            c"securityfs".as_ptr(),
            libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC,
            std::ptr::null(),
        ) != 0
        {
            return Err(os_err("mount securityfs"));
        }
    }
    std::fs::read_to_string(crate::kernel_info::LOCKDOWN_FILE)
        .map_err(|e| format!("{}: {}", crate::kernel_info::LOCKDOWN_FILE, errno_text(&e)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn abi_sizes() {
        assert_eq!(std::mem::size_of::<Insn>(), 8);
        assert_eq!(std::mem::size_of::<ProgLoadAttr>(), 72);
        // dst r1, src r10 (fp).
        assert_eq!(READS_KERNEL[0].regs, 0xa1);
    }

    #[test]
    fn version_codes() {
        assert_eq!(kernel_version_code("6.12.117+deb12-amd64"), 0x060c75);
        assert_eq!(kernel_version_code("6.1.0-56-amd64"), 0x060100);
        assert_eq!(kernel_version_code("5.4.300"), 0x0504ff);
        assert_eq!(kernel_version_code("garbage"), 0);
    }

    #[test]
    fn verifier_log_last_words() {
        let log = b"0: R1=ctx() R10=fp0\n; \n4: (85) call bpf_probe_read_kernel#113\n\
                    program of this type cannot use helper bpf_probe_read_kernel#113\n\
                    processed 5 insns (limit 1000000)\n\0\0garbage";
        assert_eq!(
            verifier_summary(log),
            "program of this type cannot use helper bpf_probe_read_kernel#113"
        );
        assert_eq!(verifier_summary(b"\0"), "");
    }

    #[test]
    fn errno_names() {
        let e = std::io::Error::from_raw_os_error(libc::EPERM);
        assert_eq!(errno_text(&e), "EPERM (Operation not permitted)");
    }
}

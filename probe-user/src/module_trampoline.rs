//! fentry/fexit on functions of a kernel module (the TTM fault handlers in ttm.ko and the
//! drivers). The kernel supports this since Linux 5.11: the program names the function by its
//! id in the module's split BTF and passes the module's BTF object (`attach_btf_obj_fd`).
//! aya 0.14 attaches trampolines to vmlinux functions only (aya PR #1593 adds modules), so
//! this module loads those programs itself, from the same embedded object: it relocates their
//! map references to the maps aya already created (so they share state and the read-only
//! configuration with every other program), loads each once per target function
//! (`BPF_PROG_LOAD`) and attaches it (`BPF_RAW_TRACEPOINT_OPEN`). Closing the fds detaches.

use std::collections::{HashMap, HashSet};
use std::ffi::CString;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::path::Path;

use anyhow::{Context, Result, anyhow, bail, ensure};
use aya::{Ebpf, maps::Map};
use aya_obj::generated::{
    bpf_attach_type, bpf_attr, bpf_btf_info, bpf_cmd, bpf_insn, bpf_prog_type,
};
use btf_rs::{Btf, Type};

/// Where the kernel publishes each module's BTF.
const MODULE_BTF_DIR: &str = "/sys/kernel/btf";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Entry,
    Exit,
}

impl Kind {
    pub fn label(self) -> &'static str {
        match self {
            Kind::Entry => "fentry",
            Kind::Exit => "fexit",
        }
    }

    fn attach_type(self) -> bpf_attach_type {
        match self {
            Kind::Entry => bpf_attach_type::BPF_TRACE_FENTRY,
            Kind::Exit => bpf_attach_type::BPF_TRACE_FEXIT,
        }
    }
}

/// One program attached to one module function. Dropping it detaches the program.
pub struct Attached {
    /// The program's name in the eBPF object.
    pub program: &'static str,
    pub function: String,
    pub module: String,
    pub kind: Kind,
    prog: OwnedFd,
    _link: OwnedFd,
}

impl Attached {
    pub fn prog_fd(&self) -> BorrowedFd<'_> {
        self.prog.as_fd()
    }
}

/// Loads programs of the embedded object as module trampolines.
pub struct Loader<'a> {
    object: aya_obj::Object,
    vmlinux: &'a Btf,
    /// Per module: its BTF object fd and parsed split BTF.
    modules: HashMap<String, (OwnedFd, Btf)>,
}

impl<'a> Loader<'a> {
    /// Parses `object` (the bytes aya loaded as `ebpf`) and points its map references at
    /// `ebpf`'s maps.
    pub fn new(object_bytes: &[u8], ebpf: &Ebpf, vmlinux: &'a Btf) -> Result<Self> {
        let mut object = aya_obj::Object::parse(object_bytes)
            .context("parsing the embedded eBPF object for the module trampolines")?;
        let fds: HashMap<&str, i32> = ebpf
            .maps()
            .map(|(name, map)| (name, map_data(map).fd().as_fd().as_raw_fd()))
            .collect();
        let maps = object.maps.clone();
        let mut with_fds = Vec::new();
        for (name, map) in &maps {
            let fd = fds
                .get(name.as_str())
                .ok_or_else(|| anyhow!("map {name} was not created by the loader"))?;
            with_fds.push((name.as_str(), *fd, map));
        }
        let text_sections: HashSet<usize> = object.functions.keys().map(|(s, _)| *s).collect();
        object
            .relocate_maps(with_fds.into_iter(), &text_sections)
            .map_err(|e| anyhow!("relocating map references: {e}"))?;
        object
            .relocate_calls(&text_sections)
            .map_err(|e| anyhow!("relocating calls: {e}"))?;
        Ok(Self {
            object,
            vmlinux,
            modules: HashMap::new(),
        })
    }

    /// Loads `program` (an fentry or fexit program of the object) for `function` of `module`
    /// and attaches it. `args` is the number of arguments the program expects the function to
    /// take (an fexit program reads the return value after them).
    pub fn attach(
        &mut self,
        program: &'static str,
        kind: Kind,
        function: &str,
        module: &str,
        args: usize,
    ) -> Result<Attached> {
        let what = || format!("{} on {function} [{module}]", kind.label());
        let insns = self.instructions(program)?;
        let license = self.object.license.clone();
        let (btf_fd, btf) = self.module(module).with_context(what)?;
        let id = function_id(btf, function, args).with_context(what)?;
        let prog = load(program, kind, &insns, &license, id, btf_fd.as_fd()).with_context(what)?;
        let link = raw_tracepoint_open(prog.as_fd()).with_context(what)?;
        Ok(Attached {
            program,
            function: function.to_string(),
            module: module.to_string(),
            kind,
            prog,
            _link: link,
        })
    }

    fn instructions(&self, program: &str) -> Result<Vec<bpf_insn>> {
        let p = self
            .object
            .programs
            .get(program)
            .ok_or_else(|| anyhow!("program {program} missing from the eBPF object"))?;
        let f = self
            .object
            .functions
            .get(&p.function_key())
            .ok_or_else(|| anyhow!("program {program} has no code in the eBPF object"))?;
        Ok(f.instructions.clone())
    }

    fn module(&mut self, module: &str) -> Result<&(OwnedFd, Btf)> {
        if !self.modules.contains_key(module) {
            let path = Path::new(MODULE_BTF_DIR).join(module);
            let btf = Btf::from_split_file(&path, self.vmlinux).with_context(|| {
                format!(
                    "reading {} (module BTF, CONFIG_DEBUG_INFO_BTF_MODULES)",
                    path.display()
                )
            })?;
            let fd = module_btf_fd(module)?;
            self.modules.insert(module.to_string(), (fd, btf));
        }
        self.modules
            .get(module)
            .ok_or_else(|| anyhow!("module BTF of {module} vanished"))
    }
}

/// The map's kernel object: every variant of aya's `Map` holds one.
fn map_data(map: &Map) -> &aya::maps::MapData {
    match map {
        Map::Array(m)
        | Map::ArrayOfMaps(m)
        | Map::BloomFilter(m)
        | Map::CgroupArray(m)
        | Map::CgroupStorage(m)
        | Map::CgrpStorage(m)
        | Map::CpuMap(m)
        | Map::DevMap(m)
        | Map::DevMapHash(m)
        | Map::HashMap(m)
        | Map::HashOfMaps(m)
        | Map::InodeStorage(m)
        | Map::LpmTrie(m)
        | Map::LruHashMap(m)
        | Map::PerCpuArray(m)
        | Map::PerCpuCgroupStorage(m)
        | Map::PerCpuHashMap(m)
        | Map::PerCpuLruHashMap(m)
        | Map::PerfEventArray(m)
        | Map::ProgramArray(m)
        | Map::Queue(m)
        | Map::ReusePortSockArray(m)
        | Map::RingBuf(m)
        | Map::SockHash(m)
        | Map::SockMap(m)
        | Map::SkStorage(m)
        | Map::Stack(m)
        | Map::StackTraceMap(m)
        | Map::Unsupported(m)
        | Map::XskMap(m) => m,
    }
}

/// The BTF id of function `name` in a module's split BTF, checking that it takes `args`
/// arguments (the program reads them, and an fexit program the return value after them).
pub fn function_id(btf: &Btf, name: &str, args: usize) -> Result<u32> {
    let ids = btf
        .resolve_ids_by_name(name)
        .with_context(|| format!("{name} is not in the module's BTF"))?;
    for id in ids {
        let Ok(Type::Func(func)) = btf.resolve_type_by_id(id) else {
            continue;
        };
        let Ok(Type::FuncProto(proto)) = btf.resolve_chained_type(&func) else {
            bail!("{name}: its BTF has no prototype");
        };
        ensure!(
            proto.parameters.len() == args,
            "{name} takes {} arguments in BTF, the program expects {args}",
            proto.parameters.len()
        );
        return Ok(id);
    }
    bail!("{name} is not a function in the module's BTF")
}

fn sys_bpf(cmd: bpf_cmd, attr: &mut bpf_attr) -> std::io::Result<i64> {
    // SAFETY: `attr` is a valid, fully initialised bpf_attr the kernel reads (and for
    // OBJ_GET_INFO writes through the pointers it holds, which the callers keep alive).
    let ret = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            cmd as libc::c_long,
            attr as *mut bpf_attr,
            std::mem::size_of::<bpf_attr>(),
        )
    };
    if ret < 0 {
        Err(std::io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

fn zeroed_attr() -> bpf_attr {
    // SAFETY: bpf_attr is a union of plain integer structs; all-zero is its documented
    // "unused" state.
    unsafe { std::mem::zeroed() }
}

fn owned_fd(ret: i64, what: &str) -> Result<OwnedFd> {
    let fd = i32::try_from(ret).with_context(|| format!("{what}: fd {ret} out of range"))?;
    // SAFETY: the kernel just returned this fd to us; nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// The fd of the kernel BTF object named `module` (BPF_BTF_GET_NEXT_ID, _GET_FD_BY_ID and
/// OBJ_GET_INFO_BY_FD over every loaded BTF object).
fn module_btf_fd(module: &str) -> Result<OwnedFd> {
    let mut id = 0u32;
    loop {
        let mut attr = zeroed_attr();
        attr.__bindgen_anon_6.__bindgen_anon_1.start_id = id;
        match sys_bpf(bpf_cmd::BPF_BTF_GET_NEXT_ID, &mut attr) {
            Ok(_) => {}
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {
                bail!("the kernel has no BTF object named {module} (BPF_BTF_GET_NEXT_ID)")
            }
            Err(e) => return Err(e).context("listing the kernel's BTF objects"),
        }
        // SAFETY: BTF_GET_NEXT_ID wrote next_id of the same union member.
        id = unsafe { attr.__bindgen_anon_6.next_id };
        let mut attr = zeroed_attr();
        attr.__bindgen_anon_6.__bindgen_anon_1.btf_id = id;
        let fd = match sys_bpf(bpf_cmd::BPF_BTF_GET_FD_BY_ID, &mut attr) {
            Ok(fd) => owned_fd(fd, "BPF_BTF_GET_FD_BY_ID")?,
            // Unloaded between the two calls.
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => continue,
            Err(e) => return Err(e).with_context(|| format!("opening BTF object {id}")),
        };
        let mut name = [0u8; 64];
        // SAFETY: bpf_btf_info is plain integers.
        let mut info: bpf_btf_info = unsafe { std::mem::zeroed() };
        info.name = name.as_mut_ptr() as u64;
        info.name_len = name.len() as u32;
        let mut attr = zeroed_attr();
        attr.info.bpf_fd = fd.as_raw_fd() as u32;
        attr.info.info_len = std::mem::size_of::<bpf_btf_info>() as u32;
        attr.info.info = &mut info as *mut bpf_btf_info as u64;
        sys_bpf(bpf_cmd::BPF_OBJ_GET_INFO_BY_FD, &mut attr)
            .with_context(|| format!("reading the info of BTF object {id}"))?;
        let len = name.iter().position(|&b| b == 0).unwrap_or(name.len());
        if info.kernel_btf != 0 && &name[..len] == module.as_bytes() {
            return Ok(fd);
        }
    }
}

fn load(
    program: &str,
    kind: Kind,
    insns: &[bpf_insn],
    license: &CString,
    btf_id: u32,
    btf_fd: BorrowedFd<'_>,
) -> Result<OwnedFd> {
    let attempt = |log: Option<&mut [u8]>| {
        let mut attr = zeroed_attr();
        // SAFETY: the PROG_LOAD member of a zeroed union; only it is written.
        let u = unsafe { &mut attr.__bindgen_anon_3 };
        u.prog_type = bpf_prog_type::BPF_PROG_TYPE_TRACING as u32;
        u.expected_attach_type = kind.attach_type() as u32;
        u.insns = insns.as_ptr() as u64;
        u.insn_cnt = insns.len() as u32;
        u.license = license.as_ptr() as u64;
        u.attach_btf_id = btf_id;
        u.__bindgen_anon_1.attach_btf_obj_fd = btf_fd.as_raw_fd() as u32;
        for (dst, src) in u.prog_name.iter_mut().zip(program.bytes().take(15)) {
            *dst = src as libc::c_char;
        }
        if let Some(buf) = log {
            u.log_level = 1;
            u.log_buf = buf.as_mut_ptr() as u64;
            u.log_size = buf.len() as u32;
        }
        sys_bpf(bpf_cmd::BPF_PROG_LOAD, &mut attr)
    };
    match attempt(None) {
        Ok(fd) => owned_fd(fd, "BPF_PROG_LOAD"),
        Err(first) => {
            // Again with the verifier's log, for the message.
            let mut log = vec![0u8; 1 << 20];
            let again = attempt(Some(&mut log));
            let len = log.iter().position(|&b| b == 0).unwrap_or(log.len());
            let text = String::from_utf8_lossy(&log[..len]);
            let tail: Vec<&str> = text.lines().rev().take(12).collect();
            match again {
                Ok(fd) => owned_fd(fd, "BPF_PROG_LOAD"),
                Err(_) => Err(anyhow!(
                    "the kernel refused to load program {program}: {first}; verifier log \
                     ends:\n{}",
                    tail.into_iter().rev().collect::<Vec<_>>().join("\n")
                )),
            }
        }
    }
}

fn raw_tracepoint_open(prog: BorrowedFd<'_>) -> Result<OwnedFd> {
    let mut attr = zeroed_attr();
    attr.raw_tracepoint.prog_fd = prog.as_raw_fd() as u32;
    let fd = sys_bpf(bpf_cmd::BPF_RAW_TRACEPOINT_OPEN, &mut attr)
        .context("attaching the trampoline (BPF_RAW_TRACEPOINT_OPEN)")?;
    owned_fd(fd, "BPF_RAW_TRACEPOINT_OPEN")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Debian 6.12's vmlinux BTF and a module's split BTF are not in the tree; a BTF built
    /// here stands in: `int f(void *a)` and `int g(void *a, int b)`.
    fn tiny_btf() -> Vec<u8> {
        // Types: 1 int, 2 ptr->void, 3 proto(1 param) ret int, 4 func f -> 3,
        // 5 proto(2 params), 6 func g -> 5.
        let strings = b"\0int\0f\0g\0a\0b\0".to_vec();
        let (int, f, g, a, b) = (1u32, 5u32, 7u32, 9u32, 11u32);
        let mut types = Vec::new();
        let mut put = |v: &[u32]| {
            v.iter()
                .for_each(|w| types.extend_from_slice(&w.to_le_bytes()))
        };
        put(&[int, 1 << 24, 4, (1 << 24) | 32]); // INT, 4 bytes, 32 bits signed
        put(&[0, 2 << 24, 0]); // PTR to void
        put(&[0, (13 << 24) | 1, 1, a, 2]); // FUNC_PROTO int (void *a)
        put(&[f, (12 << 24) | 1, 3]); // FUNC f, global
        put(&[0, (13 << 24) | 2, 1, a, 2, b, 1]); // FUNC_PROTO int (void *a, int b)
        put(&[g, (12 << 24) | 1, 5]); // FUNC g
        let mut out = Vec::new();
        let hdr_len = 24u32;
        out.extend_from_slice(&0xeb9fu16.to_le_bytes());
        out.push(1);
        out.push(0);
        for w in [
            hdr_len,
            0,
            types.len() as u32,
            types.len() as u32,
            strings.len() as u32,
        ] {
            out.extend_from_slice(&w.to_le_bytes());
        }
        out.extend_from_slice(&types);
        out.extend_from_slice(&strings);
        out
    }

    #[test]
    fn function_ids_are_checked_against_the_prototype() {
        let btf = Btf::from_bytes(&tiny_btf()).expect("parse");
        assert_eq!(function_id(&btf, "f", 1).unwrap(), 4);
        assert_eq!(function_id(&btf, "g", 2).unwrap(), 6);
        let e = function_id(&btf, "g", 1).unwrap_err().to_string();
        assert!(e.contains("takes 2 arguments"), "{e}");
        assert!(
            function_id(&btf, "int", 0).is_err(),
            "a type is not a function"
        );
        assert!(function_id(&btf, "h", 1).is_err());
    }
}

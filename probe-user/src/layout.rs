//! Struct member offsets from vmlinux BTF (`/sys/kernel/btf/vmlinux`), handed to the probes as
//! `ProbeConfig::layout`. Only vmlinux types are used, so a ttm.ko without BTF works; a field
//! that cannot be resolved is named in the error.

use std::path::Path;

use btf_rs::{Btf, Type};
use probe_common::KernelLayout;

#[derive(Debug, thiserror::Error)]
pub enum LayoutError {
    #[error("cannot read kernel BTF at {path}: {source} (is CONFIG_DEBUG_INFO_BTF set?)")]
    Read {
        path: String,
        #[source]
        source: btf_rs::Error,
    },
    #[error(
        "unknown kernel layout: no struct `{0}` in vmlinux BTF (ttmlat needs it to follow faults)"
    )]
    NoStruct(String),
    #[error("unknown kernel layout: struct `{0}` has no member `{1}` in vmlinux BTF (tried: {2})")]
    NoMember(String, String, String),
    #[error("BTF error while resolving `{0}`: {1}")]
    Btf(String, btf_rs::Error),
}

/// Parses a (vmlinux) BTF file.
pub fn read(path: &Path) -> Result<Btf, LayoutError> {
    Btf::from_file(path).map_err(|source| LayoutError::Read {
        path: path.display().to_string(),
        source,
    })
}

/// Resolves every offset the probes need.
pub fn resolve(btf: &Btf) -> Result<KernelLayout, LayoutError> {
    let r = Resolver { btf };
    Ok(KernelLayout {
        vm_fault_vma: r.offset("vm_fault", &["vma"])?,
        vm_fault_flags: r.offset("vm_fault", &["flags"])?,
        vma_vm_mm: r.offset("vm_area_struct", &["vm_mm"])?,
        vma_vm_file: r.offset("vm_area_struct", &["vm_file"])?,
        file_f_op: r.offset("file", &["f_op"])?,
        fops_owner: r.offset("file_operations", &["owner"])?,
        module_name: r.offset("module", &["name"])?,
        // Renamed from mmap_sem in 5.8.
        mm_mmap_lock: r.offset_any("mm_struct", &[&["mmap_lock"], &["mmap_sem"]])?,
        // mutex-based ww_mutex: base.owner; PREEMPT_RT: base.rtmutex.owner.
        ww_mutex_owner: r.offset_any(
            "ww_mutex",
            &[&["base", "owner"], &["base", "rtmutex", "owner"]],
        )?,
        task_pid: r.offset("task_struct", &["pid"])?,
        task_tgid: r.offset("task_struct", &["tgid"])?,
        task_comm: r.offset("task_struct", &["comm"])?,
        task_min_flt: r.offset("task_struct", &["min_flt"])?,
        task_maj_flt: r.offset("task_struct", &["maj_flt"])?,
        // Only for xe's call sites; see `gem_object_resv`.
        gem_object_resv: 0,
        _pad: 0,
    })
}

/// `struct drm_gem_object` → `resv`, for the `drm_exec_lock_obj(exec, obj)` call sites in
/// xe's fault handler (6.18+). From vmlinux BTF where DRM is built in, otherwise from the drm
/// module's split BTF (`<btf_dir>/drm`, Linux 5.11+ with CONFIG_DEBUG_INFO_BTF_MODULES).
pub fn gem_object_resv(base: &Btf, btf_dir: &Path) -> Result<u32, LayoutError> {
    // The probes take `resv` itself as the ww_mutex.
    let lock = (Resolver { btf: base }).offset("dma_resv", &["lock"])?;
    if lock != 0 {
        return Err(LayoutError::NoMember(
            "dma_resv".into(),
            "lock".into(),
            format!("lock at offset {lock}, not 0"),
        ));
    }
    if let Ok(off) = (Resolver { btf: base }).offset("drm_gem_object", &["resv"]) {
        return Ok(off);
    }
    let path = btf_dir.join("drm");
    let drm = Btf::from_split_file(&path, base).map_err(|source| LayoutError::Read {
        path: path.display().to_string(),
        source,
    })?;
    (Resolver { btf: &drm }).offset("drm_gem_object", &["resv"])
}

struct Resolver<'a> {
    btf: &'a Btf,
}

impl Resolver<'_> {
    fn offset_any(&self, ty: &str, paths: &[&[&str]]) -> Result<u32, LayoutError> {
        for path in paths {
            if let Ok(off) = self.offset(ty, path) {
                return Ok(off);
            }
        }
        let tried = paths
            .iter()
            .map(|p| p.join("."))
            .collect::<Vec<_>>()
            .join(", ");
        Err(LayoutError::NoMember(ty.into(), paths[0].join("."), tried))
    }

    /// Byte offset of `path` (member names, descending through named members) in struct `ty`.
    /// Anonymous structs/unions are searched transparently, as C does.
    fn offset(&self, ty: &str, path: &[&str]) -> Result<u32, LayoutError> {
        let mut st = self.named_struct(ty)?;
        let mut bits = 0u32;
        for (i, name) in path.iter().enumerate() {
            let (off, member_ty) = self
                .find_member(&st, name)?
                .ok_or_else(|| LayoutError::NoMember(ty.into(), path.join("."), path.join(".")))?;
            bits += off;
            if i + 1 < path.len() {
                st = self.as_struct(member_ty).ok_or_else(|| {
                    LayoutError::NoMember(ty.into(), path.join("."), path.join("."))
                })?;
            }
        }
        Ok(bits / 8)
    }

    fn named_struct(&self, name: &str) -> Result<btf_rs::Struct, LayoutError> {
        let types = self
            .btf
            .resolve_types_by_name(name)
            .map_err(|_| LayoutError::NoStruct(name.into()))?;
        types
            .into_iter()
            .find_map(|t| match t {
                // A forward declaration has no members; keep looking for the definition.
                Type::Struct(s) | Type::Union(s) if !s.members.is_empty() => Some(s),
                _ => None,
            })
            .ok_or_else(|| LayoutError::NoStruct(name.into()))
    }

    /// (bit offset, type) of member `name`, looking into anonymous members.
    fn find_member(
        &self,
        st: &btf_rs::Struct,
        name: &str,
    ) -> Result<Option<(u32, Type)>, LayoutError> {
        for m in &st.members {
            let member_name = self
                .btf
                .resolve_name(m)
                .map_err(|e| LayoutError::Btf(name.into(), e))?;
            let ty = self
                .btf
                .resolve_chained_type(m)
                .map_err(|e| LayoutError::Btf(name.into(), e))?;
            if member_name == name {
                return Ok(Some((m.bit_offset(), ty)));
            }
            if member_name.is_empty()
                && let Some(inner) = self.as_struct(ty)
                && let Some((off, t)) = self.find_member(&inner, name)?
            {
                return Ok(Some((m.bit_offset() + off, t)));
            }
        }
        Ok(None)
    }

    /// Follows typedefs/qualifiers to a struct or union.
    fn as_struct(&self, mut ty: Type) -> Option<btf_rs::Struct> {
        for _ in 0..16 {
            match ty {
                Type::Struct(s) | Type::Union(s) => return Some(s),
                Type::Typedef(_) | Type::Const(_) | Type::Volatile(_) | Type::TypeTag(_) => {
                    let next = ty.as_btf_type()?;
                    ty = self.btf.resolve_chained_type(next).ok()?;
                }
                _ => return None,
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The host's own kernel BTF is real ground truth for the resolver (the host cannot trace,
    /// but it can be read). Skipped, loudly, where the file does not exist.
    #[test]
    fn resolves_the_running_kernel_layout() {
        let path = Path::new("/sys/kernel/btf/vmlinux");
        if !path.exists() {
            eprintln!("SKIP: no {}", path.display());
            return;
        }
        let l = resolve(&read(path).expect("host BTF")).expect("host kernel layout");
        // Invariants that hold on every x86-64 kernel since 5.4.
        assert!(l.vm_fault_vma < l.vm_fault_flags || l.vm_fault_flags < 64);
        assert!(l.task_pid > 0 && l.task_tgid == l.task_pid + 4);
        assert!(l.task_comm > l.task_tgid);
        assert!(l.mm_mmap_lock > 0);
        assert_eq!(
            l.ww_mutex_owner, 0,
            "mutex owner is the first word on !RT kernels"
        );
        assert_eq!(l.module_name % 8, 0);
    }

    #[test]
    fn missing_member_is_named() {
        let path = Path::new("/sys/kernel/btf/vmlinux");
        if !path.exists() {
            eprintln!("SKIP: no {}", path.display());
            return;
        }
        let btf = Btf::from_file(path).expect("btf");
        let r = Resolver { btf: &btf };
        let err = r
            .offset_any("mm_struct", &[&["no_such_lock"]])
            .expect_err("must fail");
        let msg = err.to_string();
        assert!(
            msg.contains("mm_struct") && msg.contains("no_such_lock"),
            "{msg}"
        );
        let err = r
            .offset("no_such_struct_xyz", &["a"])
            .expect_err("must fail");
        assert!(err.to_string().contains("no_such_struct_xyz"));
    }
}

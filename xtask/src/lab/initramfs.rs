//! The lab initramfs: static busybox, `/init`, and the modules needed to reach
//! the host over virtio-9p. Built once per kernel and cached under
//! `target/lab/initramfs/`.

use std::collections::hash_map::DefaultHasher;
use std::fs;
use std::hash::{Hash, Hasher};
use std::io::BufWriter;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};

use anyhow::{Context, Result, bail};

use super::cpio_newc::NewcWriter;
use super::guest_init::INIT_SCRIPT;
use crate::lab_dirs::LabDirs;
use crate::manifest::KernelInfo;
use crate::process;

/// Modules (with their dependencies) the guest needs before it can mount the
/// host. `virtio_pci` is built in on 6.12 but a module on 6.1.
pub const BOOT_MODULES: [&str; 3] = ["virtio_pci", "9pnet_virtio", "9p"];

const BUSYBOX: &str = "/bin/busybox";

/// Bump when the image layout changes (the init script is hashed anyway).
const FORMAT_VERSION: u32 = 1;

/// Paths of the `insmod` lines of `modprobe --show-depends` output, in order
/// (dependencies first). `builtin NAME` lines are skipped.
pub fn parse_show_depends(text: &str) -> Vec<PathBuf> {
    text.lines()
        .filter_map(|line| {
            let mut words = line.split_whitespace();
            (words.next() == Some("insmod"))
                .then(|| words.next())
                .flatten()
                .map(PathBuf::from)
        })
        .collect()
}

/// Appends `more` to `list`, skipping paths already present.
pub fn merge_unique(list: &mut Vec<PathBuf>, more: Vec<PathBuf>) {
    for p in more {
        if !list.contains(&p) {
            list.push(p);
        }
    }
}

/// File name of a module in the image: compression suffix dropped.
pub fn module_file_name(path: &Path) -> Option<String> {
    let name = path.file_name()?.to_str()?;
    let base = [".xz", ".zst", ".gz"]
        .iter()
        .find_map(|ext| name.strip_suffix(ext))
        .unwrap_or(name);
    base.ends_with(".ko").then(|| base.to_owned())
}

/// The boot modules of `kernel`, dependencies first, without duplicates.
pub fn boot_modules(kernel: &KernelInfo) -> Result<Vec<PathBuf>> {
    let mut all = Vec::new();
    for module in BOOT_MODULES {
        let text =
            process::stdout_text(Command::new("modprobe").arg("-d").arg(&kernel.root).args([
                "-S",
                &kernel.release,
                "--show-depends",
                module,
            ]))
            .with_context(|| format!("resolving {module} for kernel {}", kernel.release))?;
        merge_unique(&mut all, parse_show_depends(&text));
    }
    Ok(all)
}

/// A module's bytes, decompressed.
fn module_bytes(path: &Path) -> Result<Vec<u8>> {
    let tool = match path.extension().and_then(|e| e.to_str()) {
        Some("xz") => "xz",
        Some("zst") => "zstd",
        Some("gz") => "gzip",
        _ => return fs::read(path).with_context(|| format!("could not read {}", path.display())),
    };
    Ok(process::output(Command::new(tool).arg("-dc").arg(path))?.stdout)
}

fn image_name(kernel: &KernelInfo) -> String {
    let mut h = DefaultHasher::new();
    (FORMAT_VERSION, INIT_SCRIPT, BOOT_MODULES).hash(&mut h);
    (&kernel.package, &kernel.version, &kernel.root).hash(&mut h);
    format!("{}-{:016x}.cpio", kernel.release, h.finish())
}

/// The cached initramfs for `kernel`, built first if needed.
pub fn ensure(dirs: &LabDirs, kernel: &KernelInfo) -> Result<PathBuf> {
    let dir = dirs.initramfs();
    let image = dir.join(image_name(kernel));
    if image.is_file() {
        return Ok(image);
    }
    fs::create_dir_all(&dir).with_context(|| format!("could not create {}", dir.display()))?;
    // Unique per process and call: lab runs may start concurrently.
    static BUILDS: AtomicU64 = AtomicU64::new(0);
    let n = BUILDS.fetch_add(1, Ordering::Relaxed);
    let tmp = dir.join(format!(".tmp-{}-{n}", std::process::id()));
    build(kernel, &tmp)
        .with_context(|| format!("building the initramfs for {}", kernel.release))?;
    fs::rename(&tmp, &image).with_context(|| format!("could not create {}", image.display()))?;
    remove_stale(&dir, kernel, &image);
    Ok(image)
}

/// Deletes older images of the same release (best effort).
fn remove_stale(dir: &Path, kernel: &KernelInfo, keep: &Path) {
    let prefix = format!("{}-", kernel.release);
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let name = entry.file_name().to_string_lossy().into_owned();
        let same_release = name
            .strip_prefix(&prefix)
            .is_some_and(|rest| rest.len() == 16 + ".cpio".len() && rest.ends_with(".cpio"));
        if same_release && path != keep {
            let _ = fs::remove_file(path);
        }
    }
}

/// Whether an ELF64 (little-endian) image has a PT_INTERP program header,
/// i.e. is dynamically linked; `None` if it is not such an ELF file.
pub fn has_elf_interpreter(elf: &[u8]) -> Option<bool> {
    const PT_INTERP: u32 = 3;
    if elf.get(..6)? != b"\x7fELF\x02\x01" {
        return None;
    }
    let u16_at = |o: usize| Some(u16::from_le_bytes(elf.get(o..o + 2)?.try_into().ok()?));
    let u32_at = |o: usize| Some(u32::from_le_bytes(elf.get(o..o + 4)?.try_into().ok()?));
    let u64_at = |o: usize| Some(u64::from_le_bytes(elf.get(o..o + 8)?.try_into().ok()?));
    let phoff = usize::try_from(u64_at(0x20)?).ok()?;
    let phentsize = usize::from(u16_at(0x36)?);
    let phnum = usize::from(u16_at(0x38)?);
    for i in 0..phnum {
        if u32_at(phoff.checked_add(i.checked_mul(phentsize)?)?)? == PT_INTERP {
            return Some(true);
        }
    }
    Some(false)
}

fn build(kernel: &KernelInfo, dest: &Path) -> Result<()> {
    let busybox = fs::read(BUSYBOX).with_context(|| format!("could not read {BUSYBOX}"))?;
    match has_elf_interpreter(&busybox) {
        Some(false) => {}
        Some(true) => bail!("{BUSYBOX} is dynamically linked; install busybox-static"),
        None => bail!("{BUSYBOX} is not a 64-bit little-endian ELF executable"),
    }
    let modules = boot_modules(kernel)?;

    let file =
        fs::File::create(dest).with_context(|| format!("could not create {}", dest.display()))?;
    let mut w = NewcWriter::new(BufWriter::new(file));
    for d in ["bin", "dev", "proc", "sys", "host", "ctl", "tmp", "modules"] {
        w.dir(d, 0o755)?;
    }
    w.char_device("dev/console", 0o600, 5, 1)?;
    w.char_device("dev/null", 0o666, 1, 3)?;
    w.file("bin/busybox", 0o755, &busybox)?;
    w.file("init", 0o755, INIT_SCRIPT.as_bytes())?;
    let mut order = String::new();
    for path in &modules {
        let name = module_file_name(path)
            .with_context(|| format!("unexpected module file {}", path.display()))?;
        w.file(&format!("modules/{name}"), 0o644, &module_bytes(path)?)?;
        order.push_str(&name);
        order.push('\n');
    }
    w.file("modules/order", 0o644, order.as_bytes())?;
    w.finish()
        .with_context(|| format!("could not write {}", dest.display()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const SHOW_61_VIRTIO: &str = "\
insmod /k/lib/modules/6.1.0-56-amd64/kernel/drivers/virtio/virtio_ring.ko 
insmod /k/lib/modules/6.1.0-56-amd64/kernel/drivers/virtio/virtio.ko 
insmod /k/lib/modules/6.1.0-56-amd64/kernel/drivers/virtio/virtio_pci_modern_dev.ko 
insmod /k/lib/modules/6.1.0-56-amd64/kernel/drivers/virtio/virtio_pci_legacy_dev.ko 
insmod /k/lib/modules/6.1.0-56-amd64/kernel/drivers/virtio/virtio_pci.ko 
";
    const SHOW_61_9PNET: &str = "\
insmod /k/lib/modules/6.1.0-56-amd64/kernel/drivers/virtio/virtio_ring.ko 
insmod /k/lib/modules/6.1.0-56-amd64/kernel/drivers/virtio/virtio.ko 
insmod /k/lib/modules/6.1.0-56-amd64/kernel/net/9p/9pnet.ko 
insmod /k/lib/modules/6.1.0-56-amd64/kernel/net/9p/9pnet_virtio.ko 
";

    #[test]
    fn parses_insmod_lines_and_skips_builtins() {
        let text = "builtin virtio_pci\ninsmod /m/netfs.ko.xz \ninsmod /m/9pnet.ko.xz opt=1\n\n";
        assert_eq!(
            parse_show_depends(text),
            vec![
                PathBuf::from("/m/netfs.ko.xz"),
                PathBuf::from("/m/9pnet.ko.xz")
            ]
        );
        assert!(parse_show_depends("builtin virtio_pci\n").is_empty());
    }

    #[test]
    fn merges_dependency_lists_in_order_without_duplicates() {
        let mut all = Vec::new();
        merge_unique(&mut all, parse_show_depends(SHOW_61_VIRTIO));
        merge_unique(&mut all, parse_show_depends(SHOW_61_9PNET));
        let names: Vec<String> = all.iter().filter_map(|p| module_file_name(p)).collect();
        assert_eq!(
            names,
            [
                "virtio_ring.ko",
                "virtio.ko",
                "virtio_pci_modern_dev.ko",
                "virtio_pci_legacy_dev.ko",
                "virtio_pci.ko",
                "9pnet.ko",
                "9pnet_virtio.ko"
            ]
        );
    }

    #[test]
    fn tells_static_from_dynamic_executables() -> Result<()> {
        // The test binary itself is dynamically linked (glibc target).
        let me = fs::read(std::env::current_exe()?)?;
        assert_eq!(has_elf_interpreter(&me), Some(true));
        assert_eq!(has_elf_interpreter(b"#!/bin/sh\n"), None);
        let mut fake = vec![0u8; 0x40 + 56];
        fake[..6].copy_from_slice(b"\x7fELF\x02\x01");
        fake[0x20] = 0x40; // phoff
        fake[0x36] = 56; // phentsize
        fake[0x38] = 1; // phnum
        fake[0x40] = 1; // PT_LOAD
        assert_eq!(has_elf_interpreter(&fake), Some(false));
        fake[0x40] = 3; // PT_INTERP
        assert_eq!(has_elf_interpreter(&fake), Some(true));
        Ok(())
    }

    #[test]
    fn strips_compression_suffixes() {
        assert_eq!(
            module_file_name(Path::new("/a/9p.ko.xz")).as_deref(),
            Some("9p.ko")
        );
        assert_eq!(
            module_file_name(Path::new("/a/9p.ko.zst")).as_deref(),
            Some("9p.ko")
        );
        assert_eq!(
            module_file_name(Path::new("/a/9p.ko")).as_deref(),
            Some("9p.ko")
        );
        assert_eq!(module_file_name(Path::new("/a/README")), None);
    }
}

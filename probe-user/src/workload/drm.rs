//! KMS dumb buffers: the one kind of TTM-backed buffer every KMS driver lets an unprivileged
//! process create and mmap (bochs in the lab; amdgpu, radeon, nouveau, qxl... on real machines).

use std::{
    fs::{File, OpenOptions},
    num::NonZeroUsize,
    os::fd::{AsFd, BorrowedFd},
    path::{Path, PathBuf},
    ptr::NonNull,
};

use anyhow::{Context, Result, bail};
use nix::sys::mman::{MapFlags, ProtFlags, mmap, munmap};

const DRM_CAP_DUMB_BUFFER: u64 = 1;

/// An open DRM device that supports dumb buffers.
pub struct Device {
    pub path: PathBuf,
    file: File,
}

impl Device {
    /// Opens `path`, or the first /dev/dri/card* offering dumb buffers.
    pub fn open(path: Option<&Path>) -> Result<Self> {
        if let Some(path) = path {
            return Self::open_one(path);
        }
        let mut cards: Vec<PathBuf> = std::fs::read_dir("/dev/dri")
            .context("no /dev/dri: this machine has no DRM device (is a GPU driver loaded?)")?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| {
                p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with("card"))
            })
            .collect();
        cards.sort();
        let mut errors = Vec::new();
        for card in &cards {
            match Self::open_one(card) {
                Ok(dev) => return Ok(dev),
                Err(e) => errors.push(format!("{}: {e:#}", card.display())),
            }
        }
        bail!(
            "no DRM device with dumb-buffer support in /dev/dri ({})",
            if errors.is_empty() {
                "no card* nodes".to_string()
            } else {
                errors.join("; ")
            }
        )
    }

    fn open_one(path: &Path) -> Result<Self> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(path)
            .with_context(|| match std::fs::metadata(path) {
                Err(_) => format!("{} does not exist", path.display()),
                Ok(_) => format!(
                    "cannot open {} (permission? add yourself to group video/render or run as root)",
                    path.display()
                ),
            })?;
        let cap =
            drm_ffi::get_capability(file.as_fd(), DRM_CAP_DUMB_BUFFER).with_context(|| {
                format!(
                    "{} is not a DRM device (DRM_IOCTL_GET_CAP failed)",
                    path.display()
                )
            })?;
        if cap.value == 0 {
            bail!("{} does not support dumb buffers", path.display());
        }
        Ok(Self {
            path: path.to_path_buf(),
            file,
        })
    }

    pub fn as_fd(&self) -> BorrowedFd<'_> {
        self.file.as_fd()
    }

    /// Driver name (DRM_IOCTL_VERSION), e.g. "bochs-drm", "amdgpu".
    pub fn driver(&self) -> String {
        let mut name = Vec::with_capacity(64);
        match drm_ffi::get_version(self.file.as_fd(), Some(&mut name), None, None) {
            Ok(_) => {
                let bytes: Vec<u8> = name.iter().map(|&c| c as u8).collect();
                String::from_utf8_lossy(&bytes)
                    .trim_end_matches('\0')
                    .to_string()
            }
            Err(_) => "unknown".into(),
        }
    }

    /// Creates a dumb buffer of at least `bytes` (32 bpp, 1024 pixels wide).
    pub fn create_dumb(&self, bytes: usize) -> Result<DumbBuffer<'_>> {
        let width = 1024u32;
        let pitch = width as usize * 4;
        let height = bytes.div_ceil(pitch).max(1) as u32;
        let db = drm_ffi::mode::dumbbuffer::create(self.file.as_fd(), width, height, 32, 0)
            .with_context(|| {
                format!(
                    "DRM_IOCTL_MODE_CREATE_DUMB of {bytes} bytes on {}",
                    self.path.display()
                )
            })?;
        Ok(DumbBuffer {
            dev: self,
            handle: db.handle,
            size: db.size as usize,
        })
    }
}

/// A dumb buffer, destroyed on drop.
pub struct DumbBuffer<'a> {
    dev: &'a Device,
    pub handle: u32,
    pub size: usize,
}

impl DumbBuffer<'_> {
    /// The fake mmap offset of this buffer on the device file (DRM_IOCTL_MODE_MAP_DUMB).
    pub fn map_offset(&self) -> Result<u64> {
        let map = drm_ffi::mode::dumbbuffer::map(self.dev.file.as_fd(), self.handle, 0, 0)
            .context("DRM_IOCTL_MODE_MAP_DUMB")?;
        Ok(map.offset)
    }

    /// Maps it MAP_SHARED (TTM mappings refuse MAP_PRIVATE). Every first touch of a page
    /// faults into the driver's TTM fault handler.
    pub fn map(&self) -> Result<Mapping> {
        Mapping::map_fd(self.dev.file.as_fd(), self.map_offset()?, self.size)
    }
}

impl Drop for DumbBuffer<'_> {
    fn drop(&mut self) {
        let _ = drm_ffi::mode::dumbbuffer::destroy(self.dev.file.as_fd(), self.handle);
    }
}

/// A mapped dumb buffer, unmapped on drop.
pub struct Mapping {
    ptr: NonNull<libc::c_void>,
    pub len: usize,
}

// SAFETY: the mapping is plain shared memory; threads touch disjoint or racing bytes with
// volatile writes, which is the point of the workload.
unsafe impl Send for Mapping {}
unsafe impl Sync for Mapping {}

impl Mapping {
    /// Maps `len` bytes at `offset` of a DRM file, shared.
    pub fn map_fd(fd: BorrowedFd<'_>, offset: u64, len: usize) -> Result<Self> {
        let nz = NonZeroUsize::new(len).context("empty dumb buffer")?;
        // SAFETY: a fresh shared mapping of a device offset the kernel gave us; nothing else
        // aliases it in this process.
        let ptr = unsafe {
            mmap(
                None,
                nz,
                ProtFlags::PROT_READ | ProtFlags::PROT_WRITE,
                MapFlags::MAP_SHARED,
                fd,
                offset as i64,
            )
        }
        .context("mmap of the dumb buffer")?;
        Ok(Self { ptr, len })
    }

    pub fn page_size() -> usize {
        // SAFETY: sysconf has no preconditions.
        let ps = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
        if ps > 0 { ps as usize } else { 4096 }
    }

    /// Writes one byte of page `index` (faults it in on first touch).
    pub fn touch(&self, index: usize) {
        let off = index * Self::page_size();
        if off < self.len {
            // SAFETY: off is inside the mapping.
            unsafe {
                std::ptr::write_volatile(self.ptr.as_ptr().cast::<u8>().add(off), 1);
            }
        }
    }

    pub fn pages(&self) -> usize {
        self.len.div_ceil(Self::page_size())
    }

    pub fn addr(&self) -> usize {
        self.ptr.as_ptr() as usize
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: ptr/len are exactly what mmap returned.
        let _ = unsafe { munmap(self.ptr, self.len) };
    }
}

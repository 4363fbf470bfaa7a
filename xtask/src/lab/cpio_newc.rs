//! A minimal writer for the "newc" cpio format the kernel unpacks as an
//! initramfs (see Documentation/driver-api/early-userspace/buffer-format.rst).
//! Writing it ourselves lets the image hold device nodes without mknod.

use std::io::{self, Write};

const S_IFDIR: u32 = 0o040_000;
const S_IFREG: u32 = 0o100_000;
const S_IFCHR: u32 = 0o020_000;
const TRAILER: &str = "TRAILER!!!";

/// Streams newc entries to `out`; call [`NewcWriter::finish`] at the end.
pub struct NewcWriter<W: Write> {
    out: W,
    next_ino: u32,
    offset: u64,
}

struct Header<'a> {
    name: &'a str,
    mode: u32,
    nlink: u32,
    rdev: (u32, u32),
    ino: u32,
}

impl<W: Write> NewcWriter<W> {
    pub fn new(out: W) -> Self {
        Self {
            out,
            next_ino: 1,
            offset: 0,
        }
    }

    /// A directory (`name` without leading slash, parents first).
    pub fn dir(&mut self, name: &str, perm: u32) -> io::Result<()> {
        self.entry(name, S_IFDIR | perm, 2, (0, 0), &[])
    }

    /// A regular file.
    pub fn file(&mut self, name: &str, perm: u32, data: &[u8]) -> io::Result<()> {
        self.entry(name, S_IFREG | perm, 1, (0, 0), data)
    }

    /// A character device node.
    pub fn char_device(&mut self, name: &str, perm: u32, major: u32, minor: u32) -> io::Result<()> {
        self.entry(name, S_IFCHR | perm, 1, (major, minor), &[])
    }

    /// Writes the trailer and returns the underlying writer.
    pub fn finish(mut self) -> io::Result<W> {
        let header = Header {
            name: TRAILER,
            mode: 0,
            nlink: 1,
            rdev: (0, 0),
            ino: 0,
        };
        self.write_entry(&header, &[])?;
        self.out.flush()?;
        Ok(self.out)
    }

    fn entry(
        &mut self,
        name: &str,
        mode: u32,
        nlink: u32,
        rdev: (u32, u32),
        data: &[u8],
    ) -> io::Result<()> {
        if name.is_empty() || name.starts_with('/') || name.contains('\0') {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("bad cpio entry name {name:?}"),
            ));
        }
        let ino = self.next_ino;
        self.next_ino += 1;
        let header = Header {
            name,
            mode,
            nlink,
            rdev,
            ino,
        };
        self.write_entry(&header, data)
    }

    fn write_entry(&mut self, h: &Header<'_>, data: &[u8]) -> io::Result<()> {
        let size = u32::try_from(data.len())
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "file too large for cpio"))?;
        let name_size = h.name.len() + 1;
        let fields = [
            h.ino,
            h.mode,
            0,
            0,
            h.nlink,
            0,
            size,
            0,
            0,
            h.rdev.0,
            h.rdev.1,
            name_size as u32,
            0,
        ];
        let mut head = String::with_capacity(110);
        head.push_str("070701");
        for f in fields {
            head.push_str(&format!("{f:08X}"));
        }
        self.put(head.as_bytes())?;
        self.put(h.name.as_bytes())?;
        self.put(&[0])?;
        self.pad()?;
        self.put(data)?;
        self.pad()
    }

    fn put(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.out.write_all(bytes)?;
        self.offset += bytes.len() as u64;
        Ok(())
    }

    fn pad(&mut self) -> io::Result<()> {
        let n = (4 - (self.offset % 4) as usize) % 4;
        self.put(&[0; 3][..n])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// (name, mode, rdevmajor, rdevminor, data) of each entry.
    type Entry = (String, u32, u32, u32, Vec<u8>);

    fn parse(mut buf: &[u8]) -> Vec<Entry> {
        let mut entries = Vec::new();
        let mut consumed = 0usize;
        loop {
            assert_eq!(&buf[..6], b"070701");
            let field = |i: usize| {
                let s = std::str::from_utf8(&buf[6 + 8 * i..14 + 8 * i]).expect("ascii");
                u32::from_str_radix(s, 16).expect("hex")
            };
            let (mode, size, rmaj, rmin, namesize) = (
                field(1),
                field(6) as usize,
                field(9),
                field(10),
                field(11) as usize,
            );
            let name = std::str::from_utf8(&buf[110..110 + namesize - 1])
                .expect("name")
                .to_owned();
            let mut at = 110 + namesize;
            at += (4 - (consumed + at) % 4) % 4;
            let data = buf[at..at + size].to_vec();
            at += size;
            at += (4 - (consumed + at) % 4) % 4;
            consumed += at;
            buf = &buf[at..];
            if name == TRAILER {
                assert!(buf.is_empty());
                return entries;
            }
            entries.push((name, mode, rmaj, rmin, data));
        }
    }

    #[test]
    fn writes_entries_the_kernel_can_read() -> io::Result<()> {
        let mut w = NewcWriter::new(Vec::new());
        w.dir("bin", 0o755)?;
        w.file("bin/x", 0o755, b"hello")?;
        w.file("init", 0o755, b"#!/bin/sh\n")?;
        w.char_device("dev/console", 0o600, 5, 1)?;
        let buf = w.finish()?;
        assert_eq!(buf.len() % 4, 0);
        let entries = parse(&buf);
        assert_eq!(entries.len(), 4);
        assert_eq!(entries[0].0, "bin");
        assert_eq!(entries[0].1, 0o040_755);
        assert_eq!(
            entries[1],
            ("bin/x".into(), 0o100_755, 0, 0, b"hello".to_vec())
        );
        assert_eq!(entries[2].4, b"#!/bin/sh\n");
        assert_eq!(entries[3], ("dev/console".into(), 0o020_600, 5, 1, vec![]));
        Ok(())
    }

    #[test]
    fn rejects_absolute_names() {
        let mut w = NewcWriter::new(Vec::new());
        assert!(w.file("/init", 0o755, b"").is_err());
    }
}

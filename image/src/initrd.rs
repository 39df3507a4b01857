//! A deterministic initrd: an uncompressed newc cpio archive.
//!
//! The bytes depend only on the set of (path, kind, content) entries: never
//! on insertion order, file mtimes, owners or inode numbers on the build host.
//!
//! ```text
//! per entry, sorted by path (bytewise; a parent always precedes its children):
//!   header  110 bytes ASCII: "070701" then 13 fields of 8 uppercase hex digits
//!           ino      1, 2, 3, ... in path order (the trailer gets 0)
//!           mode     dirs 040755, files 0100644, executables 0100755
//!           uid, gid 0
//!           nlink    dirs 2, files 1
//!           mtime    0 (the Unix epoch, not SOURCE_DATE_EPOCH: the initrd is
//!                    measured into RTMR2, so it must not change when only the
//!                    commit time does)
//!           filesize content length (0 for dirs)
//!           devmajor, devminor, rdevmajor, rdevminor   0
//!           namesize length of the name + 1 (NUL)
//!           check    0
//!   name    path without a leading "/", NUL-terminated, zero-padded so that
//!           header + name is a multiple of 4
//!   data    content, zero-padded to a multiple of 4
//! trailer: an entry named "TRAILER!!!" (ino 0, mode 0, nlink 1, size 0)
//! ```
//!
//! No device nodes: the kernel mounts devtmpfs itself.

use std::collections::BTreeMap;
use std::io::Write;

/// Why an entry was refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum InitrdError {
    /// The path is empty, has `.`/`..`/empty components or a NUL.
    #[error("initrd path {0:?} is not a clean absolute or relative path")]
    BadPath(String),
    /// Two entries with the same path but different kinds or contents.
    #[error("initrd path {0:?} is added twice with different content")]
    Conflict(String),
    /// A path is used both as a directory and as a file.
    #[error("initrd path {0:?} is needed as a directory but is a file")]
    NotADirectory(String),
    /// A file is larger than a newc header can describe (4 GiB).
    #[error("initrd file {0:?} is larger than 4 GiB")]
    TooLarge(String),
    /// Writing failed.
    #[error("writing the initrd: {0}")]
    Io(#[from] std::io::Error),
}

/// Directory mode written for every directory.
pub const DIR_MODE: u32 = 0o040_755;
/// Mode of regular files.
pub const FILE_MODE: u32 = 0o100_644;
/// Mode of executables (`/init`).
pub const EXEC_MODE: u32 = 0o100_755;

#[derive(Debug, Clone, PartialEq, Eq)]
enum Entry {
    Dir,
    File { data: Vec<u8>, executable: bool },
}

/// An initrd being assembled. Parent directories are added implicitly.
#[derive(Debug, Clone, Default)]
pub struct Initrd {
    entries: BTreeMap<String, Entry>,
}

fn normalize(path: &str) -> Result<String, InitrdError> {
    let p = path.trim_start_matches('/');
    if p.is_empty()
        || p.split('/')
            .any(|c| c.is_empty() || c == "." || c == ".." || c.contains('\0'))
    {
        return Err(InitrdError::BadPath(path.to_string()));
    }
    Ok(p.to_string())
}

impl Initrd {
    /// An empty initrd.
    pub fn new() -> Initrd {
        Initrd::default()
    }

    fn add_parents(&mut self, path: &str) -> Result<(), InitrdError> {
        let mut end = 0;
        while let Some(i) = path[end..].find('/') {
            let parent = &path[..end + i];
            match self.entries.get(parent) {
                Some(Entry::File { .. }) => {
                    return Err(InitrdError::NotADirectory(parent.to_string()))
                }
                Some(Entry::Dir) => {}
                None => {
                    self.entries.insert(parent.to_string(), Entry::Dir);
                }
            }
            end += i + 1;
        }
        Ok(())
    }

    fn insert(&mut self, path: &str, entry: Entry) -> Result<(), InitrdError> {
        let p = normalize(path)?;
        if let Some(existing) = self.entries.get(&p) {
            if *existing != entry {
                return Err(match existing {
                    Entry::File { .. } if entry == Entry::Dir => InitrdError::NotADirectory(p),
                    _ => InitrdError::Conflict(p),
                });
            }
            return Ok(());
        }
        if let Entry::File { data, .. } = &entry {
            if u32::try_from(data.len()).is_err() {
                return Err(InitrdError::TooLarge(p));
            }
        }
        self.add_parents(&p)?;
        self.entries.insert(p, entry);
        Ok(())
    }

    /// Adds a directory (and its parents).
    pub fn add_dir(&mut self, path: &str) -> Result<(), InitrdError> {
        self.insert(path, Entry::Dir)
    }

    /// Adds a regular file, mode 0644 (0755 when `executable`).
    pub fn add_file(
        &mut self,
        path: &str,
        data: Vec<u8>,
        executable: bool,
    ) -> Result<(), InitrdError> {
        self.insert(path, Entry::File { data, executable })
    }

    /// The number of entries (without the trailer).
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether there are no entries.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Writes the archive; returns the number of bytes written.
    pub fn write_to(&self, out: &mut impl Write) -> Result<u64, InitrdError> {
        let mut written = 0u64;
        for (i, (path, entry)) in self.entries.iter().enumerate() {
            let ino = u32::try_from(i + 1).map_err(|_| InitrdError::TooLarge(path.clone()))?;
            let (mode, nlink, data): (u32, u32, &[u8]) = match entry {
                Entry::Dir => (DIR_MODE, 2, &[]),
                Entry::File { data, executable } => (
                    if *executable { EXEC_MODE } else { FILE_MODE },
                    1,
                    data.as_slice(),
                ),
            };
            written += write_entry(out, path, ino, mode, nlink, data)?;
        }
        written += write_entry(out, "TRAILER!!!", 0, 0, 1, &[])?;
        Ok(written)
    }

    /// The archive as bytes.
    pub fn to_bytes(&self) -> Result<Vec<u8>, InitrdError> {
        let mut out = Vec::new();
        self.write_to(&mut out)?;
        Ok(out)
    }
}

fn pad4(out: &mut impl Write, len: u64) -> Result<u64, InitrdError> {
    let pad = (4 - len % 4) % 4;
    out.write_all(&[0u8; 3][..pad as usize])?;
    Ok(pad)
}

fn write_entry(
    out: &mut impl Write,
    name: &str,
    ino: u32,
    mode: u32,
    nlink: u32,
    data: &[u8],
) -> Result<u64, InitrdError> {
    let size = u32::try_from(data.len()).map_err(|_| InitrdError::TooLarge(name.to_string()))?;
    let namesize =
        u32::try_from(name.len() + 1).map_err(|_| InitrdError::BadPath(name.to_string()))?;
    let fields = [ino, mode, 0, 0, nlink, 0, size, 0, 0, 0, 0, namesize, 0];
    let mut header = String::with_capacity(110);
    header.push_str("070701");
    for f in fields {
        header.push_str(&format!("{f:08X}"));
    }
    out.write_all(header.as_bytes())?;
    out.write_all(name.as_bytes())?;
    out.write_all(&[0])?;
    let mut n = 110 + u64::from(namesize);
    n += pad4(out, n)?;
    out.write_all(data)?;
    n += u64::from(size);
    n += pad4(out, u64::from(size))?;
    Ok(n)
}

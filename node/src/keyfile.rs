//! The node key under the data dir: made on first start, reused after, so a
//! node restarted on its data dir keeps its node id (and its ticket, and its
//! Raft memberships).
//!
//! The file is `<data_dir>/node.key`: PEM `PRIVATE KEY` (PKCS#8, P-256),
//! mode 0600, created with `O_EXCL` through a temporary file and a rename, so
//! a crash never leaves half a key and two starts never make two keys. A
//! file that is not such a key is an error naming the file: it is never
//! silently replaced, since that would change the node's identity.
//!
//! In `tdx` mode the data dir must be on a memory-backed file system (tmpfs
//! or ramfs, such as the TD's `/run`): the key must never reach a disk the
//! host can read. A TD reboot is therefore a new identity.

use std::fs::OpenOptions;
use std::io::Write as _;
use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};

use tessella_attestation::ratls::NodeKey;

/// The key file's name inside the data dir.
pub const KEY_FILE: &str = "node.key";

const PEM_TAG: &str = "PRIVATE KEY";

/// Why the node key could not be loaded or made.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KeyFileError {
    /// Reading, writing or creating the data dir failed.
    #[error("node key {path}: {error}")]
    Io {
        /// The path.
        path: PathBuf,
        /// The cause.
        error: std::io::Error,
    },
    /// The file exists but is not a P-256 PKCS#8 PEM key.
    #[error("node key {path} is corrupt or not a tessella node key ({reason}); move it away only if this node's identity may change")]
    Corrupt {
        /// The path.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// Others may read the key file.
    #[error(
        "node key {path} has mode {mode:o}; it must be readable by its owner only (chmod 600)"
    )]
    Permissions {
        /// The path.
        path: PathBuf,
        /// The file's mode bits.
        mode: u32,
    },
    /// `tdx` mode with a data dir a host can read.
    #[error("data dir {path} is not on a memory-backed file system (tmpfs/ramfs): in tdx mode the node key must never reach a disk the host can read; use a directory under /run (encrypted persistent storage comes later)")]
    NotInMemory {
        /// The data dir.
        path: PathBuf,
    },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> KeyFileError + '_ {
    move |error| KeyFileError::Io {
        path: path.to_path_buf(),
        error,
    }
}

/// The key in `dir`, made (and the dir created, mode 0700) if there is none.
/// Returns the key and whether it was made now.
pub fn load_or_create(dir: &Path) -> Result<(NodeKey, bool), KeyFileError> {
    let path = dir.join(KEY_FILE);
    match std::fs::read(&path) {
        Ok(bytes) => return parse(&path, &bytes).map(|k| (k, false)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(io(&path)(e)),
    }
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    let key = NodeKey::generate().map_err(|e| KeyFileError::Corrupt {
        path: path.clone(),
        reason: e.to_string(),
    })?;
    let pem = pem::encode(&pem::Pem::new(PEM_TAG, key.pkcs8_der().to_vec()));
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let unique = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let tmp = dir.join(format!(".{KEY_FILE}.{}.{unique}", std::process::id()));
    let written = (|| {
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)?;
        f.write_all(pem.as_bytes())?;
        f.sync_all()?;
        // A hard link fails if another process made the key first: then
        // theirs is the node's key.
        std::fs::hard_link(&tmp, &path)
    })();
    let _ = std::fs::remove_file(&tmp);
    match written {
        Ok(()) => Ok((key, true)),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            let bytes = std::fs::read(&path).map_err(io(&path))?;
            parse(&path, &bytes).map(|k| (k, false))
        }
        Err(e) => Err(io(&path)(e)),
    }
}

fn parse(path: &Path, bytes: &[u8]) -> Result<NodeKey, KeyFileError> {
    let corrupt = |reason: String| KeyFileError::Corrupt {
        path: path.to_path_buf(),
        reason,
    };
    let mode = std::fs::metadata(path)
        .map_err(io(path))?
        .permissions()
        .mode();
    if mode & 0o077 != 0 {
        return Err(KeyFileError::Permissions {
            path: path.to_path_buf(),
            mode: mode & 0o777,
        });
    }
    let pem = pem::parse(bytes).map_err(|e| corrupt(e.to_string()))?;
    if pem.tag() != PEM_TAG {
        return Err(corrupt(format!("PEM block is {:?}", pem.tag())));
    }
    NodeKey::from_pkcs8_der(pem.contents()).map_err(|e| corrupt(e.to_string()))
}

/// Refuse a data dir that is not memory-backed (for `tdx` mode). The dir is
/// created first so the check sees the file system it will live on.
pub fn require_memory_backed(dir: &Path) -> Result<(), KeyFileError> {
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    let fs = nix::sys::statfs::statfs(dir).map_err(|e| io(dir)(std::io::Error::from(e)))?;
    let t = fs.filesystem_type();
    // ramfs has no constant in nix: its magic number from linux/magic.h.
    const RAMFS_MAGIC: nix::sys::statfs::FsType = nix::sys::statfs::FsType(0x8584_58f6);
    if t == nix::sys::statfs::TMPFS_MAGIC || t == RAMFS_MAGIC {
        Ok(())
    } else {
        Err(KeyFileError::NotInMemory {
            path: dir.to_path_buf(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_is_made_once_and_kept() {
        let dir = tempfile::tempdir().expect("tempdir");
        let data = dir.path().join("data");
        let (first, made) = load_or_create(&data).expect("create");
        assert!(made);
        let mode = std::fs::metadata(data.join(KEY_FILE))
            .expect("meta")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        let (again, made) = load_or_create(&data).expect("load");
        assert!(!made);
        assert_eq!(first.node_id(), again.node_id());
    }

    #[test]
    fn a_corrupt_key_is_an_error_and_is_left_alone() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join(KEY_FILE);
        std::fs::write(&path, b"garbage").expect("write");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).expect("chmod");
        let e = load_or_create(dir.path()).expect_err("corrupt");
        assert!(matches!(e, KeyFileError::Corrupt { .. }), "{e}");
        assert!(e.to_string().contains("node.key"), "{e}");
        assert_eq!(std::fs::read(&path).expect("read"), b"garbage");

        // A PEM of another kind.
        std::fs::write(
            &path,
            pem::encode(&pem::Pem::new("CERTIFICATE", vec![1, 2, 3])),
        )
        .expect("write");
        let e = load_or_create(dir.path()).expect_err("foreign");
        assert!(matches!(e, KeyFileError::Corrupt { .. }), "{e}");
    }

    #[test]
    fn a_key_others_can_read_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let _ = load_or_create(dir.path()).expect("create");
        let path = dir.path().join(KEY_FILE);
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        let e = load_or_create(dir.path()).expect_err("mode");
        assert!(
            matches!(e, KeyFileError::Permissions { mode: 0o644, .. }),
            "{e}"
        );
    }

    #[test]
    fn concurrent_first_starts_agree_on_one_key() {
        let dir = tempfile::tempdir().expect("tempdir");
        let ids: Vec<_> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..8)
                .map(|_| s.spawn(|| load_or_create(dir.path()).expect("key").0.node_id()))
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().expect("thread"))
                .collect()
        });
        assert!(ids.windows(2).all(|w| w[0] == w[1]), "{ids:?}");
    }

    #[test]
    fn memory_backed_check_refuses_a_disk_dir() {
        // /dev/shm is tmpfs on Linux; the temp dir is usually on disk.
        if std::path::Path::new("/dev/shm").is_dir() {
            let shm = tempfile::tempdir_in("/dev/shm").expect("shm dir");
            assert!(require_memory_backed(shm.path()).is_ok());
        }
        let disk = tempfile::tempdir_in(env!("CARGO_MANIFEST_DIR")).expect("dir");
        assert!(matches!(
            require_memory_backed(disk.path()),
            Err(KeyFileError::NotInMemory { .. })
        ));
    }
}

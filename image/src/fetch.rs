//! Downloading the pinned `.deb` files, verified against the lock, cached.
//!
//! apt runs through a project-local configuration generated under the cache
//! dir (its own `sources.list`, lists, package cache, no dpkg status, no lock),
//! so the system's sources and state are never read or written:
//!
//! ```text
//! <cache>/
//!   apt/sources.list        generated from the lock's [apt] section
//!   apt/sources.list.d/     empty: no system parts
//!   apt/lists/              Release / Packages files of the listed suites
//!   apt/cache/              apt's package cache (unused by `download`)
//!   debs/<name>_<ver>_<arch>.deb   verified files only
//!   tmp/                    downloads in flight; never trusted
//! ```
//!
//! A file is only ever moved into `debs/` after its size and SHA-256 matched
//! the lock; a cached file is verified again before each use.

use std::cell::Cell;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::digest::sha256_file;
use crate::lock::{AptSource, LockedPackage};

/// Why a package could not be fetched.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FetchError {
    /// A file or directory operation failed.
    #[error("{what}")]
    Io {
        /// What was being done.
        what: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The downloaded (or cached) file is not the pinned one.
    #[error(
        "{package}: SHA-256 mismatch: expected {expected}, got {actual}; the file was discarded \
         (the mirror serves different bytes for this version: check the pin)"
    )]
    HashMismatch {
        /// `name=version`.
        package: String,
        /// The lock's hash.
        expected: String,
        /// The file's hash.
        actual: String,
    },
    /// The downloaded file does not have the pinned size.
    #[error(
        "{package}: size mismatch: expected {expected} bytes, got {actual}; the file was discarded"
    )]
    SizeMismatch {
        /// `name=version`.
        package: String,
        /// The lock's size.
        expected: u64,
        /// The file's size.
        actual: u64,
    },
    /// A tool (apt-get, dpkg-deb) could not be run or failed.
    #[error("{tool} failed: {message}")]
    Tool {
        /// The program.
        tool: String,
        /// Its exit status and the end of its output.
        message: String,
    },
    /// The download step produced no single `.deb`.
    #[error("{package}: the download produced {found} .deb files, expected exactly one")]
    NoDeb {
        /// `name=version`.
        package: String,
        /// How many `.deb` files appeared.
        found: usize,
    },
    /// A file the lock takes is not in the package.
    #[error("{package}: {path} is not a regular file in the package")]
    MissingFile {
        /// The package name.
        package: String,
        /// The path inside the package.
        path: String,
    },
    /// The inputs dir is not usable as it is.
    #[error("{0}")]
    Inputs(String),
    /// The package's data archive could not be read.
    #[error("{package}: reading the package's data archive: {message}")]
    Archive {
        /// The package name.
        package: String,
        /// What went wrong.
        message: String,
    },
}

pub(crate) fn io_err(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> FetchError {
    let what = what.into();
    move |source| FetchError::Io { what, source }
}

/// Something that can put the `.deb` of a pinned package into a directory.
///
/// The real one is [`AptGet`]; tests use fakes. The result is never trusted:
/// [`fetch_package`] verifies it.
pub trait Downloader {
    /// Downloads `package` into the empty directory `dest`.
    fn download(&self, package: &LockedPackage, dest: &Path) -> Result<(), FetchError>;
}

/// The download cache: verified `.deb` files and the project-local apt state.
#[derive(Debug, Clone)]
pub struct Cache {
    root: PathBuf,
}

impl Cache {
    /// A cache rooted at `root` (created on first use).
    pub fn new(root: impl Into<PathBuf>) -> Cache {
        Cache { root: root.into() }
    }

    /// The default root: `$TESSELLA_IMAGE_CACHE`, else
    /// `$XDG_CACHE_HOME/tessella-image`, else `$HOME/.cache/tessella-image`.
    pub fn default_root() -> Option<PathBuf> {
        let non_empty = |k: &str| std::env::var_os(k).filter(|v| !v.is_empty());
        if let Some(dir) = non_empty("TESSELLA_IMAGE_CACHE") {
            return Some(PathBuf::from(dir));
        }
        if let Some(dir) = non_empty("XDG_CACHE_HOME") {
            return Some(PathBuf::from(dir).join("tessella-image"));
        }
        non_empty("HOME").map(|h| PathBuf::from(h).join(".cache").join("tessella-image"))
    }

    /// The cache root.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Where the verified `.deb` of `package` is kept.
    pub fn deb_path(&self, package: &LockedPackage) -> PathBuf {
        self.root.join("debs").join(package.deb_file_name())
    }

    /// The project-local apt directory.
    pub fn apt_dir(&self) -> PathBuf {
        self.root.join("apt")
    }
}

/// Checks size and SHA-256 of `path` against the pin.
pub fn verify_deb(path: &Path, package: &LockedPackage) -> Result<(), FetchError> {
    let (actual, size) =
        sha256_file(path).map_err(io_err(format!("reading {}", path.display())))?;
    if size != package.size {
        return Err(FetchError::SizeMismatch {
            package: package.apt_spec(),
            expected: package.size,
            actual: size,
        });
    }
    if actual != package.sha256 {
        return Err(FetchError::HashMismatch {
            package: package.apt_spec(),
            expected: package.sha256.clone(),
            actual,
        });
    }
    Ok(())
}

/// Whether a package came from the cache or the network.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FetchOutcome {
    /// A cached file verified; nothing was downloaded.
    Cached,
    /// The file was downloaded (and verified).
    Downloaded,
}

/// Returns the path of the verified `.deb` of `package`, downloading it with
/// `downloader` unless a cached copy verifies. A file that fails verification
/// is deleted, never used.
pub fn fetch_package(
    cache: &Cache,
    package: &LockedPackage,
    downloader: &dyn Downloader,
) -> Result<(PathBuf, FetchOutcome), FetchError> {
    let final_path = cache.deb_path(package);
    if final_path.is_file() {
        match verify_deb(&final_path, package) {
            Ok(()) => return Ok((final_path, FetchOutcome::Cached)),
            Err(FetchError::HashMismatch { .. } | FetchError::SizeMismatch { .. }) => {
                // A stale or damaged cache entry: drop it and download again.
                std::fs::remove_file(&final_path)
                    .map_err(io_err(format!("removing {}", final_path.display())))?;
            }
            Err(e) => return Err(e),
        }
    }
    let tmp_root = cache.root.join("tmp");
    let debs = cache.root.join("debs");
    for dir in [&tmp_root, &debs] {
        std::fs::create_dir_all(dir).map_err(io_err(format!("creating {}", dir.display())))?;
    }
    let tmp = tempfile::Builder::new()
        .prefix("download-")
        .tempdir_in(&tmp_root)
        .map_err(io_err(format!(
            "creating a temp dir in {}",
            tmp_root.display()
        )))?;
    downloader.download(package, tmp.path())?;
    let debs_found: Vec<PathBuf> = std::fs::read_dir(tmp.path())
        .map_err(io_err(format!("listing {}", tmp.path().display())))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "deb") && p.is_file())
        .collect();
    let [downloaded] = debs_found.as_slice() else {
        return Err(FetchError::NoDeb {
            package: package.apt_spec(),
            found: debs_found.len(),
        });
    };
    // On mismatch the temp dir (and the file in it) is removed on drop.
    verify_deb(downloaded, package)?;
    std::fs::rename(downloaded, &final_path).map_err(io_err(format!(
        "moving {} to {}",
        downloaded.display(),
        final_path.display()
    )))?;
    Ok((final_path, FetchOutcome::Downloaded))
}

/// `apt-get` with a project-local configuration under `<cache>/apt`.
///
/// `update` runs once, before the first download; when every package is
/// cached apt is never run, so offline re-runs work.
#[derive(Debug)]
pub struct AptGet {
    program: PathBuf,
    dir: PathBuf,
    source: AptSource,
    updated: Cell<bool>,
}

impl AptGet {
    /// apt-get (from `PATH`) configured for `source`, with state in `cache`.
    pub fn new(cache: &Cache, source: &AptSource) -> AptGet {
        AptGet {
            program: PathBuf::from("apt-get"),
            dir: cache.apt_dir(),
            source: source.clone(),
            updated: Cell::new(false),
        }
    }

    /// Uses another `apt-get` program (tests use a fake script).
    pub fn with_program(mut self, program: impl Into<PathBuf>) -> AptGet {
        self.program = program.into();
        self
    }

    /// The `-o` options that confine apt to the project-local directory.
    pub fn options(&self) -> Vec<String> {
        let d = |s: &str| self.dir.join(s).display().to_string();
        [
            format!("Dir::Etc::SourceList={}", d("sources.list")),
            format!("Dir::Etc::SourceParts={}", d("sources.list.d")),
            format!("Dir::Etc::Preferences={}", d("preferences")),
            format!("Dir::Etc::PreferencesParts={}", d("preferences.d")),
            format!("Dir::State::Lists={}", d("lists")),
            format!("Dir::Cache={}", d("cache")),
            "Dir::State::status=/dev/null".to_string(),
            "Debug::NoLocking=1".to_string(),
            // Run as root, apt would drop to `_apt`, which cannot write to our
            // dirs; as any other user the option is ignored.
            "APT::Sandbox::User=root".to_string(),
            format!("APT::Architecture={}", self.source.arch),
            format!("APT::Architectures={}", self.source.arch),
        ]
        .into_iter()
        .flat_map(|o| ["-o".to_string(), o])
        .collect()
    }

    fn prepare(&self) -> Result<(), FetchError> {
        for sub in [
            "sources.list.d",
            "preferences.d",
            "lists/partial",
            "cache/archives/partial",
        ] {
            let p = self.dir.join(sub);
            std::fs::create_dir_all(&p).map_err(io_err(format!("creating {}", p.display())))?;
        }
        let list = self.dir.join("sources.list");
        std::fs::write(&list, self.source.sources_list())
            .map_err(io_err(format!("writing {}", list.display())))?;
        let prefs = self.dir.join("preferences");
        std::fs::write(&prefs, "").map_err(io_err(format!("writing {}", prefs.display())))?;
        Ok(())
    }

    fn run(&self, args: &[&str], cwd: &Path) -> Result<(), FetchError> {
        let tool = self.program.display().to_string();
        let out = Command::new(&self.program)
            .args(self.options())
            .args(args)
            .current_dir(cwd)
            .env("LC_ALL", "C")
            .output()
            .map_err(|e| FetchError::Tool {
                tool: tool.clone(),
                message: format!("cannot run it ({e}); install apt (Debian/Ubuntu host needed)"),
            })?;
        if !out.status.success() {
            let stderr = String::from_utf8_lossy(&out.stderr);
            let tail: Vec<&str> = stderr.lines().rev().take(8).collect();
            let tail: Vec<&str> = tail.into_iter().rev().collect();
            return Err(FetchError::Tool {
                tool: format!("{tool} {}", args.join(" ")),
                message: format!("{}: {}", out.status, tail.join(" | ")),
            });
        }
        Ok(())
    }
}

impl Downloader for AptGet {
    fn download(&self, package: &LockedPackage, dest: &Path) -> Result<(), FetchError> {
        if !self.updated.get() {
            self.prepare()?;
            self.run(&["-q", "update"], &self.dir)?;
            self.updated.set(true);
        }
        self.run(&["-q", "download", &package.apt_spec()], dest)
    }
}

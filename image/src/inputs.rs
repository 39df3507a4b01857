//! The inputs dir: the files taken from the pinned packages.
//!
//! ```text
//! <inputs>/
//!   OVMF.fd                 the firmware (kind = "firmware")
//!   vmlinuz                 the kernel   (kind = "kernel")
//!   modules/<basename>      each module  (kind = "module")
//!   inputs.json             InputsManifest: what was taken from which package
//! ```
//!
//! Only the listed files are extracted (streamed from `dpkg-deb --fsys-tarfile`
//! through the `tar` crate); the dir is written next to its final place and
//! swapped in when complete.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde::{Deserialize, Serialize};

use crate::digest::{sha256_file, sha256_hex};
use crate::fetch::{fetch_package, io_err, Cache, Downloader, FetchError, FetchOutcome};
use crate::lock::{LockFile, LockedPackage, Take};

/// The `format` of `inputs.json`.
pub const INPUTS_FORMAT: &str = "tessella-image-inputs";
/// The version of `inputs.json`.
pub const INPUTS_VERSION: u32 = 1;
/// The name of the manifest inside the inputs dir.
pub const INPUTS_MANIFEST: &str = "inputs.json";

/// `inputs.json`: where every file of the inputs dir came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InputsManifest {
    /// Always [`INPUTS_FORMAT`].
    pub format: String,
    /// Always [`INPUTS_VERSION`].
    pub version: u32,
    /// The kernel release of the modules.
    pub kernel_release: String,
    /// One entry per package, lock order.
    pub packages: Vec<InputPackage>,
}

/// One package and the files taken from it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InputPackage {
    /// Package name.
    pub name: String,
    /// Package version.
    pub version: String,
    /// Package architecture.
    pub arch: String,
    /// SHA-256 of the `.deb`.
    pub sha256: String,
    /// Size of the `.deb`.
    pub size: u64,
    /// The files taken, lock order.
    pub files: Vec<TakenFile>,
}

/// One file taken from a package.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TakenFile {
    /// Path inside the package.
    pub from: String,
    /// Path relative to the inputs dir.
    pub to: String,
    /// SHA-256 of the file.
    pub sha256: String,
    /// Size in bytes.
    pub size: u64,
}

/// Copies the files `takes` lists out of a package's data tar stream into
/// `dest` (at [`Take::dest`]). Every listed file must be a regular file.
pub fn extract_from_tar<R: Read>(
    package: &str,
    reader: R,
    takes: &[Take],
    dest: &Path,
) -> Result<Vec<TakenFile>, FetchError> {
    let archive_err = |e: std::io::Error| FetchError::Archive {
        package: package.to_string(),
        message: e.to_string(),
    };
    let wanted: BTreeMap<&str, &Take> = takes.iter().map(|t| (t.path.as_str(), t)).collect();
    let mut found: BTreeMap<String, TakenFile> = BTreeMap::new();
    let mut archive = tar::Archive::new(reader);
    for entry in archive.entries().map_err(archive_err)? {
        let mut entry = entry.map_err(archive_err)?;
        let raw = entry
            .path()
            .map_err(archive_err)?
            .to_string_lossy()
            .to_string();
        let path = raw.trim_start_matches("./").trim_start_matches('/');
        let Some(take) = wanted.get(path) else {
            continue;
        };
        if !entry.header().entry_type().is_file() {
            return Err(FetchError::MissingFile {
                package: package.to_string(),
                path: take.path.clone(),
            });
        }
        let mut data = Vec::new();
        entry.read_to_end(&mut data).map_err(archive_err)?;
        let to = take.dest();
        let target = dest.join(&to);
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent)
                .map_err(io_err(format!("creating {}", parent.display())))?;
        }
        std::fs::write(&target, &data).map_err(io_err(format!("writing {}", target.display())))?;
        found.insert(
            take.path.clone(),
            TakenFile {
                from: take.path.clone(),
                to,
                sha256: sha256_hex(&data),
                size: data.len() as u64,
            },
        );
    }
    takes
        .iter()
        .map(|t| {
            found
                .remove(&t.path)
                .ok_or_else(|| FetchError::MissingFile {
                    package: package.to_string(),
                    path: t.path.clone(),
                })
        })
        .collect()
}

/// Extracts the listed files of a verified `.deb` with `dpkg-deb --fsys-tarfile`.
pub fn extract_deb(
    deb: &Path,
    package: &LockedPackage,
    dest: &Path,
) -> Result<Vec<TakenFile>, FetchError> {
    let mut child = Command::new("dpkg-deb")
        .arg("--fsys-tarfile")
        .arg(deb)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| FetchError::Tool {
            tool: "dpkg-deb".into(),
            message: format!(
                "cannot run it ({e}); it ships with dpkg on Debian/Ubuntu (`apt-get install dpkg`)"
            ),
        })?;
    let Some(stdout) = child.stdout.take() else {
        return Err(FetchError::Tool {
            tool: "dpkg-deb".into(),
            message: "no output pipe".into(),
        });
    };
    let result = extract_from_tar(&package.name, stdout, &package.take, dest);
    let out = child
        .wait_with_output()
        .map_err(io_err("waiting for dpkg-deb"))?;
    if !out.status.success() {
        return Err(FetchError::Tool {
            tool: format!("dpkg-deb --fsys-tarfile {}", deb.display()),
            message: format!(
                "{}: {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            ),
        });
    }
    result
}

/// What [`fetch_inputs`] reports per package as it goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FetchEvent<'a> {
    /// About to fetch this package.
    Fetching(&'a LockedPackage),
    /// The package's verified `.deb` is at hand.
    Fetched(&'a LockedPackage, FetchOutcome),
    /// Its files are being extracted.
    Extracting(&'a LockedPackage),
}

/// Fetches every pinned package (cache first) and writes the inputs dir.
pub fn fetch_inputs(
    lock: &LockFile,
    cache: &Cache,
    downloader: &dyn Downloader,
    inputs: &Path,
    mut progress: impl FnMut(FetchEvent<'_>),
) -> Result<InputsManifest, FetchError> {
    // The inputs dir is replaced as a whole: never wipe a dir this tool did
    // not write (one without inputs.json that has other content).
    if inputs.is_dir() && !inputs.join(INPUTS_MANIFEST).is_file() {
        let mut entries =
            std::fs::read_dir(inputs).map_err(io_err(format!("listing {}", inputs.display())))?;
        if entries.next().is_some() {
            return Err(FetchError::Inputs(format!(
                "{} is not empty and has no {INPUTS_MANIFEST}: refusing to replace it \
                 (pass an empty or new --inputs dir)",
                inputs.display()
            )));
        }
    }
    let staging = sibling(inputs, ".partial");
    if staging.exists() {
        std::fs::remove_dir_all(&staging)
            .map_err(io_err(format!("removing {}", staging.display())))?;
    }
    std::fs::create_dir_all(&staging).map_err(io_err(format!("creating {}", staging.display())))?;
    let mut packages = Vec::new();
    for package in &lock.packages {
        progress(FetchEvent::Fetching(package));
        let (deb, outcome) = fetch_package(cache, package, downloader)?;
        progress(FetchEvent::Fetched(package, outcome));
        progress(FetchEvent::Extracting(package));
        let files = extract_deb(&deb, package, &staging)?;
        packages.push(InputPackage {
            name: package.name.clone(),
            version: package.version.clone(),
            arch: package.arch.clone(),
            sha256: package.sha256.clone(),
            size: package.size,
            files,
        });
    }
    let manifest = InputsManifest {
        format: INPUTS_FORMAT.to_string(),
        version: INPUTS_VERSION,
        kernel_release: lock.kernel_release.clone(),
        packages,
    };
    let json = serde_json::to_string_pretty(&manifest).map_err(|e| FetchError::Io {
        what: "encoding inputs.json".into(),
        source: std::io::Error::other(e),
    })?;
    let manifest_path = staging.join(INPUTS_MANIFEST);
    std::fs::write(&manifest_path, json + "\n")
        .map_err(io_err(format!("writing {}", manifest_path.display())))?;
    if inputs.exists() {
        std::fs::remove_dir_all(inputs)
            .map_err(io_err(format!("removing the old {}", inputs.display())))?;
    }
    std::fs::rename(&staging, inputs).map_err(io_err(format!(
        "moving {} to {}",
        staging.display(),
        inputs.display()
    )))?;
    Ok(manifest)
}

/// Checks that an inputs dir holds every file the lock takes and, when it has
/// an `inputs.json`, that each file still has the recorded hash. Returns the
/// manifest when there is one.
pub fn check_inputs(lock: &LockFile, inputs: &Path) -> Result<Option<InputsManifest>, FetchError> {
    for take in lock.packages.iter().flat_map(|p| &p.take) {
        let path = inputs.join(take.dest());
        if !path.is_file() {
            return Err(FetchError::Inputs(format!(
                "{} is missing (run `tessella-image fetch --inputs {}`)",
                path.display(),
                inputs.display()
            )));
        }
    }
    let manifest_path = inputs.join(INPUTS_MANIFEST);
    if !manifest_path.is_file() {
        return Ok(None);
    }
    let text = std::fs::read(&manifest_path)
        .map_err(io_err(format!("reading {}", manifest_path.display())))?;
    let manifest: InputsManifest = serde_json::from_slice(&text).map_err(|e| FetchError::Io {
        what: format!("parsing {}", manifest_path.display()),
        source: std::io::Error::other(e),
    })?;
    for package in &manifest.packages {
        let pinned = lock
            .packages
            .iter()
            .find(|p| p.name == package.name)
            .filter(|p| p.version == package.version && p.sha256 == package.sha256);
        if pinned.is_none() {
            return Err(FetchError::Inputs(format!(
                "{}: {} {} is not the pinned package (re-run `tessella-image fetch`)",
                manifest_path.display(),
                package.name,
                package.version
            )));
        }
        for file in &package.files {
            let path = inputs.join(&file.to);
            let (hash, _) =
                sha256_file(&path).map_err(io_err(format!("reading {}", path.display())))?;
            if hash != file.sha256 {
                return Err(FetchError::HashMismatch {
                    package: format!("{} ({})", package.name, path.display()),
                    expected: file.sha256.clone(),
                    actual: hash,
                });
            }
        }
    }
    Ok(Some(manifest))
}

fn sibling(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(suffix);
    path.with_file_name(name)
}

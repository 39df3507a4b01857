//! `image.json`: what an image is made of, for the operator and for tools.
//!
//! Written last by `tessella-image build` into the output dir. It holds no
//! timestamps or host paths, so two reproducible builds write identical
//! files. `measurements` is null until a measure step fills it.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::BuildError;

/// The `format` of `image.json`.
pub const IMAGE_FORMAT: &str = "tessella-image";
/// The version of `image.json` this crate writes and reads.
pub const IMAGE_VERSION: u32 = 1;
/// The file name of the manifest in the output dir.
pub const IMAGE_MANIFEST: &str = "image.json";

/// The content of `image.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImageManifest {
    /// Always [`IMAGE_FORMAT`].
    pub format: String,
    /// Always [`IMAGE_VERSION`].
    pub version: u32,
    /// Every file of the output dir except `image.json`, sorted by name.
    pub artefacts: Vec<Artefact>,
    /// The pinned Debian packages the inputs came from.
    pub packages: Vec<PackageRecord>,
    /// The input files used (relative to the inputs dir), sorted by name.
    pub input_files: Vec<Artefact>,
    /// The `uname -r` of the kernel.
    pub kernel_release: String,
    /// The source tree.
    pub source: SourceRecord,
    /// `rustc -V` of the toolchain.
    pub rustc: String,
    /// `SOURCE_DATE_EPOCH` of the node build.
    pub source_date_epoch: u64,
    /// The node binary placed at `/init`.
    pub init: Artefact,
    /// The VM shape the image is measured for.
    pub vm: VmShape,
    /// The kernel command line, byte-exact (also in the `cmdline` file).
    pub cmdline: String,
    /// The build steps that ran, in order.
    pub steps: Vec<String>,
    /// Expected measurements, filled by a measure step; null until then.
    #[serde(default)]
    pub measurements: Option<serde_json::Value>,
}

/// A file and its digest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Artefact {
    /// File name (relative path).
    pub name: String,
    /// Size in bytes.
    pub size: u64,
    /// SHA-256, lowercase hex.
    pub sha256: String,
}

/// A pinned package.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PackageRecord {
    /// Package name.
    pub name: String,
    /// Package version.
    pub version: String,
    /// Package architecture.
    pub arch: String,
    /// SHA-256 of the `.deb`.
    pub sha256: String,
}

/// Where the sources came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourceRecord {
    /// `HEAD`'s commit, when built from a git tree.
    pub git_revision: Option<String>,
    /// Whether tracked files differed from `HEAD`.
    pub git_dirty: bool,
}

/// The VM the image is launched (and measured) as.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VmShape {
    /// Guest RAM in MiB: part of the measurement (TD HOB, kernel setup header).
    pub ram_mib: u32,
    /// Virtual CPUs.
    pub vcpus: u32,
}

impl ImageManifest {
    /// Parses `image.json` text, refusing other formats and versions.
    pub fn from_json(text: &[u8]) -> Result<ImageManifest, BuildError> {
        let m: ImageManifest = serde_json::from_slice(text)
            .map_err(|e| BuildError::Input(format!("image.json: {e}")))?;
        if m.format != IMAGE_FORMAT || m.version != IMAGE_VERSION {
            return Err(BuildError::Input(format!(
                "image.json: format {:?} version {} is not {IMAGE_FORMAT:?} version {IMAGE_VERSION}",
                m.format, m.version
            )));
        }
        Ok(m)
    }

    /// Reads `image.json` from a file (or an output dir).
    pub fn read(path: &Path) -> Result<ImageManifest, BuildError> {
        let file = if path.is_dir() {
            path.join(IMAGE_MANIFEST)
        } else {
            path.to_path_buf()
        };
        let text =
            std::fs::read(&file).map_err(BuildError::io(format!("reading {}", file.display())))?;
        ImageManifest::from_json(&text)
    }

    /// The pretty JSON text, newline-terminated.
    pub fn to_json(&self) -> String {
        // Serializing these plain types cannot fail.
        serde_json::to_string_pretty(self).unwrap_or_default() + "\n"
    }

    /// Writes `image.json` into `dir`.
    pub fn write(&self, dir: &Path) -> Result<(), BuildError> {
        let file = dir.join(IMAGE_MANIFEST);
        std::fs::write(&file, self.to_json())
            .map_err(BuildError::io(format!("writing {}", file.display())))
    }

    /// The artefact named `name`.
    pub fn artefact(&self, name: &str) -> Option<&Artefact> {
        self.artefacts.iter().find(|a| a.name == name)
    }
}

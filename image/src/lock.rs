//! The lock file: the pinned Debian packages the image is made from.
//!
//! The format is documented at the top of `image/tessella-image.lock`. Parsing
//! is strict (unknown keys are errors) and [`LockFile::parse`] validates
//! everything a later step relies on: hash and path shapes, exactly one kernel
//! and one firmware, unique module names.

use std::collections::BTreeSet;
use std::path::Path;

use serde::{Deserialize, Serialize};

/// The `format` value a lock file must carry.
pub const LOCK_FORMAT: &str = "tessella-image-lock";
/// The only lock format version this reader understands.
pub const LOCK_VERSION: u32 = 1;

/// Why a lock file was refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LockError {
    /// The file could not be read.
    #[error("cannot read lock file {path}")]
    Read {
        /// The lock file.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// Not TOML of the expected shape (includes unknown keys).
    #[error("lock file is not valid: {0}")]
    Syntax(String),
    /// A well-formed file whose content breaks a rule.
    #[error("lock file: {field}: {message}")]
    Invalid {
        /// Which entry is wrong, e.g. `package[1].sha256`.
        field: String,
        /// What is wrong with it.
        message: String,
    },
}

fn invalid(field: impl Into<String>, message: impl Into<String>) -> LockError {
    LockError::Invalid {
        field: field.into(),
        message: message.into(),
    }
}

/// A parsed and validated lock file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LockFile {
    /// Always [`LOCK_FORMAT`].
    pub format: String,
    /// Always [`LOCK_VERSION`].
    pub version: u32,
    /// `uname -r` of the pinned kernel; names `/lib/modules/<release>`.
    pub kernel_release: String,
    /// The apt source.
    pub apt: AptSource,
    /// The pinned packages, in order.
    #[serde(rename = "package")]
    pub packages: Vec<LockedPackage>,
}

/// Where apt fetches from (rendered into a project-local `sources.list`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AptSource {
    /// Mirror URL, e.g. `http://deb.debian.org/debian`.
    pub mirror: String,
    /// Suites, e.g. `bookworm`, `bookworm-backports`.
    pub suites: Vec<String>,
    /// Components, e.g. `main`.
    pub components: Vec<String>,
    /// Architecture apt resolves for.
    pub arch: String,
    /// Keyring that signs the suites' Release files.
    pub signed_by: String,
}

impl AptSource {
    /// The `sources.list` text for this source: one deb line per suite.
    pub fn sources_list(&self) -> String {
        let mut out = String::new();
        for suite in &self.suites {
            out.push_str(&format!(
                "deb [arch={} signed-by={}] {} {} {}\n",
                self.arch,
                self.signed_by,
                self.mirror,
                suite,
                self.components.join(" ")
            ));
        }
        out
    }
}

/// One pinned `.deb`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LockedPackage {
    /// Package name.
    pub name: String,
    /// Exact Debian version.
    pub version: String,
    /// Package architecture (`amd64`, `all`).
    pub arch: String,
    /// The suite it comes from (documentation; apt resolves by version).
    pub suite: String,
    /// SHA-256 of the `.deb` file, lowercase hex.
    pub sha256: String,
    /// Size of the `.deb` file in bytes.
    pub size: u64,
    /// Files taken from the package.
    #[serde(default)]
    pub take: Vec<Take>,
}

impl LockedPackage {
    /// The file name the verified `.deb` is cached under (`:` of an epoch
    /// escaped as apt does).
    pub fn deb_file_name(&self) -> String {
        format!(
            "{}_{}_{}.deb",
            self.name,
            self.version.replace(':', "%3a"),
            self.arch
        )
    }

    /// `name=version`, as `apt-get download` takes it.
    pub fn apt_spec(&self) -> String {
        format!("{}={}", self.name, self.version)
    }
}

/// What a taken file is for; decides where it lands in the inputs dir.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TakeKind {
    /// The TDVF firmware, `<inputs>/OVMF.fd`.
    Firmware,
    /// The kernel, `<inputs>/vmlinuz`.
    Kernel,
    /// A kernel module, `<inputs>/modules/<basename>`.
    Module,
}

/// A file taken from a package.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Take {
    /// Path inside the package, relative (no leading `/`).
    pub path: String,
    /// What the file is.
    pub kind: TakeKind,
    /// Modules only: a load failure is tolerated by `/init`.
    #[serde(default)]
    pub optional: bool,
}

impl Take {
    /// The file's base name (last path component).
    pub fn basename(&self) -> &str {
        self.path.rsplit('/').next().unwrap_or(&self.path)
    }

    /// Where the file goes, relative to the inputs dir.
    pub fn dest(&self) -> String {
        match self.kind {
            TakeKind::Firmware => "OVMF.fd".to_string(),
            TakeKind::Kernel => "vmlinuz".to_string(),
            TakeKind::Module => format!("modules/{}", self.basename()),
        }
    }
}

/// A module to load at boot, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModuleEntry {
    /// Base name, e.g. `virtio_net.ko.xz`.
    pub basename: String,
    /// Whether a load failure is tolerated.
    pub optional: bool,
}

impl LockFile {
    /// Reads and validates a lock file.
    pub fn load(path: &Path) -> Result<LockFile, LockError> {
        let text = std::fs::read_to_string(path).map_err(|source| LockError::Read {
            path: path.display().to_string(),
            source,
        })?;
        LockFile::parse(&text)
    }

    /// Parses and validates lock file text.
    pub fn parse(text: &str) -> Result<LockFile, LockError> {
        let lock: LockFile = toml::from_str(text).map_err(|e| LockError::Syntax(e.to_string()))?;
        lock.validate()?;
        Ok(lock)
    }

    /// Checks every rule the later steps rely on.
    pub fn validate(&self) -> Result<(), LockError> {
        if self.format != LOCK_FORMAT {
            return Err(invalid(
                "format",
                format!("expected {LOCK_FORMAT:?}, found {:?}", self.format),
            ));
        }
        if self.version != LOCK_VERSION {
            return Err(invalid(
                "version",
                format!(
                    "version {} is not supported (this tool reads {LOCK_VERSION})",
                    self.version
                ),
            ));
        }
        if !is_simple_token(&self.kernel_release) {
            return Err(invalid("kernel_release", "must be a plain release string"));
        }
        if !(self.apt.mirror.starts_with("http://") || self.apt.mirror.starts_with("https://")) {
            return Err(invalid("apt.mirror", "must be an http(s) URL"));
        }
        if self.apt.suites.is_empty() {
            return Err(invalid("apt.suites", "at least one suite is needed"));
        }
        if self.apt.components.is_empty() {
            return Err(invalid(
                "apt.components",
                "at least one component is needed",
            ));
        }
        for (name, value) in self
            .apt
            .suites
            .iter()
            .chain(&self.apt.components)
            .map(|v| ("apt.suites/components", v))
            .chain([("apt.arch", &self.apt.arch)])
        {
            if !is_simple_token(value) {
                return Err(invalid(name, format!("{value:?} is not a plain word")));
            }
        }
        if !self.apt.signed_by.starts_with('/') || self.apt.signed_by.contains(char::is_whitespace)
        {
            return Err(invalid(
                "apt.signed_by",
                "must be an absolute keyring path without spaces",
            ));
        }
        if self.packages.is_empty() {
            return Err(invalid("package", "no packages are pinned"));
        }
        let mut names = BTreeSet::new();
        let mut module_names = BTreeSet::new();
        let (mut kernels, mut firmwares) = (0, 0);
        let module_prefix = format!("lib/modules/{}/", self.kernel_release);
        for (i, p) in self.packages.iter().enumerate() {
            let f = |k: &str| format!("package[{i}].{k}");
            if !is_simple_token(&p.name) {
                return Err(invalid(f("name"), "not a Debian package name"));
            }
            if !names.insert(p.name.as_str()) {
                return Err(invalid(f("name"), format!("{} is pinned twice", p.name)));
            }
            if !is_simple_token(&p.version) {
                return Err(invalid(f("version"), "not a Debian version"));
            }
            if !is_simple_token(&p.arch) {
                return Err(invalid(f("arch"), "not an architecture"));
            }
            if p.sha256.len() != 64 {
                return Err(invalid(
                    f("sha256"),
                    format!(
                        "must be 64 hex digits (SHA-256), found {} characters",
                        p.sha256.len()
                    ),
                ));
            }
            if !p
                .sha256
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
            {
                return Err(invalid(f("sha256"), "must be lowercase hex"));
            }
            if p.size == 0 {
                return Err(invalid(f("size"), "must be the .deb size in bytes"));
            }
            for (j, t) in p.take.iter().enumerate() {
                let g = |k: &str| format!("package[{i}].take[{j}].{k}");
                if !is_safe_relative(&t.path) {
                    return Err(invalid(
                        g("path"),
                        format!(
                            "{:?} must be relative, without empty, '.' or '..' parts",
                            t.path
                        ),
                    ));
                }
                if t.optional && t.kind != TakeKind::Module {
                    return Err(invalid(g("optional"), "only modules can be optional"));
                }
                match t.kind {
                    TakeKind::Kernel => kernels += 1,
                    TakeKind::Firmware => firmwares += 1,
                    TakeKind::Module => {
                        if !t.path.starts_with(&module_prefix) {
                            return Err(invalid(
                                g("path"),
                                format!("modules must be under {module_prefix}"),
                            ));
                        }
                        if !(t.path.ends_with(".ko") || t.path.ends_with(".ko.xz")) {
                            return Err(invalid(g("path"), "a module ends in .ko or .ko.xz"));
                        }
                        if !module_names.insert(t.basename().to_string()) {
                            return Err(invalid(
                                g("path"),
                                format!("two modules are named {}", t.basename()),
                            ));
                        }
                    }
                }
            }
        }
        if kernels != 1 {
            return Err(invalid(
                "package.take",
                format!("exactly one kind = \"kernel\" is needed, found {kernels}"),
            ));
        }
        if firmwares != 1 {
            return Err(invalid(
                "package.take",
                format!("exactly one kind = \"firmware\" is needed, found {firmwares}"),
            ));
        }
        Ok(())
    }

    /// The modules in load order.
    pub fn modules(&self) -> Vec<ModuleEntry> {
        self.packages
            .iter()
            .flat_map(|p| &p.take)
            .filter(|t| t.kind == TakeKind::Module)
            .map(|t| ModuleEntry {
                basename: t.basename().to_string(),
                optional: t.optional,
            })
            .collect()
    }
}

/// A word without spaces, quotes or path separators (names, versions, suites).
fn is_simple_token(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"+-.~_:".contains(&b))
}

/// A relative path that cannot escape the directory it is joined to.
pub(crate) fn is_safe_relative(path: &str) -> bool {
    !path.is_empty()
        && !path.starts_with('/')
        && path
            .split('/')
            .all(|c| !c.is_empty() && c != "." && c != ".." && !c.contains('\0'))
}

//! The build as an ordered list of named steps over one shared context.
//!
//! Standard order: `fetch` → `node` → `initrd` → `artefacts` → `measure` →
//! `hash` → `manifest`. `measure` reads the artefacts, writes the expected
//! measurements next to them and fills [`BuildContext::measurements`]; other
//! steps can be added with [`Pipeline::insert_before`].

use std::path::{Path, PathBuf};

use crate::appliance::{appliance_initrd, CMDLINE, DEFAULT_NODE_TOML};
use crate::digest::sha256_file;
use crate::error::BuildError;
use crate::fetch::{AptGet, Cache, FetchOutcome};
use crate::inputs::{check_inputs, fetch_inputs, FetchEvent, InputsManifest};
use crate::launch::{dev_script, tdx_script};
use crate::lock::{LockFile, TakeKind};
use crate::manifest::{
    Artefact, ImageManifest, PackageRecord, SourceRecord, VmShape, IMAGE_FORMAT, IMAGE_VERSION,
};
use crate::node_build::{cargo_home, rustc_version, sysroot, NodeBuild};
use crate::source::{git_state, GitState};

/// The artefacts of the output dir, in the order they are listed.
pub const ARTEFACTS: &[&str] = &[
    "OVMF.fd",
    "cmdline",
    "initrd.cpio",
    "launch-dev.sh",
    "launch-tdx.sh",
    "measurement-events.json",
    "measurements.json",
    "vmlinuz",
];

/// Uncompressed initrd size above which the build warns.
pub const INITRD_TARGET_BYTES: u64 = 25_000_000;

/// What one build uses; everything a step reads from outside.
#[derive(Debug, Clone)]
pub struct BuildConfig {
    /// The workspace root built.
    pub source_dir: PathBuf,
    /// The lock file.
    pub lock_path: PathBuf,
    /// The `.deb` cache.
    pub cache: Cache,
    /// The inputs dir.
    pub inputs_dir: PathBuf,
    /// When false, the inputs dir is used as it is (checked, not fetched).
    pub fetch: bool,
    /// The output dir.
    pub out_dir: PathBuf,
    /// This build's own work dir (cargo target dir, logs).
    pub work_dir: PathBuf,
    /// The image's `/etc/tessella/node.toml`; `None`: the built-in dev config.
    pub default_config: Option<PathBuf>,
    /// The VM shape.
    pub vm: VmShape,
}

/// State shared by the steps of one build.
#[derive(Debug)]
pub struct BuildContext {
    /// The configuration.
    pub config: BuildConfig,
    /// The parsed lock.
    pub lock: LockFile,
    /// The git state of the source, if it is a git tree.
    pub git: Option<GitState>,
    /// `SOURCE_DATE_EPOCH` (commit time, or 0 outside git).
    pub source_date_epoch: u64,
    /// `inputs.json`, when the inputs dir has one.
    pub inputs: Option<InputsManifest>,
    /// The built node binary.
    pub node_binary: Option<PathBuf>,
    /// Size and hash of the node binary.
    pub init: Option<Artefact>,
    /// Size of the written initrd.
    pub initrd_size: Option<u64>,
    /// The output dir's artefacts (set by `hash`).
    pub artefacts: Vec<Artefact>,
    /// The inputs used (set by `hash`).
    pub input_files: Vec<Artefact>,
    /// Expected measurements (set by a measure step).
    pub measurements: Option<serde_json::Value>,
    /// The steps that completed, in order.
    pub steps_run: Vec<String>,
}

impl BuildContext {
    /// Loads the lock and the git state for `config`.
    pub fn new(config: BuildConfig) -> Result<BuildContext, BuildError> {
        let lock = LockFile::load(&config.lock_path)?;
        let git = git_state(&config.source_dir);
        let source_date_epoch = git.as_ref().map_or(0, |g| g.commit_time);
        Ok(BuildContext {
            config,
            lock,
            git,
            source_date_epoch,
            inputs: None,
            node_binary: None,
            init: None,
            initrd_size: None,
            artefacts: Vec::new(),
            input_files: Vec::new(),
            measurements: None,
            steps_run: Vec::new(),
        })
    }

    /// The manifest of the build so far (complete after `hash`).
    pub fn manifest(&self) -> Result<ImageManifest, BuildError> {
        let init = self
            .init
            .clone()
            .ok_or_else(|| BuildError::Input("the node step has not run".into()))?;
        Ok(ImageManifest {
            format: IMAGE_FORMAT.to_string(),
            version: IMAGE_VERSION,
            artefacts: self.artefacts.clone(),
            packages: self
                .lock
                .packages
                .iter()
                .map(|p| PackageRecord {
                    name: p.name.clone(),
                    version: p.version.clone(),
                    arch: p.arch.clone(),
                    sha256: p.sha256.clone(),
                })
                .collect(),
            input_files: self.input_files.clone(),
            kernel_release: self.lock.kernel_release.clone(),
            source: SourceRecord {
                git_revision: self.git.as_ref().map(|g| g.revision.clone()),
                git_dirty: self.git.as_ref().is_some_and(|g| g.dirty),
            },
            rustc: rustc_version()?,
            source_date_epoch: self.source_date_epoch,
            init,
            vm: self.config.vm,
            cmdline: CMDLINE.to_string(),
            steps: self.steps_run.clone(),
            measurements: self.measurements.clone(),
        })
    }
}

/// Where a build reports what it is doing (the CLI draws progress bars).
pub trait Progress {
    /// A step starts.
    fn begin(&self, _step: &str) {}
    /// A line of detail (a package name, cargo's latest output line).
    fn update(&self, _text: &str) {}
    /// A step ended with a one-line summary.
    fn end(&self, _step: &str, _summary: &str) {}
}

/// A [`Progress`] that reports nothing.
#[derive(Debug, Clone, Copy, Default)]
pub struct Silent;
impl Progress for Silent {}

/// One named build step.
pub trait Step {
    /// The step's name, recorded in `image.json`.
    fn name(&self) -> &'static str;
    /// Runs the step; returns a one-line summary.
    fn run(&self, ctx: &mut BuildContext, progress: &dyn Progress) -> Result<String, BuildError>;
}

/// The ordered steps of a build.
pub struct Pipeline {
    steps: Vec<Box<dyn Step>>,
}

impl std::fmt::Debug for Pipeline {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.names()).finish()
    }
}

impl Pipeline {
    /// fetch, node, initrd, artefacts, measure, hash, manifest.
    pub fn standard() -> Pipeline {
        Pipeline {
            steps: vec![
                Box::new(FetchStep),
                Box::new(NodeStep),
                Box::new(InitrdStep),
                Box::new(ArtefactsStep),
                Box::new(crate::measure::MeasureStep),
                Box::new(HashStep),
                Box::new(ManifestStep),
            ],
        }
    }

    /// A pipeline of the given steps, in order.
    pub fn from_steps(steps: Vec<Box<dyn Step>>) -> Pipeline {
        Pipeline { steps }
    }

    /// The step names, in order.
    pub fn names(&self) -> Vec<&'static str> {
        self.steps.iter().map(|s| s.name()).collect()
    }

    /// Inserts `step` before the step named `before`; false if there is none.
    pub fn insert_before(&mut self, before: &str, step: Box<dyn Step>) -> bool {
        match self.steps.iter().position(|s| s.name() == before) {
            Some(i) => {
                self.steps.insert(i, step);
                true
            }
            None => false,
        }
    }

    /// Runs every step in order, stopping at the first error.
    pub fn run(&self, ctx: &mut BuildContext, progress: &dyn Progress) -> Result<(), BuildError> {
        for step in &self.steps {
            progress.begin(step.name());
            let summary = step.run(ctx, progress)?;
            ctx.steps_run.push(step.name().to_string());
            progress.end(step.name(), &summary);
        }
        Ok(())
    }
}

fn read(path: &Path) -> Result<Vec<u8>, BuildError> {
    std::fs::read(path).map_err(BuildError::io(format!("reading {}", path.display())))
}

/// `fetch`: fetch the pinned packages into the inputs dir, or check it.
#[derive(Debug)]
pub struct FetchStep;
impl Step for FetchStep {
    fn name(&self) -> &'static str {
        "fetch"
    }
    fn run(&self, ctx: &mut BuildContext, progress: &dyn Progress) -> Result<String, BuildError> {
        let c = &ctx.config;
        if !c.fetch {
            ctx.inputs = check_inputs(&ctx.lock, &c.inputs_dir)?;
            return Ok(format!("using {} as it is", c.inputs_dir.display()));
        }
        let apt = AptGet::new(&c.cache, &ctx.lock.apt);
        let mut downloaded = 0;
        let manifest = fetch_inputs(&ctx.lock, &c.cache, &apt, &c.inputs_dir, |e| match e {
            FetchEvent::Fetching(p) => progress.update(&format!("fetching {}", p.apt_spec())),
            FetchEvent::Fetched(_, outcome) => {
                if outcome == FetchOutcome::Downloaded {
                    downloaded += 1;
                }
            }
            FetchEvent::Extracting(p) => progress.update(&format!("extracting {}", p.name)),
        })?;
        ctx.inputs = Some(manifest);
        Ok(format!(
            "{} packages verified ({downloaded} downloaded) into {}",
            ctx.lock.packages.len(),
            c.inputs_dir.display()
        ))
    }
}

/// `node`: the static musl build of `tessella-node`.
#[derive(Debug)]
pub struct NodeStep;
impl Step for NodeStep {
    fn name(&self) -> &'static str {
        "node"
    }
    fn run(&self, ctx: &mut BuildContext, progress: &dyn Progress) -> Result<String, BuildError> {
        let build = NodeBuild {
            source_dir: ctx.config.source_dir.clone(),
            target_dir: ctx.config.work_dir.join("cargo-target"),
            cargo_home: cargo_home(),
            sysroot: sysroot(),
            source_date_epoch: ctx.source_date_epoch,
            log: ctx.config.work_dir.join("cargo.log"),
        };
        let binary = build.run(|line| progress.update(line))?;
        let (sha256, size) = sha256_file(&binary)
            .map_err(BuildError::io(format!("reading {}", binary.display())))?;
        ctx.init = Some(Artefact {
            name: "init".into(),
            size,
            sha256,
        });
        ctx.node_binary = Some(binary);
        Ok(format!("static binary, {size} bytes"))
    }
}

/// `initrd`: write `initrd.cpio`.
#[derive(Debug)]
pub struct InitrdStep;
impl Step for InitrdStep {
    fn name(&self) -> &'static str {
        "initrd"
    }
    fn run(&self, ctx: &mut BuildContext, progress: &dyn Progress) -> Result<String, BuildError> {
        let binary = ctx
            .node_binary
            .clone()
            .ok_or_else(|| BuildError::Input("the node step has not run".into()))?;
        progress.update("reading the node binary, modules and config");
        let init = read(&binary)?;
        let mut modules = Vec::new();
        for m in ctx.lock.modules() {
            let data = read(&ctx.config.inputs_dir.join("modules").join(&m.basename))?;
            modules.push((m, data));
        }
        let node_toml = match &ctx.config.default_config {
            Some(path) => read(path)?,
            None => DEFAULT_NODE_TOML.as_bytes().to_vec(),
        };
        check_toml(&node_toml, ctx.config.default_config.as_deref())?;
        let initrd = appliance_initrd(init, &ctx.lock.kernel_release, modules, node_toml)?;
        std::fs::create_dir_all(&ctx.config.out_dir).map_err(BuildError::io(format!(
            "creating {}",
            ctx.config.out_dir.display()
        )))?;
        let path = ctx.config.out_dir.join("initrd.cpio");
        progress.update("writing initrd.cpio");
        let bytes = initrd.to_bytes()?;
        std::fs::write(&path, &bytes)
            .map_err(BuildError::io(format!("writing {}", path.display())))?;
        let size = bytes.len() as u64;
        ctx.initrd_size = Some(size);
        let warn = if size > INITRD_TARGET_BYTES {
            format!(" (over the {INITRD_TARGET_BYTES}-byte target)")
        } else {
            String::new()
        };
        Ok(format!("{} entries, {size} bytes{warn}", initrd.len()))
    }
}

/// The default config must at least be TOML (the node validates the rest).
fn check_toml(bytes: &[u8], path: Option<&Path>) -> Result<(), BuildError> {
    let name = path.map_or("the built-in default config".to_string(), |p| {
        p.display().to_string()
    });
    let text =
        std::str::from_utf8(bytes).map_err(|_| BuildError::Input(format!("{name}: not UTF-8")))?;
    text.parse::<toml::Table>()
        .map_err(|e| BuildError::Input(format!("{name}: not TOML: {e}")))?;
    Ok(())
}

/// `artefacts`: copy firmware and kernel, write `cmdline` and the scripts.
#[derive(Debug)]
pub struct ArtefactsStep;
impl Step for ArtefactsStep {
    fn name(&self) -> &'static str {
        "artefacts"
    }
    fn run(&self, ctx: &mut BuildContext, _progress: &dyn Progress) -> Result<String, BuildError> {
        let out = &ctx.config.out_dir;
        std::fs::create_dir_all(out)
            .map_err(BuildError::io(format!("creating {}", out.display())))?;
        for take in ctx.lock.packages.iter().flat_map(|p| &p.take) {
            if take.kind == TakeKind::Module {
                continue;
            }
            let from = ctx.config.inputs_dir.join(take.dest());
            let to = out.join(take.dest());
            std::fs::copy(&from, &to).map_err(BuildError::io(format!(
                "copying {} to {}",
                from.display(),
                to.display()
            )))?;
            set_mode(&to, 0o644)?;
        }
        let files: [(&str, String, u32); 3] = [
            ("cmdline", CMDLINE.to_string(), 0o644),
            ("launch-tdx.sh", tdx_script(ctx.config.vm), 0o755),
            ("launch-dev.sh", dev_script(ctx.config.vm), 0o755),
        ];
        for (name, text, mode) in files {
            let path = out.join(name);
            std::fs::write(&path, text)
                .map_err(BuildError::io(format!("writing {}", path.display())))?;
            set_mode(&path, mode)?;
        }
        Ok(format!("written to {}", out.display()))
    }
}

fn set_mode(path: &Path, mode: u32) -> Result<(), BuildError> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).map_err(BuildError::io(
        format!("setting the mode of {}", path.display()),
    ))
}

/// `hash`: SHA-256 of every artefact and input file.
#[derive(Debug)]
pub struct HashStep;
impl Step for HashStep {
    fn name(&self) -> &'static str {
        "hash"
    }
    fn run(&self, ctx: &mut BuildContext, progress: &dyn Progress) -> Result<String, BuildError> {
        let hash = |dir: &Path, name: &str| -> Result<Artefact, BuildError> {
            let path = dir.join(name);
            let (sha256, size) = sha256_file(&path)
                .map_err(BuildError::io(format!("reading {}", path.display())))?;
            Ok(Artefact {
                name: name.to_string(),
                size,
                sha256,
            })
        };
        let mut artefacts = Vec::new();
        for name in ARTEFACTS {
            progress.update(name);
            artefacts.push(hash(&ctx.config.out_dir, name)?);
        }
        let mut input_files = Vec::new();
        for take in ctx.lock.packages.iter().flat_map(|p| &p.take) {
            input_files.push(hash(&ctx.config.inputs_dir, &take.dest())?);
        }
        input_files.sort_by(|a, b| a.name.cmp(&b.name));
        let n = artefacts.len() + input_files.len();
        ctx.artefacts = artefacts;
        ctx.input_files = input_files;
        Ok(format!("{n} files hashed"))
    }
}

/// `manifest`: write `image.json` (last: it lists every step that ran).
#[derive(Debug)]
pub struct ManifestStep;
impl Step for ManifestStep {
    fn name(&self) -> &'static str {
        "manifest"
    }
    fn run(&self, ctx: &mut BuildContext, _progress: &dyn Progress) -> Result<String, BuildError> {
        let mut manifest = ctx.manifest()?;
        manifest.steps.push(self.name().to_string());
        manifest.write(&ctx.config.out_dir)?;
        Ok(format!(
            "image.json ({} artefacts)",
            manifest.artefacts.len()
        ))
    }
}

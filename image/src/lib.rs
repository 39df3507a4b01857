//! The reproducible TDX appliance image builder.
//!
//! An image is QEMU direct-boot material: Debian's TDVF-capable `OVMF.fd`
//! and signed TDX-guest kernel (pinned by version and SHA-256 in
//! `tessella-image.lock`, fetched with apt through a project-local config),
//! and an initrd this crate writes byte-for-byte deterministically around the
//! static musl `tessella-node` (as `/init`), its kernel modules and config.
//! Two builds of the same commit in different directories give identical
//! bytes; `image.json` records every artefact's hash for the measurement
//! tools (`tessella-measurements`).

mod appliance;
mod digest;
mod elf;
mod error;
mod fetch;
mod initrd;
mod inputs;
mod launch;
mod lock;
mod manifest;
mod measure;
mod node_build;
mod pipeline;
mod source;

pub use tessella_measurements as measurements;

pub use measure::{MeasureStep, POLICY_ENTRY_ID};

pub use appliance::{
    appliance_initrd, module_path, modules_list, CMDLINE, DEFAULT_NODE_TOML, EMPTY_DIRS,
    MODULES_LIST_PATH, NODE_CONFIG_PATH,
};
pub use digest::{sha256_file, sha256_hex};
pub use elf::{check_static, ElfError};
pub use error::BuildError;
pub use fetch::{fetch_package, verify_deb, AptGet, Cache, Downloader, FetchError, FetchOutcome};
pub use initrd::{Initrd, InitrdError, DIR_MODE, EXEC_MODE, FILE_MODE};
pub use inputs::{
    check_inputs, extract_deb, extract_from_tar, fetch_inputs, FetchEvent, InputPackage,
    InputsManifest, TakenFile, INPUTS_FORMAT, INPUTS_MANIFEST, INPUTS_VERSION,
};
pub use launch::{
    dev_script, tdx_script, FW_CFG_CONFIG_NAME, FW_CFG_FILES_PREFIX, GUEST_ADMIN_PORT,
    GUEST_QUIC_PORT, MAX_FILES, MAX_FILE_BYTES, MAX_FILE_NAME,
};
pub use lock::{
    AptSource, LockError, LockFile, LockedPackage, ModuleEntry, Take, TakeKind, LOCK_FORMAT,
    LOCK_VERSION,
};
pub use manifest::{
    Artefact, ImageManifest, PackageRecord, SourceRecord, VmShape, IMAGE_FORMAT, IMAGE_MANIFEST,
    IMAGE_VERSION,
};
pub use node_build::{cargo_home, check_musl_target, rustc_version, NodeBuild, MUSL_TARGET};
pub use pipeline::{
    ArtefactsStep, BuildConfig, BuildContext, FetchStep, HashStep, InitrdStep, ManifestStep,
    NodeStep, Pipeline, Progress, Silent, Step, ARTEFACTS, INITRD_TARGET_BYTES,
};
pub use source::{copy_tracked, find_workspace, git_state, GitState, SourceError};

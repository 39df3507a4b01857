//! Shared fixtures for tessella's end-to-end tests.
//!
//! Real TDX evidence is read from `../shared/tdx-samples` (see its README), never
//! copied into the repository. The pinned Debian image inputs (OVMF, the
//! kernel and its modules) are read from the directory `tessella-image fetch`
//! fills, see [`image_inputs`].
//!
//! The test kit, for cluster tests, is [`kit`]; [`lincheck`] checks recorded
//! histories for linearizability.

use std::path::PathBuf;

pub mod kit;
pub mod lincheck;

/// The directory holding the real TDX samples, `../shared/tdx-samples` relative
/// to the workspace root, or `TESSELLA_TDX_SAMPLES` when set.
///
/// # Panics
/// When the directory does not exist, with a message naming the path, so a test
/// that needs real evidence fails loudly instead of passing vacuously.
pub fn tdx_samples() -> PathBuf {
    let dir = std::env::var_os("TESSELLA_TDX_SAMPLES")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/tdx-samples")
        });
    assert!(
        dir.join("README.md").is_file(),
        "real TDX samples not found at {}: clone the project next to ../shared (or set TESSELLA_TDX_SAMPLES)",
        dir.display()
    );
    dir
}

/// The directory holding the pinned Debian image inputs as `tessella-image
/// fetch` lays them out: `OVMF.fd`, `vmlinuz` and `modules/*.ko.xz`. It is
/// `target/tessella-image/inputs` under the workspace root, or
/// `TESSELLA_IMAGE_INPUTS` when set.
///
/// # Panics
/// When the directory lacks `OVMF.fd` or `vmlinuz`, with a message naming the
/// path and the command that fills it.
pub fn image_inputs() -> PathBuf {
    let dir = std::env::var_os("TESSELLA_IMAGE_INPUTS")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/tessella-image/inputs")
        });
    assert!(
        dir.join("OVMF.fd").is_file() && dir.join("vmlinuz").is_file(),
        "pinned image inputs not found at {}: run `cargo run -p tessella-image -- fetch` \
         (or ./scripts/test.sh, or set TESSELLA_IMAGE_INPUTS)",
        dir.display()
    );
    dir
}

/// The directory of a built appliance image (`tessella-image build --out`):
/// `target/tessella-image/out` under the workspace root, or
/// `TESSELLA_IMAGE_DIR` when set.
///
/// # Panics
/// When the directory lacks `initrd.cpio` or `launch-dev.sh`, with a message
/// naming the path and the command that builds it.
pub fn image_dir() -> PathBuf {
    let dir = std::env::var_os("TESSELLA_IMAGE_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/tessella-image/out")
        });
    assert!(
        dir.join("initrd.cpio").is_file() && dir.join("launch-dev.sh").is_file(),
        "built appliance image not found at {}: run ./scripts/test.sh, or \
         `cargo run --release -p tessella-image -- build --out {}` (or set TESSELLA_IMAGE_DIR)",
        dir.display(),
        dir.display()
    );
    dir
}

/// The factor by which tests stretch their time limits on slow machines
/// (`TESSELLA_TIME_SCALE`, default 1).
pub fn time_scale() -> f64 {
    std::env::var("TESSELLA_TIME_SCALE")
        .ok()
        .and_then(|v| v.parse::<f64>().ok())
        .filter(|v| *v > 0.0)
        .unwrap_or(1.0)
}

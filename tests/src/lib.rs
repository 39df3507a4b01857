//! Shared fixtures for tessella's end-to-end tests.
//!
//! Real TDX evidence is read from `../shared/tdx-samples` (see its README), never
//! copied into the repository. Multi-node cluster harnesses arrive with the node
//! runtime.

use std::path::PathBuf;

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

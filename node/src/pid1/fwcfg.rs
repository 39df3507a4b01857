//! Where the deployment config comes from: the host's, through QEMU fw_cfg,
//! else the image's default.
//!
//! The host passes `-fw_cfg name=opt/tessella/node.toml,file=node.toml`; the
//! guest's `qemu_fw_cfg` module shows it at [`FW_CFG_CONFIG`]. fw_cfg is not
//! measured: in TDX mode the config is bound to MRCONFIGID instead
//! ([`crate::configid`]).

use std::path::{Path, PathBuf};

/// The fw_cfg item name the host uses for the config.
pub const FW_CFG_NAME: &str = "opt/tessella/node.toml";

/// Where the guest reads it (after loading `qemu_fw_cfg`).
pub const FW_CFG_CONFIG: &str = "/sys/firmware/qemu_fw_cfg/by_name/opt/tessella/node.toml/raw";

/// The image's default config, used when the host supplies none.
pub const IMAGE_CONFIG: &str = "/etc/tessella/node.toml";

/// Largest config accepted, in bytes: a config is a few KiB; this bounds
/// what a host can make PID 1 read.
pub const MAX_CONFIG_BYTES: usize = 1024 * 1024;

/// Which config was used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfigSource {
    /// The host's, from fw_cfg.
    FwCfg(PathBuf),
    /// The image's default.
    Image(PathBuf),
}

impl ConfigSource {
    /// The file read.
    pub fn path(&self) -> &Path {
        match self {
            ConfigSource::FwCfg(p) | ConfigSource::Image(p) => p,
        }
    }
}

impl std::fmt::Display for ConfigSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ConfigSource::FwCfg(p) => write!(f, "fw_cfg {FW_CFG_NAME} ({})", p.display()),
            ConfigSource::Image(p) => write!(f, "image default {}", p.display()),
        }
    }
}

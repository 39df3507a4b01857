//! Deployment files the host delivers through fw_cfg, pinned by the config.
//!
//! The image holds no deployment-specific file, yet a TDX-mode config must
//! name a measurement policy (`policy.file`) and usually trusted issuers
//! (`tickets.trusted_issuers_file`). The host passes each such file as the
//! fw_cfg item `opt/tessella/files/<name>` (`launch-tdx.sh CONFIG FILE...`);
//! the config's `[guest.files]` pins each name to the SHA-384 of its content.
//! [`deliver`] reads every pinned file ([`fw_cfg_path`]), checks its digest,
//! and writes it to `/run/tessella/<name>` ([`RUN_DIR`], a tmpfs; directory
//! 0700, files 0600), where the config's paths point.
//!
//! fw_cfg is not measured, but the pins are part of the config, and in TDX
//! identity mode the config bytes are bound to MRCONFIGID
//! ([`crate::configid`]): so each delivered file is bound to the TD's
//! attested identity transitively. A missing file or a different digest
//! stops the boot. Files the config does not pin are never read.
//!
//! Only PID 1 (`tessella-node init`) delivers files; `run` ignores
//! `[guest.files]` (outside the image, the files are ordinary paths).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::config::{NodeConfig, Sha384Digest};

use super::{InitError, System};

/// fw_cfg name prefix of the deployment files.
pub const FW_CFG_FILES_PREFIX: &str = "opt/tessella/files/";

/// Where the guest's `qemu_fw_cfg` module shows fw_cfg items by name.
pub const FW_CFG_BY_NAME: &str = "/sys/firmware/qemu_fw_cfg/by_name";

/// Where the delivered files are written (the config names them there).
pub const RUN_DIR: &str = "/run/tessella";

/// Largest deployment file accepted, in bytes: it is held in the guest's RAM.
pub const MAX_FILE_BYTES: usize = 1024 * 1024;

/// The fw_cfg item name of deployment file `name` (`opt/tessella/files/<name>`).
pub fn fw_cfg_name(name: &str) -> String {
    format!("{FW_CFG_FILES_PREFIX}{name}")
}

/// Where the guest reads deployment file `name`.
pub fn fw_cfg_path(name: &str) -> PathBuf {
    Path::new(FW_CFG_BY_NAME)
        .join(fw_cfg_name(name))
        .join("raw")
}

/// Where deployment file `name` is written.
pub fn run_path(name: &str) -> PathBuf {
    Path::new(RUN_DIR).join(name)
}

/// Reads, checks and writes every file `files` pins, in name order, printing
/// one console line per file. The names were checked when the config was
/// loaded ([`crate::config::check_guest_file_name`]).
pub fn deliver(
    sys: &mut dyn System,
    files: &BTreeMap<String, Sha384Digest>,
) -> Result<(), InitError> {
    if files.is_empty() {
        return Ok(());
    }
    let dir = Path::new(RUN_DIR);
    sys.create_private_dir(dir)
        .map_err(|source| InitError::FileWrite {
            path: dir.to_path_buf(),
            source,
        })?;
    for (name, pinned) in files {
        let from = fw_cfg_path(name);
        if !sys.exists(&from) {
            return Err(InitError::FileMissing {
                name: name.clone(),
                path: from,
                pinned: *pinned,
            });
        }
        let bytes = sys
            .read_file(&from, MAX_FILE_BYTES)
            .map_err(|source| InitError::FileRead {
                name: name.clone(),
                path: from.clone(),
                source,
            })?;
        let actual = Sha384Digest::of(&bytes);
        if actual != *pinned {
            return Err(InitError::FileMismatch {
                name: name.clone(),
                pinned: Box::new(*pinned),
                actual: Box::new(actual),
                len: bytes.len(),
            });
        }
        let to = run_path(name);
        sys.write_private_file(&to, &bytes)
            .map_err(|source| InitError::FileWrite { path: to, source })?;
        sys.console(&format!(
            "file {name} from fw_cfg: {} bytes, sha384 {actual} (pinned by the config)",
            bytes.len()
        ));
    }
    Ok(())
}

/// The config's file options that point into [`RUN_DIR`] at a name
/// `[guest.files]` does not deliver: they will not exist (a likely slip when
/// editing a config), reported before the node fails to read them.
pub fn undelivered(config: &NodeConfig) -> Vec<(&'static str, PathBuf)> {
    let options = [
        ("policy.file", &config.policy.file),
        (
            "tickets.trusted_issuers_file",
            &config.tickets.trusted_issuers_file,
        ),
        ("tickets.ticket_file", &config.tickets.ticket_file),
    ];
    options
        .into_iter()
        .filter_map(|(key, path)| {
            let path = path.as_ref()?;
            let name = path.strip_prefix(RUN_DIR).ok()?.to_str()?;
            (!config.guest.files.contains_key(name)).then(|| (key, path.clone()))
        })
        .collect()
}

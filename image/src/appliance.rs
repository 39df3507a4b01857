//! What the appliance's initrd contains: the contract with `/init` (the node
//! in PID-1 mode).
//!
//! ```text
//! /init                              the static node binary (0755)
//! /etc/tessella/node.toml            the image's default node config
//! /etc/tessella/modules              modules to load, in order, one per line:
//!                                    "/lib/modules/<release>/<basename>[ optional]\n"
//! /lib/modules/<release>/<basename>  the module files (xz, loaded with
//!                                    finit_module(MODULE_INIT_COMPRESSED_FILE))
//! /dev /proc /sys /tmp /run /var/lib/tessella   empty mount points / state dir
//! ```
//! Every parent directory is an explicit entry.

use crate::initrd::{Initrd, InitrdError};
use crate::lock::ModuleEntry;

/// The kernel command line: serial console, reboot (and so, with
/// `-no-reboot`, exit QEMU) at once on panic. Measured into RTMR2 byte for
/// byte, so it has no trailing newline.
pub const CMDLINE: &str = "console=ttyS0 panic=-1";

/// Path of the module list in the initrd.
pub const MODULES_LIST_PATH: &str = "/etc/tessella/modules";
/// Path of the default node config in the initrd.
pub const NODE_CONFIG_PATH: &str = "/etc/tessella/node.toml";
/// The built-in default node config (dev mode, admin on 0.0.0.0:7300).
pub const DEFAULT_NODE_TOML: &str = include_str!("default-node.toml");

/// Empty directories every image has.
pub const EMPTY_DIRS: &[&str] = &[
    "/dev",
    "/proc",
    "/sys",
    "/tmp",
    "/run",
    "/var/lib/tessella",
    "/etc/tessella",
];

/// The in-image path of a module.
pub fn module_path(kernel_release: &str, basename: &str) -> String {
    format!("/lib/modules/{kernel_release}/{basename}")
}

/// The text of `/etc/tessella/modules`.
pub fn modules_list(kernel_release: &str, modules: &[ModuleEntry]) -> String {
    modules
        .iter()
        .map(|m| {
            let path = module_path(kernel_release, &m.basename);
            if m.optional {
                format!("{path} optional\n")
            } else {
                format!("{path}\n")
            }
        })
        .collect()
}

/// Assembles the appliance initrd from the node binary, the modules (with
/// their bytes, in load order) and the default config.
pub fn appliance_initrd(
    init: Vec<u8>,
    kernel_release: &str,
    modules: Vec<(ModuleEntry, Vec<u8>)>,
    node_toml: Vec<u8>,
) -> Result<Initrd, InitrdError> {
    let mut initrd = Initrd::new();
    for dir in EMPTY_DIRS {
        initrd.add_dir(dir)?;
    }
    initrd.add_dir(&format!("/lib/modules/{kernel_release}"))?;
    initrd.add_file("/init", init, true)?;
    let entries: Vec<ModuleEntry> = modules.iter().map(|(m, _)| m.clone()).collect();
    initrd.add_file(
        MODULES_LIST_PATH,
        modules_list(kernel_release, &entries).into_bytes(),
        false,
    )?;
    for (m, data) in modules {
        initrd.add_file(&module_path(kernel_release, &m.basename), data, false)?;
    }
    initrd.add_file(NODE_CONFIG_PATH, node_toml, false)?;
    Ok(initrd)
}

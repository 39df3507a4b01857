//! The node as PID 1 of its image (`tessella-node init`).
//!
//! The kernel runs `/init` from the initrd with no arguments. [`boot`] then,
//! in this order, printing one console line per step (prefix
//! [`CONSOLE_PREFIX`]):
//!
//! 1. mounts proc, sysfs, devtmpfs on `/dev`, tmpfs on `/tmp` and `/run`
//!    ([`mounts::EARLY`]);
//! 2. loads the kernel modules listed in the modules file
//!    ([`modules`]; its path is `guest.modules_file` of the image's
//!    `/etc/tessella/node.toml`, since the host's config can only be read
//!    once `qemu_fw_cfg` is loaded);
//! 3. mounts configfs on `/sys/kernel/config` (a failure is logged: only TDX
//!    quotes need it);
//! 4. reads the config: the host's through fw_cfg, else the image's
//!    ([`fwcfg`]), and loads it like `run` does;
//! 5. copies the deployment files the config pins in `[guest.files]` from
//!    fw_cfg to `/run/tessella` ([`files`]), checking each one's SHA-384:
//!    the policy and trusted issuers the config names live there;
//! 6. brings the network up ([`netif`]).
//!
//! The caller (the binary) then checks the config against MRCONFIGID
//! ([`crate::configid`]) and starts the node as `run` would. Whatever fails
//! is printed with its context and PID 1 stays alive ([`halt`]): PID 1
//! exiting panics the kernel.
//!
//! Console lines a boot test can wait for (stderr; the kernel console):
//!
//! ```text
//! tessella-init: starting tessella-node <version> as PID 1
//! tessella-init: mounted /proc /sys /dev /tmp /run
//! tessella-init: loaded module <path>          | optional module <path> not loaded: <error>
//! tessella-init: loaded <n> of <m> modules from <modules file>
//! tessella-init: mounted configfs on /sys/kernel/config
//! tessella-init: config from <fw_cfg ...|image default ...>: <n> bytes, sha384 <hex>, identity <tdx|dev>
//! tessella-init: file <name> from fw_cfg: <n> bytes, sha384 <hex> (pinned by the config)   (one per [guest.files] entry)
//! tessella-init: lo up
//! tessella-init: eth0 up 10.0.2.15/24 via 10.0.2.2
//! tessella-init: config bound to MRCONFIGID <hex>  | dev boot: config not bound to MRCONFIGID
//! tessella-init: dev admin token <jwt>             (dev boot without trusted_issuers_file)
//! tessella-init: node <id> listening on <addr> (network "<name>", identity <mode>)
//! tessella-init: admin API on <addr>
//! tessella-init: node ready
//! tessella-init: FATAL: <error with context>      then: tessella-init: halted: ...
//! ```
//!
//! The system calls are behind [`System`], so this sequencing is tested with
//! a fake; [`LinuxSystem`] is the real one, exercised by the image's QEMU
//! boot test.

pub mod files;
pub mod fwcfg;
pub mod linux;
pub mod modules;
pub mod mounts;
pub mod netif;

use std::io;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::config::{ConfigError, InterfaceAddress, NodeConfig, Sha384Digest};
use crate::configid;

pub use fwcfg::ConfigSource;
pub use linux::LinuxSystem;
pub use modules::{ModuleEntry, ModulesFileError};
pub use mounts::Mount;

/// Every console line of PID 1 starts with this.
pub const CONSOLE_PREFIX: &str = "tessella-init: ";

/// The line printed once the node serves (the boot test waits for it).
pub const READY_LINE: &str = "tessella-init: node ready";

/// Largest modules file read, in bytes.
const MAX_SMALL_FILE: usize = 64 * 1024;

/// The system calls PID 1 makes. Errors are `io::Error`s so that the real
/// errno (`EEXIST`, `EBUSY`, ...) reaches the sequencing logic.
pub trait System {
    /// mount(2).
    fn mount(&mut self, m: &Mount) -> io::Result<()>;
    /// Loads a kernel module file (`finit_module`, compressed or not).
    fn load_module(&mut self, path: &Path) -> io::Result<()>;
    /// Reads a whole file; more than `limit` bytes is an error.
    fn read_file(&mut self, path: &Path, limit: usize) -> io::Result<Vec<u8>>;
    /// Whether a path exists.
    fn exists(&mut self, path: &Path) -> bool;
    /// Creates a directory only its owner can use (mode 0700); one that
    /// exists already is made 0700.
    fn create_private_dir(&mut self, path: &Path) -> io::Result<()>;
    /// Writes a whole file only its owner can read (mode 0600), replacing
    /// any previous one.
    fn write_private_file(&mut self, path: &Path, bytes: &[u8]) -> io::Result<()>;
    /// Sleeps.
    fn sleep(&mut self, d: Duration);
    /// Sets a network interface up.
    fn link_up(&mut self, ifname: &str) -> io::Result<()>;
    /// Adds an address to an interface.
    fn add_address(&mut self, ifname: &str, addr: InterfaceAddress) -> io::Result<()>;
    /// Adds the default route through `gateway` on an interface.
    fn add_default_route(&mut self, ifname: &str, gateway: IpAddr) -> io::Result<()>;
    /// Prints one line on the console; `line` has no prefix.
    fn console_raw(&mut self, line: &str);
    /// Prints one PID-1 line: [`CONSOLE_PREFIX`] then `line`.
    fn console(&mut self, line: &str) {
        self.console_raw(&format!("{CONSOLE_PREFIX}{line}"));
    }
}

/// What [`boot`] hands to the node.
#[derive(Debug, Clone)]
pub struct Booted {
    /// The loaded, validated config.
    pub config: NodeConfig,
    /// Its exact bytes (what MRCONFIGID must be the SHA-384 of).
    pub config_bytes: Vec<u8>,
    /// Where it came from.
    pub source: ConfigSource,
}

/// Why PID 1 could not bring the guest up. Every message names the file,
/// module, mount point or interface.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum InitError {
    /// A mount failed.
    #[error("cannot mount {fstype} on {target}: {source}")]
    Mount {
        /// The file system type.
        fstype: &'static str,
        /// The mount point.
        target: &'static str,
        /// The error.
        source: io::Error,
    },
    /// A file could not be read.
    #[error("cannot read {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The error.
        source: io::Error,
    },
    /// The modules file has a bad line.
    #[error("modules file {}: {source}", path.display())]
    ModulesFile {
        /// The modules file.
        path: PathBuf,
        /// The bad line.
        source: ModulesFileError,
    },
    /// A required module failed to load.
    #[error("cannot load kernel module {} (modules file line {line}): {source}", path.display())]
    Module {
        /// The module file.
        path: PathBuf,
        /// Its line in the modules file.
        line: usize,
        /// The error.
        source: io::Error,
    },
    /// The image's default config does not parse.
    #[error("the image's config: {0}")]
    ImageConfig(#[source] ConfigError),
    /// Neither the host nor the image supplies a config.
    #[error(
        "no config: the host supplied none through fw_cfg ({}) and the image has no {}",
        fwcfg::FW_CFG_CONFIG,
        fwcfg::IMAGE_CONFIG
    )]
    NoConfig,
    /// The config does not load.
    #[error("config from {source_name}: {error}")]
    Config {
        /// Where it came from.
        source_name: ConfigSource,
        /// What is wrong.
        error: ConfigError,
    },
    /// The interface did not appear in time.
    #[error(
        "network interface {ifname} did not appear within {timeout_ms} ms (is virtio_net in the \
         modules file and a virtio-net device attached? guest.interface names it)"
    )]
    NoInterface {
        /// The interface.
        ifname: String,
        /// How long we waited.
        timeout_ms: u64,
    },
    /// The host did not pass a file the config pins.
    #[error(
        "deployment file {name}: the host supplied no fw_cfg item {} ({}); guest.files pins it \
         (expected sha384 {pinned}): launch with the file as an argument (launch-tdx.sh CONFIG \
         {name} ...)",
        files::fw_cfg_name(name),
        path.display()
    )]
    FileMissing {
        /// The `[guest.files]` name.
        name: String,
        /// Where the guest looked.
        path: PathBuf,
        /// The pinned digest.
        pinned: Sha384Digest,
    },
    /// A pinned file could not be read (or is too large).
    #[error("deployment file {name}: cannot read {}: {source}", path.display())]
    FileRead {
        /// The `[guest.files]` name.
        name: String,
        /// The fw_cfg file.
        path: PathBuf,
        /// The error.
        source: io::Error,
    },
    /// The host passed another file than the config pins.
    #[error(
        "deployment file {name} from fw_cfg {}: sha384 mismatch: expected {pinned} (pinned by \
         guest.files), actual {actual} ({len} bytes): the host passed another file than the \
         config names",
        files::fw_cfg_name(name)
    )]
    FileMismatch {
        /// The `[guest.files]` name.
        name: String,
        /// The digest the config pins (boxed: keeps the error small).
        pinned: Box<Sha384Digest>,
        /// The digest of what the host passed.
        actual: Box<Sha384Digest>,
        /// Its size in bytes.
        len: usize,
    },
    /// A delivered file (or its directory) could not be written.
    #[error("cannot write {}: {source}", path.display())]
    FileWrite {
        /// The file or directory.
        path: PathBuf,
        /// The error.
        source: io::Error,
    },
    /// A netlink request failed.
    #[error("{step} {ifname}: {source}")]
    Network {
        /// What was being done.
        step: &'static str,
        /// The interface.
        ifname: String,
        /// The error.
        source: io::Error,
    },
}

fn is_errno(e: &io::Error, errno: nix::errno::Errno) -> bool {
    e.raw_os_error() == Some(errno as i32)
}

/// Steps 1 to 6 of the module documentation. `env` are the process's
/// `TESSELLA_*` variables (the kernel passes unrecognised `name=value` words
/// of its command line to PID 1 as environment).
pub fn boot(sys: &mut dyn System, env: &[(String, String)]) -> Result<Booted, InitError> {
    sys.console(&format!(
        "starting tessella-node {} as PID 1",
        env!("CARGO_PKG_VERSION")
    ));
    mount_early(sys)?;

    // The image's config names the modules file; it is also the fallback config.
    let image_path = Path::new(fwcfg::IMAGE_CONFIG);
    let image = if sys.exists(image_path) {
        let bytes = read(sys, image_path, fwcfg::MAX_CONFIG_BYTES)?;
        let parsed = NodeConfig::from_bytes(&bytes, image_path).map_err(InitError::ImageConfig)?;
        Some((bytes, parsed.guest))
    } else {
        None
    };
    let image_guest = image.as_ref().map(|(_, g)| g.clone()).unwrap_or_default();
    load_modules(sys, &image_guest.modules_file)?;
    match sys.mount(&mounts::CONFIGFS) {
        Ok(()) => sys.console("mounted configfs on /sys/kernel/config"),
        Err(e) if is_errno(&e, nix::errno::Errno::EBUSY) => {
            sys.console("configfs already mounted on /sys/kernel/config")
        }
        Err(e) => sys.console(&format!(
            "warning: cannot mount configfs on /sys/kernel/config ({e}): TDX quotes will be unavailable"
        )),
    }

    let fw_path = Path::new(fwcfg::FW_CFG_CONFIG);
    let (source, bytes) = if sys.exists(fw_path) {
        let bytes = read(sys, fw_path, fwcfg::MAX_CONFIG_BYTES)?;
        (ConfigSource::FwCfg(fw_path.to_path_buf()), bytes)
    } else {
        match image {
            Some((bytes, _)) => (ConfigSource::Image(image_path.to_path_buf()), bytes),
            None => return Err(InitError::NoConfig),
        }
    };
    let config =
        NodeConfig::load_bytes(&bytes, source.path(), env.iter().cloned()).map_err(|error| {
            InitError::Config {
                source_name: source.clone(),
                error,
            }
        })?;
    sys.console(&format!(
        "config from {source}: {} bytes, sha384 {}, identity {}",
        bytes.len(),
        hex::encode(configid::config_sha384(&bytes)),
        config.identity.mode
    ));
    if config.guest.modules_file != image_guest.modules_file {
        sys.console(&format!(
            "note: guest.modules_file {} of this config is not used: modules come from the \
             image's {} (loaded before the config can be read)",
            config.guest.modules_file.display(),
            image_guest.modules_file.display()
        ));
    }
    files::deliver(sys, &config.guest.files)?;
    for (key, path) in files::undelivered(&config) {
        sys.console(&format!(
            "warning: {key} {} is not delivered: guest.files pins no such name",
            path.display()
        ));
    }
    netif::bring_up(sys, &config.guest)?;
    Ok(Booted {
        config,
        config_bytes: bytes,
        source,
    })
}

fn read(sys: &mut dyn System, path: &Path, limit: usize) -> Result<Vec<u8>, InitError> {
    sys.read_file(path, limit)
        .map_err(|source| InitError::Read {
            path: path.to_path_buf(),
            source,
        })
}

fn mount_early(sys: &mut dyn System) -> Result<(), InitError> {
    for m in &mounts::EARLY {
        match sys.mount(m) {
            Ok(()) => {}
            // The kernel (CONFIG_DEVTMPFS_MOUNT) or a previous attempt got there first.
            Err(e) if is_errno(&e, nix::errno::Errno::EBUSY) => {
                sys.console(&format!("{} already mounted", m.target))
            }
            Err(source) => {
                return Err(InitError::Mount {
                    fstype: m.fstype,
                    target: m.target,
                    source,
                })
            }
        }
    }
    let targets: Vec<&str> = mounts::EARLY.iter().map(|m| m.target).collect();
    sys.console(&format!("mounted {}", targets.join(" ")));
    Ok(())
}

fn load_modules(sys: &mut dyn System, modules_file: &Path) -> Result<(), InitError> {
    let text = read(sys, modules_file, MAX_SMALL_FILE)?;
    let text = String::from_utf8(text).map_err(|_| InitError::ModulesFile {
        path: modules_file.to_path_buf(),
        source: ModulesFileError {
            line: 0,
            problem: "not UTF-8 text".into(),
        },
    })?;
    let entries = modules::parse_modules(&text).map_err(|source| InitError::ModulesFile {
        path: modules_file.to_path_buf(),
        source,
    })?;
    let mut loaded = 0usize;
    for entry in &entries {
        match sys.load_module(&entry.path) {
            Ok(()) => {
                loaded += 1;
                sys.console(&format!("loaded module {}", entry.path.display()));
            }
            Err(e) if is_errno(&e, nix::errno::Errno::EEXIST) => {
                sys.console(&format!("module {} already loaded", entry.path.display()));
            }
            Err(e) if entry.optional => sys.console(&format!(
                "optional module {} not loaded: {e}",
                entry.path.display()
            )),
            Err(source) => {
                return Err(InitError::Module {
                    path: entry.path.clone(),
                    line: entry.line,
                    source,
                })
            }
        }
    }
    sys.console(&format!(
        "loaded {loaded} of {} modules from {}",
        entries.len(),
        modules_file.display()
    ));
    Ok(())
}

/// Prints a fatal error (with its chain of causes) and never returns: PID 1
/// must not exit. Orphans, if any, are reaped by [`linux::reap_forever`]
/// while it waits.
pub fn halt(sys: &mut dyn System, error: &dyn std::fmt::Display) -> ! {
    sys.console(&format!("FATAL: {error}"));
    sys.console(
        "halted: PID 1 stays up so the kernel does not panic; fix the cause and restart the VM",
    );
    linux::reap_forever()
}

#[cfg(test)]
mod tests;

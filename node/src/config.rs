//! The node's configuration: a TOML file, overridden by environment variables.
//!
//! Every option has a default, shown (with what it does) in
//! [`NodeConfig::example_toml`]; a missing file section means "all defaults".
//! Production is the default: `identity.mode = "tdx"`, which needs a
//! measurement policy file; a development node must choose `mode = "dev"`.
//!
//! Every option `section.key` is also settable by the environment variable
//! `TESSELLA_<SECTION>_<KEY>` in upper case (`admin.listen` is
//! `TESSELLA_ADMIN_LISTEN`, the top-level `data_dir` is `TESSELLA_DATA_DIR`);
//! lists are comma-separated, an empty value unsets an optional path. The
//! environment wins over the file. Unknown keys and unknown `TESSELLA_*`
//! variables are refused (except [`RESERVED_ENV`], read by the binary), so a
//! typo never silently falls back to a default.
//!
//! Loading order: [`NodeConfig::from_file`] (or [`NodeConfig::from_toml_str`]),
//! then [`NodeConfig::apply_env`] / [`NodeConfig::apply_process_env`], then
//! [`NodeConfig::validate`] for the rules that span several options, and
//! [`NodeConfig::warnings`] for what is allowed but risky. [`NodeConfig::load`]
//! does all four. Every [`ConfigError`] names the key (or variable) and the
//! problem, e.g. `admin.listen: "abc" is not a socket address (...)`.
//!
//! The structs also derive serde (`deny_unknown_fields`, defaults everywhere),
//! so they can be embedded or printed; the loader above walks the TOML itself
//! so that its errors can name keys.
//!
//! `[guest]` (including `[guest.files]`, the deployment files pinned by
//! SHA-384) only concerns the image's PID 1 (`tessella-node init`); `run`
//! parses and validates it but otherwise ignores it.

use std::collections::BTreeMap;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Prefix of every configuration environment variable.
pub const ENV_PREFIX: &str = "TESSELLA_";

/// `TESSELLA_*` variables that are not options and are left alone by
/// [`NodeConfig::apply_env`]: `TESSELLA_CONFIG` names the config file; the
/// others belong to tessella's other tools (`tessella-image`'s cache) and its
/// test suite, so exporting them in a shell never stops a node.
pub const RESERVED_ENV: &[&str] = &[
    "TESSELLA_CONFIG",
    "TESSELLA_IMAGE_CACHE",
    "TESSELLA_IMAGE_INPUTS",
    "TESSELLA_IMAGE_DIR",
    "TESSELLA_SKIP_IMAGE_BUILD",
    "TESSELLA_TDX_SAMPLES",
    "TESSELLA_TIME_SCALE",
];

/// Every option, as `section.key` (or `key` at the top level).
pub const KEYS: &[&str] = &[
    "data_dir",
    "collections",
    "network.name",
    "network.listen",
    "network.bootstrap",
    "network.tags",
    "identity.mode",
    "identity.cert_lifetime_secs",
    "policy.file",
    "policy.collateral_dir",
    "tickets.ticket_file",
    "tickets.trusted_issuers_file",
    "tickets.leeway_secs",
    "admin.enabled",
    "admin.listen",
    "limits.max_frame_bytes",
    "limits.max_peers",
    "limits.max_catalog",
    "limits.queue_depth",
    "discovery.gossip_interval_ms",
    "discovery.peer_ttl_secs",
    "guest.interface",
    "guest.address",
    "guest.gateway",
    "guest.modules_file",
    "guest.link_timeout_ms",
    "guest.files",
];

const SECTIONS: &[&str] = &[
    "network",
    "identity",
    "policy",
    "tickets",
    "admin",
    "limits",
    "discovery",
    "guest",
];

/// Bounds enforced by [`NodeConfig::validate`].
const MIN_FRAME: u32 = 1024;
const MAX_FRAME: u32 = 16 * 1024 * 1024;
const MIN_CERT_LIFETIME: u64 = 60;
const MAX_CERT_LIFETIME: u64 = 30 * 24 * 3600;
const MAX_LEEWAY: u64 = 300;
const MAX_LINK_TIMEOUT_MS: u64 = 600_000;
/// Linux's interface names are at most 15 bytes (IFNAMSIZ - 1).
const MAX_IFNAME: usize = 15;

/// Most entries of `[guest.files]`: each may be 1 MiB, held in the guest's RAM.
pub const MAX_GUEST_FILES: usize = 16;

/// Longest `[guest.files]` name: a fw_cfg name is at most 55 bytes (QEMU's
/// `FW_CFG_MAX_FILE_PATH` is 56 with the NUL) and `opt/tessella/files/`
/// takes 19 of them.
pub const MAX_GUEST_FILE_NAME: usize = 36;

/// Length of a SHA-384 digest, in bytes.
pub const SHA384_LEN: usize = 48;

/// The environment variable for option `key` (`admin.listen` -> `TESSELLA_ADMIN_LISTEN`).
pub fn env_name(key: &str) -> String {
    format!("{ENV_PREFIX}{}", key.replace('.', "_").to_ascii_uppercase())
}

/// The whole node configuration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NodeConfig {
    /// Where the node keeps its key and state (Raft logs, collections,
    /// collateral cache). Default `/run/tessella/data`: in `tdx` mode the
    /// data dir must be memory-backed (the host reads every disk), and `/run`
    /// is a tmpfs in the appliance image and on systemd hosts.
    pub data_dir: PathBuf,
    /// `[[collections]]`: collections this node serves as a writer from
    /// start; declared maps are key-value stores in the admin API.
    pub collections: Vec<crate::collections::CollectionDecl>,
    /// `[network]`: which network, where to listen, whom to contact first.
    pub network: NetworkConfig,
    /// `[identity]`: how the node proves what it runs.
    pub identity: IdentityConfig,
    /// `[policy]`: what peers must run.
    pub policy: PolicyConfig,
    /// `[tickets]`: the JWT tickets that authorize nodes.
    pub tickets: TicketsConfig,
    /// `[admin]`: the HTTP admin API.
    pub admin: AdminConfig,
    /// `[limits]`: bounds on what peers can make this node hold.
    pub limits: LimitsConfig,
    /// `[discovery]`: gossip timing.
    pub discovery: DiscoveryConfig,
    /// `[guest]`: what `tessella-node init` (PID 1 of the image) sets up
    /// before starting the node. Ignored by `run`.
    pub guest: GuestConfig,
}

impl Default for NodeConfig {
    fn default() -> Self {
        NodeConfig {
            data_dir: PathBuf::from("/run/tessella/data"),
            collections: Vec::new(),
            network: NetworkConfig::default(),
            identity: IdentityConfig::default(),
            policy: PolicyConfig::default(),
            tickets: TicketsConfig::default(),
            admin: AdminConfig::default(),
            limits: LimitsConfig::default(),
            discovery: DiscoveryConfig::default(),
            guest: GuestConfig::default(),
        }
    }
}

/// `[network]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NetworkConfig {
    /// The network's name; its id is bound into every quote and is every
    /// ticket's audience. Default `tessella-dev`.
    pub name: String,
    /// QUIC (UDP) listen address. Default `0.0.0.0:7946`.
    pub listen: SocketAddr,
    /// Peers to contact first (`ip:port`); discovery finds the rest. Default empty.
    pub bootstrap: Vec<SocketAddr>,
    /// Tag names this node advertises in its peer record. Default empty.
    pub tags: Vec<String>,
}

impl Default for NetworkConfig {
    fn default() -> Self {
        NetworkConfig {
            name: "tessella-dev".to_string(),
            listen: SocketAddr::from(([0, 0, 0, 0], 7946)),
            bootstrap: Vec::new(),
            tags: Vec::new(),
        }
    }
}

/// How a node gets its attested identity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum IdentityMode {
    /// Quotes from the TDX module through configfs-tsm; peers verified against
    /// Intel's root. The default.
    #[default]
    Tdx,
    /// Quotes signed by the project's dev PKI; for laptops and tests only.
    Dev,
}

impl IdentityMode {
    /// `"tdx"` or `"dev"`.
    pub const fn as_str(self) -> &'static str {
        match self {
            IdentityMode::Tdx => "tdx",
            IdentityMode::Dev => "dev",
        }
    }
}

impl fmt::Display for IdentityMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `[identity]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct IdentityConfig {
    /// `tdx` (default) or `dev`.
    pub mode: IdentityMode,
    /// Lifetime of the RA-TLS certificate in seconds, renewed at two thirds.
    /// Default 86400 (24 h); 60 s to 30 days.
    pub cert_lifetime_secs: u64,
}

impl Default for IdentityConfig {
    fn default() -> Self {
        IdentityConfig {
            mode: IdentityMode::Tdx,
            cert_lifetime_secs: 86_400,
        }
    }
}

impl IdentityConfig {
    /// [`IdentityConfig::cert_lifetime_secs`] as a duration.
    pub fn cert_lifetime(&self) -> Duration {
        Duration::from_secs(self.cert_lifetime_secs)
    }
}

/// `[policy]`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PolicyConfig {
    /// The measurement / TCB policy file (JSON). Required in `tdx` mode.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub file: Option<PathBuf>,
    /// Directory of Intel collateral files. Default `<data_dir>/collateral`
    /// (see [`NodeConfig::collateral_dir`]).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub collateral_dir: Option<PathBuf>,
}

/// `[tickets]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TicketsConfig {
    /// This node's JWT ticket. Without one, peers refuse this node.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ticket_file: Option<PathBuf>,
    /// JSON list of trusted ticket issuers. Without one, this node admits no peer.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub trusted_issuers_file: Option<PathBuf>,
    /// Clock skew tolerated on ticket times, in seconds. Default 30; at most 300.
    pub leeway_secs: u64,
}

impl Default for TicketsConfig {
    fn default() -> Self {
        TicketsConfig {
            ticket_file: None,
            trusted_issuers_file: None,
            leeway_secs: 30,
        }
    }
}

/// `[admin]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AdminConfig {
    /// Serve the admin API. Default true.
    pub enabled: bool,
    /// HTTP listen address. Default `127.0.0.1:7947` (loopback); any other
    /// address is allowed but reported by [`NodeConfig::warnings`].
    pub listen: SocketAddr,
}

impl Default for AdminConfig {
    fn default() -> Self {
        AdminConfig {
            enabled: true,
            listen: SocketAddr::from(([127, 0, 0, 1], 7947)),
        }
    }
}

/// `[limits]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LimitsConfig {
    /// Largest frame payload accepted or sent, in bytes. Default 65536;
    /// 1 KiB to 16 MiB. Must be the same on every node of a network.
    pub max_frame_bytes: u32,
    /// Most simultaneous peer connections. Default 256.
    pub max_peers: usize,
    /// Most peers kept in the discovery catalog. Default 10000 (when full, the
    /// record issued longest ago makes room).
    pub max_catalog: usize,
    /// Capacity of each internal queue and event channel. Default 1024.
    pub queue_depth: usize,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        LimitsConfig {
            max_frame_bytes: 65_536,
            max_peers: 256,
            max_catalog: 10_000,
            queue_depth: 1024,
        }
    }
}

/// `[discovery]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DiscoveryConfig {
    /// Failure-detector period, in milliseconds: one active-view peer is
    /// probed per period. Default 1000.
    pub gossip_interval_ms: u64,
    /// Lifetime of a peer record its owner does not renew, in seconds (owners
    /// renew at a quarter of it; failures are detected by probes, not by
    /// this). Default 3600; must exceed two gossip intervals.
    pub peer_ttl_secs: u64,
}

impl Default for DiscoveryConfig {
    fn default() -> Self {
        DiscoveryConfig {
            gossip_interval_ms: 1000,
            peer_ttl_secs: 3600,
        }
    }
}

impl DiscoveryConfig {
    /// [`DiscoveryConfig::gossip_interval_ms`] as a duration.
    pub fn gossip_interval(&self) -> Duration {
        Duration::from_millis(self.gossip_interval_ms)
    }

    /// [`DiscoveryConfig::peer_ttl_secs`] as a duration.
    pub fn peer_ttl(&self) -> Duration {
        Duration::from_secs(self.peer_ttl_secs)
    }
}

/// An interface address with its prefix length, written `ip/prefix`
/// (`10.0.2.15/24`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct InterfaceAddress {
    /// The address.
    pub ip: IpAddr,
    /// The prefix length (at most 32 for IPv4, 128 for IPv6).
    pub prefix: u8,
}

impl std::str::FromStr for InterfaceAddress {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || {
            format!(
                "{s:?} is not an address with a prefix (expected ip/prefix, e.g. \"10.0.2.15/24\")"
            )
        };
        let (ip, prefix) = s.trim().split_once('/').ok_or_else(bad)?;
        let ip: IpAddr = ip.parse().map_err(|_| bad())?;
        let prefix: u8 = prefix.parse().map_err(|_| bad())?;
        let max = if ip.is_ipv4() { 32 } else { 128 };
        if prefix > max {
            return Err(format!("{s:?}: prefix /{prefix} is longer than {max}"));
        }
        Ok(InterfaceAddress { ip, prefix })
    }
}

impl TryFrom<String> for InterfaceAddress {
    type Error = String;

    fn try_from(s: String) -> Result<Self, String> {
        s.parse()
    }
}

impl From<InterfaceAddress> for String {
    fn from(a: InterfaceAddress) -> String {
        a.to_string()
    }
}

impl fmt::Display for InterfaceAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.ip, self.prefix)
    }
}

/// `[guest]`: the image's PID 1 (`tessella-node init`) brings up one
/// interface with a static address. The defaults fit QEMU's user networking
/// (`-netdev user`), whose guest address is 10.0.2.15/24 behind the gateway
/// 10.0.2.2; no DNS is configured (the node needs none).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GuestConfig {
    /// The interface to configure. Default `eth0`.
    pub interface: String,
    /// Its static address. Default `10.0.2.15/24`.
    pub address: InterfaceAddress,
    /// Default route's gateway; `None` (an empty string) means no default
    /// route. Default `10.0.2.2`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gateway: Option<IpAddr>,
    /// Kernel modules to load, one path a line in load order; a line ending
    /// in ` optional` may fail. Default `/etc/tessella/modules`.
    pub modules_file: PathBuf,
    /// How long to wait for the interface to appear after the modules are
    /// loaded, in milliseconds. Default 10000; 1 to 600000.
    pub link_timeout_ms: u64,
    /// `[guest.files]`: deployment files (the policy, the trusted issuers)
    /// the host passes through fw_cfg as `opt/tessella/files/<name>`, each
    /// pinned by the SHA-384 of its content. PID 1 copies them to
    /// `/run/tessella/<name>` before the node starts and stops the boot if
    /// one is missing or differs. The config is bound to MRCONFIGID in TDX
    /// mode, so the files are bound through their pins. Names follow
    /// [`check_guest_file_name`]; at most [`MAX_GUEST_FILES`]. Default none.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub files: BTreeMap<String, Sha384Digest>,
}

impl Default for GuestConfig {
    fn default() -> Self {
        GuestConfig {
            interface: "eth0".to_string(),
            address: InterfaceAddress {
                ip: IpAddr::V4(Ipv4Addr::new(10, 0, 2, 15)),
                prefix: 24,
            },
            gateway: Some(IpAddr::V4(Ipv4Addr::new(10, 0, 2, 2))),
            modules_file: PathBuf::from("/etc/tessella/modules"),
            link_timeout_ms: 10_000,
            files: BTreeMap::new(),
        }
    }
}

impl GuestConfig {
    /// [`GuestConfig::link_timeout_ms`] as a duration.
    pub fn link_timeout(&self) -> Duration {
        Duration::from_millis(self.link_timeout_ms)
    }
}

/// A SHA-384 digest a config pins a file to, written as 96 hex digits (what
/// `sha384sum` prints; either case is accepted, lower case is printed).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Sha384Digest(pub [u8; SHA384_LEN]);

impl Sha384Digest {
    /// The SHA-384 of `bytes`.
    pub fn of(bytes: &[u8]) -> Sha384Digest {
        Sha384Digest(tessella_attestation::measurements::sha384(bytes).0)
    }
}

impl std::str::FromStr for Sha384Digest {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || {
            format!(
                "{s:?} is not a SHA-384 digest (expected {} hex digits, as printed by sha384sum)",
                2 * SHA384_LEN
            )
        };
        if s.len() != 2 * SHA384_LEN {
            return Err(bad());
        }
        let mut out = [0u8; SHA384_LEN];
        hex::decode_to_slice(s, &mut out).map_err(|_| bad())?;
        Ok(Sha384Digest(out))
    }
}

impl TryFrom<String> for Sha384Digest {
    type Error = String;

    fn try_from(s: String) -> Result<Self, String> {
        s.parse()
    }
}

impl From<Sha384Digest> for String {
    fn from(d: Sha384Digest) -> String {
        d.to_string()
    }
}

impl fmt::Display for Sha384Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl fmt::Debug for Sha384Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Sha384Digest({self})")
    }
}

/// Whether `name` can be a `[guest.files]` name: 1 to
/// [`MAX_GUEST_FILE_NAME`] characters of `A-Z a-z 0-9 . _ -`, not `.` or
/// `..`. It becomes both a fw_cfg name component and a file name under
/// `/run/tessella`, so it can hold no `/` and no shell or QEMU syntax.
pub fn check_guest_file_name(name: &str) -> Result<(), String> {
    let ok = (1..=MAX_GUEST_FILE_NAME).contains(&name.len())
        && name != "."
        && name != ".."
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{name:?} is not a file name (1 to {MAX_GUEST_FILE_NAME} characters of A-Z a-z 0-9 . _ -, \
             not \".\" or \"..\")"
        ))
    }
}

/// Checks the names and the number of `[guest.files]` entries.
fn check_guest_files(files: &BTreeMap<String, Sha384Digest>) -> Result<(), String> {
    for name in files.keys() {
        check_guest_file_name(name)?;
    }
    if files.len() > MAX_GUEST_FILES {
        return Err(format!(
            "{} files, at most {MAX_GUEST_FILES} are allowed",
            files.len()
        ));
    }
    Ok(())
}

/// Why a configuration was refused. Every message names the key, variable or
/// file, and the problem.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The config file could not be read.
    #[error("cannot read config file {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// An error in a config file (wraps the error with the file's path).
    #[error("{}: {source}", path.display())]
    File {
        /// The file.
        path: PathBuf,
        /// What is wrong in it.
        source: Box<ConfigError>,
    },
    /// The text is not valid TOML.
    #[error("TOML syntax error at line {line}, column {column}: {message}")]
    Syntax {
        /// 1-based line.
        line: usize,
        /// 1-based column (in characters).
        column: usize,
        /// What the parser expected.
        message: String,
    },
    /// A key that is not an option (often a typo).
    #[error("unknown key {key} (expected one of: {expected})")]
    UnknownKey {
        /// The key, as `section.key`.
        key: String,
        /// The valid keys at that place.
        expected: String,
    },
    /// An option has a value of the wrong type or out of range, or breaks a
    /// rule that spans options.
    #[error("{key}: {problem}")]
    Invalid {
        /// The option, as `section.key`.
        key: String,
        /// What is wrong and what is expected.
        problem: String,
    },
    /// A `TESSELLA_*` variable that names no option.
    #[error("unknown environment variable {var}: no option has this name (options are TESSELLA_<SECTION>_<KEY>, e.g. TESSELLA_ADMIN_LISTEN)")]
    UnknownEnv {
        /// The variable.
        var: String,
    },
    /// The config file is not UTF-8.
    #[error("{}: not UTF-8 text", path.display())]
    NotUtf8 {
        /// The file.
        path: PathBuf,
    },
    /// `TESSELLA_*` options in TDX identity mode, where the config is bound
    /// to MRCONFIGID byte for byte and nothing may change it.
    #[error(
        "{}: identity.mode \"tdx\" binds the config file to the TD's MRCONFIGID, so options \
         cannot come from the environment; put them in the config file instead",
        vars.join(", ")
    )]
    EnvInTdxMode {
        /// The variables that were set.
        vars: Vec<String>,
    },
    /// A variable's value does not parse for its option.
    #[error("{var}: {problem}")]
    InvalidEnv {
        /// The variable.
        var: String,
        /// What is wrong and what is expected.
        problem: String,
    },
}

/// Something allowed but risky, reported by [`NodeConfig::warnings`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigWarning {
    /// The option concerned.
    pub key: &'static str,
    /// What the risk is.
    pub message: String,
}

impl fmt::Display for ConfigWarning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.key, self.message)
    }
}

/// One value to set, from a TOML document or an environment variable.
#[derive(Clone, Copy)]
enum Raw<'a> {
    Toml(&'a toml::Value),
    Env(&'a str),
}

fn toml_type(v: &toml::Value) -> String {
    match v {
        toml::Value::String(s) => format!("the string {s:?}"),
        toml::Value::Integer(i) => format!("the integer {i}"),
        toml::Value::Float(x) => format!("the float {x}"),
        toml::Value::Boolean(b) => format!("the boolean {b}"),
        toml::Value::Datetime(d) => format!("the datetime {d}"),
        toml::Value::Array(_) => "an array".to_string(),
        toml::Value::Table(_) => "a table".to_string(),
    }
}

fn string(v: Raw<'_>) -> Result<String, String> {
    match v {
        Raw::Env(s) => Ok(s.to_string()),
        Raw::Toml(toml::Value::String(s)) => Ok(s.clone()),
        Raw::Toml(other) => Err(format!("expected a string, found {}", toml_type(other))),
    }
}

fn parse_addr(s: &str) -> Result<SocketAddr, String> {
    s.trim().parse().map_err(|_| {
        format!("{s:?} is not a socket address (expected ip:port, e.g. \"127.0.0.1:7947\" or \"[::1]:7947\")")
    })
}

fn addr(v: Raw<'_>) -> Result<SocketAddr, String> {
    parse_addr(&string(v)?)
}

/// A list of strings: a TOML array of strings, or a comma-separated variable.
fn list(v: Raw<'_>) -> Result<Vec<String>, String> {
    match v {
        Raw::Env(s) => Ok(s
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .collect()),
        Raw::Toml(toml::Value::Array(items)) => items
            .iter()
            .enumerate()
            .map(|(i, item)| match item {
                toml::Value::String(s) => Ok(s.clone()),
                other => Err(format!(
                    "item {i}: expected a string, found {}",
                    toml_type(other)
                )),
            })
            .collect(),
        Raw::Toml(other) => Err(format!(
            "expected an array of strings, found {}",
            toml_type(other)
        )),
    }
}

fn addr_list(v: Raw<'_>) -> Result<Vec<SocketAddr>, String> {
    list(v)?.iter().map(|s| parse_addr(s)).collect()
}

/// An optional path; empty means unset.
fn opt_path(v: Raw<'_>) -> Result<Option<PathBuf>, String> {
    let s = string(v)?;
    Ok((!s.is_empty()).then(|| PathBuf::from(s)))
}

fn boolean(v: Raw<'_>) -> Result<bool, String> {
    match v {
        Raw::Toml(toml::Value::Boolean(b)) => Ok(*b),
        Raw::Toml(other) => Err(format!(
            "expected true or false, found {}",
            toml_type(other)
        )),
        Raw::Env(s) => match s.trim().to_ascii_lowercase().as_str() {
            "true" | "1" => Ok(true),
            "false" | "0" => Ok(false),
            _ => Err(format!("{s:?} is not a boolean (expected true or false)")),
        },
    }
}

/// Unsigned integer types an option can have.
trait Uint: Sized {
    const MAX: u64;
    fn from_u64(n: u64) -> Self;
}

impl Uint for u32 {
    const MAX: u64 = u32::MAX as u64;
    fn from_u64(n: u64) -> Self {
        n as u32
    }
}

impl Uint for u64 {
    const MAX: u64 = u64::MAX;
    fn from_u64(n: u64) -> Self {
        n
    }
}

impl Uint for usize {
    const MAX: u64 = usize::MAX as u64;
    fn from_u64(n: u64) -> Self {
        n as usize
    }
}

fn uint<T: Uint>(v: Raw<'_>) -> Result<T, String> {
    let out_of_range = |n: &dyn fmt::Display| format!("{n} is out of range (0 to {})", T::MAX);
    let n: u64 = match v {
        Raw::Toml(toml::Value::Integer(i)) => u64::try_from(*i).map_err(|_| out_of_range(i))?,
        Raw::Toml(other) => {
            return Err(format!("expected a number, found {}", toml_type(other)));
        }
        Raw::Env(s) => {
            let t = s.trim();
            match t.parse::<u64>() {
                Ok(n) => n,
                // A number, just not one that fits.
                Err(_) if t.parse::<i128>().is_ok() => return Err(out_of_range(&t)),
                Err(_) => return Err(format!("{s:?} is not a number")),
            }
        }
    };
    if n > T::MAX {
        return Err(out_of_range(&n));
    }
    Ok(T::from_u64(n))
}

fn iface_address(v: Raw<'_>) -> Result<InterfaceAddress, String> {
    string(v)?.parse()
}

/// An optional IP address; empty means unset.
fn opt_ip(v: Raw<'_>) -> Result<Option<IpAddr>, String> {
    let s = string(v)?;
    let t = s.trim();
    if t.is_empty() {
        return Ok(None);
    }
    t.parse()
        .map(Some)
        .map_err(|_| format!("{s:?} is not an IP address (expected e.g. \"10.0.2.2\")"))
}

/// `[guest.files]`: a table of `name = "sha384 hex"`, or (environment)
/// `name=hex` pairs separated by commas.
fn collections(v: Raw<'_>) -> Result<Vec<crate::collections::CollectionDecl>, String> {
    use crate::collections::{CollectionDecl, CollectionKind};
    let decls: Vec<CollectionDecl> = match v {
        Raw::Toml(value @ toml::Value::Array(_)) => {
            value.clone().try_into().map_err(|e: toml::de::Error| {
                format!(
                    "expected [[collections]] tables of name and kind: {}",
                    e.message().trim()
                )
            })?
        }
        Raw::Toml(other) => {
            return Err(format!(
                "expected [[collections]] tables (name = \"kv\", kind = \"map\"), found {}",
                toml_type(other)
            ))
        }
        Raw::Env(s) => s
            .split(',')
            .map(str::trim)
            .filter(|i| !i.is_empty())
            .map(|item| {
                let (name, kind) = item.split_once(':').unwrap_or((item, "map"));
                let kind = match kind {
                    "map" => CollectionKind::Map,
                    other => {
                        return Err(format!(
                            "{name:?}: kind {other:?}: only map can be declared"
                        ))
                    }
                };
                Ok(CollectionDecl {
                    name: name.to_string(),
                    kind,
                    voters: 3,
                })
            })
            .collect::<Result<_, String>>()?,
    };
    let mut seen = std::collections::BTreeSet::new();
    for d in &decls {
        d.check()?;
        if !seen.insert(d.name.clone()) {
            return Err(format!("collection {:?} is declared twice", d.name));
        }
    }
    Ok(decls)
}

fn guest_files(v: Raw<'_>) -> Result<BTreeMap<String, Sha384Digest>, String> {
    let entry = |name: &str, hash: Result<String, String>| {
        check_guest_file_name(name)?;
        let hash = hash.map_err(|problem| format!("{name:?}: {problem}"))?;
        let digest = hash
            .parse::<Sha384Digest>()
            .map_err(|problem| format!("{name:?}: {problem}"))?;
        Ok::<_, String>((name.to_string(), digest))
    };
    let mut files = BTreeMap::new();
    match v {
        Raw::Toml(toml::Value::Table(table)) => {
            for (name, value) in table {
                let (name, digest) = entry(name, string(Raw::Toml(value)))?;
                files.insert(name, digest);
            }
        }
        Raw::Toml(other) => {
            return Err(format!(
                "expected a table [guest.files] of file name = \"sha384 hex\", found {}",
                toml_type(other)
            ))
        }
        Raw::Env(s) => {
            for item in s.split(',').map(str::trim).filter(|i| !i.is_empty()) {
                let Some((name, hash)) = item.split_once('=') else {
                    return Err(format!(
                        "{item:?} is not name=sha384 (expected e.g. policy.json=<96 hex digits>)"
                    ));
                };
                let (name, digest) = entry(name.trim(), Ok(hash.trim().to_string()))?;
                if files.insert(name.clone(), digest).is_some() {
                    return Err(format!("{name:?} is listed twice"));
                }
            }
        }
    }
    check_guest_files(&files)?;
    Ok(files)
}

fn mode(v: Raw<'_>) -> Result<IdentityMode, String> {
    let s = string(v)?;
    match s.trim() {
        "tdx" => Ok(IdentityMode::Tdx),
        "dev" => Ok(IdentityMode::Dev),
        _ => Err(format!(
            "{s:?} is not an identity mode (expected \"tdx\" or \"dev\")"
        )),
    }
}

/// 1-based line and column (in characters) of byte offset `at` in `text`.
fn line_column(text: &str, at: usize) -> (usize, usize) {
    let at = at.min(text.len());
    let before = text.get(..at).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let column = before[line_start..].chars().count() + 1;
    (line, column)
}

impl NodeConfig {
    /// Parses a TOML document. Options it does not mention keep their defaults.
    pub fn from_toml_str(text: &str) -> Result<NodeConfig, ConfigError> {
        let table: toml::Table = toml::from_str(text).map_err(|e| {
            let (line, column) = e
                .span()
                .map_or((1, 1), |span| line_column(text, span.start));
            ConfigError::Syntax {
                line,
                column,
                message: e.message().trim().to_string(),
            }
        })?;
        let mut config = NodeConfig::default();
        for (name, value) in &table {
            if SECTIONS.contains(&name.as_str()) {
                let Some(section) = value.as_table() else {
                    return Err(ConfigError::Invalid {
                        key: name.clone(),
                        problem: format!("expected a table [{name}], found {}", toml_type(value)),
                    });
                };
                for (field, value) in section {
                    let key = format!("{name}.{field}");
                    if !KEYS.contains(&key.as_str()) {
                        return Err(ConfigError::UnknownKey {
                            expected: section_keys(name),
                            key,
                        });
                    }
                    config
                        .set(&key, Raw::Toml(value))
                        .map_err(|problem| ConfigError::Invalid { key, problem })?;
                }
            } else if KEYS.contains(&name.as_str()) {
                config
                    .set(name, Raw::Toml(value))
                    .map_err(|problem| ConfigError::Invalid {
                        key: name.clone(),
                        problem,
                    })?;
            } else {
                let mut expected: Vec<String> = KEYS
                    .iter()
                    .filter(|k| !k.contains('.'))
                    .map(|k| k.to_string())
                    .collect();
                expected.extend(SECTIONS.iter().map(|s| format!("[{s}]")));
                return Err(ConfigError::UnknownKey {
                    key: name.clone(),
                    expected: expected.join(", "),
                });
            }
        }
        Ok(config)
    }

    /// Reads and parses a TOML file. Errors inside the file carry its path.
    pub fn from_file(path: impl AsRef<Path>) -> Result<NodeConfig, ConfigError> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        NodeConfig::from_toml_str(&text).map_err(|e| ConfigError::File {
            path: path.to_path_buf(),
            source: Box::new(e),
        })
    }

    /// Applies `TESSELLA_*` variables from `vars` (other names are ignored).
    /// Refuses unknown `TESSELLA_*` names (except [`RESERVED_ENV`]) and values
    /// that do not parse. Takes the variables as a parameter so tests do not
    /// touch the process environment.
    pub fn apply_env<I, K, V>(&mut self, vars: I) -> Result<(), ConfigError>
    where
        I: IntoIterator<Item = (K, V)>,
        K: AsRef<str>,
        V: AsRef<str>,
    {
        for (var, value) in vars {
            let var = var.as_ref();
            if !var.starts_with(ENV_PREFIX) || RESERVED_ENV.contains(&var) {
                continue;
            }
            let Some(key) = KEYS.iter().find(|k| env_name(k) == var) else {
                return Err(ConfigError::UnknownEnv {
                    var: var.to_string(),
                });
            };
            self.set(key, Raw::Env(value.as_ref()))
                .map_err(|problem| ConfigError::InvalidEnv {
                    var: var.to_string(),
                    problem,
                })?;
        }
        Ok(())
    }

    /// [`NodeConfig::apply_env`] with the process environment.
    pub fn apply_process_env(&mut self) -> Result<(), ConfigError> {
        self.apply_env(NodeConfig::process_env()?)
    }

    /// The file at `path` (or the defaults when `None`), then the process
    /// environment, then [`NodeConfig::validate`].
    pub fn load(path: Option<&Path>) -> Result<NodeConfig, ConfigError> {
        let mut config = match path {
            Some(path) => NodeConfig::from_file(path)?,
            None => NodeConfig::default(),
        };
        config.apply_process_env()?;
        config.validate()?;
        Ok(config)
    }

    /// Parses the exact bytes of a config file (UTF-8 TOML); errors carry
    /// `origin`. The bytes are what [`crate::configid`] binds to MRCONFIGID.
    pub fn from_bytes(bytes: &[u8], origin: &Path) -> Result<NodeConfig, ConfigError> {
        let text = std::str::from_utf8(bytes).map_err(|_| ConfigError::NotUtf8 {
            path: origin.to_path_buf(),
        })?;
        NodeConfig::from_toml_str(text).map_err(|e| ConfigError::File {
            path: origin.to_path_buf(),
            source: Box::new(e),
        })
    }

    /// [`NodeConfig::from_bytes`], then the `TESSELLA_*` variables in `vars`,
    /// then [`NodeConfig::validate`]: how `run` and `init` load the config.
    /// When the file or the result is in TDX identity mode, any option
    /// variable is refused ([`ConfigError::EnvInTdxMode`]): what runs must be
    /// exactly the bytes bound to MRCONFIGID.
    pub fn load_bytes<I, K, V>(
        bytes: &[u8],
        origin: &Path,
        vars: I,
    ) -> Result<NodeConfig, ConfigError>
    where
        I: IntoIterator<Item = (K, V)>,
        K: AsRef<str>,
        V: AsRef<str>,
    {
        let mut config = NodeConfig::from_bytes(bytes, origin)?;
        let vars: Vec<(String, String)> = vars
            .into_iter()
            .map(|(k, v)| (k.as_ref().to_string(), v.as_ref().to_string()))
            .collect();
        let options: Vec<String> = vars
            .iter()
            .map(|(k, _)| k)
            .filter(|k| k.starts_with(ENV_PREFIX) && !RESERVED_ENV.contains(&k.as_str()))
            .cloned()
            .collect();
        let file_mode = config.identity.mode;
        config.apply_env(vars)?;
        if !options.is_empty()
            && (file_mode == IdentityMode::Tdx || config.identity.mode == IdentityMode::Tdx)
        {
            return Err(ConfigError::EnvInTdxMode { vars: options });
        }
        config.validate()?;
        Ok(config)
    }

    /// The process's `TESSELLA_*` variables, for [`NodeConfig::load_bytes`].
    pub fn process_env() -> Result<Vec<(String, String)>, ConfigError> {
        let mut vars = Vec::new();
        for (var, value) in std::env::vars_os() {
            let Some(var) = var.to_str() else { continue };
            if !var.starts_with(ENV_PREFIX) {
                continue;
            }
            let value = value.into_string().map_err(|_| ConfigError::InvalidEnv {
                var: var.to_string(),
                problem: "the value is not valid UTF-8".to_string(),
            })?;
            vars.push((var.to_string(), value));
        }
        Ok(vars)
    }

    /// Sets one option from a TOML value or an environment string.
    fn set(&mut self, key: &str, v: Raw<'_>) -> Result<(), String> {
        match key {
            "data_dir" => self.data_dir = PathBuf::from(string(v)?),
            "collections" => self.collections = collections(v)?,
            "network.name" => self.network.name = string(v)?,
            "network.listen" => self.network.listen = addr(v)?,
            "network.bootstrap" => self.network.bootstrap = addr_list(v)?,
            "network.tags" => self.network.tags = list(v)?,
            "identity.mode" => self.identity.mode = mode(v)?,
            "identity.cert_lifetime_secs" => self.identity.cert_lifetime_secs = uint(v)?,
            "policy.file" => self.policy.file = opt_path(v)?,
            "policy.collateral_dir" => self.policy.collateral_dir = opt_path(v)?,
            "tickets.ticket_file" => self.tickets.ticket_file = opt_path(v)?,
            "tickets.trusted_issuers_file" => self.tickets.trusted_issuers_file = opt_path(v)?,
            "tickets.leeway_secs" => self.tickets.leeway_secs = uint(v)?,
            "admin.enabled" => self.admin.enabled = boolean(v)?,
            "admin.listen" => self.admin.listen = addr(v)?,
            "limits.max_frame_bytes" => self.limits.max_frame_bytes = uint(v)?,
            "limits.max_peers" => self.limits.max_peers = uint(v)?,
            "limits.max_catalog" => self.limits.max_catalog = uint(v)?,
            "limits.queue_depth" => self.limits.queue_depth = uint(v)?,
            "discovery.gossip_interval_ms" => self.discovery.gossip_interval_ms = uint(v)?,
            "discovery.peer_ttl_secs" => self.discovery.peer_ttl_secs = uint(v)?,
            "guest.interface" => self.guest.interface = string(v)?,
            "guest.address" => self.guest.address = iface_address(v)?,
            "guest.gateway" => self.guest.gateway = opt_ip(v)?,
            "guest.modules_file" => self.guest.modules_file = PathBuf::from(string(v)?),
            "guest.link_timeout_ms" => self.guest.link_timeout_ms = uint(v)?,
            "guest.files" => self.guest.files = guest_files(v)?,
            // KEYS and this match are kept in step by a test.
            other => return Err(format!("{other} is not an option")),
        }
        Ok(())
    }

    /// Checks the rules that a single value cannot: required options per mode,
    /// ranges, and relations between options. Returns the first violation.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |key: &str, problem: String| {
            Err(ConfigError::Invalid {
                key: key.to_string(),
                problem,
            })
        };
        if self.data_dir.as_os_str().is_empty() {
            return invalid("data_dir", "must not be empty".into());
        }
        if self.network.name.trim().is_empty() {
            return invalid("network.name", "must not be empty".into());
        }
        for a in &self.network.bootstrap {
            if a.ip().is_unspecified() || a.port() == 0 {
                return invalid(
                    "network.bootstrap",
                    format!("{a} cannot be contacted: give a peer's ip and port"),
                );
            }
        }
        if let Some(i) = self.network.tags.iter().position(|t| t.trim().is_empty()) {
            return invalid("network.tags", format!("tag {i} is empty"));
        }
        if self.identity.mode == IdentityMode::Tdx && self.policy.file.is_none() {
            return invalid(
                "policy.file",
                "required when identity.mode is \"tdx\": set it to the measurement policy \
                 file, or choose identity.mode = \"dev\" for a development node"
                    .into(),
            );
        }
        let lifetime = self.identity.cert_lifetime_secs;
        if !(MIN_CERT_LIFETIME..=MAX_CERT_LIFETIME).contains(&lifetime) {
            return invalid(
                "identity.cert_lifetime_secs",
                format!(
                    "{lifetime} is out of range ({MIN_CERT_LIFETIME} to {MAX_CERT_LIFETIME} seconds)"
                ),
            );
        }
        if self.tickets.leeway_secs > MAX_LEEWAY {
            return invalid(
                "tickets.leeway_secs",
                format!(
                    "{} is more than {MAX_LEEWAY} seconds: fix the clocks instead",
                    self.tickets.leeway_secs
                ),
            );
        }
        let frame = self.limits.max_frame_bytes;
        if !(MIN_FRAME..=MAX_FRAME).contains(&frame) {
            return invalid(
                "limits.max_frame_bytes",
                format!("{frame} is out of range ({MIN_FRAME} to {MAX_FRAME} bytes)"),
            );
        }
        for (key, n) in [
            ("limits.max_peers", self.limits.max_peers),
            ("limits.max_catalog", self.limits.max_catalog),
            ("limits.queue_depth", self.limits.queue_depth),
        ] {
            if n == 0 {
                return invalid(key, "must be at least 1".into());
            }
        }
        let interval = self.discovery.gossip_interval_ms;
        if interval == 0 {
            return invalid("discovery.gossip_interval_ms", "must be at least 1".into());
        }
        let ttl_ms = u128::from(self.discovery.peer_ttl_secs) * 1000;
        if ttl_ms <= 2 * u128::from(interval) {
            return invalid(
                "discovery.peer_ttl_secs",
                format!(
                    "{} s must exceed two gossip intervals ({} ms), or live peers are purged",
                    self.discovery.peer_ttl_secs,
                    2 * u128::from(interval)
                ),
            );
        }
        self.validate_guest()
    }

    fn validate_guest(&self) -> Result<(), ConfigError> {
        let invalid = |key: &str, problem: String| {
            Err(ConfigError::Invalid {
                key: key.to_string(),
                problem,
            })
        };
        let g = &self.guest;
        let name = &g.interface;
        if name.is_empty()
            || name.len() > MAX_IFNAME
            || name == "."
            || name == ".."
            || name.contains(['/', ':'])
            || name.chars().any(|c| c.is_whitespace() || c.is_control())
        {
            return invalid(
                "guest.interface",
                format!(
                    "{name:?} is not an interface name (1 to {MAX_IFNAME} bytes, no '/', ':' or spaces)"
                ),
            );
        }
        if g.address.ip.is_unspecified() || g.address.ip.is_multicast() {
            return invalid(
                "guest.address",
                format!("{} cannot be an interface's address", g.address),
            );
        }
        if let Some(gw) = g.gateway {
            if gw.is_ipv4() != g.address.ip.is_ipv4() {
                return invalid(
                    "guest.gateway",
                    format!(
                        "{gw} is not of the same IP family as guest.address {}",
                        g.address
                    ),
                );
            }
            if gw.is_unspecified() || gw.is_multicast() {
                return invalid("guest.gateway", format!("{gw} cannot be a gateway"));
            }
        }
        if g.modules_file.as_os_str().is_empty() {
            return invalid("guest.modules_file", "must not be empty".into());
        }
        if !(1..=MAX_LINK_TIMEOUT_MS).contains(&g.link_timeout_ms) {
            return invalid(
                "guest.link_timeout_ms",
                format!(
                    "{} is out of range (1 to {MAX_LINK_TIMEOUT_MS} ms)",
                    g.link_timeout_ms
                ),
            );
        }
        if let Err(problem) = check_guest_files(&g.files) {
            return invalid("guest.files", problem);
        }
        Ok(())
    }

    /// What is allowed but risky, for the operator's log.
    pub fn warnings(&self) -> Vec<ConfigWarning> {
        let mut out = Vec::new();
        if self.admin.enabled && !self.admin.listen.ip().is_loopback() {
            out.push(ConfigWarning {
                key: "admin.listen",
                message: format!(
                    "{} is not a loopback address: the admin API is reachable from the network \
                     (it still requires an admin token)",
                    self.admin.listen
                ),
            });
        }
        match self.identity.mode {
            IdentityMode::Dev => out.push(ConfigWarning {
                key: "identity.mode",
                message: "dev: quotes are signed by the dev PKI, not by TDX hardware; never use \
                          this in production"
                    .to_string(),
            }),
            IdentityMode::Tdx => {
                if self.tickets.ticket_file.is_none() {
                    out.push(ConfigWarning {
                        key: "tickets.ticket_file",
                        message: "not set: peers will refuse to admit this node".to_string(),
                    });
                }
                if self.tickets.trusted_issuers_file.is_none() {
                    out.push(ConfigWarning {
                        key: "tickets.trusted_issuers_file",
                        message: "not set: this node will admit no peer".to_string(),
                    });
                }
            }
        }
        out
    }

    /// Where collateral lives: `policy.collateral_dir`, or `<data_dir>/collateral`.
    pub fn collateral_dir(&self) -> PathBuf {
        self.policy
            .collateral_dir
            .clone()
            .unwrap_or_else(|| self.data_dir.join("collateral"))
    }

    /// A complete, commented config file; every value in it is the default, so
    /// parsing it gives [`NodeConfig::default`].
    pub fn example_toml() -> &'static str {
        EXAMPLE_TOML
    }
}

/// The keys of one section, for "unknown key" messages.
fn section_keys(section: &str) -> String {
    let prefix = format!("{section}.");
    KEYS.iter()
        .filter_map(|k| k.strip_prefix(prefix.as_str()))
        .collect::<Vec<_>>()
        .join(", ")
}

const EXAMPLE_TOML: &str = r#"# tessella node configuration.
#
# Every value shown is the default; a missing option or section keeps it.
# Every option can also be set with an environment variable named
# TESSELLA_<SECTION>_<KEY> in upper case, which wins over this file:
#   TESSELLA_ADMIN_LISTEN=127.0.0.1:9000   TESSELLA_DATA_DIR=/srv/tessella
# Lists are comma-separated (TESSELLA_NETWORK_BOOTSTRAP=10.0.0.1:7946,10.0.0.2:7946);
# an empty value unsets an optional path. Unknown keys and unknown TESSELLA_*
# variables are errors.

# Where the node keeps its key and state: Raft logs, collections, collateral
# cache. In tdx mode it must be memory-backed (tmpfs or ramfs): the host can
# read every disk. A TD reboot is therefore a new node identity.
data_dir = "/run/tessella/data"

# Collections this node serves as a writer from start, as [[collections]]
# tables, e.g. [[collections]] name = "kv", kind = "map" (the env form is
# TESSELLA_COLLECTIONS=kv:map). Declared maps are key-value stores in the
# admin API (/v1/collections); the node's ticket needs "write" on each.
collections = []

[network]
# The network's name. Its id is bound into every quote and is the audience
# of every ticket: nodes of different networks never admit each other.
name = "tessella-dev"
# QUIC (UDP) address to listen on.
listen = "0.0.0.0:7946"
# Peers to contact first, as "ip:port"; discovery finds the others.
bootstrap = []
# Tag names this node advertises to its peers, e.g. ["gpu", "region-eu"].
tags = []

[identity]
# "tdx": the TLS identity is attested by a TDX quote (configfs-tsm) and peers
#        are verified against Intel's root. Production.
# "dev": quotes come from the dev PKI. Laptops and tests only.
mode = "tdx"
# Lifetime of the RA-TLS certificate in seconds (60 to 2592000); it is
# renewed at two thirds of its life.
cert_lifetime_secs = 86400

[policy]
# The measurement and TCB policy (JSON) peers must satisfy. Required when
# identity.mode = "tdx". In the appliance image, deliver it with
# [guest.files] below and name it "/run/tessella/policy.json".
# file = "/etc/tessella/policy.json"
# Directory of Intel collateral files. Default: <data_dir>/collateral.
# collateral_dir = "/run/tessella/data/collateral"

[tickets]
# This node's JWT ticket. Without one, peers refuse to admit this node.
# ticket_file = "/etc/tessella/ticket.jwt"
# JSON list of the ticket issuers this node trusts. Without one, this node
# admits no peer. In the appliance image: "/run/tessella/issuers.json", with
# [guest.files].
# trusted_issuers_file = "/etc/tessella/issuers.json"
# Clock skew tolerated on ticket times, in seconds (at most 300).
leeway_secs = 30

[admin]
# Serve the HTTP admin API (health, status, peers, metrics).
enabled = true
# Loopback by default. Any other address exposes the API to the network
# (every /v1 route still needs an admin token) and is logged as a warning.
listen = "127.0.0.1:7947"

[limits]
# Largest frame payload accepted or sent, in bytes (1024 to 16777216).
# Use the same value on every node of a network.
max_frame_bytes = 65536
# Most simultaneous peer connections.
max_peers = 256
# Most peers kept in the discovery catalog.
max_catalog = 10000
# Capacity of each internal queue and event channel.
queue_depth = 1024

[discovery]
# Failure-detector period, in milliseconds (one active peer probed per period).
gossip_interval_ms = 1000
# Lifetime of a peer record its owner does not renew, in seconds (owners renew
# at a quarter of it; must exceed two gossip intervals).
peer_ttl_secs = 3600

[guest]
# Used only when the node is the image's PID 1 (`tessella-node init`). The
# defaults fit QEMU user networking (-netdev user): guest 10.0.2.15/24,
# gateway 10.0.2.2. No DNS is configured; the node needs none.
# The interface to bring up with a static address.
interface = "eth0"
# Its address, as "ip/prefix".
address = "10.0.2.15/24"
# The default route's gateway; "" means no default route.
gateway = "10.0.2.2"
# Kernel modules to load, one path a line in load order; a line ending in
# " optional" may fail (logged).
modules_file = "/etc/tessella/modules"
# How long to wait for the interface to appear, in milliseconds (1 to 600000).
link_timeout_ms = 10000
# Deployment files the host passes through fw_cfg (launch-tdx.sh CONFIG FILE...
# gives FILE as opt/tessella/files/<its base name>). PID 1 checks each against
# the SHA-384 pinned here (the output of `sha384sum FILE`), writes it to
# /run/tessella/<name> and stops the boot if one is missing or differs. In tdx
# mode this config is bound to MRCONFIGID, so the pins bind the files too.
# Name the delivered paths above, e.g. policy.file = "/run/tessella/policy.json".
# At most 16 files of at most 1 MiB; names are 1 to 36 characters of
# A-Z a-z 0-9 . _ - (not "." or ".."). Default: none. `run` ignores this table.
# [guest.files]
# "policy.json" = "d60ce951a2fa0ce8b6638ec305e9d95505becdb9769c2aa150f68e275cc2460b3355acf478ffa7ec2355dcd5508f340f"
# "issuers.json" = "811c1b842c19f3607991bdf3b0ef507f35b9796211ade7bb8a55bb4b48ea5b02a4ef35d5abf1c7e80e40c651cf534b06"
"#;

#[cfg(test)]
mod tests {
    use super::*;

    fn dev() -> NodeConfig {
        let mut c = NodeConfig::default();
        c.identity.mode = IdentityMode::Dev;
        c
    }

    fn invalid_key(e: &ConfigError) -> &str {
        match e {
            ConfigError::Invalid { key, .. } => key,
            other => panic!("expected Invalid, got {other:?}"),
        }
    }

    #[test]
    fn defaults_are_production() {
        let c = NodeConfig::default();
        assert_eq!(c.identity.mode, IdentityMode::Tdx);
        assert!(c.admin.listen.ip().is_loopback());
        assert_eq!(c.network.name, "tessella-dev");
        assert_eq!(
            c.limits.max_frame_bytes as usize,
            crate::wire::DEFAULT_MAX_FRAME
        );
        // tdx without a policy file is refused.
        let e = c.validate().expect_err("no policy");
        assert_eq!(invalid_key(&e), "policy.file");
        assert!(e
            .to_string()
            .starts_with("policy.file: required when identity.mode is \"tdx\""));
        assert!(dev().validate().is_ok());
        let mut tdx = NodeConfig::default();
        tdx.policy.file = Some("/etc/tessella/policy.json".into());
        assert!(tdx.validate().is_ok());
    }

    #[test]
    fn example_parses_to_the_defaults() {
        let parsed = NodeConfig::from_toml_str(NodeConfig::example_toml()).expect("example");
        assert_eq!(parsed, NodeConfig::default());
        // serde's own derive agrees with the loader.
        let via_serde: NodeConfig = toml::from_str(NodeConfig::example_toml()).expect("serde");
        assert_eq!(via_serde, NodeConfig::default());
    }

    #[test]
    fn example_documents_every_key() {
        let example = NodeConfig::example_toml();
        for key in KEYS {
            let (section, name) = key.split_once('.').unwrap_or(("", key));
            if !section.is_empty() {
                assert!(example.contains(&format!("\n[{section}]\n")), "[{section}]");
            }
            // A table-valued key ([guest.files]) is documented by its header.
            let documented = example.lines().any(|l| {
                let l = l.trim_start_matches('#').trim();
                l.starts_with(&format!("{name} = ")) || l == format!("[{key}]")
            });
            assert!(documented, "{key} missing from the example");
        }
    }

    #[test]
    fn every_key_is_settable_and_serde_round_trips() {
        // Serialize a config with every option off its default and load it back
        // through the key-naming loader: KEYS, set() and the structs agree.
        let c = NodeConfig {
            data_dir: "/srv/t".into(),
            collections: vec![crate::collections::CollectionDecl {
                name: "kv".into(),
                kind: crate::collections::CollectionKind::Map,
                voters: 3,
            }],
            network: NetworkConfig {
                name: "prod".into(),
                listen: "10.0.0.1:9000".parse().expect("addr"),
                bootstrap: vec!["10.0.0.2:9000".parse().expect("addr")],
                tags: vec!["gpu".into()],
            },
            identity: IdentityConfig {
                mode: IdentityMode::Dev,
                cert_lifetime_secs: 3600,
            },
            policy: PolicyConfig {
                file: Some("/p.json".into()),
                collateral_dir: Some("/c".into()),
            },
            tickets: TicketsConfig {
                ticket_file: Some("/t.jwt".into()),
                trusted_issuers_file: Some("/i.json".into()),
                leeway_secs: 5,
            },
            admin: AdminConfig {
                enabled: false,
                listen: "[::1]:8000".parse().expect("addr"),
            },
            limits: LimitsConfig {
                max_frame_bytes: 4096,
                max_peers: 3,
                max_catalog: 4,
                queue_depth: 5,
            },
            discovery: DiscoveryConfig {
                gossip_interval_ms: 100,
                peer_ttl_secs: 7,
            },
            guest: GuestConfig {
                interface: "ens3".into(),
                address: "192.168.1.5/16".parse().expect("cidr"),
                gateway: Some("192.168.0.1".parse().expect("ip")),
                modules_file: "/m".into(),
                link_timeout_ms: 250,
                files: BTreeMap::from([("p.json".to_string(), Sha384Digest([0xab; 48]))]),
            },
        };
        let text = toml::to_string(&c).expect("serialize");
        assert_eq!(NodeConfig::from_toml_str(&text).expect("parse"), c);
        let count = text.lines().filter(|l| l.contains(" = ")).count();
        // `collections` is one key written as a table of three lines.
        assert_eq!(count, KEYS.len() + 2, "every key was serialized:\n{text}");
        // And every key through the environment.
        let mut from_env = NodeConfig::default();
        from_env
            .apply_env([
                ("TESSELLA_DATA_DIR", "/srv/t"),
                ("TESSELLA_COLLECTIONS", "kv:map"),
                ("TESSELLA_NETWORK_NAME", "prod"),
                ("TESSELLA_NETWORK_LISTEN", "10.0.0.1:9000"),
                ("TESSELLA_NETWORK_BOOTSTRAP", "10.0.0.2:9000"),
                ("TESSELLA_NETWORK_TAGS", "gpu"),
                ("TESSELLA_IDENTITY_MODE", "dev"),
                ("TESSELLA_IDENTITY_CERT_LIFETIME_SECS", "3600"),
                ("TESSELLA_POLICY_FILE", "/p.json"),
                ("TESSELLA_POLICY_COLLATERAL_DIR", "/c"),
                ("TESSELLA_TICKETS_TICKET_FILE", "/t.jwt"),
                ("TESSELLA_TICKETS_TRUSTED_ISSUERS_FILE", "/i.json"),
                ("TESSELLA_TICKETS_LEEWAY_SECS", "5"),
                ("TESSELLA_ADMIN_ENABLED", "false"),
                ("TESSELLA_ADMIN_LISTEN", "[::1]:8000"),
                ("TESSELLA_LIMITS_MAX_FRAME_BYTES", "4096"),
                ("TESSELLA_LIMITS_MAX_PEERS", "3"),
                ("TESSELLA_LIMITS_MAX_CATALOG", "4"),
                ("TESSELLA_LIMITS_QUEUE_DEPTH", "5"),
                ("TESSELLA_DISCOVERY_GOSSIP_INTERVAL_MS", "100"),
                ("TESSELLA_DISCOVERY_PEER_TTL_SECS", "7"),
                ("TESSELLA_GUEST_INTERFACE", "ens3"),
                ("TESSELLA_GUEST_ADDRESS", "192.168.1.5/16"),
                ("TESSELLA_GUEST_GATEWAY", "192.168.0.1"),
                ("TESSELLA_GUEST_MODULES_FILE", "/m"),
                ("TESSELLA_GUEST_LINK_TIMEOUT_MS", "250"),
                (
                    "TESSELLA_GUEST_FILES",
                    &format!("p.json={}", "AB".repeat(48)),
                ),
            ])
            .expect("env");
        assert_eq!(from_env, c);
    }

    #[test]
    fn partial_file_keeps_defaults() {
        let c = NodeConfig::from_toml_str(
            "[network]\nname = \"prod\"\nbootstrap = [\"10.0.0.1:7946\", \"[fd00::1]:7946\"]\n",
        )
        .expect("parse");
        assert_eq!(c.network.name, "prod");
        assert_eq!(c.network.bootstrap.len(), 2);
        assert_eq!(c.admin, AdminConfig::default());
        assert_eq!(
            NodeConfig::from_toml_str("").expect("empty"),
            NodeConfig::default()
        );
        // Dotted keys and inline tables are the same TOML.
        let dotted = NodeConfig::from_toml_str("admin.enabled = false").expect("dotted");
        assert!(!dotted.admin.enabled);
    }

    #[test]
    fn syntax_errors_have_line_and_column() {
        let e = NodeConfig::from_toml_str("[network]\nname = \"x\"\nlisten = = 3\n")
            .expect_err("syntax");
        match &e {
            ConfigError::Syntax { line, column, .. } => {
                assert_eq!(*line, 3);
                assert_eq!(*column, 10);
            }
            other => panic!("{other:?}"),
        }
        assert!(
            e.to_string()
                .starts_with("TOML syntax error at line 3, column 10: "),
            "{e}"
        );
        // Duplicate keys are syntax errors too.
        let e = NodeConfig::from_toml_str("data_dir = \"a\"\ndata_dir = \"b\"\n").expect_err("dup");
        assert!(matches!(e, ConfigError::Syntax { line: 2, .. }), "{e}");
    }

    #[test]
    fn unknown_keys_are_named() {
        let e = NodeConfig::from_toml_str("[network]\nnme = \"x\"\n").expect_err("typo");
        assert_eq!(
            e.to_string(),
            "unknown key network.nme (expected one of: name, listen, bootstrap, tags)"
        );
        let e = NodeConfig::from_toml_str("[netwrk]\nname = \"x\"\n").expect_err("section");
        assert!(
            e.to_string().starts_with(
                "unknown key netwrk (expected one of: data_dir, collections, [network]"
            ),
            "{e}"
        );
        let e = NodeConfig::from_toml_str("network = 5\n").expect_err("not a table");
        assert_eq!(
            e.to_string(),
            "network: expected a table [network], found the integer 5"
        );
        let e = NodeConfig::from_toml_str("[admin.tls]\nx = 1\n").expect_err("nested");
        assert!(matches!(e, ConfigError::UnknownKey { ref key, .. } if key == "admin.tls"));
    }

    #[test]
    fn bad_values_are_named() {
        let cases = [
            (
                "[admin]\nlisten = \"abc\"\n",
                "admin.listen: \"abc\" is not a socket address (expected ip:port, e.g. \"127.0.0.1:7947\" or \"[::1]:7947\")",
            ),
            ("[admin]\nlisten = 7947\n", "admin.listen: expected a string, found the integer 7947"),
            ("[admin]\nenabled = \"yes\"\n", "admin.enabled: expected true or false, found the string \"yes\""),
            ("[limits]\nmax_peers = -1\n", "limits.max_peers: -1 is out of range (0 to 18446744073709551615)"),
            ("[limits]\nmax_frame_bytes = 5000000000\n", "limits.max_frame_bytes: 5000000000 is out of range (0 to 4294967295)"),
            ("[limits]\nqueue_depth = 1.5\n", "limits.queue_depth: expected a number, found the float 1.5"),
            ("[identity]\nmode = \"sgx\"\n", "identity.mode: \"sgx\" is not an identity mode (expected \"tdx\" or \"dev\")"),
            ("[network]\nbootstrap = \"10.0.0.1:7946\"\n", "network.bootstrap: expected an array of strings, found the string \"10.0.0.1:7946\""),
            ("[network]\nbootstrap = [\"10.0.0.1\"]\n", "network.bootstrap: \"10.0.0.1\" is not a socket address (expected ip:port, e.g. \"127.0.0.1:7947\" or \"[::1]:7947\")"),
            ("[network]\ntags = [\"a\", 2]\n", "network.tags: item 1: expected a string, found the integer 2"),
        ];
        for (text, message) in cases {
            let e = NodeConfig::from_toml_str(text).expect_err(text);
            assert!(matches!(e, ConfigError::Invalid { .. }), "{e:?}");
            assert_eq!(e.to_string(), message);
        }
    }

    #[test]
    fn env_overrides_and_errors() {
        let mut c = dev();
        c.apply_env([
            ("TESSELLA_ADMIN_LISTEN", "127.0.0.1:9000"),
            (
                "TESSELLA_NETWORK_BOOTSTRAP",
                " 10.0.0.1:7946, 10.0.0.2:7946 ,",
            ),
            ("TESSELLA_NETWORK_TAGS", ""),
            ("TESSELLA_CONFIG", "/etc/tessella/node.toml"),
            ("TESSELLA_IMAGE_CACHE", "/var/cache/tessella-image"),
            ("TESSELLA_TIME_SCALE", "3"),
            ("PATH", "/usr/bin"),
            ("HOME", "/root"),
        ])
        .expect("env");
        assert_eq!(c.admin.listen.port(), 9000);
        assert_eq!(c.network.bootstrap.len(), 2);
        assert!(c.network.tags.is_empty());

        // An empty value unsets an optional path.
        c.policy.file = Some("/p.json".into());
        c.apply_env([("TESSELLA_POLICY_FILE", "")]).expect("unset");
        assert_eq!(c.policy.file, None);

        let e = c
            .apply_env([("TESSELLA_LIMITS_MAX_PEERS", "x")])
            .expect_err("nan");
        assert_eq!(
            e.to_string(),
            "TESSELLA_LIMITS_MAX_PEERS: \"x\" is not a number"
        );
        let e = c
            .apply_env([("TESSELLA_LIMITS_MAX_FRAME_BYTES", "-5")])
            .expect_err("negative");
        assert_eq!(
            e.to_string(),
            "TESSELLA_LIMITS_MAX_FRAME_BYTES: -5 is out of range (0 to 4294967295)"
        );
        let e = c
            .apply_env([("TESSELLA_ADMIN_ENABLED", "maybe")])
            .expect_err("bool");
        assert_eq!(
            e.to_string(),
            "TESSELLA_ADMIN_ENABLED: \"maybe\" is not a boolean (expected true or false)"
        );
        let e = c
            .apply_env([("TESSELLA_ADMIN_LISTN", "127.0.0.1:1")])
            .expect_err("unknown");
        assert!(matches!(e, ConfigError::UnknownEnv { ref var } if var == "TESSELLA_ADMIN_LISTN"));
        assert!(e
            .to_string()
            .starts_with("unknown environment variable TESSELLA_ADMIN_LISTN"));
        // The section-only name is not an option either.
        assert!(c.apply_env([("TESSELLA_ADMIN", "x")]).is_err());
        assert_eq!(env_name("limits.max_peers"), "TESSELLA_LIMITS_MAX_PEERS");
        assert_eq!(env_name("data_dir"), "TESSELLA_DATA_DIR");
    }

    #[test]
    fn validation_names_the_key() {
        let check = |f: &dyn Fn(&mut NodeConfig), key: &str| {
            let mut c = dev();
            f(&mut c);
            let e = c.validate().expect_err(key);
            assert_eq!(invalid_key(&e), key, "{e}");
            assert!(e.to_string().starts_with(&format!("{key}: ")), "{e}");
        };
        check(&|c| c.network.name = " ".into(), "network.name");
        check(&|c| c.data_dir = PathBuf::new(), "data_dir");
        check(
            &|c| c.network.bootstrap = vec!["0.0.0.0:7946".parse().expect("addr")],
            "network.bootstrap",
        );
        check(&|c| c.network.tags = vec!["".into()], "network.tags");
        check(
            &|c| c.identity.cert_lifetime_secs = 10,
            "identity.cert_lifetime_secs",
        );
        check(&|c| c.tickets.leeway_secs = 3600, "tickets.leeway_secs");
        check(
            &|c| c.limits.max_frame_bytes = 100,
            "limits.max_frame_bytes",
        );
        check(
            &|c| c.limits.max_frame_bytes = u32::MAX,
            "limits.max_frame_bytes",
        );
        check(&|c| c.limits.max_peers = 0, "limits.max_peers");
        check(&|c| c.limits.max_catalog = 0, "limits.max_catalog");
        check(&|c| c.limits.queue_depth = 0, "limits.queue_depth");
        check(
            &|c| c.discovery.gossip_interval_ms = 0,
            "discovery.gossip_interval_ms",
        );
        check(
            &|c| {
                c.discovery.gossip_interval_ms = 20_000;
                c.discovery.peer_ttl_secs = 30;
            },
            "discovery.peer_ttl_secs",
        );
    }

    #[test]
    fn warnings_flag_risky_choices() {
        let mut c = NodeConfig::default();
        c.policy.file = Some("/p.json".into());
        let keys: Vec<_> = c.warnings().iter().map(|w| w.key).collect();
        assert_eq!(
            keys,
            ["tickets.ticket_file", "tickets.trusted_issuers_file"]
        );

        c.tickets.ticket_file = Some("/t".into());
        c.tickets.trusted_issuers_file = Some("/i".into());
        assert!(c.warnings().is_empty());

        c.admin.listen = "0.0.0.0:7947".parse().expect("addr");
        assert!(c.validate().is_ok(), "non-loopback admin is allowed");
        let w = c.warnings();
        assert_eq!(w.len(), 1);
        assert!(w[0]
            .to_string()
            .starts_with("admin.listen: 0.0.0.0:7947 is not a loopback address"));
        c.admin.enabled = false;
        assert!(c.warnings().is_empty(), "a disabled API is not exposed");

        let w = dev().warnings();
        assert_eq!(w.len(), 1);
        assert_eq!(w[0].key, "identity.mode");
    }

    #[test]
    fn files_and_paths() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("node.toml");
        std::fs::write(&path, "[identity]\nmode = \"dev\"\n").expect("write");
        let c = NodeConfig::from_file(&path).expect("load");
        assert_eq!(c.identity.mode, IdentityMode::Dev);
        assert_eq!(
            c.collateral_dir(),
            PathBuf::from("/run/tessella/data/collateral")
        );

        std::fs::write(&path, "[limits]\nmax_peers = \"many\"\n").expect("write");
        let e = NodeConfig::from_file(&path).expect_err("bad");
        assert_eq!(
            e.to_string(),
            format!(
                "{}: limits.max_peers: expected a number, found the string \"many\"",
                path.display()
            )
        );
        let missing = dir.path().join("missing.toml");
        let e = NodeConfig::from_file(&missing).expect_err("missing");
        assert!(matches!(e, ConfigError::Read { .. }));
        assert!(e.to_string().starts_with("cannot read config file "), "{e}");
    }

    #[test]
    fn guest_section() {
        // The defaults are QEMU user networking's (QEMU docs: guest 10.0.2.15,
        // gateway 10.0.2.2 on 10.0.2.0/24).
        let g = GuestConfig::default();
        assert_eq!(g.interface, "eth0");
        assert_eq!(g.address.to_string(), "10.0.2.15/24");
        assert_eq!(g.gateway, Some("10.0.2.2".parse().expect("ip")));
        assert_eq!(g.link_timeout(), Duration::from_secs(10));

        let c = NodeConfig::from_toml_str(
            "[guest]\ninterface = \"ens4\"\naddress = \"fd00::5/64\"\ngateway = \"\"\n",
        )
        .expect("parse");
        assert_eq!(c.guest.interface, "ens4");
        assert_eq!(c.guest.address.prefix, 64);
        assert_eq!(
            c.guest.gateway, None,
            "an empty gateway means no default route"
        );
        assert!(dev_with(&c).validate().is_ok());

        let e = NodeConfig::from_toml_str("[guest]\nadress = \"10.0.0.1/8\"\n").expect_err("typo");
        assert_eq!(
            e.to_string(),
            "unknown key guest.adress (expected one of: interface, address, gateway, modules_file, link_timeout_ms, files)"
        );
        for (text, message) in [
            ("[guest]\naddress = \"10.0.2.15\"\n", "guest.address: \"10.0.2.15\" is not an address with a prefix (expected ip/prefix, e.g. \"10.0.2.15/24\")"),
            ("[guest]\naddress = \"10.0.2.15/33\"\n", "guest.address: \"10.0.2.15/33\": prefix /33 is longer than 32"),
            ("[guest]\ngateway = \"gw\"\n", "guest.gateway: \"gw\" is not an IP address (expected e.g. \"10.0.2.2\")"),
            ("[guest]\nlink_timeout_ms = -1\n", "guest.link_timeout_ms: -1 is out of range (0 to 18446744073709551615)"),
        ] {
            let e = NodeConfig::from_toml_str(text).expect_err(text);
            assert_eq!(e.to_string(), message);
        }

        let check = |f: &dyn Fn(&mut NodeConfig), key: &str| {
            let mut c = dev();
            f(&mut c);
            let e = c.validate().expect_err(key);
            assert_eq!(invalid_key(&e), key, "{e}");
        };
        check(&|c| c.guest.interface = String::new(), "guest.interface");
        check(
            &|c| c.guest.interface = "a-very-long-name0".into(),
            "guest.interface",
        );
        check(&|c| c.guest.interface = "../x".into(), "guest.interface");
        check(
            &|c| c.guest.address = "0.0.0.0/0".parse().expect("cidr"),
            "guest.address",
        );
        check(
            &|c| c.guest.gateway = Some("fd00::1".parse().expect("ip")),
            "guest.gateway",
        );
        check(
            &|c| c.guest.modules_file = PathBuf::new(),
            "guest.modules_file",
        );
        check(&|c| c.guest.link_timeout_ms = 0, "guest.link_timeout_ms");
        check(
            &|c| c.guest.link_timeout_ms = 600_001,
            "guest.link_timeout_ms",
        );
    }

    #[test]
    fn guest_files() {
        // The commented example in example-config parses once uncommented.
        let example = NodeConfig::example_toml();
        let start = example.find("# [guest.files]\n").expect("example block");
        let block: String = example[start..]
            .lines()
            .map(|l| l.trim_start_matches("# "))
            .collect::<Vec<_>>()
            .join("\n");
        let c = NodeConfig::from_toml_str(&block).expect("uncommented example");
        assert_eq!(
            c.guest.files.keys().collect::<Vec<_>>(),
            ["issuers.json", "policy.json"]
        );

        // Upper or lower case hex; printed in lower case. The pin of "abc" is
        // FIPS 180-2's SHA-384 example (appendix D.1), an independent value.
        let abc = "cb00753f45a35e8bb5a03d699ac65007272c32ab0eded1631a8b605a43ff5bed\
                   8086072ba1e7cc2358baeca134c825a7";
        assert_eq!(Sha384Digest::of(b"abc").to_string(), abc);
        let text = format!(
            "[guest.files]\n\"policy.json\" = \"{}\"\nissuers_v2-x = \"{abc}\"\n",
            abc.to_ascii_uppercase()
        );
        let c = NodeConfig::from_toml_str(&text).expect("files");
        assert_eq!(c.guest.files.len(), 2);
        assert_eq!(c.guest.files["policy.json"], Sha384Digest::of(b"abc"));
        assert_eq!(c.guest.files["issuers_v2-x"].to_string(), abc);
        assert!(dev_with(&c).validate().is_ok());
        // The dotted form is the same TOML.
        let dotted = format!("guest.files.\"a.json\" = \"{abc}\"\n");
        let c = NodeConfig::from_toml_str(&dotted).expect("dotted");
        assert_eq!(c.guest.files.len(), 1);

        let long = "n".repeat(MAX_GUEST_FILE_NAME);
        let too_long = "n".repeat(MAX_GUEST_FILE_NAME + 1);
        assert!(check_guest_file_name(&long).is_ok());
        for bad in [
            "",
            ".",
            "..",
            "a/b",
            "a b",
            "a,b",
            "é.json",
            "x=y",
            too_long.as_str(),
        ] {
            assert!(check_guest_file_name(bad).is_err(), "{bad:?}");
        }
        for (text, message) in [
            (
                format!("[guest.files]\n\"../p\" = \"{abc}\"\n"),
                "guest.files: \"../p\" is not a file name (1 to 36 characters of A-Z a-z 0-9 . _ -, not \".\" or \"..\")".to_string(),
            ),
            (
                "[guest.files]\n\"p.json\" = \"abc\"\n".to_string(),
                "guest.files: \"p.json\": \"abc\" is not a SHA-384 digest (expected 96 hex digits, as printed by sha384sum)".to_string(),
            ),
            (
                format!("[guest.files]\n\"p.json\" = \"{}zz\"\n", &abc[2..]),
                format!("guest.files: \"p.json\": \"{}zz\" is not a SHA-384 digest (expected 96 hex digits, as printed by sha384sum)", &abc[2..]),
            ),
            (
                "[guest.files]\n\"p.json\" = 5\n".to_string(),
                "guest.files: \"p.json\": expected a string, found the integer 5".to_string(),
            ),
            (
                "[guest]\nfiles = [\"p.json\"]\n".to_string(),
                "guest.files: expected a table [guest.files] of file name = \"sha384 hex\", found an array".to_string(),
            ),
        ] {
            let e = NodeConfig::from_toml_str(&text).expect_err(&text);
            assert!(matches!(e, ConfigError::Invalid { ref key, .. } if key == "guest.files"), "{e:?}");
            assert_eq!(e.to_string(), message);
        }
        // At most MAX_GUEST_FILES.
        let mut many = String::from("[guest.files]\n");
        for i in 0..=MAX_GUEST_FILES {
            many.push_str(&format!("f{i} = \"{abc}\"\n"));
        }
        let e = NodeConfig::from_toml_str(&many).expect_err("too many");
        assert_eq!(
            e.to_string(),
            "guest.files: 17 files, at most 16 are allowed"
        );
        // validate() holds the same rules for configs built in code or by serde.
        let mut c = dev();
        c.guest.files.insert("a/b".into(), Sha384Digest([0; 48]));
        assert_eq!(invalid_key(&c.validate().expect_err("name")), "guest.files");
        let via_serde: Result<NodeConfig, _> =
            toml::from_str(&format!("[guest.files]\n\"p.json\" = \"{}\"\n", &abc[1..]));
        assert!(via_serde.is_err(), "serde checks the digest too");

        // The environment: name=hex pairs, comma-separated; empty means none.
        let mut c = dev();
        c.apply_env([("TESSELLA_GUEST_FILES", format!(" a.json={abc} , b={abc},"))])
            .expect("env");
        assert_eq!(c.guest.files.len(), 2);
        c.apply_env([("TESSELLA_GUEST_FILES", "")]).expect("empty");
        assert!(c.guest.files.is_empty());
        for (value, problem) in [
            ("a.json".to_string(), "\"a.json\" is not name=sha384"),
            (format!("a={abc},a={abc}"), "\"a\" is listed twice"),
            (format!("../a={abc}"), "\"../a\" is not a file name"),
        ] {
            let e = c
                .apply_env([("TESSELLA_GUEST_FILES", value.as_str())])
                .expect_err(&value);
            assert!(
                e.to_string()
                    .starts_with(&format!("TESSELLA_GUEST_FILES: {problem}")),
                "{e}"
            );
        }
    }

    fn dev_with(c: &NodeConfig) -> NodeConfig {
        let mut c = c.clone();
        c.identity.mode = IdentityMode::Dev;
        c
    }

    #[test]
    fn guest_dev_example_parses() {
        // The example an image embeds for a single dev node in a QEMU guest.
        let text = include_str!("../examples/guest-dev.toml");
        let c = NodeConfig::from_toml_str(text).expect("guest-dev.toml");
        c.validate().expect("valid");
        assert_eq!(c.identity.mode, IdentityMode::Dev);
        assert!(c.admin.enabled);
        // Reachable through QEMU's hostfwd: every guest address, not loopback.
        assert!(c.admin.listen.ip().is_unspecified(), "{}", c.admin.listen);
        assert!(c.network.listen.ip().is_unspecified());
        assert_eq!(c.guest, GuestConfig::default());
    }

    #[test]
    fn bytes_env_and_tdx_binding() {
        let origin = Path::new("fw_cfg");
        let dev_text = b"[identity]\nmode = \"dev\"\n";
        let c = NodeConfig::load_bytes(dev_text, origin, [("TESSELLA_ADMIN_LISTEN", "0.0.0.0:1")])
            .expect("dev takes env");
        assert_eq!(c.admin.listen.port(), 1);
        let tdx_text = b"[policy]\nfile = \"/p.json\"\n";
        let c =
            NodeConfig::load_bytes(tdx_text, origin, [("TESSELLA_CONFIG", "/x"), ("HOME", "/")])
                .expect("tdx without options");
        assert_eq!(c.identity.mode, IdentityMode::Tdx);
        let e = NodeConfig::load_bytes(tdx_text, origin, [("TESSELLA_ADMIN_LISTEN", "0.0.0.0:1")])
            .expect_err("tdx refuses env");
        assert!(
            matches!(e, ConfigError::EnvInTdxMode { ref vars } if vars == &["TESSELLA_ADMIN_LISTEN"])
        );
        assert!(
            e.to_string()
                .starts_with("TESSELLA_ADMIN_LISTEN: identity.mode \"tdx\" binds"),
            "{e}"
        );
        // Switching a TDX file to dev (or dev to TDX) through the environment is refused too.
        let e = NodeConfig::load_bytes(tdx_text, origin, [("TESSELLA_IDENTITY_MODE", "dev")])
            .expect_err("tdx file");
        assert!(matches!(e, ConfigError::EnvInTdxMode { .. }));
        let e = NodeConfig::load_bytes(
            dev_text,
            origin,
            [
                ("TESSELLA_IDENTITY_MODE", "tdx"),
                ("TESSELLA_POLICY_FILE", "/p.json"),
            ],
        )
        .expect_err("to tdx");
        assert!(matches!(e, ConfigError::EnvInTdxMode { .. }));
        // Bad bytes name the origin.
        let e = NodeConfig::load_bytes(&[0xff, 0xfe], origin, Vec::<(String, String)>::new())
            .expect_err("utf-8");
        assert_eq!(e.to_string(), "fw_cfg: not UTF-8 text");
        let e = NodeConfig::load_bytes(b"nope = 1\n", origin, Vec::<(String, String)>::new())
            .expect_err("key");
        assert!(e.to_string().starts_with("fw_cfg: unknown key nope"), "{e}");
    }

    #[test]
    fn durations() {
        let c = NodeConfig::default();
        assert_eq!(c.discovery.gossip_interval(), Duration::from_secs(1));
        assert_eq!(c.discovery.peer_ttl(), Duration::from_secs(3600));
        assert_eq!(c.identity.cert_lifetime(), Duration::from_secs(86_400));
    }
}

//! A node from its configuration: what `tessella-node run` and PID 1
//! (`init`) start.
//!
//! [`start`] maps a loaded [`NodeConfig`] to a [`NodeSpec`] (identity,
//! MRCONFIGID binding, policy, collateral, trusted issuers, the node's
//! ticket, transport limits, discovery, admin API, collections) and starts
//! it through [`Node::start`], the one assembly `dev` and the test kit use
//! too. The binary only parses arguments and waits for a stop signal.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use tessella_attestation::clock::{Clock, SystemClock};
use tessella_attestation::dev::{DevPki, DevPkiError, DevTd};
use tessella_attestation::provider::ConfigfsTsm;
use tessella_attestation::{
    CollateralStore, Policy, PolicyError, QuoteProvider, TicketError, TicketIssuer, TrustedIssuer,
};

use crate::config::{IdentityMode, NodeConfig};
use crate::configid::{self, ConfigBindingError};
use crate::devnet::{dev_policy, DevOptions, DEV_TD_NAME};
use crate::discovery::DiscoveryOptions;
use crate::id::Tag;
use crate::network::{Identity, Limits, TicketSource};
use crate::node::{Node, NodeError, NodeSpec};
use crate::pid1;

/// Who starts the node: `run` (production only) or PID 1 (`init`, where a
/// dev-mode config is allowed for dev images).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Launch {
    /// `tessella-node run`: a TD, never dev mode.
    Run,
    /// PID 1 of the appliance image (`tessella-node init`).
    Init,
}

impl Launch {
    /// A progress line: the console for PID 1, the log for `run`.
    pub fn say(self, line: &str) {
        match self {
            // PID 1 must not die of a failed console write (eprintln! panics).
            Launch::Init => {
                let _ = writeln!(std::io::stderr(), "{}{line}", pid1::CONSOLE_PREFIX);
            }
            Launch::Run => tracing::info!("{line}"),
        }
    }
}

/// Why a node could not be started from its config.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LaunchError {
    /// `run` is production: it needs a TD.
    #[error(
        "identity.mode = \"dev\" is for `tessella-node dev`; `run` is production and needs a TD"
    )]
    DevModeInRun,
    /// The config is not the one the TD was launched for.
    #[error(transparent)]
    ConfigBinding(#[from] ConfigBindingError),
    /// The MRCONFIGID check did not finish.
    #[error("the MRCONFIGID check stopped: {0}")]
    CheckStopped(String),
    /// The dev PKI of a dev boot could not be made.
    #[error("dev PKI: {0}")]
    DevPki(#[from] DevPkiError),
    /// A TDX config without a measurement policy.
    #[error("policy.file is required")]
    PolicyRequired,
    /// The measurement policy file is unreadable or invalid.
    #[error("policy.file {}: {source}", path.display())]
    Policy {
        /// The file.
        path: PathBuf,
        /// Why.
        source: PolicyError,
    },
    /// A TDX config without trusted issuers.
    #[error("tickets.trusted_issuers_file is required")]
    IssuersRequired,
    /// A file the config names cannot be read.
    #[error("{key} {}: {source}", path.display())]
    Read {
        /// The config key naming the file.
        key: &'static str,
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The trusted issuers file is not a JSON list of issuers.
    #[error("tickets.trusted_issuers_file {}: not a JSON list of issuers: {source}", path.display())]
    Issuers {
        /// The file.
        path: PathBuf,
        /// Why.
        source: serde_json::Error,
    },
    /// The dev boot's ticket issuer could not be made.
    #[error("dev ticket issuer: {0}")]
    DevIssuer(#[from] TicketError),
    /// The node did not start.
    #[error("starting the node: {0}")]
    Start(#[from] NodeError),
}

/// The operator id of the dev boot's admin ticket (as `tessella-node dev`'s).
fn dev_operator_id() -> String {
    hex::encode(blake3::derive_key("tessella dev operator v1", b"admin"))
}

fn read(key: &'static str, path: &Path) -> Result<Vec<u8>, LaunchError> {
    std::fs::read(path).map_err(|source| LaunchError::Read {
        key,
        path: path.to_path_buf(),
        source,
    })
}

/// The transport bounds a config sets.
pub fn limits(config: &NodeConfig) -> Limits {
    Limits {
        max_frame: config.limits.max_frame_bytes as usize,
        max_peers: config.limits.max_peers,
        max_catalog: config.limits.max_catalog,
        event_queue: config.limits.queue_depth,
        ..Limits::default()
    }
}

/// The discovery settings a config sets.
pub fn discovery(config: &NodeConfig) -> DiscoveryOptions {
    DiscoveryOptions {
        tags: config
            .network
            .tags
            .iter()
            .map(|t| Tag::from_name(t))
            .collect(),
        interval: config.discovery.gossip_interval(),
        peer_ttl: config.discovery.peer_ttl(),
        max_catalog: config.limits.max_catalog,
        event_queue: config.limits.queue_depth,
        ..DiscoveryOptions::default()
    }
}

/// The identity a config asks for. In TDX mode the config's exact bytes
/// must be the TD's MRCONFIGID, checked before the node shows its quote to
/// anyone.
async fn identity(
    config: &NodeConfig,
    config_bytes: &Arc<Vec<u8>>,
    launch: Launch,
) -> Result<Identity, LaunchError> {
    match (config.identity.mode, launch) {
        (IdentityMode::Tdx, _) => {
            let provider = Arc::new(ConfigfsTsm::new());
            let binding = {
                let provider: Arc<dyn QuoteProvider> = provider.clone();
                let bytes = config_bytes.clone();
                tokio::task::spawn_blocking(move || {
                    configid::check_provider(&bytes, provider.as_ref())
                })
                .await
                .map_err(|e| LaunchError::CheckStopped(e.to_string()))??
            };
            launch.say(&format!("config bound to MRCONFIGID {binding}"));
            Ok(Identity::Tdx(provider))
        }
        (IdentityMode::Dev, Launch::Run) => Err(LaunchError::DevModeInRun),
        (IdentityMode::Dev, Launch::Init) => {
            launch.say("dev boot: config not bound to MRCONFIGID");
            let pki = DevPki::generate(DevOptions::default().seed.as_bytes())?;
            Ok(Identity::Dev {
                pki: Arc::new(pki),
                td: Box::new(DevTd::named(DEV_TD_NAME)),
            })
        }
    }
}

fn policy(config: &NodeConfig) -> Result<Policy, LaunchError> {
    match (&config.policy.file, config.identity.mode) {
        (Some(path), _) => {
            let (policy, notes) =
                Policy::from_file(path).map_err(|source| LaunchError::Policy {
                    path: path.clone(),
                    source,
                })?;
            for note in notes {
                tracing::warn!("policy: {note}");
            }
            Ok(policy)
        }
        (None, IdentityMode::Dev) => Ok(Policy::new(dev_policy())),
        (None, IdentityMode::Tdx) => Err(LaunchError::PolicyRequired),
    }
}

/// Collateral from the config's directory; unreadable files are skipped
/// with a warning (the node can still receive collateral from peers or the
/// admin API).
fn collateral(config: &NodeConfig) -> Arc<CollateralStore> {
    let store = Arc::new(CollateralStore::new());
    let dir = config.collateral_dir();
    match store.load_dir(&dir) {
        Ok(outcomes) => {
            for o in outcomes {
                if let Err(e) = o.result {
                    tracing::warn!(path = %o.path.display(), error = %e, "collateral skipped");
                }
            }
        }
        Err(e) => tracing::warn!(dir = %dir.display(), error = %e, "no collateral directory"),
    }
    store
}

/// The trusted issuers, and for a dev boot without any the issuer made now
/// (its admin ticket on the console: dev mode proves nothing, the token only
/// guards this dev node's admin API).
fn issuers(
    config: &NodeConfig,
    clock: &dyn Clock,
    launch: Launch,
) -> Result<(Vec<TrustedIssuer>, Option<Arc<TicketIssuer>>), LaunchError> {
    match &config.tickets.trusted_issuers_file {
        Some(path) => {
            let bytes = read("tickets.trusted_issuers_file", path)?;
            let issuers =
                serde_json::from_slice(&bytes).map_err(|source| LaunchError::Issuers {
                    path: path.clone(),
                    source,
                })?;
            Ok((issuers, None))
        }
        None if config.identity.mode == IdentityMode::Dev => {
            let issuer = Arc::new(TicketIssuer::generate_es256("tessella-dev-guest")?);
            let claims = issuer
                .claims(
                    dev_operator_id(),
                    config.network.name.clone(),
                    clock.now_unix(),
                    7 * 24 * 3600,
                )
                .with_admin(true);
            launch.say(&format!("dev admin token {}", issuer.issue(&claims)?));
            Ok((vec![issuer.public_key()], Some(issuer)))
        }
        None => Err(LaunchError::IssuersRequired),
    }
}

/// The node's spec from its config (`config_bytes` are the exact bytes it
/// was loaded from, bound to MRCONFIGID in TDX mode).
pub async fn spec(
    config: &NodeConfig,
    config_bytes: &Arc<Vec<u8>>,
    launch: Launch,
) -> Result<NodeSpec, LaunchError> {
    for w in config.warnings() {
        tracing::warn!(key = w.key, "{}", w.message);
    }
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let identity = identity(config, config_bytes, launch).await?;
    let policy = policy(config)?;
    let (issuers, dev_issuer) = issuers(config, clock.as_ref(), launch)?;
    // The node's key (and so its id) is kept under data_dir, so a ticket
    // file issued for it keeps working across restarts of the same data dir
    // (in tdx mode the data dir is memory-backed: a TD reboot is a new id,
    // and the usual path is POST /v1/ticket once the node runs).
    let ticket = match (&config.tickets.ticket_file, dev_issuer) {
        (Some(path), _) => {
            let bytes = read("tickets.ticket_file", path)?;
            TicketSource::Static(String::from_utf8_lossy(&bytes).trim().to_string())
        }
        (None, Some(issuer)) => TicketSource::Issuer(issuer, 24 * 3600),
        (None, None) => TicketSource::Pending,
    };
    let mut spec = NodeSpec::new(
        config.network.name.clone(),
        identity,
        policy,
        ticket,
        issuers,
    );
    spec.collateral = collateral(config);
    spec.ticket_leeway = config.tickets.leeway_secs;
    spec.listen = config.network.listen;
    spec.bootstrap = config.network.bootstrap.clone();
    spec.data_dir = Some(config.data_dir.clone());
    spec.clock = clock;
    spec.limits = limits(config);
    spec.cert_lifetime = config.identity.cert_lifetime_secs;
    spec.discovery = discovery(config);
    spec.admin = config.admin.enabled.then_some(config.admin.listen);
    spec.collections = config.collections.clone();
    Ok(spec)
}

/// Starts the node a config describes. In TDX mode the quote the started
/// node shows its peers must carry the config's MRCONFIGID too (checked
/// again on it; on a mismatch the node is stopped).
pub async fn start(
    config: &NodeConfig,
    config_bytes: Vec<u8>,
    launch: Launch,
) -> Result<Node, LaunchError> {
    let config_bytes = Arc::new(config_bytes);
    let spec = spec(config, &config_bytes, launch).await?;
    let node = Node::start(spec).await?;
    if config.identity.mode == IdentityMode::Tdx {
        if let Err(e) =
            configid::check_measurements(&config_bytes, node.network().own_measurements())
        {
            node.shutdown().await;
            return Err(e.into());
        }
    }
    match launch {
        Launch::Run => tracing::info!(
            node = %node.node_id(),
            addr = %node.local_addr(),
            network = %config.network.name,
            "node listening"
        ),
        Launch::Init => launch.say(&format!(
            "node {} listening on {} (network {:?}, identity {})",
            node.node_id(),
            node.local_addr(),
            config.network.name,
            config.identity.mode
        )),
    }
    if let Some(addr) = node.admin_addr() {
        tracing::info!(%addr, "admin API listening");
        if launch == Launch::Init {
            launch.say(&format!("admin API on {addr}"));
        }
    }
    Ok(node)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn config(text: &str) -> NodeConfig {
        NodeConfig::from_toml_str(text).expect("config")
    }

    #[tokio::test]
    async fn a_dev_boot_maps_every_section_of_its_config() {
        let dir = tempfile::tempdir().expect("tmp");
        let c = config(&format!(
            "data_dir = {:?}\n\
             [[collections]]\nname = \"kv\"\nkind = \"map\"\n\
             [network]\nname = \"n1\"\nlisten = \"127.0.0.1:7001\"\nbootstrap = [\"127.0.0.1:7002\"]\n\
             tags = [\"edge\"]\n\
             [identity]\nmode = \"dev\"\ncert_lifetime_secs = 7200\n\
             [tickets]\nleeway_secs = 5\n\
             [limits]\nmax_peers = 17\nmax_frame_bytes = 70000\nmax_catalog = 321\nqueue_depth = 99\n\
             [discovery]\ngossip_interval_ms = 250\n\
             [admin]\nenabled = true\nlisten = \"127.0.0.1:7300\"\n",
            dir.path()
        ));
        let spec = spec(&c, &Arc::new(Vec::new()), Launch::Init)
            .await
            .expect("spec");
        assert_eq!(spec.network, "n1");
        assert!(matches!(spec.identity, Identity::Dev { .. }));
        // A dev boot without issuers makes one and issues its own ticket.
        assert_eq!(spec.issuers.len(), 1);
        assert!(matches!(spec.ticket, TicketSource::Issuer(..)));
        assert_eq!(spec.listen, "127.0.0.1:7001".parse().expect("addr"));
        assert_eq!(
            spec.bootstrap,
            vec!["127.0.0.1:7002".parse().expect("addr")]
        );
        assert_eq!(spec.data_dir.as_deref(), Some(dir.path()));
        assert_eq!(spec.cert_lifetime, 7200);
        assert_eq!(spec.ticket_leeway, 5);
        assert_eq!(
            (
                spec.limits.max_peers,
                spec.limits.max_frame,
                spec.limits.max_catalog,
                spec.limits.event_queue
            ),
            (17, 70000, 321, 99)
        );
        assert_eq!(spec.discovery.interval, Duration::from_millis(250));
        assert_eq!(spec.discovery.max_catalog, 321);
        assert_eq!(spec.discovery.tags, vec![Tag::from_name("edge")]);
        assert_eq!(spec.admin, Some("127.0.0.1:7300".parse().expect("addr")));
        assert_eq!(spec.collections.len(), 1);
        assert_eq!(spec.collections[0].name, "kv");
    }

    #[tokio::test]
    async fn run_refuses_dev_mode_and_files_are_named_when_unreadable() {
        let c = config("[identity]\nmode = \"dev\"\n");
        let e = spec(&c, &Arc::new(Vec::new()), Launch::Run)
            .await
            .err()
            .expect("refused");
        assert!(matches!(e, LaunchError::DevModeInRun), "{e}");

        let c = config(
            "[identity]\nmode = \"dev\"\n[tickets]\ntrusted_issuers_file = \"/nonexistent/issuers.json\"\n",
        );
        let e = spec(&c, &Arc::new(Vec::new()), Launch::Init)
            .await
            .err()
            .expect("refused");
        assert!(
            e.to_string()
                .starts_with("tickets.trusted_issuers_file /nonexistent/issuers.json:"),
            "{e}"
        );

        let dir = tempfile::tempdir().expect("tmp");
        let garbage = dir.path().join("issuers.json");
        std::fs::write(&garbage, b"{not json").expect("write");
        let c = config(&format!(
            "[identity]\nmode = \"dev\"\n[tickets]\ntrusted_issuers_file = {garbage:?}\n"
        ));
        let e = spec(&c, &Arc::new(Vec::new()), Launch::Init)
            .await
            .err()
            .expect("refused");
        assert!(matches!(e, LaunchError::Issuers { .. }), "{e}");
    }
}

//! A local dev-mode cluster: a dev PKI, a ticket issuer, a pinned policy and
//! N nodes on loopback with their admin APIs, all generated under a data
//! directory. Used by `tessella-node dev`, by tests and by benchmarks.
//!
//! Files written to the data directory (so people and tools can inspect and
//! reuse them): `dev-root.pem`, `collateral/dev.json`, `policy.json`,
//! `issuers.json` (the trusted ticket issuer's public key), `admin.jwt` (an
//! admin ticket for the admin APIs).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tessella_attestation::clock::{Clock, SystemClock};
use tessella_attestation::dev::{DevPki, DevTd};
use tessella_attestation::measurements::{MeasurementPolicy, PolicyEntry, TcbRules};
use tessella_attestation::{Policy, TicketIssuer, TicketValidator};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::admin::{self, AdminAuth};
use crate::network::{Identity, Network, TicketSource};
use crate::status::NodeAdmin;

/// The name dev TDs are derived from: its measurements are what the dev
/// policy pins.
pub const DEV_TD_NAME: &str = "tessella-dev-node";

/// What to start.
#[derive(Debug, Clone)]
pub struct DevOptions {
    /// Number of nodes.
    pub nodes: usize,
    /// Network name.
    pub network: String,
    /// Where the generated files go.
    pub data_dir: PathBuf,
    /// First QUIC port (node i listens on `base_port + i`); 0 picks free ports.
    pub base_port: u16,
    /// First admin port; 0 picks free ports.
    pub admin_base_port: u16,
    /// Gossip round interval.
    pub gossip_interval: Duration,
    /// Seed of the dev PKI.
    pub seed: String,
}

impl Default for DevOptions {
    fn default() -> Self {
        DevOptions {
            nodes: 3,
            network: "tessella-dev".into(),
            data_dir: std::env::temp_dir().join("tessella-dev"),
            base_port: 0,
            admin_base_port: 0,
            gossip_interval: Duration::from_millis(200),
            seed: "tessella-dev".into(),
        }
    }
}

/// One running dev node.
pub struct DevNode {
    /// The node.
    pub network: Arc<Network>,
    /// Its admin API address.
    pub admin_addr: SocketAddr,
    admin_task: JoinHandle<()>,
}

/// A running dev cluster.
pub struct DevCluster {
    /// The nodes, node 0 first (the others bootstrap from it).
    pub nodes: Vec<DevNode>,
    /// A bearer token with the admin permission for every node's admin API.
    pub admin_token: String,
    /// Where the generated files are.
    pub data_dir: PathBuf,
    stop_admin: watch::Sender<bool>,
}

fn write(dir: &Path, name: &str, bytes: &[u8]) -> std::io::Result<()> {
    let path = dir.join(name);
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)?;
    }
    std::fs::write(path, bytes)
}

/// The dev policy: the dev TD's registers, strict TCB rules.
pub fn dev_policy() -> MeasurementPolicy {
    let m = DevTd::named(DEV_TD_NAME).measurements;
    let mut entry = PolicyEntry::new("tessella-dev", vec![m.mrtd]);
    entry.description = Some("dev-mode node (tessella-node dev)".into());
    entry.rtmr0 = Some(vec![m.rtmr[0]]);
    entry.rtmr1 = Some(vec![m.rtmr[1]]);
    entry.rtmr2 = Some(vec![m.rtmr[2]]);
    entry.rtmr3 = Some(vec![m.rtmr[3]]);
    entry.td_attributes = Some(vec![m.td_attributes]);
    // Policy entries built from constants cannot fail validation.
    MeasurementPolicy::new(vec![entry], TcbRules::default())
        .unwrap_or_else(|e| unreachable!("dev policy is valid: {e}"))
}

/// An operator id for admin tickets (any 64-hex string; not a node).
fn operator_id() -> String {
    hex::encode(blake3::derive_key("tessella dev operator v1", b"admin"))
}

impl DevCluster {
    /// Generate the dev material and start the nodes.
    pub async fn start(opts: DevOptions) -> anyhow::Result<DevCluster> {
        use anyhow::Context as _;
        let dir = opts.data_dir.clone();
        std::fs::create_dir_all(&dir)
            .with_context(|| format!("cannot create data dir {}", dir.display()))?;
        let pki = Arc::new(DevPki::generate(opts.seed.as_bytes()).context("dev PKI")?);
        let issuer = Arc::new(TicketIssuer::generate_es256("tessella-dev-issuer")?);
        let clock: Arc<dyn Clock> = Arc::new(SystemClock);
        let now = clock.now_unix();
        let policy = dev_policy();
        write(&dir, "dev-root.pem", pki.root_pem().as_bytes())?;
        write(&dir, "collateral/dev.json", &pki.collateral().to_json())?;
        write(&dir, "policy.json", policy.to_json_pretty().as_bytes())?;
        write(
            &dir,
            "issuers.json",
            serde_json::to_string_pretty(&vec![issuer.public_key()])?.as_bytes(),
        )?;
        let admin_claims = issuer
            .claims(operator_id(), opts.network.clone(), now, 7 * 24 * 3600)
            .with_admin(true);
        let admin_token = issuer.issue(&admin_claims)?;
        write(&dir, "admin.jwt", admin_token.as_bytes())?;

        let validator = Arc::new(TicketValidator::new(
            opts.network.clone(),
            vec![issuer.public_key()],
        )?);
        let (stop_admin, stop_rx) = watch::channel(false);
        let mut nodes: Vec<DevNode> = Vec::with_capacity(opts.nodes);
        let mut bootstrap = Vec::new();
        for i in 0..opts.nodes {
            let port = |base: u16| {
                if base == 0 {
                    0
                } else {
                    base.saturating_add(i as u16)
                }
            };
            let network = Network::builder(&opts.network)
                .identity(Identity::Dev {
                    pki: pki.clone(),
                    td: Box::new(DevTd::named(DEV_TD_NAME)),
                })
                .policy(Policy::new(policy.clone()))
                .ticket(TicketSource::Issuer(issuer.clone(), 24 * 3600))
                .trusted_issuers(vec![issuer.public_key()])
                .listen(SocketAddr::from(([127, 0, 0, 1], port(opts.base_port))))
                .bootstrap(bootstrap.clone())
                .gossip_interval(opts.gossip_interval)
                .clock(clock.clone())
                .build()
                .await
                .with_context(|| format!("starting node {i}"))?;
            let network = Arc::new(network);
            if i == 0 {
                bootstrap.push(network.local_addr());
            }
            let listener = TcpListener::bind(SocketAddr::from((
                [127, 0, 0, 1],
                port(opts.admin_base_port),
            )))
            .await
            .with_context(|| format!("admin listener of node {i}"))?;
            let admin_addr = listener.local_addr()?;
            let router = admin::router(
                Arc::new(NodeAdmin(network.clone())),
                AdminAuth::new(validator.clone(), clock.clone()),
            );
            let mut stop = stop_rx.clone();
            let admin_task = tokio::spawn(async move {
                let shutdown = async move {
                    let _ = stop.changed().await;
                };
                if let Err(e) = admin::serve(listener, router, shutdown).await {
                    tracing::error!(error = %e, "admin API stopped");
                }
            });
            nodes.push(DevNode {
                network,
                admin_addr,
                admin_task,
            });
        }
        Ok(DevCluster {
            nodes,
            admin_token,
            data_dir: dir,
            stop_admin,
        })
    }

    /// Stop every node (announcing departure) and admin API.
    pub async fn shutdown(self) {
        let _ = self.stop_admin.send(true);
        let stops: Vec<_> = self
            .nodes
            .iter()
            .map(|n| {
                let network = n.network.clone();
                tokio::spawn(async move { network.shutdown().await })
            })
            .collect();
        for stop in stops {
            let _ = stop.await;
        }
        for n in self.nodes {
            let _ = n.admin_task.await;
        }
    }
}

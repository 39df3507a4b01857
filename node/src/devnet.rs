//! A local dev-mode cluster: a dev PKI, a ticket issuer, a pinned policy and
//! N nodes on loopback with their admin APIs, all under one data directory.
//! Used by `tessella-node dev` (all nodes in one process, or one member per
//! process with `--member`), by tests and by benchmarks.
//!
//! Files in the data directory (so people and tools can inspect and reuse
//! them): `dev-root.pem`, `collateral/dev.json`, `policy.json`,
//! `issuers.json` (the trusted ticket issuer's public key), `issuer.key` (its
//! private key, mode 0600, so every member issues tickets the others trust),
//! `network` (the network name the directory belongs to), `admin.jwt` (an
//! admin ticket, renewed at every start) and `node-I/node.key`, node I's key,
//! so a member restarted on the directory keeps its node id. The shared
//! files are made once, under an exclusive lock on `.lock`, by whichever
//! member starts first; the others read them.
//!
//! The first [`DEV_GROUP_MEMBERS`] nodes also run the Raft group
//! [`DEV_GROUP`] (three voters, found through discovery, the rest
//! learners); each records a heartbeat in it every second, so
//! `GET /v1/groups/dev` shows a live group: its leader, term, members and
//! indices. Every dev ticket grants `join` and `write` on it.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tessella_attestation::clock::{Clock, SystemClock};
use tessella_attestation::dev::{DevPki, DevTd};
use tessella_attestation::measurements::{MeasurementPolicy, PolicyEntry, TcbRules};
use tessella_attestation::ticket::TicketAlgorithm;
use tessella_attestation::{Permission, Policy, ResourceKind, TicketIssuer};
use tokio::task::JoinHandle;

use crate::collections::{CollectionDecl, CollectionKind};
use crate::groups::{Group, GroupConfig, StateMachine};
use crate::id::NodeId;
use crate::network::{Identity, TicketSource};
use crate::node::{Node, NodeSpec};

/// The Raft group every dev cluster runs.
pub const DEV_GROUP: &str = "dev";
/// How many dev nodes (the first ones) are members of [`DEV_GROUP`].
pub const DEV_GROUP_MEMBERS: usize = 5;
/// The key-value map every dev node serves (`/v1/collections/kv`).
pub const DEV_KV: &str = "kv";
/// How often each member records a heartbeat in [`DEV_GROUP`].
pub const DEV_BEAT: Duration = Duration::from_secs(1);

/// The dev group's state: heartbeats recorded per node.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Heartbeats(pub std::collections::BTreeMap<NodeId, u64>);

impl StateMachine for Heartbeats {
    type Command = NodeId;
    type Output = u64;
    type Query = NodeId;
    type QueryOutput = u64;

    fn apply(&mut self, node: NodeId) -> u64 {
        let n = self.0.entry(node).or_default();
        *n += 1;
        *n
    }

    fn query(&self, node: &NodeId) -> u64 {
        self.0.get(node).copied().unwrap_or(0)
    }

    fn snapshot(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.0.len() * 40);
        for (id, n) in &self.0 {
            out.extend_from_slice(&id.0);
            out.extend_from_slice(&n.to_le_bytes());
        }
        out
    }

    fn restore(&mut self, bytes: &[u8]) -> Result<(), String> {
        if !bytes.len().is_multiple_of(40) {
            return Err(format!("heartbeat snapshot of {} bytes", bytes.len()));
        }
        let mut map = std::collections::BTreeMap::new();
        for rec in bytes.chunks_exact(40) {
            let mut id = [0u8; 32];
            id.copy_from_slice(&rec[..32]);
            let mut n = [0u8; 8];
            n.copy_from_slice(&rec[32..]);
            map.insert(NodeId(id), u64::from_le_bytes(n));
        }
        self.0 = map;
        Ok(())
    }
}

/// The name dev TDs are derived from: its measurements are what the dev
/// policy pins.
pub const DEV_TD_NAME: &str = "tessella-dev-node";

/// QUIC port of member 0 when `--member` is given without `--base-port`.
pub const MEMBER_BASE_PORT: u16 = 7946;
/// Admin port of member 0 when `--member` is given without `--admin-base-port`.
pub const MEMBER_ADMIN_BASE_PORT: u16 = 9946;

/// What to start.
#[derive(Debug, Clone)]
pub struct DevOptions {
    /// Number of nodes in the cluster.
    pub nodes: usize,
    /// Run only this member (0-based) of the cluster; None runs all.
    pub member: Option<usize>,
    /// Network name.
    pub network: String,
    /// Where the shared files and each node's key go.
    pub data_dir: PathBuf,
    /// First QUIC port (node i listens on `base_port + i`); 0 picks free
    /// ports (not with `member`, whose peers must know each other's ports).
    pub base_port: u16,
    /// First admin port; 0 picks free ports.
    pub admin_base_port: u16,
    /// Discovery's failure-detector probe period (the node default, 1 s).
    pub gossip_interval: Duration,
    /// Seed of the dev PKI.
    pub seed: String,
}

impl Default for DevOptions {
    fn default() -> Self {
        DevOptions {
            nodes: 3,
            member: None,
            network: "tessella-dev".into(),
            data_dir: std::env::temp_dir().join("tessella-dev"),
            base_port: 0,
            admin_base_port: 0,
            gossip_interval: Duration::from_secs(1),
            seed: "tessella-dev".into(),
        }
    }
}

/// One running dev node.
pub struct DevNode {
    /// Its index in the cluster.
    pub index: usize,
    /// The node.
    pub node: Node,
    /// Its admin API address.
    pub admin_addr: SocketAddr,
    /// Its handle on [`DEV_GROUP`], if it is a member.
    pub group: Option<Group<Heartbeats>>,
    beats: Option<JoinHandle<()>>,
}

/// A running dev cluster (or one member of it).
pub struct DevCluster {
    /// The nodes this process runs, node 0 (or the member) first.
    pub nodes: Vec<DevNode>,
    /// A bearer token with the admin permission for every node's admin API.
    pub admin_token: String,
    /// Where the files are.
    pub data_dir: PathBuf,
}

/// The material every member of a dev cluster shares.
struct Shared {
    pki: Arc<DevPki>,
    issuer: Arc<TicketIssuer>,
    policy: tessella_attestation::measurements::MeasurementPolicy,
    admin_token: String,
}

fn write(dir: &Path, name: &str, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let path = dir.join(name);
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)?;
    }
    // Write aside, then rename: readers never see half a file.
    let tmp = path.with_extension(format!("tmp.{}", std::process::id()));
    let mode = if name.ends_with(".key") { 0o600 } else { 0o644 };
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    std::fs::rename(&tmp, &path)
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

/// Make the shared files (first member) or read them (the others), under
/// an exclusive lock; renew the admin ticket either way.
fn shared(opts: &DevOptions, now: u64) -> anyhow::Result<Shared> {
    use anyhow::{bail, Context as _};
    let dir = &opts.data_dir;
    std::fs::create_dir_all(dir)
        .with_context(|| format!("cannot create data dir {}", dir.display()))?;
    let lock = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(dir.join(".lock"))
        .with_context(|| format!("cannot open {}", dir.join(".lock").display()))?;
    let _lock = nix::fcntl::Flock::lock(lock, nix::fcntl::FlockArg::LockExclusive)
        .map_err(|(_, e)| e)
        .with_context(|| format!("cannot lock {}", dir.join(".lock").display()))?;
    let pki = Arc::new(DevPki::generate(opts.seed.as_bytes()).context("dev PKI")?);
    let policy = dev_policy();
    let key_path = dir.join("issuer.key");
    let issuer = match std::fs::read(&key_path) {
        Ok(der) => {
            let network = std::fs::read_to_string(dir.join("network")).unwrap_or_default();
            if network.trim() != opts.network {
                bail!(
                    "data dir {} belongs to network {:?}, not {:?}: use another --data-dir",
                    dir.display(),
                    network.trim(),
                    opts.network
                );
            }
            TicketIssuer::from_pkcs8_der("tessella-dev-issuer", TicketAlgorithm::Es256, &der)
                .with_context(|| format!("{} is not a dev issuer key", key_path.display()))?
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let issuer = TicketIssuer::generate_es256("tessella-dev-issuer")?;
            write(dir, "dev-root.pem", pki.root_pem().as_bytes())?;
            write(dir, "collateral/dev.json", &pki.collateral().to_json())?;
            write(dir, "policy.json", policy.to_json_pretty().as_bytes())?;
            write(
                dir,
                "issuers.json",
                serde_json::to_string_pretty(&vec![issuer.public_key()])?.as_bytes(),
            )?;
            write(dir, "network", opts.network.as_bytes())?;
            // Last: its presence says the set is complete.
            write(dir, "issuer.key", issuer.secret_pkcs8_der())?;
            issuer
        }
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", key_path.display())),
    };
    let admin_claims = issuer
        .claims(operator_id(), opts.network.clone(), now, 7 * 24 * 3600)
        .with_admin(true);
    let admin_token = issuer.issue(&admin_claims)?;
    write(dir, "admin.jwt", admin_token.as_bytes())?;
    Ok(Shared {
        pki,
        issuer: Arc::new(issuer),
        policy,
        admin_token,
    })
}

impl DevCluster {
    /// Start the cluster (or, with `opts.member`, that one member).
    pub async fn start(opts: DevOptions) -> anyhow::Result<DevCluster> {
        use anyhow::{bail, Context as _};
        if opts.nodes == 0 || opts.nodes > 64 {
            bail!("--nodes must be between 1 and 64");
        }
        let (base, admin_base) = match opts.member {
            Some(m) if m >= opts.nodes => {
                bail!(
                    "--member {m} is not a member of a {}-node cluster (0 to {})",
                    opts.nodes,
                    opts.nodes - 1
                )
            }
            Some(_) => (
                if opts.base_port == 0 {
                    MEMBER_BASE_PORT
                } else {
                    opts.base_port
                },
                if opts.admin_base_port == 0 {
                    MEMBER_ADMIN_BASE_PORT
                } else {
                    opts.admin_base_port
                },
            ),
            None => (opts.base_port, opts.admin_base_port),
        };
        let port = |base: u16, i: usize| -> anyhow::Result<u16> {
            if base == 0 {
                return Ok(0);
            }
            u16::try_from(i)
                .ok()
                .and_then(|i| base.checked_add(i))
                .context("port out of range")
        };
        let clock: Arc<dyn Clock> = Arc::new(SystemClock);
        let shared = shared(&opts, clock.now_unix())?;
        let loopback = |p: u16| SocketAddr::from(([127, 0, 0, 1], p));
        let members: Vec<usize> = match opts.member {
            Some(m) => vec![m],
            None => (0..opts.nodes).collect(),
        };
        let grants = Arc::new(
            shared
                .issuer
                .claims("template", opts.network.clone(), clock.now_unix(), 60)
                .grant(ResourceKind::Group, DEV_GROUP, Permission::Join)
                .grant(ResourceKind::Group, DEV_GROUP, Permission::Write)
                .grant(ResourceKind::Collection, DEV_KV, Permission::Write),
        );
        let mut nodes: Vec<DevNode> = Vec::with_capacity(members.len());
        for &i in &members {
            let bootstrap = match opts.member {
                // A member dials every other member's fixed address.
                Some(_) => (0..opts.nodes)
                    .filter(|j| *j != i)
                    .map(|j| port(base, j).map(loopback))
                    .collect::<anyhow::Result<Vec<_>>>()?,
                // In one process, node 0 first; the others know only its address.
                None => nodes
                    .first()
                    .map(|n| vec![n.node.local_addr()])
                    .unwrap_or_default(),
            };
            let mut spec = NodeSpec::new(
                opts.network.clone(),
                Identity::Dev {
                    pki: shared.pki.clone(),
                    td: Box::new(DevTd::named(DEV_TD_NAME)),
                },
                Policy::new(shared.policy.clone()),
                TicketSource::IssuerGranting(shared.issuer.clone(), 24 * 3600, grants.clone()),
                vec![shared.issuer.public_key()],
            );
            spec.listen = loopback(port(base, i)?);
            spec.bootstrap = bootstrap;
            spec.data_dir = Some(opts.data_dir.join(format!("node-{i}")));
            spec.clock = clock.clone();
            spec.discovery.interval = opts.gossip_interval;
            spec.admin = Some(loopback(port(admin_base, i)?));
            spec.collections = vec![CollectionDecl {
                name: DEV_KV.into(),
                kind: CollectionKind::Map,
                voters: opts.nodes.clamp(1, 3),
            }];
            let node = match Node::start(spec)
                .await
                .with_context(|| format!("starting node {i}"))
            {
                Ok(n) => n,
                Err(e) => {
                    for n in &nodes {
                        n.node.shutdown().await;
                    }
                    return Err(e);
                }
            };
            let admin_addr = node.admin_addr().context("admin API address")?;
            let (group, beats) = if i < DEV_GROUP_MEMBERS {
                let config = GroupConfig::with_voters(opts.nodes.clamp(1, 3));
                let group = match node.groups().join::<Heartbeats>(DEV_GROUP, config).await {
                    Ok(g) => g,
                    Err(e) => {
                        node.shutdown().await;
                        for n in &nodes {
                            n.node.shutdown().await;
                        }
                        return Err(e).with_context(|| format!("node {i} joining the dev group"));
                    }
                };
                let beats = tokio::spawn(beat(group.clone(), node.node_id()));
                (Some(group), Some(beats))
            } else {
                (None, None)
            };
            nodes.push(DevNode {
                index: i,
                node,
                admin_addr,
                group,
                beats,
            });
        }
        Ok(DevCluster {
            nodes,
            admin_token: shared.admin_token,
            data_dir: opts.data_dir,
        })
    }

    /// Stop every node (announcing departure) and admin API, concurrently.
    pub async fn shutdown(self) {
        let mut stops = tokio::task::JoinSet::new();
        for n in self.nodes {
            if let Some(b) = &n.beats {
                b.abort();
            }
            stops.spawn(async move { n.node.shutdown().await });
        }
        while stops.join_next().await.is_some() {}
    }
}

/// Record a heartbeat of `me` in the dev group every [`DEV_BEAT`].
async fn beat(group: Group<Heartbeats>, me: NodeId) {
    let mut tick = tokio::time::interval(DEV_BEAT);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        match group.execute(me).await {
            Ok(_) => {}
            Err(crate::groups::GroupError::Stopped) => return,
            Err(e) => tracing::debug!(error = %e, "dev heartbeat not recorded"),
        }
    }
}

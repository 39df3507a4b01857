//! The one assembly of a node: a [`NodeSpec`] (identity, policy, collateral,
//! tickets, network, discovery, admin API) becomes a running [`Node`].
//! `tessella-node run`, `init` and `dev` and the test kit all start nodes
//! through [`Node::start`], so they run the same code.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tessella_attestation::clock::{Clock, SystemClock};
use tessella_attestation::{CollateralStore, Policy, TicketValidator, TrustedIssuer, Verifier};
use tokio::sync::{broadcast, watch};
use tokio::task::JoinHandle;

use crate::admin::{self, AdminAuth};
use crate::collections::{CollectionDecl, Collections};
use crate::discovery::{CatalogEvent, Discovery, DiscoveryError, DiscoveryOptions, PeerRecord};
use crate::groups::Groups;
use crate::id::NodeId;
use crate::network::{
    ConnectedPeer, Identity, Limits, Network, NetworkError, SocketWrapper, TicketSource,
};
use crate::status::{peer_views, NodeAdmin};

/// Everything a node is started from.
pub struct NodeSpec {
    /// The network's name (tickets' audience).
    pub network: String,
    /// Where quotes come from.
    pub identity: Identity,
    /// Admission policy for peers (and this node's own evidence).
    pub policy: Policy,
    /// Trust anchor override (default: Intel's, or the dev PKI's in dev mode).
    pub anchor: Option<Verifier>,
    /// Collateral the node starts with.
    pub collateral: Arc<CollateralStore>,
    /// This node's ticket.
    pub ticket: TicketSource,
    /// Issuers whose tickets peers (and admins) may present.
    pub issuers: Vec<TrustedIssuer>,
    /// Clock skew tolerated on tickets, seconds.
    pub ticket_leeway: u64,
    /// QUIC listen address.
    pub listen: SocketAddr,
    /// Addresses dialled at start.
    pub bootstrap: Vec<SocketAddr>,
    /// Where the node key lives (None: a fresh key in memory).
    pub data_dir: Option<PathBuf>,
    /// The clock for certificates, tickets and verdicts.
    pub clock: Arc<dyn Clock>,
    /// Transport bounds.
    pub limits: Limits,
    /// Certificate lifetime, seconds.
    pub cert_lifetime: u64,
    /// How often tickets, idle connections and renewals are checked.
    pub sweep_interval: Duration,
    /// Discovery settings.
    pub discovery: DiscoveryOptions,
    /// The admin API's listen address (None: no admin API).
    pub admin: Option<SocketAddr>,
    /// Wraps the UDP socket (the test kit's fault injection).
    pub socket: Option<SocketWrapper>,
    /// Collections served from start (the key-value maps of the admin API).
    pub collections: Vec<CollectionDecl>,
}

impl NodeSpec {
    /// A spec with defaults for everything but what must be chosen.
    pub fn new(
        network: impl Into<String>,
        identity: Identity,
        policy: Policy,
        ticket: TicketSource,
        issuers: Vec<TrustedIssuer>,
    ) -> NodeSpec {
        NodeSpec {
            network: network.into(),
            identity,
            policy,
            anchor: None,
            collateral: Arc::new(CollateralStore::new()),
            ticket,
            issuers,
            ticket_leeway: 30,
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            bootstrap: Vec::new(),
            data_dir: None,
            clock: Arc::new(SystemClock),
            limits: Limits::default(),
            cert_lifetime: 24 * 3600,
            sweep_interval: Duration::from_millis(250),
            discovery: DiscoveryOptions::default(),
            admin: None,
            socket: None,
            collections: Vec::new(),
        }
    }
}

/// Why a node did not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NodeError {
    /// The transport did not start.
    #[error(transparent)]
    Network(#[from] NetworkError),
    /// Discovery did not start.
    #[error(transparent)]
    Discovery(#[from] DiscoveryError),
    /// The groups subsystem could not register with the transport.
    #[error("groups subsystem: {0}")]
    Register(#[from] crate::network::RegisterError),
    /// The admin API could not be set up.
    #[error("admin API on {addr}: {detail}")]
    Admin {
        /// The listen address.
        addr: SocketAddr,
        /// What failed.
        detail: String,
    },
}

/// What [`Node::start`] still needs once the transport runs.
struct Rest {
    network: String,
    issuers: Vec<TrustedIssuer>,
    bootstrap: Vec<SocketAddr>,
    data_dir: Option<PathBuf>,
    clock: Arc<dyn Clock>,
    discovery: DiscoveryOptions,
    admin: Option<SocketAddr>,
    collections: Vec<CollectionDecl>,
}

impl NodeSpec {
    /// The transport alone, exactly as [`Node::start`] builds it, without
    /// discovery, groups, collections or the admin API: what benchmarks of
    /// connection set-up measure.
    pub async fn start_network(self) -> Result<Network, NetworkError> {
        Ok(self.start_transport().await?.0)
    }

    async fn start_transport(self) -> Result<(Network, Rest), NetworkError> {
        let mut builder = Network::builder(&self.network)
            .identity(self.identity)
            .policy(self.policy)
            .collateral(self.collateral)
            .ticket(self.ticket)
            .trusted_issuers(self.issuers.clone())
            .ticket_leeway(self.ticket_leeway)
            .listen(self.listen)
            .bootstrap(self.bootstrap.clone())
            .clock(self.clock.clone())
            .limits(self.limits)
            .cert_lifetime(self.cert_lifetime)
            .sweep_interval(self.sweep_interval);
        if let Some(anchor) = self.anchor {
            builder = builder.trust_anchor(anchor);
        }
        if let Some(dir) = self.data_dir.clone() {
            builder = builder.data_dir(dir);
        }
        if let Some(wrap) = self.socket {
            builder = builder.socket_wrapper(wrap);
        }
        let network = builder.build().await?;
        let rest = Rest {
            network: self.network,
            issuers: self.issuers,
            bootstrap: self.bootstrap,
            data_dir: self.data_dir,
            clock: self.clock,
            discovery: self.discovery,
            admin: self.admin,
            collections: self.collections,
        };
        Ok((network, rest))
    }
}

/// A running node: the transport, its subsystems and the admin API.
pub struct Node {
    network: Network,
    discovery: Arc<Discovery>,
    groups: Arc<Groups>,
    collections: Arc<Collections>,
    admin_addr: Option<SocketAddr>,
    stop_admin: watch::Sender<bool>,
    admin_task: std::sync::Mutex<Option<JoinHandle<()>>>,
}

impl Node {
    /// Start the node described by `spec`.
    pub async fn start(spec: NodeSpec) -> Result<Node, NodeError> {
        let (network, spec) = spec.start_transport().await?;
        let bootstrap = spec.bootstrap;
        let mut discovery_opts = spec.discovery;
        if discovery_opts.bootstrap.is_empty() {
            discovery_opts.bootstrap = bootstrap;
        }
        let discovery = match Discovery::start(&network, discovery_opts) {
            Ok(d) => d,
            Err(e) => {
                network.shutdown().await;
                return Err(e.into());
            }
        };
        // Raft state lives beside the node key, so it survives restarts with
        // the identity it belongs to; without a data dir, in memory.
        let db_path = spec.data_dir.as_ref().map(|d| d.join("groups.redb"));
        let groups = match Groups::start(&network, discovery.clone(), db_path) {
            Ok(g) => g,
            Err(e) => {
                network.shutdown().await;
                return Err(e.into());
            }
        };
        let collections = Collections::new(groups.clone(), discovery.clone());
        let (stop_admin, mut stop_rx) = watch::channel(false);
        collections.serve_declared(&spec.collections, stop_rx.clone());
        let mut node = Node {
            network: network.clone(),
            discovery: discovery.clone(),
            groups: groups.clone(),
            collections: collections.clone(),
            admin_addr: None,
            stop_admin,
            admin_task: std::sync::Mutex::new(None),
        };
        if let Some(addr) = spec.admin {
            let fail = |detail: String| NodeError::Admin { addr, detail };
            let started = async {
                let validator = Arc::new(
                    TicketValidator::new(spec.network.clone(), spec.issuers)
                        .map_err(|e| fail(e.to_string()))?,
                );
                let listener = tokio::net::TcpListener::bind(addr)
                    .await
                    .map_err(|e| fail(e.to_string()))?;
                let bound = listener.local_addr().map_err(|e| fail(e.to_string()))?;
                let (net, disc) = (network.clone(), discovery.clone());
                let auth = AdminAuth::new(validator, spec.clock);
                let router = admin::router_with_scoped(
                    Arc::new(NodeAdmin(network.clone())),
                    auth.clone(),
                    [
                        admin::peers_router(Arc::new(move || peer_views(&net, &disc))),
                        crate::groups::admin::router(groups.clone()),
                    ],
                    [crate::collections::admin::router(collections.clone(), auth)],
                );
                let task = tokio::spawn(async move {
                    let stop = async move {
                        let _ = stop_rx.changed().await;
                    };
                    if let Err(e) = admin::serve(listener, router, stop).await {
                        tracing::error!(error = %e, "admin API stopped");
                    }
                });
                Ok::<_, NodeError>((bound, task))
            };
            match started.await {
                Ok((bound, task)) => {
                    node.admin_addr = Some(bound);
                    *node.admin_task.lock().unwrap_or_else(|p| p.into_inner()) = Some(task);
                }
                Err(e) => {
                    node.shutdown().await;
                    return Err(e);
                }
            }
        }
        Ok(node)
    }

    /// The transport.
    pub fn network(&self) -> &Network {
        &self.network
    }

    /// Discovery.
    pub fn discovery(&self) -> &Arc<Discovery> {
        &self.discovery
    }

    /// Raft groups: join one with [`Groups::join`].
    pub fn groups(&self) -> &Arc<Groups> {
        &self.groups
    }

    /// Replicated collections: open one with
    /// [`Map::writer`](crate::collections::Map::writer) and the like.
    pub fn collections(&self) -> &Arc<Collections> {
        &self.collections
    }

    /// The admin API's address, when it runs.
    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.admin_addr
    }

    /// This node's id.
    pub fn node_id(&self) -> NodeId {
        self.network.node_id()
    }

    /// The address peers dial.
    pub fn local_addr(&self) -> SocketAddr {
        self.network.local_addr()
    }

    /// Peers with an admitted session.
    pub fn connected(&self) -> Vec<ConnectedPeer> {
        self.network.connected()
    }

    /// Known peers (discovery's catalog), excluding self.
    pub fn catalog(&self) -> Vec<PeerRecord> {
        self.discovery.catalog()
    }

    /// Catalog events from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<CatalogEvent> {
        self.discovery.subscribe()
    }

    /// Dial `addr` now; see [`Network::connect`].
    pub async fn connect(&self, addr: SocketAddr) -> Result<NodeId, String> {
        self.network.connect(addr).await
    }

    /// This node's RA-TLS certificate; see [`Network::certificate`].
    pub fn certificate(&self) -> tessella_attestation::ratls::RatlsIdentity {
        self.network.certificate()
    }

    /// The RA-TLS verifier; see [`Network::verifier`].
    pub fn verifier(&self) -> &Arc<tessella_attestation::ratls::RatlsVerifier> {
        self.network.verifier()
    }

    /// The collateral store; see [`Network::collateral`].
    pub fn collateral(&self) -> &Arc<CollateralStore> {
        self.network.collateral()
    }

    /// Revoke tickets by `jti` or node id; see [`Network::revoke`].
    pub fn revoke(&self, id: &str) -> Option<usize> {
        self.network.revoke(id)
    }

    /// Install this node's ticket; see [`Network::install_ticket`].
    pub fn install_ticket(&self, token: &str) -> Result<u64, tessella_attestation::TicketError> {
        self.network.install_ticket(token)
    }

    /// When this node's ticket expires (0: none).
    pub fn ticket_expires(&self) -> u64 {
        self.network.ticket_expires()
    }

    /// The node's clock, Unix seconds.
    pub fn now(&self) -> u64 {
        self.network.now()
    }

    /// Stop the admin API and Raft groups, announce departure and close
    /// every connection.
    pub async fn shutdown(&self) {
        let _ = self.stop_admin.send(true);
        // Raft first, while connections still carry its last messages; the
        // groups database is closed and released before the node returns.
        self.groups.shutdown().await;
        self.network.shutdown().await;
        let task = self
            .admin_task
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        if let Some(task) = task {
            let _ = tokio::time::timeout(Duration::from_secs(2), task).await;
        }
    }
}

//! Configuring and starting the transport: [`NetworkBuilder`] turns an
//! identity, a policy, tickets and limits into a running [`Network`].

use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use tessella_attestation::clock::{Clock, SystemClock};
use tessella_attestation::dev::{DevPki, DevQuoteProvider, DevTd};
use tessella_attestation::provider::QuoteProvider;
use tessella_attestation::ratls::{self, CertResolver, NodeKey, RatlsVerifier};
use tessella_attestation::{
    CollateralStore, Policy, TicketClaims, TicketIssuer, TicketValidator, TrustAnchor,
    TrustedIssuer, Verifier,
};
use tokio::sync::{watch, Semaphore};
use tokio::task::JoinSet;

use super::control::ControlHandler;
use super::core::{Core, ADMISSION_TIMEOUT};
use super::endpoint::{endpoint, SocketWrapper};
use super::handler::Handlers;
use super::outbox::Outboxes;
use super::peers::PeerTable;
use super::Network;
use crate::admission;
use crate::id::{NetworkId, NodeId};
use crate::keyfile::{self, KeyFileError};

/// Where the node's quotes come from.
#[derive(Clone)]
pub enum Identity {
    /// Dev mode: real TDX quotes for `td`, signed by the dev PKI.
    Dev {
        /// The dev PKI (its root is the trust anchor).
        pki: Arc<DevPki>,
        /// The TD the quotes describe.
        td: Box<DevTd>,
    },
    /// TDX mode: quotes from a hardware provider (configfs-tsm).
    Tdx(Arc<dyn QuoteProvider>),
}

impl Identity {
    fn provider(&self) -> Arc<dyn QuoteProvider> {
        match self {
            Identity::Dev { pki, td } => Arc::new(DevQuoteProvider::new(pki.clone(), **td)),
            Identity::Tdx(p) => p.clone(),
        }
    }

    /// `dev` or `tdx`.
    pub fn mode(&self) -> &'static str {
        match self {
            Identity::Dev { .. } => "dev",
            Identity::Tdx(_) => "tdx",
        }
    }
}

/// Where the node's own ticket comes from.
#[derive(Clone)]
pub enum TicketSource {
    /// A ticket issued for this node's id by an operator.
    Static(String),
    /// Self-issued with the network's issuer key (dev clusters, tests).
    Issuer(Arc<TicketIssuer>, u64),
    /// Self-issued like [`TicketSource::Issuer`], carrying the stream, group
    /// and collection grants of the template claims (dev clusters, tests).
    IssuerGranting(Arc<TicketIssuer>, u64, Arc<TicketClaims>),
    /// None yet: the node's id only exists once it has started, so an
    /// operator issues its ticket afterwards and installs it with
    /// [`Network::install_ticket`] (admin `POST /v1/ticket`). Until then
    /// peers refuse this node.
    Pending,
}

/// Bounds on what peers can make this node hold.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Largest frame accepted or sent.
    pub max_frame: usize,
    /// Most simultaneous peer connections.
    pub max_peers: usize,
    /// Most peers in the catalog.
    pub max_catalog: usize,
    /// Capacity of each event channel.
    pub event_queue: usize,
    /// An admitted connection without traffic (and not held open by a
    /// subsystem) for this long is closed; it is dialled again on demand.
    pub idle_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_frame: crate::wire::DEFAULT_MAX_FRAME,
            max_peers: 256,
            max_catalog: 1000,
            event_queue: 1024,
            idle_timeout: Duration::from_secs(120),
        }
    }
}

/// Why a node could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NetworkError {
    /// A required builder setting is missing.
    #[error("missing {0}")]
    Missing(&'static str),
    /// A TDX node configured to trust a dev root.
    #[error("refusing to trust a dev root outside dev mode ({0})")]
    DevRootInProduction(String),
    /// The node could not obtain a quote for its certificate.
    #[error("cannot obtain a quote for this node's certificate: {0}")]
    NoQuote(String),
    /// The node's own evidence fails its own policy: peers would refuse it.
    #[error("this node's own evidence does not pass its policy: {0}")]
    OwnEvidence(String),
    /// The node's ticket is unusable.
    #[error("this node's ticket: {0}")]
    Ticket(String),
    /// The node key under the data dir is unusable.
    #[error(transparent)]
    Key(#[from] KeyFileError),
    /// TLS or QUIC set-up failed.
    #[error("transport: {0}")]
    Transport(String),
    /// The listen address could not be bound.
    #[error("cannot listen on {addr}: {error}")]
    Bind {
        /// Address.
        addr: SocketAddr,
        /// Cause.
        error: std::io::Error,
    },
}

/// Configures and starts a [`Network`] node.
pub struct NetworkBuilder {
    name: String,
    identity: Option<Identity>,
    anchor: Option<Verifier>,
    policy: Option<Policy>,
    collateral: Arc<CollateralStore>,
    ticket: Option<TicketSource>,
    issuers: Vec<TrustedIssuer>,
    leeway: u64,
    listen: SocketAddr,
    bootstrap: Vec<SocketAddr>,
    clock: Arc<dyn Clock>,
    limits: Limits,
    cert_lifetime: u64,
    sweep_interval: Duration,
    data_dir: Option<PathBuf>,
    key: Option<NodeKey>,
    socket: Option<SocketWrapper>,
}

impl NetworkBuilder {
    pub(crate) fn new(name: &str) -> Self {
        NetworkBuilder {
            name: name.to_string(),
            identity: None,
            anchor: None,
            policy: None,
            collateral: Arc::new(CollateralStore::new()),
            ticket: None,
            issuers: Vec::new(),
            leeway: 30,
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            bootstrap: Vec::new(),
            clock: Arc::new(SystemClock),
            limits: Limits::default(),
            cert_lifetime: 24 * 3600,
            sweep_interval: Duration::from_millis(250),
            data_dir: None,
            key: None,
            socket: None,
        }
    }

    /// Where quotes come from (required).
    pub fn identity(mut self, identity: Identity) -> Self {
        self.identity = Some(identity);
        self
    }

    /// The trust anchor peers' quotes must chain to. Default: Intel's root,
    /// or the dev PKI's root in dev mode.
    pub fn trust_anchor(mut self, verifier: Verifier) -> Self {
        self.anchor = Some(verifier);
        self
    }

    /// The admission policy for peers' evidence (required).
    pub fn policy(mut self, policy: Policy) -> Self {
        self.policy = Some(policy);
        self
    }

    /// The collateral store verification reads.
    pub fn collateral(mut self, store: Arc<CollateralStore>) -> Self {
        self.collateral = store;
        self
    }

    /// This node's ticket (required).
    pub fn ticket(mut self, ticket: TicketSource) -> Self {
        self.ticket = Some(ticket);
        self
    }

    /// Issuers whose tickets peers may present (at least one).
    pub fn trusted_issuers(mut self, issuers: Vec<TrustedIssuer>) -> Self {
        self.issuers = issuers;
        self
    }

    /// Clock skew tolerated on tickets, in seconds.
    pub fn ticket_leeway(mut self, secs: u64) -> Self {
        self.leeway = secs;
        self
    }

    /// The UDP address to listen on (default 127.0.0.1, any port).
    pub fn listen(mut self, addr: SocketAddr) -> Self {
        self.listen = addr;
        self
    }

    /// Addresses to dial at start.
    pub fn bootstrap(mut self, addrs: Vec<SocketAddr>) -> Self {
        self.bootstrap = addrs;
        self
    }

    /// The clock for certificates, tickets and verdicts (tests inject one).
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// Resource bounds.
    pub fn limits(mut self, limits: Limits) -> Self {
        self.limits = limits;
        self
    }

    /// Certificate lifetime in seconds (renewed at two thirds).
    pub fn cert_lifetime(mut self, secs: u64) -> Self {
        self.cert_lifetime = secs;
        self
    }

    /// How often tickets, idle connections and renewals are checked.
    pub fn sweep_interval(mut self, interval: Duration) -> Self {
        self.sweep_interval = interval;
        self
    }

    /// The data dir: the node key lives there (made on first start), so the
    /// node id survives restarts. Without one (or [`key`](Self::key)) the
    /// node makes a fresh key in memory at every start.
    pub fn data_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.data_dir = Some(dir.into());
        self
    }

    /// Use this key (instead of one from the data dir).
    pub fn key(mut self, key: NodeKey) -> Self {
        self.key = Some(key);
        self
    }

    /// Wrap the node's UDP socket (the test kit injects link faults here).
    pub fn socket_wrapper(mut self, wrap: SocketWrapper) -> Self {
        self.socket = Some(wrap);
        self
    }

    /// Obtain evidence, bind the endpoint and start the node's tasks.
    pub async fn build(self) -> Result<Network, NetworkError> {
        // Metrics recorded before the recorder exists are lost.
        let _ = crate::metrics::prometheus();
        let identity = self.identity.ok_or(NetworkError::Missing("identity"))?;
        let policy = Arc::new(self.policy.ok_or(NetworkError::Missing("policy"))?);
        let ticket_source = self.ticket.ok_or(NetworkError::Missing("ticket"))?;
        if self.issuers.is_empty() {
            return Err(NetworkError::Missing("trusted ticket issuers"));
        }
        let anchor = match (&identity, self.anchor) {
            (Identity::Dev { pki, .. }, None) => pki.verifier(),
            (Identity::Tdx(_), None) => Verifier::intel(),
            (Identity::Tdx(_), Some(v)) if matches!(v.anchor(), TrustAnchor::Custom { .. }) => {
                return Err(NetworkError::DevRootInProduction(v.anchor().to_string()))
            }
            (_, Some(v)) => v,
        };
        if let Identity::Dev { pki, .. } = &identity {
            tracing::warn!(
                "DEV MODE: evidence is signed by the dev PKI and trusted only by dev nodes"
            );
            self.collateral.insert(pki.collateral().clone());
        }
        let network = NetworkId::from_name(&self.name);
        let now = self.clock.now_unix();
        let provider = identity.provider();
        let key = match (self.key, &self.data_dir) {
            (Some(key), _) => key,
            (None, Some(dir)) => {
                if matches!(identity, Identity::Tdx(_)) {
                    keyfile::require_memory_backed(dir)?;
                }
                let (key, made) = keyfile::load_or_create(dir)?;
                if made {
                    tracing::info!(node = %key.node_id(), dir = %dir.display(), "node key created");
                } else {
                    tracing::info!(node = %key.node_id(), dir = %dir.display(), "node key loaded");
                }
                key
            }
            (None, None) => {
                NodeKey::generate().map_err(|e| NetworkError::NoQuote(e.to_string()))?
            }
        };
        let cert = {
            let provider = provider.clone();
            let lifetime = self.cert_lifetime;
            tokio::task::spawn_blocking(move || {
                ratls::issue_for_key(&key, &*provider, &network, now, lifetime)
            })
            .await
            .map_err(|e| NetworkError::NoQuote(e.to_string()))?
            .map_err(|e| NetworkError::NoQuote(e.to_string()))?
        };
        let node_id = cert.node_id();
        let verifier = RatlsVerifier::new(
            anchor,
            self.collateral.clone(),
            policy.clone(),
            network,
            self.clock.clone(),
        );
        verifier
            .verify_cert(cert.cert_der().as_ref())
            .map_err(|e| NetworkError::OwnEvidence(e.to_string()))?;
        let resolver =
            CertResolver::new(cert).map_err(|e| NetworkError::Transport(e.to_string()))?;

        let validator = TicketValidator::new(self.name.clone(), self.issuers.clone())
            .map_err(|e| NetworkError::Ticket(e.to_string()))?
            .with_leeway(self.leeway);
        let (ticket, ticket_exp) = match &ticket_source {
            TicketSource::Pending => {
                tracing::warn!(node = %node_id, "no ticket yet: peers refuse this node until one is installed (POST /v1/ticket)");
                (String::new(), 0)
            }
            source => {
                let ticket = own_ticket(source, &self.name, node_id, now)?;
                let claims = validator
                    .validate(&ticket, Some(&node_id.to_string()), now)
                    .map_err(|e| NetworkError::Ticket(e.to_string()))?;
                (ticket, claims.exp)
            }
        };

        let endpoint = endpoint(
            self.listen,
            resolver.clone(),
            verifier.clone(),
            self.socket.as_ref(),
        )?;
        let local_addr = advertised(
            endpoint
                .local_addr()
                .map_err(|e| NetworkError::Transport(e.to_string()))?,
        );
        let (shutdown_tx, shutdown_rx) = watch::channel(false);
        let core = Arc::new(Core {
            name: self.name,
            network,
            node_id,
            mode: identity.mode(),
            started_at: now,
            start_ms: now.saturating_mul(1000),
            started: Instant::now(),
            incarnation: incarnation(),
            clock: self.clock,
            endpoint,
            local_addr,
            resolver,
            verifier,
            validator,
            provider,
            ticket: Mutex::new((ticket, ticket_exp)),
            ticket_source,
            cert_lifetime: self.cert_lifetime,
            limits: self.limits,
            table: Mutex::new(PeerTable::new(node_id, self.limits.max_peers)),
            dialing: Mutex::new(HashSet::new()),
            handlers: Handlers::default(),
            outboxes: Outboxes::default(),
            watches: Mutex::new(Default::default()),
            addresses: RwLock::new(None),
            pending: Mutex::new(crate::relay::Pending::default()),
            revoked: admission::RevocationView::default(),
            shutdown: shutdown_rx,
            renewing: AtomicBool::new(false),
            verify_permits: Semaphore::new(
                std::thread::available_parallelism().map_or(2, |n| n.get()),
            ),
        });
        let control = Arc::new(ControlHandler {
            core: Arc::downgrade(&core),
        });
        core.register(control)
            .map_err(|e| NetworkError::Transport(e.to_string()))?;
        let mut tasks = JoinSet::new();
        tasks.spawn(accept_loop(core.clone()));
        tasks.spawn(sweep_loop(core.clone(), self.sweep_interval));
        for addr in self.bootstrap {
            tasks.spawn(bootstrap(core.clone(), addr));
        }
        tracing::info!(node = %node_id, network = %core.name, addr = %local_addr, mode = core.mode, "node started");
        metrics::gauge!("tessella_up", "node" => node_id.to_string()).set(1.0);
        Ok(Network {
            core,
            control: Arc::new(super::Control {
                shutdown: shutdown_tx,
                tasks: tokio::sync::Mutex::new(tasks),
            }),
        })
    }
}

/// A wildcard listen address cannot be dialled; advertise loopback instead.
fn advertised(addr: SocketAddr) -> SocketAddr {
    if addr.ip().is_unspecified() {
        SocketAddr::from(([127, 0, 0, 1], addr.port()))
    } else {
        addr
    }
}

pub(crate) fn own_ticket(
    source: &TicketSource,
    network: &str,
    node_id: NodeId,
    now: u64,
) -> Result<String, NetworkError> {
    match source {
        TicketSource::Static(t) => Ok(t.clone()),
        TicketSource::Pending => Ok(String::new()),
        TicketSource::Issuer(issuer, ttl) => {
            let claims = issuer.claims(node_id.to_string(), network, now, *ttl);
            issuer
                .issue(&claims)
                .map_err(|e| NetworkError::Ticket(e.to_string()))
        }
        TicketSource::IssuerGranting(issuer, ttl, template) => {
            let mut claims = issuer.claims(node_id.to_string(), network, now, *ttl);
            claims.streams = template.streams.clone();
            claims.groups = template.groups.clone();
            claims.collections = template.collections.clone();
            issuer
                .issue(&claims)
                .map_err(|e| NetworkError::Ticket(e.to_string()))
        }
    }
}

async fn accept_loop(core: Arc<Core>) {
    let mut shutdown = core.shutdown.clone();
    loop {
        tokio::select! {
            incoming = core.endpoint.accept() => match incoming {
                Some(incoming) => {
                    tokio::spawn(core.clone().accept(incoming));
                }
                None => return,
            },
            _ = shutdown.changed() => return,
        }
    }
}

async fn sweep_loop(core: Arc<Core>, interval: Duration) {
    let mut shutdown = core.shutdown.clone();
    let mut timer = tokio::time::interval(interval);
    timer.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = timer.tick() => core.tick(),
            _ = shutdown.changed() => return,
        }
    }
}

/// Dial a bootstrap address until it answers (its node id is unknown until
/// the handshake), with backoff.
async fn bootstrap(core: Arc<Core>, addr: SocketAddr) {
    let mut shutdown = core.shutdown.clone();
    let mut backoff = Duration::from_millis(100);
    loop {
        match core.dial(addr).await {
            Ok(peer) => {
                tracing::info!(%addr, peer = %peer, "bootstrap peer connected");
                return;
            }
            Err(e) => tracing::warn!(%addr, error = %e, "bootstrap dial failed; retrying"),
        }
        tokio::select! {
            _ = tokio::time::sleep(backoff) => {}
            _ = shutdown.changed() => return,
        }
        backoff = (backoff * 2).min(ADMISSION_TIMEOUT);
    }
}

/// A random incarnation number for this start (the wall clock's nanoseconds
/// if the system RNG fails: still different at every start).
fn incarnation() -> u64 {
    let mut b = [0u8; 8];
    match ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut b) {
        Ok(()) => u64::from_le_bytes(b),
        Err(_) => std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| d.as_nanos() as u64),
    }
}

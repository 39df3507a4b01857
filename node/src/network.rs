//! A running node: one QUIC endpoint, attested connections, admission,
//! discovery gossip. The protocol logic lives in [`crate::admission`] and
//! [`crate::discovery`] as plain state; this module is the tokio shell that
//! feeds them sockets, time and frames.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use quinn::crypto::rustls::{QuicClientConfig, QuicServerConfig};
use quinn::{Connection, Endpoint, VarInt};
use tessella_attestation::clock::{Clock, SystemClock};
use tessella_attestation::dev::{DevPki, DevQuoteProvider, DevTd};
use tessella_attestation::provider::QuoteProvider;
use tessella_attestation::ratls::{self, CertResolver, PeerIdentity, RatlsVerifier};
use tessella_attestation::{
    Collateral, CollateralStore, Fmspc, Policy, Quote, TicketIssuer, TicketValidator, TrustAnchor,
    TrustedIssuer, Verifier,
};
use tokio::sync::{broadcast, watch};
use tokio::task::JoinSet;

use crate::admission::{self, Admitted, ControlMsg, Hello, Refused};
use crate::discovery::{
    CatalogEvent, DiscoveryMsg, Gossip, GossipConfig, LocalInfo, Out, PeerRecord,
};
use crate::id::{NetworkId, NodeId, Tag};
use crate::relay::{CollateralMsg, CollateralV1};
use crate::wire::{
    self, read_frame, write_frame, CloseCode, FrameError, StreamFamily, StreamHeader,
};

/// How long a peer has to complete the QUIC handshake and admission.
const ADMISSION_TIMEOUT: Duration = Duration::from_secs(10);

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
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_frame: crate::wire::DEFAULT_MAX_FRAME,
            max_peers: 256,
            max_catalog: 1000,
            event_queue: 1024,
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
    tags: Vec<Tag>,
    clock: Arc<dyn Clock>,
    limits: Limits,
    cert_lifetime: u64,
    gossip_interval: Duration,
    peer_ttl: Duration,
}

impl NetworkBuilder {
    fn new(name: &str) -> Self {
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
            tags: Vec::new(),
            clock: Arc::new(SystemClock),
            limits: Limits::default(),
            cert_lifetime: 24 * 3600,
            gossip_interval: Duration::from_millis(200),
            peer_ttl: Duration::from_secs(30),
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

    /// Tags advertised in this node's discovery record.
    pub fn tags(mut self, tags: Vec<Tag>) -> Self {
        self.tags = tags;
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

    /// How often gossip runs.
    pub fn gossip_interval(mut self, interval: Duration) -> Self {
        self.gossip_interval = interval;
        self
    }

    /// How long a silent peer stays in the catalog.
    pub fn peer_ttl(mut self, ttl: Duration) -> Self {
        self.peer_ttl = ttl;
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
        let cert = {
            let provider = provider.clone();
            let lifetime = self.cert_lifetime;
            tokio::task::spawn_blocking(move || ratls::issue(&*provider, &network, now, lifetime))
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

        let endpoint = endpoint(self.listen, resolver.clone(), verifier.clone())?;
        let local_addr = endpoint
            .local_addr()
            .map_err(|e| NetworkError::Transport(e.to_string()))?;

        let started = Instant::now();
        let start_ms = now.saturating_mul(1000);
        let mut config = GossipConfig::new(network);
        config.interval = self.gossip_interval;
        config.peer_ttl = self.peer_ttl;
        config.max_entries = self.limits.max_catalog;
        config.max_connections = self.limits.max_peers;
        config.max_message_bytes = self.limits.max_frame.saturating_sub(1024);
        let gossip = Gossip::new(
            resolver.current(),
            LocalInfo {
                addrs: vec![advertised(local_addr)],
                tags: self.tags.iter().map(|t| t.0).collect(),
                services: Vec::new(),
                software: format!("tessella {}", env!("CARGO_PKG_VERSION")),
            },
            config,
            start_ms,
        )
        .map_err(|e| NetworkError::Transport(e.to_string()))?;
        let (events, _) = broadcast::channel(self.limits.event_queue);
        let (shutdown_tx, shutdown_rx) = watch::channel(false);
        let inner = Arc::new(Inner {
            name: self.name,
            network,
            node_id,
            mode: identity.mode(),
            started_at: now,
            start_ms,
            started,
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
            peers: Mutex::new(HashMap::new()),
            dialing: Mutex::new(HashSet::new()),
            gossip: Mutex::new(gossip),
            pending: Mutex::new(crate::relay::Pending::default()),
            revoked: Mutex::new(admission::Revocations::default()),
            events,
            shutdown: shutdown_rx,
        });
        let mut tasks = JoinSet::new();
        tasks.spawn(accept_loop(inner.clone()));
        tasks.spawn(tick_loop(inner.clone(), self.gossip_interval));
        for addr in self.bootstrap {
            tasks.spawn(bootstrap(inner.clone(), addr));
        }
        tracing::info!(node = %node_id, network = %inner.name, addr = %local_addr, mode = inner.mode, "node started");
        metrics::gauge!("tessella_up", "node" => node_id.to_string()).set(1.0);
        Ok(Network {
            inner,
            shutdown: shutdown_tx,
            tasks: tokio::sync::Mutex::new(tasks),
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

fn own_ticket(
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
    }
}

fn endpoint(
    listen: SocketAddr,
    resolver: Arc<CertResolver>,
    verifier: Arc<RatlsVerifier>,
) -> Result<Endpoint, NetworkError> {
    let tls = |e: rustls::Error| NetworkError::Transport(e.to_string());
    let mut server_tls = ratls::server_config(resolver.clone(), verifier.clone()).map_err(tls)?;
    server_tls.alpn_protocols = vec![wire::ALPN.to_vec()];
    let mut client_tls = ratls::client_config(resolver, verifier).map_err(tls)?;
    client_tls.alpn_protocols = vec![wire::ALPN.to_vec()];
    let quic =
        |e: quinn::crypto::rustls::NoInitialCipherSuite| NetworkError::Transport(e.to_string());
    let mut transport = quinn::TransportConfig::default();
    transport
        .max_concurrent_bidi_streams(VarInt::from_u32(16))
        .max_concurrent_uni_streams(VarInt::from_u32(64))
        .keep_alive_interval(Some(Duration::from_secs(5)))
        .max_idle_timeout(Some(VarInt::from_u32(30_000).into()));
    let transport = Arc::new(transport);
    let mut server = quinn::ServerConfig::with_crypto(Arc::new(
        QuicServerConfig::try_from(server_tls).map_err(quic)?,
    ));
    server.transport_config(transport.clone());
    let mut endpoint = Endpoint::server(server, listen).map_err(|error| NetworkError::Bind {
        addr: listen,
        error,
    })?;
    let mut client = quinn::ClientConfig::new(Arc::new(
        QuicClientConfig::try_from(client_tls).map_err(quic)?,
    ));
    client.transport_config(transport);
    endpoint.set_default_client_config(client);
    Ok(endpoint)
}

struct PeerConn {
    conn: Connection,
    admitted: Admitted,
    addr: SocketAddr,
    dialer: NodeId,
    since: Instant,
}

struct Inner {
    name: String,
    network: NetworkId,
    node_id: NodeId,
    mode: &'static str,
    started_at: u64,
    /// Gossip time: the clock at start plus monotonic time since, so rounds
    /// advance even under a frozen test clock.
    start_ms: u64,
    started: Instant,
    clock: Arc<dyn Clock>,
    endpoint: Endpoint,
    local_addr: SocketAddr,
    resolver: Arc<CertResolver>,
    verifier: Arc<RatlsVerifier>,
    validator: TicketValidator,
    provider: Arc<dyn QuoteProvider>,
    /// This node's ticket and its expiry.
    ticket: Mutex<(String, u64)>,
    ticket_source: TicketSource,
    cert_lifetime: u64,
    limits: Limits,
    peers: Mutex<HashMap<NodeId, PeerConn>>,
    dialing: Mutex<HashSet<NodeId>>,
    gossip: Mutex<Gossip>,
    /// Relayed collateral waiting for a quote to verify it with.
    pending: Mutex<crate::relay::Pending>,
    /// Revoked ticket ids and node ids.
    revoked: Mutex<admission::Revocations>,
    events: broadcast::Sender<CatalogEvent>,
    shutdown: watch::Receiver<bool>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn close(conn: &Connection, code: CloseCode, reason: &str) {
    conn.close(code.into(), reason.as_bytes());
}

impl Inner {
    fn now(&self) -> u64 {
        self.clock.now_unix()
    }

    fn now_ms(&self) -> u64 {
        self.start_ms
            .saturating_add(u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX))
    }

    fn hello(&self) -> ControlMsg {
        ControlMsg::V1(Hello {
            network: self.network,
            ticket: lock(&self.ticket).0.clone(),
            software: env!("CARGO_PKG_VERSION").to_string(),
        })
    }

    fn peer_identity(&self, conn: &Connection) -> Option<Arc<PeerIdentity>> {
        let certs = conn
            .peer_identity()?
            .downcast::<Vec<rustls::pki_types::CertificateDer<'static>>>()
            .ok()?;
        self.verifier.peer_identity(certs.first()?.as_ref())
    }

    fn refuse(&self, conn: &Connection, who: Option<NodeId>, r: &Refused) {
        tracing::warn!(peer = ?who, code = ?r.code, reason = %r.reason, "admission refused");
        metrics::counter!("tessella_admissions_refused_total", "reason" => r.reason.clone())
            .increment(1);
        close(conn, r.code, &r.reason);
    }

    /// Keep one connection per peer: the one dialled by the smaller node id,
    /// which both sides compute alike. Returns whether `conn` was kept.
    fn register(self: &Arc<Self>, conn: Connection, admitted: Admitted, dialer: NodeId) -> bool {
        let peer = admitted.identity.node_id;
        let mut peers = lock(&self.peers);
        if let Some(existing) = peers.get(&peer) {
            if existing.conn.close_reason().is_none() {
                let preferred = std::cmp::min(self.node_id, peer);
                if existing.dialer == preferred || dialer != preferred {
                    close(&conn, CloseCode::Normal, "duplicate connection");
                    return false;
                }
                close(&existing.conn, CloseCode::Normal, "duplicate connection");
            }
        }
        if peers.len() >= self.limits.max_peers && !peers.contains_key(&peer) {
            drop(peers);
            self.refuse(
                &conn,
                Some(peer),
                &Refused {
                    code: CloseCode::AdmissionRefused,
                    reason: "too many peers".into(),
                },
            );
            return false;
        }
        tracing::info!(
            peer = %peer,
            entry = ?admitted.identity.matched_entry,
            tcb = %admitted.identity.tcb_status,
            ticket_expires = admitted.ticket_expires(),
            "peer admitted"
        );
        let addr = conn.remote_address();
        peers.insert(
            peer,
            PeerConn {
                conn: conn.clone(),
                admitted,
                addr,
                dialer,
                since: Instant::now(),
            },
        );
        metrics::gauge!("tessella_peers", "node" => self.node_id.to_string())
            .set(peers.len() as f64);
        drop(peers);
        let outs = lock(&self.gossip).on_connected(peer, self.now_ms());
        self.dispatch(outs);
        let me = self.clone();
        tokio::spawn(async move {
            if let Err(e) = me.push_collateral(&conn).await {
                tracing::debug!(peer = %peer, error = %e, "collateral relay failed");
            }
            me.serve_connection(conn, peer).await
        });
        true
    }

    fn dispatch(self: &Arc<Self>, outs: Vec<Out>) {
        for out in outs {
            match out {
                Out::Send { to, msg } => {
                    let conn = lock(&self.peers).get(&to).map(|p| p.conn.clone());
                    if let Some(conn) = conn {
                        let max = self.limits.max_frame;
                        tokio::spawn(async move {
                            if let Err(e) = send_discovery(&conn, &msg, max).await {
                                tracing::debug!(peer = %to, error = %e, "gossip send failed");
                            }
                        });
                    }
                }
                Out::Connect { node_id, addrs } => {
                    if node_id == self.node_id || lock(&self.peers).contains_key(&node_id) {
                        continue;
                    }
                    if lock(&self.peers).len() >= self.limits.max_peers
                        || !lock(&self.dialing).insert(node_id)
                    {
                        continue;
                    }
                    let me = self.clone();
                    tokio::spawn(async move {
                        for addr in addrs {
                            match me.dial(addr).await {
                                Ok(reached) if reached == node_id => break,
                                Ok(reached) => {
                                    // A record pointed at another node's address; that
                                    // node was admitted on its own merits, so keep it.
                                    tracing::debug!(wanted = %node_id, %reached, %addr, "address reached another node");
                                }
                                Err(_) => {}
                            }
                        }
                        lock(&me.dialing).remove(&node_id);
                    });
                }
                Out::Event(event) => {
                    metrics::gauge!("tessella_catalog_size", "node" => self.node_id.to_string())
                        .set(lock(&self.gossip).catalog().len() as f64);
                    let _ = self.events.send(event);
                }
            }
        }
    }

    async fn dial(self: &Arc<Self>, addr: SocketAddr) -> Result<NodeId, String> {
        let started = Instant::now();
        let connecting = self
            .endpoint
            .connect(addr, "tessella")
            .map_err(|e| e.to_string())?;
        let conn = tokio::time::timeout(ADMISSION_TIMEOUT, connecting)
            .await
            .map_err(|_| "handshake timed out".to_string())?
            .map_err(|e| e.to_string())?;
        metrics::histogram!("tessella_handshake_seconds", "direction" => "out")
            .record(started.elapsed().as_secs_f64());
        let identity = self
            .peer_identity(&conn)
            .ok_or_else(|| "no verified peer identity".to_string())?;
        let peer = identity.node_id;
        let outcome = tokio::time::timeout(ADMISSION_TIMEOUT, async {
            let (mut send, mut recv) = conn.open_bi().await.map_err(|e| e.to_string())?;
            wire::write_header(&mut send, StreamHeader::new(StreamFamily::Control))
                .await
                .map_err(|e| e.to_string())?;
            write_frame(&mut send, &self.hello(), self.limits.max_frame)
                .await
                .map_err(|e| e.to_string())?;
            let reply: Option<ControlMsg> = read_frame(&mut recv, self.limits.max_frame)
                .await
                .map_err(|e| e.to_string())?;
            let _ = send.finish();
            reply.ok_or_else(|| "peer closed the control stream".to_string())
        })
        .await
        .map_err(|_| "admission timed out".to_string())?;
        let reply = match outcome {
            Ok(r) => r,
            Err(e) => {
                let reason = conn.close_reason().map(|r| r.to_string()).unwrap_or(e);
                tracing::warn!(peer = %peer, %addr, reason = %reason, "peer refused us");
                return Err(reason);
            }
        };
        let ControlMsg::V1(hello) = reply;
        let decision = admission::admit(
            identity,
            &hello,
            &self.network,
            &self.validator,
            &lock(&self.revoked),
            self.now(),
        );
        match decision {
            Ok(admitted) => {
                self.register(conn, admitted, self.node_id);
                Ok(peer)
            }
            Err(r) => {
                self.refuse(&conn, Some(peer), &r);
                Err(r.reason)
            }
        }
    }

    async fn accept(self: Arc<Self>, incoming: quinn::Incoming) {
        let started = Instant::now();
        let conn = match tokio::time::timeout(ADMISSION_TIMEOUT, incoming).await {
            Ok(Ok(conn)) => conn,
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "incoming handshake failed");
                metrics::counter!("tessella_admissions_refused_total", "reason" => "handshake")
                    .increment(1);
                return;
            }
            Err(_) => return,
        };
        metrics::histogram!("tessella_handshake_seconds", "direction" => "in")
            .record(started.elapsed().as_secs_f64());
        let Some(identity) = self.peer_identity(&conn) else {
            close(&conn, CloseCode::AdmissionRefused, "no verified identity");
            return;
        };
        let peer = identity.node_id;
        let hello = tokio::time::timeout(ADMISSION_TIMEOUT, async {
            let violation = |e: String| (CloseCode::ProtocolViolation, e);
            let (send, mut recv) = conn
                .accept_bi()
                .await
                .map_err(|e| violation(e.to_string()))?;
            let header = wire::read_header(&mut recv)
                .await
                .map_err(|e| violation(e.to_string()))?;
            if header.family != StreamFamily::Control {
                return Err(violation(
                    "first stream is not the control stream".to_string(),
                ));
            }
            let hello: Option<ControlMsg> = read_frame(&mut recv, self.limits.max_frame)
                .await
                .map_err(|e| match e {
                    FrameError::TooLarge { .. } => (CloseCode::FrameTooLarge, e.to_string()),
                    e => violation(e.to_string()),
                })?;
            Ok((
                send,
                hello.ok_or_else(|| violation("empty control stream".to_string()))?,
            ))
        })
        .await;
        let (mut send, ControlMsg::V1(hello)) = match hello {
            Ok(Ok(v)) => v,
            Ok(Err((code, reason))) => {
                self.refuse(&conn, Some(peer), &Refused { code, reason });
                return;
            }
            Err(_) => {
                self.refuse(
                    &conn,
                    Some(peer),
                    &Refused {
                        code: CloseCode::AdmissionRefused,
                        reason: "admission timed out".into(),
                    },
                );
                return;
            }
        };
        let decision = admission::admit(
            identity,
            &hello,
            &self.network,
            &self.validator,
            &lock(&self.revoked),
            self.now(),
        );
        match decision {
            Ok(admitted) => {
                if write_frame(&mut send, &self.hello(), self.limits.max_frame)
                    .await
                    .is_err()
                {
                    return;
                }
                let _ = send.finish();
                self.register(conn, admitted, peer);
            }
            Err(r) => self.refuse(&conn, Some(peer), &r),
        }
    }

    async fn serve_connection(self: Arc<Self>, conn: Connection, peer: NodeId) {
        let mut shutdown = self.shutdown.clone();
        loop {
            tokio::select! {
                uni = conn.accept_uni() => match uni {
                    Ok(recv) => {
                        let me = self.clone();
                        let conn = conn.clone();
                        tokio::spawn(async move { me.serve_uni(conn, peer, recv).await });
                    }
                    Err(_) => break,
                },
                bi = conn.accept_bi() => match bi {
                    Ok((mut send, mut recv)) => {
                        // No bidirectional protocol is spoken after admission yet.
                        // Off this loop: a header that never completes must not stall it.
                        tokio::spawn(async move {
                            let code = match wire::read_header(&mut recv).await {
                                Ok(_) => CloseCode::UnknownFamily,
                                Err(e) => e.close_code(),
                            };
                            let _ = send.reset(code.into());
                            let _ = recv.stop(code.into());
                        });
                    }
                    Err(_) => break,
                },
                _ = shutdown.changed() => break,
            }
        }
        let reason = conn.close_reason();
        tracing::info!(peer = %peer, reason = ?reason, "peer connection ended");
        let mut peers = lock(&self.peers);
        if peers
            .get(&peer)
            .is_some_and(|p| p.conn.stable_id() == conn.stable_id())
        {
            peers.remove(&peer);
            metrics::gauge!("tessella_peers", "node" => self.node_id.to_string())
                .set(peers.len() as f64);
            drop(peers);
            lock(&self.gossip).on_disconnected(peer);
        }
    }

    async fn serve_uni(
        self: Arc<Self>,
        conn: Connection,
        peer: NodeId,
        mut recv: quinn::RecvStream,
    ) {
        let header = match wire::read_header(&mut recv).await {
            Ok(h) => h,
            Err(e) => {
                tracing::warn!(peer = %peer, error = %e, "bad stream header");
                let _ = recv.stop(e.close_code().into());
                return;
            }
        };
        let current = StreamHeader::CURRENT_VERSION;
        if let Err(e) = header.check_version(current..=current) {
            tracing::warn!(peer = %peer, error = %e, "stream version not spoken");
            let _ = recv.stop(e.close_code().into());
            return;
        }
        if header.family == StreamFamily::Control {
            self.serve_relay(conn, peer, recv).await;
            return;
        }
        if header.family != StreamFamily::Discovery {
            tracing::warn!(peer = %peer, family = ?header.family, "stream family not served");
            let _ = recv.stop(CloseCode::UnknownFamily.into());
            return;
        }
        loop {
            match read_frame::<_, DiscoveryMsg>(&mut recv, self.limits.max_frame).await {
                Ok(Some(msg)) => {
                    if let Err(e) = msg.check_bounds() {
                        tracing::warn!(peer = %peer, error = %e, "discovery message over its bounds");
                        let _ = recv.stop(CloseCode::ProtocolViolation.into());
                        return;
                    }
                    metrics::counter!("tessella_gossip_messages_total", "direction" => "in")
                        .increment(1);
                    let outs = lock(&self.gossip).on_message(peer, msg, self.now_ms());
                    self.dispatch(outs);
                }
                Ok(None) => return,
                Err(e) => {
                    tracing::warn!(peer = %peer, error = %e, "malformed discovery frame");
                    let code = e.close_code();
                    let _ = recv.stop(code.into());
                    if matches!(e, FrameError::TooLarge { .. }) {
                        close(&conn, code, "frame too large");
                    }
                    return;
                }
            }
        }
    }

    /// Receive relayed collateral bundles from an admitted peer.
    async fn serve_relay(&self, conn: Connection, peer: NodeId, mut recv: quinn::RecvStream) {
        loop {
            match read_frame::<_, CollateralMsg>(&mut recv, self.limits.max_frame).await {
                Ok(Some(CollateralMsg::V1(CollateralV1::Bundle { json }))) => {
                    match Collateral::from_json(&json) {
                        Ok(c) => self.offer_collateral(c),
                        Err(e) => {
                            tracing::warn!(peer = %peer, error = %e, "relayed collateral refused")
                        }
                    }
                }
                Ok(Some(CollateralMsg::V1(CollateralV1::Ticket { token }))) => {
                    self.renew_peer_ticket(peer, &token);
                }
                Ok(None) => return,
                Err(e) => {
                    tracing::warn!(peer = %peer, error = %e, "malformed relay frame");
                    let code = e.close_code();
                    let _ = recv.stop(code.into());
                    if matches!(e, FrameError::TooLarge { .. }) {
                        close(&conn, code, "frame too large");
                    }
                    return;
                }
            }
        }
    }

    /// Send every bundle we hold to a newly admitted peer.
    async fn push_collateral(&self, conn: &Connection) -> Result<(), String> {
        let bundles = self.verifier.store().all();
        if bundles.is_empty() {
            return Ok(());
        }
        let mut send = conn.open_uni().await.map_err(|e| e.to_string())?;
        wire::write_header(&mut send, StreamHeader::new(StreamFamily::Control))
            .await
            .map_err(|e| e.to_string())?;
        for b in bundles {
            let msg = CollateralMsg::V1(CollateralV1::Bundle { json: b.to_json() });
            if let Err(e) = write_frame(&mut send, &msg, self.limits.max_frame).await {
                tracing::debug!(fmspc = %b.fmspc(), error = %e, "bundle not relayed");
            }
        }
        send.finish().map_err(|e| e.to_string())
    }

    /// A peer presented a renewed ticket: validate it like at admission and
    /// let it carry the session from now on.
    fn renew_peer_ticket(&self, peer: NodeId, token: &str) {
        let now = self.now();
        let claims = match self.validator.validate(token, Some(&peer.to_string()), now) {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(peer = %peer, code = e.code(), "renewed ticket refused; the old one stays in force");
                return;
            }
        };
        if lock(&self.revoked).covers(&claims) {
            tracing::warn!(peer = %peer, "renewed ticket is revoked");
            return;
        }
        if let Some(p) = lock(&self.peers).get_mut(&peer) {
            tracing::debug!(peer = %peer, expires = claims.exp, "peer ticket renewed");
            p.admitted.claims = claims;
        }
    }

    /// Present this node's (new) ticket to every connected peer.
    fn announce_ticket(self: &Arc<Self>) {
        let token = lock(&self.ticket).0.clone();
        let conns: Vec<Connection> = lock(&self.peers).values().map(|p| p.conn.clone()).collect();
        let max = self.limits.max_frame;
        for conn in conns {
            let msg = CollateralMsg::V1(CollateralV1::Ticket {
                token: token.clone(),
            });
            tokio::spawn(async move {
                let sent = async {
                    let mut send = conn.open_uni().await.map_err(|e| e.to_string())?;
                    wire::write_header(&mut send, StreamHeader::new(StreamFamily::Control))
                        .await
                        .map_err(|e| e.to_string())?;
                    write_frame(&mut send, &msg, max)
                        .await
                        .map_err(|e| e.to_string())?;
                    send.finish().map_err(|e| e.to_string())
                };
                if let Err(e) = sent.await {
                    tracing::debug!(error = %e, "ticket announcement failed");
                }
            });
        }
    }

    /// The quote in this node's own certificate.
    fn own_quote(&self) -> Option<Quote> {
        let cert = self.resolver.current();
        ratls::ParsedCert::parse(cert.cert_der().as_ref())
            .ok()
            .and_then(|p| Quote::decode(&p.quote).ok())
    }

    /// Verify `c` against a real quote of its platform (ours, or one a peer
    /// was refused with for lack of it) and store it.
    fn verify_and_store(&self, c: Collateral) -> Result<bool, tessella_attestation::VerifyError> {
        let fmspc = c.fmspc();
        let quote = self
            .own_quote()
            .filter(|q| q.fmspc().ok() == Some(fmspc))
            .or_else(|| {
                self.verifier
                    .wanted_collateral()
                    .into_iter()
                    .find(|(f, _)| *f == fmspc)
                    .map(|(_, q)| q)
            })
            .ok_or(tessella_attestation::VerifyError::NoCollateral { fmspc })?;
        self.verifier
            .quote_verifier()
            .verify_quote(&quote, &c, self.now())?;
        let stored = self.verifier.store().insert(c);
        self.verifier.collateral_found(&fmspc);
        tracing::info!(fmspc = %fmspc, stored, "collateral verified and stored");
        Ok(stored)
    }

    /// A relayed bundle: store it if verifiable now, else keep it pending.
    fn offer_collateral(&self, c: Collateral) {
        let fmspc = c.fmspc();
        if let Some(held) = self.verifier.store().get(&fmspc) {
            if held.eval_data_number() >= c.eval_data_number()
                && held.validity().not_after >= c.validity().not_after
            {
                return;
            }
        }
        match self.verify_and_store(c.clone()) {
            Ok(_) => {}
            Err(tessella_attestation::VerifyError::NoCollateral { .. }) => {
                lock(&self.pending).offer(c);
            }
            Err(e) => {
                tracing::warn!(fmspc = %fmspc, error = %e, "relayed collateral does not verify")
            }
        }
    }

    /// Pending bundles whose platform now has a quote to check them with.
    fn retry_pending(&self) {
        let wanted: Vec<Fmspc> = self
            .verifier
            .wanted_collateral()
            .into_iter()
            .map(|(f, _)| f)
            .collect();
        for fmspc in wanted {
            let c = lock(&self.pending).take(&fmspc);
            if let Some(c) = c {
                if let Err(e) = self.verify_and_store(c) {
                    tracing::warn!(fmspc = %fmspc, error = %e, "relayed collateral does not verify");
                }
            }
        }
    }

    fn tick(self: &Arc<Self>) {
        self.retry_pending();
        let now = self.now();
        let outs = lock(&self.gossip).on_tick(self.now_ms());
        self.dispatch(outs);
        // Tickets end the sessions that relied on them.
        let expired: Vec<Connection> = lock(&self.peers)
            .values()
            .filter(|p| now > p.admitted.ticket_expires() + self.validator.leeway())
            .map(|p| p.conn.clone())
            .collect();
        for conn in expired {
            close(&conn, CloseCode::TicketExpired, "ticket expired");
        }
        if self.resolver.current().renewal_due(now) {
            let me = self.clone();
            tokio::task::spawn_blocking(move || {
                match me
                    .resolver
                    .renew_if_due(&*me.provider, &me.network, now, me.cert_lifetime)
                {
                    Ok(true) => tracing::info!("certificate renewed"),
                    Ok(false) => {}
                    Err(e) => tracing::error!(error = %e, "certificate renewal failed"),
                }
            });
        }
        if let TicketSource::Issuer(_, ttl) = self.ticket_source {
            // Self-issued tickets are renewed at two thirds of their life.
            let mut own = lock(&self.ticket);
            if now >= own.1.saturating_sub(ttl / 3) {
                match own_ticket(&self.ticket_source, &self.name, self.node_id, now) {
                    Ok(t) => {
                        *own = (t, now + ttl);
                        drop(own);
                        self.announce_ticket();
                    }
                    Err(e) => tracing::error!(error = %e, "ticket renewal failed"),
                }
            }
        }
    }
}

async fn send_discovery(
    conn: &Connection,
    msg: &DiscoveryMsg,
    max: usize,
) -> Result<quinn::SendStream, String> {
    let mut send = conn.open_uni().await.map_err(|e| e.to_string())?;
    wire::write_header(&mut send, StreamHeader::new(StreamFamily::Discovery))
        .await
        .map_err(|e| e.to_string())?;
    write_frame(&mut send, msg, max)
        .await
        .map_err(|e| e.to_string())?;
    send.finish().map_err(|e| e.to_string())?;
    metrics::counter!("tessella_gossip_messages_total", "direction" => "out").increment(1);
    Ok(send)
}

async fn accept_loop(inner: Arc<Inner>) {
    let mut shutdown = inner.shutdown.clone();
    loop {
        tokio::select! {
            incoming = inner.endpoint.accept() => match incoming {
                Some(incoming) => {
                    tokio::spawn(inner.clone().accept(incoming));
                }
                None => return,
            },
            _ = shutdown.changed() => return,
        }
    }
}

async fn tick_loop(inner: Arc<Inner>, interval: Duration) {
    let mut shutdown = inner.shutdown.clone();
    let mut timer = tokio::time::interval(interval);
    timer.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = timer.tick() => inner.tick(),
            _ = shutdown.changed() => return,
        }
    }
}

async fn bootstrap(inner: Arc<Inner>, addr: SocketAddr) {
    let mut shutdown = inner.shutdown.clone();
    let mut backoff = Duration::from_millis(100);
    loop {
        match inner.dial(addr).await {
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
        backoff = (backoff * 2).min(Duration::from_secs(10));
    }
}

/// A running node.
pub struct Network {
    inner: Arc<Inner>,
    shutdown: watch::Sender<bool>,
    tasks: tokio::sync::Mutex<JoinSet<()>>,
}

/// What the node knows about a connected peer.
#[derive(Debug, Clone)]
pub struct ConnectedPeer {
    /// The verified identity.
    pub identity: Arc<PeerIdentity>,
    /// The remote address.
    pub addr: SocketAddr,
    /// When the peer's ticket expires.
    pub ticket_expires: u64,
    /// How long the connection has been up.
    pub connected_for: Duration,
}

impl Network {
    /// Start configuring a node of the network called `name`.
    pub fn builder(name: &str) -> NetworkBuilder {
        NetworkBuilder::new(name)
    }

    /// This node's id.
    pub fn node_id(&self) -> NodeId {
        self.inner.node_id
    }

    /// The network's name.
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// The network's id.
    pub fn network_id(&self) -> NetworkId {
        self.inner.network
    }

    /// `dev` or `tdx`.
    pub fn mode(&self) -> &'static str {
        self.inner.mode
    }

    /// The bound UDP address.
    pub fn local_addr(&self) -> SocketAddr {
        self.inner.local_addr
    }

    /// Unix time the node started.
    pub fn started_at(&self) -> u64 {
        self.inner.started_at
    }

    /// Install this node's ticket (issued for its node id and this network)
    /// and present it from now on. Returns its expiry.
    pub fn install_ticket(&self, token: &str) -> Result<u64, tessella_attestation::TicketError> {
        let inner = &self.inner;
        let claims = inner.validator.validate(
            token.trim(),
            Some(&inner.node_id.to_string()),
            inner.now(),
        )?;
        *lock(&inner.ticket) = (token.trim().to_string(), claims.exp);
        tracing::info!(expires = claims.exp, "ticket installed");
        inner.announce_ticket();
        Ok(claims.exp)
    }

    /// Revoke tickets whose `jti` or `sub` (node id) is `id`: sessions that
    /// relied on them close now with `TicketRevoked`, and they no longer
    /// admit. Returns the number of sessions closed, or `None` when the
    /// revocation list is full.
    pub fn revoke(&self, id: &str) -> Option<usize> {
        let inner = &self.inner;
        if !lock(&inner.revoked).revoke(id) {
            return None;
        }
        let revoked = lock(&inner.revoked);
        let conns: Vec<Connection> = lock(&inner.peers)
            .values()
            .filter(|p| revoked.covers(&p.admitted.claims))
            .map(|p| p.conn.clone())
            .collect();
        drop(revoked);
        for conn in &conns {
            close(conn, CloseCode::TicketRevoked, "ticket revoked");
        }
        tracing::warn!(id, sessions = conns.len(), "ticket revoked");
        Some(conns.len())
    }

    /// When this node's ticket expires (0: none installed).
    pub fn ticket_expires(&self) -> u64 {
        lock(&self.inner.ticket).1
    }

    /// The node's clock, Unix seconds.
    pub fn now(&self) -> u64 {
        self.inner.now()
    }

    /// True once shutdown has begun.
    pub fn is_stopping(&self) -> bool {
        *self.inner.shutdown.borrow()
    }

    /// The collateral store.
    pub fn collateral(&self) -> &Arc<CollateralStore> {
        self.inner.verifier.store()
    }

    /// The trust anchor's name.
    pub fn anchor_name(&self) -> String {
        self.inner.verifier.quote_verifier().anchor().to_string()
    }

    /// The measurements this node's own quote reports.
    pub fn own_measurements(&self) -> Option<tessella_attestation::measurements::TdMeasurements> {
        self.inner.own_quote().map(|q| q.measurements())
    }

    /// Catalog entries with seconds since each was last refreshed.
    pub fn catalog_peers(&self) -> Vec<(PeerRecord, u64)> {
        let now_ms = self.inner.now_ms();
        lock(&self.inner.gossip)
            .catalog()
            .iter()
            .map(|p| {
                (
                    p.record().clone(),
                    now_ms.saturating_sub(p.refreshed_ms()) / 1000,
                )
            })
            .collect()
    }

    /// Verify a collateral bundle against the trust anchor with a real quote
    /// of its platform (this node's own, or one a peer was refused with for
    /// lack of it) and store it. Other bundles cannot be checked and are refused.
    pub fn add_collateral(
        &self,
        collateral: Collateral,
    ) -> Result<bool, crate::admin::CollateralRejected> {
        use crate::admin::CollateralRejected;
        self.inner
            .verify_and_store(collateral)
            .map_err(|e| {
                match e {
            tessella_attestation::VerifyError::NoCollateral { fmspc } => CollateralRejected::new(
                "unverifiable",
                format!("no quote of platform {fmspc} is at hand to verify this collateral with"),
            ),
            e => CollateralRejected::new(e.code(), e.to_string()),
        }
            })
    }

    /// This node's current RA-TLS certificate and evidence.
    pub fn certificate(&self) -> ratls::RatlsIdentity {
        self.inner.resolver.current()
    }

    /// The RA-TLS verifier (trust anchor, policy, verdict cache).
    pub fn verifier(&self) -> &Arc<RatlsVerifier> {
        &self.inner.verifier
    }

    /// Peers currently connected and admitted.
    pub fn connected(&self) -> Vec<ConnectedPeer> {
        lock(&self.inner.peers)
            .values()
            .map(|p| ConnectedPeer {
                identity: p.admitted.identity.clone(),
                addr: p.addr,
                ticket_expires: p.admitted.ticket_expires(),
                connected_for: p.since.elapsed(),
            })
            .collect()
    }

    /// Known peers (connected or learned through gossip), excluding self.
    pub fn catalog(&self) -> Vec<PeerRecord> {
        lock(&self.inner.gossip)
            .catalog()
            .iter()
            .map(|p| p.record().clone())
            .collect()
    }

    /// Catalog events from now on (bounded: a slow receiver lags).
    pub fn subscribe(&self) -> broadcast::Receiver<CatalogEvent> {
        self.inner.events.subscribe()
    }

    /// Dial a peer now (in addition to bootstrap and discovery).
    pub async fn connect(&self, addr: SocketAddr) -> Result<NodeId, String> {
        self.inner.dial(addr).await
    }

    /// Announce departure, close every connection and stop.
    pub async fn shutdown(&self) {
        let now_ms = self.inner.now_ms();
        let outs = lock(&self.inner.gossip).depart(now_ms).unwrap_or_default();
        let sends: Vec<_> = outs
            .into_iter()
            .filter_map(|out| match out {
                Out::Send { to, msg } => lock(&self.inner.peers)
                    .get(&to)
                    .map(|p| (p.conn.clone(), msg)),
                _ => None,
            })
            .collect();
        let max = self.inner.limits.max_frame;
        let _ = tokio::time::timeout(Duration::from_secs(2), async {
            let mut acked = JoinSet::new();
            for (conn, msg) in sends {
                acked.spawn(async move {
                    // Closing the endpoint drops unsent data: wait for the peer's ack.
                    if let Ok(send) = send_discovery(&conn, &msg, max).await {
                        let _ = send.stopped().await;
                    }
                });
            }
            while acked.join_next().await.is_some() {}
        })
        .await;
        let _ = self.shutdown.send(true);
        self.inner
            .endpoint
            .close(CloseCode::Departed.into(), b"departed");
        // Let peers see the close; a draining connection needs a few round trips.
        let _ =
            tokio::time::timeout(Duration::from_millis(500), self.inner.endpoint.wait_idle()).await;
        let mut tasks = self.tasks.lock().await;
        tasks.abort_all();
        while tasks.join_next().await.is_some() {}
        tracing::info!(node = %self.inner.node_id, "node stopped");
    }
}

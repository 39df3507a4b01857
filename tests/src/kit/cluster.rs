//! Dev nodes from one fixture, raw RA-TLS peers driven by hand (to misbehave
//! on purpose), bounded waits and close-reason helpers.
//!
//! Hermetic: every socket is `127.0.0.1:0`, every fixture has its own dev
//! PKI seed and its own temp dir (each node's data dir under it), and every
//! node's UDP socket goes through the fixture's [`Faults`], so tests can cut,
//! delay and drop links under the real QUIC stack. Waits poll every [`POLL`]
//! and give up after [`bound`] (scaled by `TESSELLA_TIME_SCALE`) with the
//! reason they waited for; nothing sleeps for a fixed long time.

use std::collections::HashSet;
use std::future::{Future, IntoFuture};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use quinn::crypto::rustls::QuicClientConfig;
use quinn::{Connection, ConnectionError, Endpoint, RecvStream, SendStream};
use rustls::pki_types::CertificateDer;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use tessella_attestation::clock::{Clock, SystemClock};
use tessella_attestation::dev::{DevPki, DevQuoteProvider, DevTd};
use tessella_attestation::identity::{NetworkId, NodeId};
use tessella_attestation::measurements::{MeasurementPolicy, PolicyEntry, TcbRules};
use tessella_attestation::ratls::{self, CertResolver, RatlsIdentity, RatlsVerifier};
use tessella_attestation::{CollateralStore, Policy, TicketIssuer, TrustedIssuer};

use tessella_node::admission::{ControlMsg, Hello};
use tessella_node::discovery::CatalogEvent;
use tessella_node::wire::{self, CloseCode, StreamFamily, StreamHeader};
use tessella_node::{Limits, Node, NodeError, NodeSpec, TicketSource};
use tokio::sync::broadcast;

use super::faults::Faults;

/// Upper bound on any wait before scaling; only reached when something is
/// broken.
pub const BOUND: Duration = Duration::from_secs(20);
/// How often [`wait_until`] re-checks its condition.
pub const POLL: Duration = Duration::from_millis(15);

/// [`BOUND`] stretched by `TESSELLA_TIME_SCALE`.
pub fn bound() -> Duration {
    BOUND.mul_f64(crate::time_scale())
}

/// `d` stretched by `TESSELLA_TIME_SCALE`.
pub fn scaled(d: Duration) -> Duration {
    d.mul_f64(crate::time_scale())
}
/// Gossip interval of test nodes: fast, so convergence takes a few rounds of it.
pub const GOSSIP: Duration = Duration::from_millis(50);
/// The policy entry good nodes match.
pub const ENTRY: &str = "good";

/// Waits until `cond` holds, polling every [`POLL`]; panics naming `reason`
/// after [`BOUND`].
pub async fn wait_until(mut cond: impl FnMut() -> bool, reason: &str) {
    wait_for(|| cond().then_some(()), reason).await
}

/// Waits until `probe` returns a value, polling every [`POLL`]; panics naming
/// `reason` after [`bound`].
pub async fn wait_for<T>(mut probe: impl FnMut() -> Option<T>, reason: &str) -> T {
    let limit = bound();
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        if let Some(v) = probe() {
            return v;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out after {limit:?} waiting until {reason}"
        );
        tokio::time::sleep(POLL).await;
    }
}

/// `fut` within [`bound`], or a panic naming `what`.
pub async fn bounded<T>(what: &str, fut: impl Future<Output = T>) -> T {
    let limit = bound();
    match tokio::time::timeout(limit, fut).await {
        Ok(v) => v,
        Err(_) => panic!("timed out after {limit:?} waiting for {what}"),
    }
}

/// The node ids in `node`'s catalog.
pub fn catalog_ids(node: &Node) -> HashSet<NodeId> {
    node.catalog().iter().map(|r| r.node_id).collect()
}

/// The node ids `node` holds an admitted connection to.
pub fn connected_ids(node: &Node) -> HashSet<NodeId> {
    node.connected()
        .iter()
        .map(|p| p.identity.node_id)
        .collect()
}

/// Whether every node's catalog is exactly the other nodes.
pub fn full_mesh_catalogs(nodes: &[&Node]) -> bool {
    nodes.iter().all(|n| {
        let expected: HashSet<NodeId> = nodes
            .iter()
            .map(|m| m.node_id())
            .filter(|id| *id != n.node_id())
            .collect();
        catalog_ids(n) == expected
    })
}

/// Everything buffered on `rx` now (lagging is reported as a panic: test
/// queues are large enough that it means a bug).
pub fn drain(rx: &mut broadcast::Receiver<CatalogEvent>) -> Vec<CatalogEvent> {
    let mut out = Vec::new();
    loop {
        match rx.try_recv() {
            Ok(e) => out.push(e),
            Err(broadcast::error::TryRecvError::Empty) => return out,
            Err(e) => panic!("event receiver: {e}"),
        }
    }
}

/// The node an event is about.
pub fn event_node(e: &CatalogEvent) -> NodeId {
    match e {
        CatalogEvent::Discovered(r) | CatalogEvent::Updated(r) => r.node_id,
        CatalogEvent::Departed { node_id, .. } => *node_id,
    }
}

/// The value of a counter (or gauge) in the process's Prometheus text, summed
/// over the series whose labels contain every `labels` fragment
/// (`reason="handshake"`). 0 when absent.
pub fn metric(name: &str, labels: &[&str]) -> f64 {
    tessella_node::metrics::render()
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let (series, value) = l.rsplit_once(' ')?;
            let (n, rest) = series.split_once('{').unwrap_or((series, ""));
            (n == name && labels.iter().all(|f| rest.contains(f))).then_some(value)
        })
        .map(|v| v.parse::<f64>().expect("metric value"))
        .sum()
}

/// One dev PKI, one allow-listed TD, one ticket issuer, one network, one
/// fault plan and one temp dir: what the good nodes of a test share.
pub struct Fixture {
    /// Signs every good node's quotes (and is the nodes' trust anchor).
    pub pki: Arc<DevPki>,
    /// The TD the policy allow-lists.
    pub td: DevTd,
    /// The network's name (the tickets' audience).
    pub network: String,
    /// Signs the network's tickets.
    pub issuer: Arc<TicketIssuer>,
    /// Link faults between the fixture's nodes (every node's socket goes
    /// through it).
    pub faults: Faults,
    /// Holds every node's data dir.
    pub dir: tempfile::TempDir,
    next: AtomicUsize,
}

impl Fixture {
    /// A fresh fixture for network `network` (fault seed from its name).
    pub fn new(network: &str) -> Fixture {
        let seed = u64::from_le_bytes(
            blake3::hash(network.as_bytes()).as_bytes()[..8]
                .try_into()
                .expect("8 bytes"),
        );
        Fixture {
            pki: Arc::new(DevPki::generate(network.as_bytes()).expect("dev pki")),
            td: DevTd::named("tessella-test-node"),
            network: network.to_string(),
            issuer: Arc::new(TicketIssuer::generate_es256("test-issuer").expect("issuer")),
            faults: Faults::new(seed),
            dir: tempfile::tempdir().expect("fixture temp dir"),
            next: AtomicUsize::new(0),
        }
    }

    /// A fresh data dir under the fixture's temp dir.
    pub fn data_dir(&self) -> PathBuf {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        self.dir.path().join(format!("node-{n}"))
    }

    /// The network's id.
    pub fn network_id(&self) -> NetworkId {
        NetworkId::from_name(&self.network)
    }

    /// The policy good nodes admit with: the good TD's MRTD and RTMRs,
    /// default (strict) TCB rules.
    pub fn measurement_policy(&self) -> MeasurementPolicy {
        measurement_policy_for(&[self.td])
    }

    /// Options for a good node; change fields to make another one.
    pub fn options(&self) -> NodeOptions {
        NodeOptions {
            pki: self.pki.clone(),
            td: self.td,
            network: self.network.clone(),
            policy: self.measurement_policy(),
            ticket: TicketSource::Issuer(self.issuer.clone(), 3600),
            issuers: vec![self.issuer.public_key()],
            bootstrap: Vec::new(),
            clock: Arc::new(SystemClock),
            gossip_interval: GOSSIP,
            peer_ttl: Duration::from_secs(30),
            active_size: 6,
            sweep_interval: Duration::from_millis(50),
            limits: Limits::default(),
            collateral: Arc::new(CollateralStore::new()),
            ticket_leeway: 30,
            data_dir: Some(self.data_dir()),
            faults: Some(self.faults.clone()),
            admin: false,
        }
    }

    /// A good node bootstrapping from `bootstrap`.
    pub async fn node(&self, bootstrap: Vec<SocketAddr>) -> Node {
        NodeOptions {
            bootstrap,
            ..self.options()
        }
        .build()
        .await
        .expect("good node starts")
    }

    /// `n` good nodes, the others given only node 0's address.
    pub async fn cluster(&self, n: usize) -> Vec<Node> {
        let first = self.node(Vec::new()).await;
        let addr = first.local_addr();
        let mut nodes = vec![first];
        for _ in 1..n {
            nodes.push(self.node(vec![addr]).await);
        }
        nodes
    }

    /// `n` good nodes whose catalogs hold each other.
    pub async fn converged(&self, n: usize) -> Vec<Node> {
        let nodes = self.cluster(n).await;
        let refs: Vec<&Node> = nodes.iter().collect();
        wait_until(|| full_mesh_catalogs(&refs), "the good cluster converges").await;
        nodes
    }

    /// A ticket from the network's issuer for `sub` in network `aud`, valid
    /// for `ttl` seconds from `iat`.
    pub fn ticket(&self, sub: &NodeId, aud: &str, iat: u64, ttl: u64) -> String {
        self.issuer
            .issue(&self.issuer.claims(sub.to_string(), aud, iat, ttl))
            .expect("issue ticket")
    }

    /// A valid ticket for `sub` in this network, for an hour.
    pub fn good_ticket(&self, sub: &NodeId) -> String {
        self.ticket(sub, &self.network, now(), 3600)
    }

    /// Options for a raw peer of this network running the good TD.
    pub fn raw_options(&self) -> RawOptions {
        RawOptions {
            pki: self.pki.clone(),
            td: self.td,
            network: self.network_id(),
            alpn: wire::ALPN.to_vec(),
            trust_pki: self.pki.clone(),
            policy: self.measurement_policy(),
        }
    }

    /// A raw peer of this network running the good TD.
    pub fn raw_peer(&self) -> RawPeer {
        RawPeer::new(self.raw_options())
    }
}

/// A measurement policy allow-listing `tds` (one entry each, the first named
/// [`ENTRY`]), with default TCB rules.
pub fn measurement_policy_for(tds: &[DevTd]) -> MeasurementPolicy {
    let entries = tds
        .iter()
        .enumerate()
        .map(|(i, td)| {
            let m = td.measurements;
            let name = if i == 0 {
                ENTRY.to_string()
            } else {
                format!("extra-{i}")
            };
            let mut entry = PolicyEntry::new(name, vec![m.mrtd]);
            entry.rtmr0 = Some(vec![m.rtmr[0]]);
            entry.rtmr1 = Some(vec![m.rtmr[1]]);
            entry.rtmr2 = Some(vec![m.rtmr[2]]);
            entry
        })
        .collect();
    MeasurementPolicy::new(entries, TcbRules::default()).expect("policy")
}

/// The system clock, Unix seconds.
pub fn now() -> u64 {
    SystemClock.now_unix()
}

/// How to build a [`Node`].
pub struct NodeOptions {
    /// Signs the node's quotes; its root is the node's trust anchor.
    pub pki: Arc<DevPki>,
    /// What the node's quotes say it runs.
    pub td: DevTd,
    /// The network's name.
    pub network: String,
    /// The node's admission policy (its own evidence must pass it too).
    pub policy: MeasurementPolicy,
    /// The node's own ticket.
    pub ticket: TicketSource,
    /// Issuers whose tickets the node accepts.
    pub issuers: Vec<TrustedIssuer>,
    /// Addresses dialled at start.
    pub bootstrap: Vec<SocketAddr>,
    /// The node's clock.
    pub clock: Arc<dyn Clock>,
    /// Gossip round interval.
    pub gossip_interval: Duration,
    /// How long a silent peer stays in the catalog.
    pub peer_ttl: Duration,
    /// Discovery's active view size (gossip connections).
    pub active_size: usize,
    /// How often the transport sweeps for expired tickets and idle
    /// connections (the kit's 50 ms makes expiry tests quick).
    pub sweep_interval: Duration,
    /// Resource bounds.
    pub limits: Limits,
    /// Collateral the node starts with (its own platform's is added).
    pub collateral: Arc<CollateralStore>,
    /// Clock skew tolerated on tickets, in seconds.
    pub ticket_leeway: u64,
    /// The node's data dir (its key lives there): restart a node on the
    /// same dir and it keeps its id. None: a fresh key in memory.
    pub data_dir: Option<PathBuf>,
    /// The fault plan the node's socket goes through.
    pub faults: Option<Faults>,
    /// Serve the admin API on a free loopback port.
    pub admin: bool,
}

impl NodeOptions {
    /// The [`NodeSpec`] these options describe (the one assembly every node
    /// starts through).
    pub fn spec(self) -> NodeSpec {
        let mut spec = NodeSpec::new(
            self.network,
            tessella_node::Identity::Dev {
                pki: self.pki,
                td: Box::new(self.td),
            },
            Policy::new(self.policy),
            self.ticket,
            self.issuers,
        );
        spec.bootstrap = self.bootstrap;
        spec.clock = self.clock;
        spec.discovery.interval = self.gossip_interval;
        spec.discovery.peer_ttl = self.peer_ttl;
        spec.discovery.active_size = self.active_size;
        spec.discovery.max_catalog = self.limits.max_catalog;
        // Failure detection, anti-entropy and reconnection scaled to the
        // probe period, so tests see them within seconds.
        spec.discovery.suspicion_timeout = self.gossip_interval * 10;
        spec.discovery.sync_interval = self.gossip_interval * 2;
        spec.discovery.reconnect_interval = self.gossip_interval * 10;
        spec.discovery.event_queue = self.limits.event_queue;
        spec.limits = self.limits;
        spec.collateral = self.collateral;
        spec.ticket_leeway = self.ticket_leeway;
        spec.data_dir = self.data_dir;
        spec.sweep_interval = self.sweep_interval;
        if let Some(faults) = self.faults {
            spec.socket = Some(Arc::new(move |inner| faults.wrap(inner)));
        }
        if self.admin {
            spec.admin = Some(SocketAddr::from(([127, 0, 0, 1], 0)));
        }
        spec
    }

    /// Start the node.
    pub async fn build(self) -> Result<Node, NodeError> {
        Node::start(self.spec()).await
    }

    /// Start the transport alone (no discovery, groups or admin API), as
    /// the node would: nothing re-dials a session closed on purpose.
    pub async fn transport(self) -> Result<tessella_node::Network, tessella_node::NetworkError> {
        self.spec().start_network().await
    }
}

/// How to build a [`RawPeer`]: what its certificate claims, what it offers
/// in ALPN, and what it admits servers with.
pub struct RawOptions {
    /// Signs the peer's quote.
    pub pki: Arc<DevPki>,
    /// What the peer's quote says it runs.
    pub td: DevTd,
    /// The network the peer's certificate binds.
    pub network: NetworkId,
    /// The one ALPN protocol the peer offers.
    pub alpn: Vec<u8>,
    /// The dev PKI whose root the peer trusts for servers.
    pub trust_pki: Arc<DevPki>,
    /// What the peer admits servers with.
    pub policy: MeasurementPolicy,
}

/// A peer driven by hand: an RA-TLS client endpoint with a real dev
/// certificate, which then speaks (or abuses) the node protocol itself.
pub struct RawPeer {
    /// The peer's endpoint (client only).
    pub endpoint: Endpoint,
    /// The peer's RA-TLS identity.
    pub identity: RatlsIdentity,
    /// The peer's verifier (for servers).
    pub verifier: Arc<RatlsVerifier>,
    config: quinn::ClientConfig,
}

impl RawPeer {
    /// Issue the certificate and bind a loopback client endpoint.
    pub fn new(o: RawOptions) -> RawPeer {
        let provider = DevQuoteProvider::new(o.pki.clone(), o.td);
        let identity = ratls::issue(&provider, &o.network, now(), 3600).expect("issue raw cert");
        let store = Arc::new(CollateralStore::new());
        store.insert(o.trust_pki.collateral().clone());
        let verifier = RatlsVerifier::new(
            o.trust_pki.verifier(),
            store,
            Arc::new(Policy::new(o.policy)),
            o.network,
            Arc::new(SystemClock),
        );
        let resolver = CertResolver::new(identity.clone()).expect("resolver");
        let mut tls = ratls::client_config(resolver, verifier.clone()).expect("client tls");
        tls.alpn_protocols = vec![o.alpn];
        let config = quinn::ClientConfig::new(Arc::new(
            QuicClientConfig::try_from(tls).expect("quic client config"),
        ));
        RawPeer {
            endpoint: client_endpoint(),
            identity,
            verifier,
            config,
        }
    }

    /// Give the node no stream credit at all: it can never open a stream
    /// towards this peer (a hostile admitted peer starving its writers).
    pub fn withhold_stream_credit(mut self) -> RawPeer {
        let mut transport = quinn::TransportConfig::default();
        transport
            .max_concurrent_uni_streams(0u32.into())
            .max_concurrent_bidi_streams(0u32.into());
        self.config.transport_config(Arc::new(transport));
        self
    }

    /// The peer's node id.
    pub fn node_id(&self) -> NodeId {
        self.identity.node_id()
    }

    /// The peer's certificate.
    pub fn cert(&self) -> CertificateDer<'static> {
        self.identity.cert_der().clone()
    }

    /// The QUIC + RA-TLS handshake with `addr`.
    pub async fn connect(&self, addr: SocketAddr) -> Result<Connection, ConnectionError> {
        let connecting = self
            .endpoint
            .connect_with(self.config.clone(), addr, "tessella")
            .expect("connect");
        bounded("the raw peer's handshake", connecting.into_future()).await
    }

    /// Handshake, then admission with a valid ticket: returns the connection
    /// and the node's answering Hello. Drains whatever uni streams the node
    /// opens (gossip) so they never pile up.
    pub async fn admitted(&self, fixture: &Fixture, addr: SocketAddr) -> (Connection, Hello) {
        let conn = self.connect(addr).await.expect("raw peer handshake");
        let hello = Hello {
            network: fixture.network_id(),
            ticket: fixture.good_ticket(&self.node_id()),
            software: "raw test peer".into(),
            incarnation: 1,
        };
        let (_send, mut recv) = send_hello(&conn, &ControlMsg::V1(hello)).await;
        let reply: Option<ControlMsg> = bounded(
            "the node's Hello",
            wire::read_frame(&mut recv, wire::DEFAULT_MAX_FRAME),
        )
        .await
        .expect("read the node's Hello");
        let ControlMsg::V1(reply) = reply.expect("the node answers with a Hello");
        tokio::spawn(drain_uni(conn.clone()));
        (conn, reply)
    }
}

/// Reads and discards every uni stream `conn`'s peer opens.
async fn drain_uni(conn: Connection) {
    while let Ok(mut recv) = conn.accept_uni().await {
        tokio::spawn(async move {
            let _ = recv.read_to_end(1 << 20).await;
        });
    }
}

/// A client endpoint on an ephemeral loopback port.
pub fn client_endpoint() -> Endpoint {
    Endpoint::client(SocketAddr::from(([127, 0, 0, 1], 0))).expect("bind client endpoint")
}

/// Opens the control stream and sends `msg` after its header, the way a
/// dialing node does. The streams stay open.
pub async fn send_hello(conn: &Connection, msg: &ControlMsg) -> (SendStream, RecvStream) {
    let (mut send, recv) = bounded("opening the control stream", conn.open_bi())
        .await
        .expect("open the control stream");
    wire::write_header(&mut send, StreamHeader::new(StreamFamily::Control))
        .await
        .expect("write the control header");
    wire::write_frame(&mut send, msg, wire::DEFAULT_MAX_FRAME)
        .await
        .expect("write the Hello");
    (send, recv)
}

/// The application close `conn` ends with: the code (one of ours) and the
/// reason text. Panics if it ends any other way.
pub async fn app_close(conn: &Connection) -> (CloseCode, String) {
    match bounded("the node closing the connection", conn.closed()).await {
        ConnectionError::ApplicationClosed(close) => (
            CloseCode::try_from(close.error_code)
                .unwrap_or_else(|c| panic!("close code {c} is not one of ours")),
            String::from_utf8_lossy(&close.reason).into_owned(),
        ),
        other => panic!("expected an application close from the node, got {other:?}"),
    }
}

/// The CONNECTION_CLOSE a handshake refused by the peer ends with. The
/// client may finish its side of the handshake before the server judges its
/// certificate; it then sees the close that follows.
pub async fn handshake_refused(
    outcome: Result<Connection, ConnectionError>,
) -> quinn::ConnectionClose {
    let error = match outcome {
        Ok(conn) => bounded("the refusing side's close", conn.closed()).await,
        Err(e) => e,
    };
    match error {
        ConnectionError::ConnectionClosed(close) => close,
        other => panic!("expected the peer to close the handshake, got {other:?}"),
    }
}

/// The QUIC error code a TLS alert travels as.
pub fn crypto_code(alert: rustls::AlertDescription) -> quinn::TransportErrorCode {
    quinn::TransportErrorCode::crypto(u8::from(alert))
}

//! RA-TLS over quinn on loopback: mutual admission, the refusal matrix (each
//! reason observed on the refusing and on the refused side), verdict caching
//! and certificate renewal under a live connection.
//!
//! Hermetic: ports are `127.0.0.1:0`, certificate and verification time comes
//! from a [`ManualClock`] per node, nothing sleeps; `tokio::time::timeout`
//! only bounds waits so a regression fails instead of hanging.
//!
//! What each side observes when the server refuses the client (quinn 0.11,
//! rustls 0.23):
//! - the refusing side: `ConnectionError::TransportError` whose code is the
//!   TLS alert as a QUIC crypto error (`0x100 | alert`) and whose reason is
//!   rustls' `Display` of the verifier's error, `invalid peer certificate:
//!   Other(OtherError(<code>))` (the verifier sends only the stable code);
//! - the refused side: `ConnectionError::ConnectionClosed` with the same code
//!   and the same reason text (quinn sends it in the CONNECTION_CLOSE frame).
//!
//! The typed `RatlsError` itself does not cross quinn (only its code does),
//! so the tests also re-run the refusing verifier on the offending
//! certificate, which refusals never enter the cache, and assert its code.

use std::sync::Arc;

use quinn::{ConnectionError, TransportErrorCode};
use rustls::pki_types::CertificateDer;
use rustls::AlertDescription;
use tessella_attestation::dev::{DevPki, DevTd, DEV_ANCHOR_NAME};
use tessella_attestation::identity::NetworkId;
use tessella_attestation::ratls::{self, ParsedCert};
use tessella_attestation::Fmspc;

use harness::{handshake, peer_cert, peer_identity, Cluster, Handshake, Node, DAY, NOW};

/// Nodes built from options, server endpoints, client handshakes.
mod harness {
    use std::future::{Future, IntoFuture};
    use std::net::SocketAddr;
    use std::sync::Arc;
    use std::time::Duration;

    use quinn::crypto::rustls::{QuicClientConfig, QuicServerConfig};
    use quinn::{Connection, ConnectionError, Endpoint};
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    use tessella_attestation::clock::ManualClock;
    use tessella_attestation::dev::{DevPki, DevQuoteProvider, DevTd};
    use tessella_attestation::identity::{NetworkId, NodeId};
    use tessella_attestation::measurements::{MeasurementPolicy, PolicyEntry, TcbRules};
    use tessella_attestation::ratls::{
        self, CertResolver, PeerIdentity, RatlsClientVerifier, RatlsServerVerifier, RatlsVerifier,
    };
    use tessella_attestation::{CollateralStore, Policy};

    /// The time every node starts at (2027-01-15), inside the dev collateral's window.
    pub const NOW: u64 = 1_800_000_000;
    /// The default certificate lifetime.
    pub const DAY: u64 = 86_400;
    /// The one ALPN.
    pub const ALPN: &[u8] = b"tessella/1";
    /// Upper bound on any network wait; only reached when something is broken.
    const BOUND: Duration = Duration::from_secs(20);

    /// `fut` within [`BOUND`], or a panic naming what did not happen.
    pub async fn bounded<T>(what: &str, fut: impl Future<Output = T>) -> T {
        match tokio::time::timeout(BOUND, fut).await {
            Ok(v) => v,
            Err(_) => panic!("timed out after {BOUND:?} waiting for {what}"),
        }
    }

    /// What a node admits peers with.
    #[derive(Clone)]
    pub struct Trust {
        /// Quotes must chain to this dev PKI's root.
        pub pki: Arc<DevPki>,
        /// Collateral the verifier reads.
        pub store: Arc<CollateralStore>,
        /// Measurement and TCB policy.
        pub policy: Arc<Policy>,
        /// The network peers' certificates must bind.
        pub network: NetworkId,
    }

    /// One dev PKI, one allow-listed TD, one network: what good nodes share.
    pub struct Cluster {
        /// The dev PKI good nodes' quotes are signed under.
        pub pki: Arc<DevPki>,
        /// The TD the policy allow-lists (entry `dev`, pinned by MRTD).
        pub td: DevTd,
        /// The cluster's network.
        pub network: NetworkId,
        /// The cluster's admission rules.
        pub trust: Trust,
    }

    impl Cluster {
        /// The standard test cluster.
        pub fn dev() -> Cluster {
            let pki = Arc::new(DevPki::generate(b"ratls-quinn").expect("dev pki"));
            let td = DevTd::named("node");
            let network = NetworkId::from_name("tessella-test");
            let store = Arc::new(CollateralStore::new());
            store.insert(pki.collateral().clone());
            let policy = Arc::new(Policy::new(
                MeasurementPolicy::new(
                    vec![PolicyEntry::new("dev", vec![td.measurements.mrtd])],
                    TcbRules::default(),
                )
                .expect("policy"),
            ));
            Cluster {
                trust: Trust {
                    pki: pki.clone(),
                    store,
                    policy,
                    network,
                },
                pki,
                td,
                network,
            }
        }

        /// Options for a good node; change fields to make a bad one.
        pub fn options(&self) -> NodeOptions {
            NodeOptions {
                pki: self.pki.clone(),
                td: self.td,
                network: self.network,
                lifetime: DAY,
                clock: Arc::new(ManualClock::new(NOW)),
                trust: self.trust.clone(),
                custom_cert: None,
            }
        }

        /// A good node.
        pub fn node(&self) -> Node {
            Node::new(self.options())
        }
    }

    /// A certificate and key presented instead of an issued RA-TLS identity.
    pub struct CustomCert {
        /// The certificate, DER.
        pub cert: CertificateDer<'static>,
        /// Its key.
        pub key: PrivateKeyDer<'static>,
    }

    /// How to build a node. Evidence (pki, td, network, lifetime) is what the
    /// node claims; trust is what it admits peers with, the cluster's unless
    /// changed, so that a bad node still admits good peers and the refusal
    /// under test is the good side's.
    pub struct NodeOptions {
        /// Signs this node's quotes.
        pub pki: Arc<DevPki>,
        /// What this node's quotes say it runs.
        pub td: DevTd,
        /// The network this node's certificate binds.
        pub network: NetworkId,
        /// Lifetime of this node's certificate from the clock's time.
        pub lifetime: u64,
        /// This node's time, for issuing and for verifying peers.
        pub clock: Arc<ManualClock>,
        /// What this node admits peers with.
        pub trust: Trust,
        /// Present this instead of an issued RA-TLS certificate.
        pub custom_cert: Option<CustomCert>,
    }

    /// A dev node: its certificate (renewable through `resolver`), its verifier
    /// and its rustls configurations for both roles.
    pub struct Node {
        /// This node's time.
        pub clock: Arc<ManualClock>,
        /// This node's quote provider.
        pub provider: DevQuoteProvider,
        /// The network this node's certificate binds.
        pub network: NetworkId,
        /// Lifetime of this node's certificates.
        pub lifetime: u64,
        /// Serves the issued certificate (`None` for a custom one).
        pub resolver: Option<Arc<CertResolver>>,
        /// Verifies peers (shared by both roles, so one verdict cache).
        pub verifier: Arc<RatlsVerifier>,
        custom_cert: Option<CertificateDer<'static>>,
        server_tls: Arc<QuicServerConfig>,
        client_tls: Arc<QuicClientConfig>,
    }

    impl Node {
        /// Issue the certificate (unless custom) and build both TLS configs.
        pub fn new(o: NodeOptions) -> Node {
            let provider = DevQuoteProvider::new(o.pki.clone(), o.td);
            let verifier = RatlsVerifier::new(
                o.trust.pki.verifier(),
                o.trust.store.clone(),
                o.trust.policy.clone(),
                o.trust.network,
                o.clock.clone(),
            );
            let (resolver, custom_cert, mut server_tls, mut client_tls) = match o.custom_cert {
                None => {
                    let id = ratls::issue(&provider, &o.network, o.clock_now(), o.lifetime)
                        .expect("issue");
                    let resolver = CertResolver::new(id).expect("resolver");
                    let server = ratls::server_config(resolver.clone(), verifier.clone())
                        .expect("server tls");
                    let client = ratls::client_config(resolver.clone(), verifier.clone())
                        .expect("client tls");
                    (Some(resolver), None, server, client)
                }
                Some(custom) => {
                    let (server, client) = custom_configs(&custom, &verifier);
                    (None, Some(custom.cert), server, client)
                }
            };
            server_tls.alpn_protocols = vec![ALPN.to_vec()];
            client_tls.alpn_protocols = vec![ALPN.to_vec()];
            Node {
                clock: o.clock,
                provider,
                network: o.network,
                lifetime: o.lifetime,
                resolver,
                verifier,
                custom_cert,
                server_tls: Arc::new(QuicServerConfig::try_from(server_tls).expect("quic server")),
                client_tls: Arc::new(QuicClientConfig::try_from(client_tls).expect("quic client")),
            }
        }

        /// The issued identity's resolver (panics for a custom-cert node).
        pub fn resolver(&self) -> &Arc<CertResolver> {
            self.resolver.as_ref().expect("node has an issued identity")
        }

        /// The certificate this node presents now.
        pub fn cert(&self) -> CertificateDer<'static> {
            match &self.custom_cert {
                Some(cert) => cert.clone(),
                None => self.resolver().current().cert_der().clone(),
            }
        }

        /// The id of the key this node presents now.
        pub fn node_id(&self) -> NodeId {
            self.resolver().current().node_id()
        }

        /// Bind a server endpoint on an ephemeral loopback port.
        pub fn serve(&self) -> Server {
            let config = quinn::ServerConfig::with_crypto(self.server_tls.clone());
            let endpoint = Endpoint::server(config, loopback()).expect("bind server");
            let addr = endpoint.local_addr().expect("server addr");
            Server { endpoint, addr }
        }
    }

    impl NodeOptions {
        fn clock_now(&self) -> u64 {
            use tessella_attestation::clock::Clock;
            self.clock.now_unix()
        }
    }

    /// Same shape as `ratls::{server,client}_config`, but presenting a fixed
    /// certificate (which `CertResolver` cannot hold: it only takes issued
    /// identities).
    fn custom_configs(
        custom: &CustomCert,
        verifier: &Arc<RatlsVerifier>,
    ) -> (rustls::ServerConfig, rustls::ClientConfig) {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut server = rustls::ServerConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(&[&rustls::version::TLS13])
            .expect("tls13")
            .with_client_cert_verifier(Arc::new(RatlsClientVerifier(verifier.clone())))
            .with_single_cert(vec![custom.cert.clone()], custom.key.clone_key())
            .expect("server cert");
        let mut client = rustls::ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13])
            .expect("tls13")
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(RatlsServerVerifier(verifier.clone())))
            .with_client_auth_cert(vec![custom.cert.clone()], custom.key.clone_key())
            .expect("client cert");
        server.send_tls13_tickets = 0;
        client.resumption = rustls::client::Resumption::disabled();
        (server, client)
    }

    fn loopback() -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], 0))
    }

    /// A node's server endpoint.
    pub struct Server {
        /// The endpoint.
        pub endpoint: Endpoint,
        /// Where it listens.
        pub addr: SocketAddr,
    }

    impl Server {
        /// The next incoming connection's handshake outcome.
        pub async fn accept(&self) -> Result<Connection, ConnectionError> {
            let incoming = bounded("an incoming connection", self.endpoint.accept())
                .await
                .expect("server endpoint open");
            bounded("the server handshake", incoming.into_future()).await
        }
    }

    /// Both sides' view of one handshake.
    pub struct Handshake {
        /// The client's connection, or why it ended. A client whose
        /// certificate the server refuses may finish its side of the handshake
        /// first; it then reports the close that follows.
        pub client: Result<Connection, ConnectionError>,
        /// The server's connection, or why it ended.
        pub server: Result<Connection, ConnectionError>,
        /// Keeps the client endpoint alive as long as the outcome.
        pub _client_endpoint: Endpoint,
    }

    impl Handshake {
        /// Both connections; panics with both sides' errors otherwise.
        pub fn established(self) -> (Connection, Connection, Endpoint) {
            match (self.client, self.server) {
                (Ok(c), Ok(s)) => (c, s, self._client_endpoint),
                (c, s) => panic!(
                    "handshake failed: client {:?}, server {:?}",
                    c.err(),
                    s.err()
                ),
            }
        }
    }

    /// `client` connects to `server` from a fresh loopback endpoint; both
    /// sides run to completion.
    pub async fn handshake(client: &Node, server: &Server) -> Handshake {
        let endpoint = Endpoint::client(loopback()).expect("bind client");
        let connecting = endpoint
            .connect_with(
                quinn::ClientConfig::new(client.client_tls.clone()),
                server.addr,
                "tessella",
            )
            .expect("connect");
        let (client_side, server_side) =
            tokio::join!(bounded("the client handshake", connecting), server.accept());
        let client_side = match (client_side, &server_side) {
            // The client completed before the server read its certificate.
            (Ok(conn), Err(_)) => Err(bounded("the server's close", conn.closed()).await),
            (c, _) => c,
        };
        Handshake {
            client: client_side,
            server: server_side,
            _client_endpoint: endpoint,
        }
    }

    /// The client sends `message` on a new bidirectional stream, the server
    /// echoes it back; returns (what the server heard, what came back). Also a
    /// full round trip after the handshake, so anything the server sent after
    /// it (session tickets, were they enabled) has reached the client.
    pub async fn echo(
        client: &Connection,
        server: &Connection,
        message: &[u8],
    ) -> (Vec<u8>, Vec<u8>) {
        let serve = async {
            let (mut send, mut recv) = server.accept_bi().await.expect("accept bi");
            let heard = recv.read_to_end(64 * 1024).await.expect("server read");
            send.write_all(&heard).await.expect("server write");
            send.finish().expect("server finish");
            heard
        };
        let talk = async {
            let (mut send, mut recv) = client.open_bi().await.expect("open bi");
            send.write_all(message).await.expect("client write");
            send.finish().expect("client finish");
            recv.read_to_end(64 * 1024).await.expect("client read")
        };
        bounded("an echo round trip", async { tokio::join!(serve, talk) }).await
    }

    /// The certificate the peer presented on `conn`.
    pub fn peer_cert(conn: &Connection) -> CertificateDer<'static> {
        let certs = conn
            .peer_identity()
            .expect("peer identity")
            .downcast::<Vec<CertificateDer<'static>>>()
            .expect("rustls certificate chain");
        assert_eq!(
            certs.len(),
            1,
            "RA-TLS peers present exactly one certificate"
        );
        certs[0].clone()
    }

    /// What `node`'s verifier admitted the peer of `conn` as.
    pub fn peer_identity(node: &Node, conn: &Connection) -> Arc<PeerIdentity> {
        node.verifier
            .peer_identity(peer_cert(conn).as_ref())
            .expect("the handshake's verdict is cached")
    }
}

/// Certificates built by hand, DER by DER, signed by the key they carry.
mod handmade {
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    use rustls::SignatureScheme;

    const ECDSA_WITH_SHA256: &[u64] = &[1, 2, 840, 10045, 4, 3, 2];
    const COMMON_NAME: &[u64] = &[2, 5, 4, 3];

    fn tlv(tag: u8, content: &[u8]) -> Vec<u8> {
        let mut out = vec![tag];
        let n = content.len();
        if n < 0x80 {
            out.push(n as u8);
        } else {
            let len = n.to_be_bytes();
            let skip = len.iter().take_while(|b| **b == 0).count();
            out.push(0x80 | (len.len() - skip) as u8);
            out.extend_from_slice(&len[skip..]);
        }
        out.extend_from_slice(content);
        out
    }

    fn seq(parts: &[&[u8]]) -> Vec<u8> {
        tlv(0x30, &parts.concat())
    }

    fn oid(arcs: &[u64]) -> Vec<u8> {
        let mut body = vec![(arcs[0] * 40 + arcs[1]) as u8];
        for &arc in &arcs[2..] {
            let mut groups = vec![(arc & 0x7f) as u8];
            let mut rest = arc >> 7;
            while rest > 0 {
                groups.push(0x80 | (rest & 0x7f) as u8);
                rest >>= 7;
            }
            body.extend(groups.iter().rev());
        }
        tlv(0x06, &body)
    }

    /// UTCTime (`YYMMDDHHMMSSZ`), valid for 1950-2049 as RFC 5280 requires.
    fn utc_time(unix: u64) -> Vec<u8> {
        let (days, secs) = ((unix / 86_400) as i64, unix % 86_400);
        // Civil date from days since 1970-01-01 (H. Hinnant's algorithm).
        let z = days + 719_468;
        let era = z.div_euclid(146_097);
        let doe = z - era * 146_097;
        let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        let mp = (5 * doy + 2) / 153;
        let day = doy - (153 * mp + 2) / 5 + 1;
        let month = if mp < 10 { mp + 3 } else { mp - 9 };
        let year = yoe + era * 400 + i64::from(month <= 2);
        assert!((1950..2050).contains(&year), "UTCTime covers 1950-2049");
        let text = format!(
            "{:02}{month:02}{day:02}{:02}{:02}{:02}Z",
            year % 100,
            secs / 3600,
            secs / 60 % 60,
            secs % 60
        );
        tlv(0x17, text.as_bytes())
    }

    /// The SubjectPublicKeyInfo of a P-256 PKCS#8 key, DER.
    pub fn spki_of(key: &PrivateKeyDer<'_>) -> Vec<u8> {
        let signing = rustls::crypto::ring::sign::any_ecdsa_type(key).expect("ecdsa key");
        signing.public_key().expect("public key").as_ref().to_vec()
    }

    /// A self-signed X.509 v3 certificate for the P-256 `key`, valid
    /// `[not_before, not_after]`, carrying `quote` in the RA-TLS extension
    /// (a DER OCTET STRING, as `ratls::issue` writes it) when given.
    pub fn self_signed(
        key: &PrivateKeyDer<'_>,
        not_before: u64,
        not_after: u64,
        quote: Option<&[u8]>,
    ) -> CertificateDer<'static> {
        let signing = rustls::crypto::ring::sign::any_ecdsa_type(key).expect("ecdsa key");
        let spki = spki_of(key);
        let alg = seq(&[&oid(ECDSA_WITH_SHA256)]);
        let name = seq(&[&tlv(
            0x31,
            &seq(&[&oid(COMMON_NAME), &tlv(0x0c, b"handmade")]),
        )]);
        let version = tlv(0xa0, &tlv(0x02, &[2]));
        let serial = tlv(0x02, &[0x2a]);
        let validity = seq(&[&utc_time(not_before), &utc_time(not_after)]);
        let mut tbs_parts: Vec<Vec<u8>> = vec![
            version,
            serial,
            alg.clone(),
            name.clone(),
            validity,
            name,
            spki,
        ];
        if let Some(quote) = quote {
            let oid_arcs = tessella_attestation::ratls::QUOTE_EXTENSION_OID;
            let extension = seq(&[&oid(oid_arcs), &tlv(0x04, &tlv(0x04, quote))]);
            tbs_parts.push(tlv(0xa3, &seq(&[&extension])));
        }
        let tbs = tlv(0x30, &tbs_parts.concat());
        let signer = signing
            .choose_scheme(&[SignatureScheme::ECDSA_NISTP256_SHA256])
            .expect("p-256 signer");
        let signature = signer.sign(&tbs).expect("sign");
        let mut bits = vec![0u8];
        bits.extend_from_slice(&signature);
        CertificateDer::from(seq(&[&tbs, &alg, &tlv(0x03, &bits)]))
    }
}

/// The QUIC error code a TLS alert travels as.
fn crypto_code(alert: AlertDescription) -> TransportErrorCode {
    TransportErrorCode::crypto(u8::from(alert))
}

/// How a refusal must look on both sides of a handshake.
struct Refusal {
    /// The alert the refusing side sends.
    alert: AlertDescription,
    /// A fragment of the reason text both sides carry.
    reason: &'static str,
    /// `RatlsError::code()` of the refusing verifier.
    code: &'static str,
}

/// A node presenting a custom certificate.
fn custom_node(
    cluster: &Cluster,
    cert: CertificateDer<'static>,
    key: ratls::RatlsIdentity,
) -> Node {
    Node::new(harness::NodeOptions {
        custom_cert: Some(harness::CustomCert {
            cert,
            key: key.key_der(),
        }),
        ..cluster.options()
    })
}

/// Assert the refusing side closed with a transport error carrying
/// `expected`, the refused side saw that close, the refusing verifier
/// gives the typed reason for `offending` and cached nothing.
fn assert_refused(
    outcome: &Handshake,
    server_refuses: bool,
    refuser: &Node,
    offending: &CertificateDer<'_>,
    expected: &Refusal,
) {
    let (local, remote) = if server_refuses {
        (&outcome.server, &outcome.client)
    } else {
        (&outcome.client, &outcome.server)
    };
    let code = crypto_code(expected.alert);
    match local {
        Err(ConnectionError::TransportError(e)) => {
            assert_eq!(e.code, code, "refusing side's code (reason {:?})", e.reason);
            assert!(
                e.reason.starts_with("invalid peer certificate: ")
                    && e.reason.contains(expected.reason),
                "refusing side's reason {:?} lacks {:?}",
                e.reason,
                expected.reason
            );
        }
        other => panic!("refusing side: expected a transport error, got {other:?}"),
    }
    match remote {
        Err(ConnectionError::ConnectionClosed(close)) => {
            assert_eq!(close.error_code, code, "refused side's code");
            let reason = String::from_utf8_lossy(&close.reason);
            assert!(
                reason.starts_with("invalid peer certificate: ")
                    && reason.contains(expected.reason),
                "refused side's reason {reason:?} lacks {:?}",
                expected.reason
            );
        }
        other => panic!("refused side: expected a close from the peer, got {other:?}"),
    }
    let typed = refuser
        .verifier
        .verify_cert(offending.as_ref())
        .expect_err("the refusing verifier refuses the certificate");
    assert_eq!(typed.code(), expected.code, "typed reason: {typed}");
    assert_eq!(
        refuser.verifier.cache().len(),
        0,
        "a refused certificate must not be cached"
    );
}

/// Run `bad` as client against a good server, then a good client against
/// `bad` as server; both times the good side refuses with `expected`.
async fn refused_both_ways(cluster: &Cluster, bad: impl Fn() -> Node, expected: Refusal) {
    refused_as_client(cluster, bad(), &expected).await;
    refused_as_server(cluster, bad(), &expected).await;
}

async fn refused_as_client(cluster: &Cluster, bad: Node, expected: &Refusal) {
    let good = cluster.node();
    refused_as_client_by(&good, &bad, expected).await;
}

/// `bad` connects to `good`, which refuses it.
async fn refused_as_client_by(good: &Node, bad: &Node, expected: &Refusal) {
    let server = good.serve();
    let outcome = handshake(bad, &server).await;
    assert_refused(&outcome, true, good, &bad.cert(), expected);
    // The bad client did verify and admit the good server before being refused.
    assert_eq!(
        bad.verifier.cache().len(),
        1,
        "the bad client admitted the server"
    );
}

async fn refused_as_server(cluster: &Cluster, bad: Node, expected: &Refusal) {
    let good = cluster.node();
    refused_as_server_by(&good, &bad, expected).await;
}

/// `good` connects to `bad`, and refuses it.
async fn refused_as_server_by(good: &Node, bad: &Node, expected: &Refusal) {
    let server = bad.serve();
    let outcome = handshake(good, &server).await;
    assert_refused(&outcome, false, good, &bad.cert(), expected);
    // The client aborted on the server's certificate: the server never saw its.
    assert_eq!(
        bad.verifier.cache().len(),
        0,
        "the bad server saw no client cert"
    );
}

#[tokio::test]
async fn two_dev_nodes_admit_each_other() {
    let cluster = Cluster::dev();
    let (a, b) = (cluster.node(), cluster.node());
    let server = a.serve();
    let (client_conn, server_conn, _ep) = handshake(&b, &server).await.established();

    let seen_by_server = peer_identity(&a, &server_conn);
    let seen_by_client = peer_identity(&b, &client_conn);
    for (id, peer) in [(&seen_by_server, &b), (&seen_by_client, &a)] {
        let current = peer.resolver().current();
        assert_eq!(id.node_id, current.node_id());
        assert_eq!(id.measurements, cluster.td.measurements);
        assert_eq!(id.matched_entry.as_deref(), Some("dev"));
        assert_eq!(id.tcb_status, "UpToDate");
        assert_eq!(id.fmspc, Fmspc(cluster.pki.platform().fmspc));
        assert_eq!(id.anchor, DEV_ANCHOR_NAME);
        assert_eq!(id.cert_not_after, current.not_after());
        let collateral_end = cluster.pki.collateral().validity().not_after;
        assert_eq!(id.verdict_expires, current.not_after().min(collateral_end));
    }
    assert_ne!(seen_by_server.node_id, seen_by_client.node_id);
    assert!(
        peer_cert(&server_conn) == b.cert(),
        "server saw b's certificate"
    );
    assert!(
        peer_cert(&client_conn) == a.cert(),
        "client saw a's certificate"
    );
    assert_eq!(a.verifier.cache().len(), 1);
    assert_eq!(b.verifier.cache().len(), 1);
}

#[tokio::test]
async fn refuses_measurements_not_allow_listed() {
    let cluster = Cluster::dev();
    let bad = || {
        Node::new(harness::NodeOptions {
            td: DevTd::named("rogue"),
            ..cluster.options()
        })
    };
    let expected = Refusal {
        alert: AlertDescription::CertificateUnknown,
        reason: "Other(OtherError(measurement_mismatch))",
        code: "measurement_mismatch",
    };
    refused_both_ways(&cluster, bad, expected).await;
}

#[tokio::test]
async fn refuses_quote_binding_another_key() {
    let cluster = Cluster::dev();
    // A fresh key, and a quote for another key's report_data over the same
    // window and network.
    let key_owner = cluster.node().resolver().current();
    let key = key_owner.key_der();
    let other = cluster.node().resolver().current();
    let other_spki = ParsedCert::parse(other.cert_der()).expect("parse").spki;
    let (not_before, not_after) = (NOW - 60, NOW + DAY);
    assert_ne!(other_spki, handmade::spki_of(&key));
    let foreign = ratls::report_data_for(&other_spki, not_before, not_after, &cluster.network);
    let quote = cluster.pki.quote(&cluster.td, &foreign);
    let cert = handmade::self_signed(&key, not_before, not_after, Some(&quote));

    // Control: the same hand-made certificate with a quote for its own key is
    // admitted, so the refusal below is the binding and nothing else.
    let own = ratls::report_data_for(
        &handmade::spki_of(&key),
        not_before,
        not_after,
        &cluster.network,
    );
    let control = handmade::self_signed(
        &key,
        not_before,
        not_after,
        Some(&cluster.pki.quote(&cluster.td, &own)),
    );
    let judge = cluster.node();
    let admitted = judge
        .verifier
        .verify_cert(control.as_ref())
        .expect("control admitted");
    assert_eq!(admitted.node_id, key_owner.node_id());
    let parsed = ParsedCert::parse(&cert).expect("parse");
    assert_eq!(parsed.node_id, key_owner.node_id());
    assert!(
        parsed.quote == quote,
        "the extension carries the foreign quote"
    );

    let expected = Refusal {
        alert: AlertDescription::CertificateUnknown,
        reason: "Other(OtherError(report_data_binding))",
        code: "report_data_binding",
    };
    let bad = || custom_node(&cluster, cert.clone(), key_owner.clone());
    refused_both_ways(&cluster, bad, expected).await;
}

#[tokio::test]
async fn refuses_expired_certificate() {
    let cluster = Cluster::dev();
    let lifetime = 600;
    let expected = Refusal {
        alert: AlertDescription::CertificateExpired,
        reason: "invalid peer certificate: Expired",
        code: "certificate_expired",
    };
    let short_lived = || {
        Node::new(harness::NodeOptions {
            lifetime,
            ..cluster.options()
        })
    };

    // Bad client, good server whose clock is one second past the client's not_after.
    let bad = short_lived();
    let good = cluster.node();
    good.clock.set(bad.resolver().current().not_after() + 1);
    refused_as_client_by(&good, &bad, &expected).await;
    // A second before, the same certificate was fine.
    good.clock.set(bad.resolver().current().not_after());
    good.verifier
        .verify_cert(bad.cert().as_ref())
        .expect("valid until not_after");

    // Good client past the bad server's not_after.
    let bad = short_lived();
    let good = cluster.node();
    good.clock.advance(lifetime + 1);
    refused_as_server_by(&good, &bad, &expected).await;
}

#[tokio::test]
async fn refuses_certificate_without_quote() {
    let cluster = Cluster::dev();
    let key_owner = cluster.node().resolver().current();
    let plain = handmade::self_signed(&key_owner.key_der(), NOW - 60, NOW + DAY, None);
    let expected = Refusal {
        alert: AlertDescription::CertificateUnknown,
        reason: "Other(OtherError(no_quote))",
        code: "no_quote",
    };
    let bad = || custom_node(&cluster, plain.clone(), key_owner.clone());
    refused_both_ways(&cluster, bad, expected).await;
}

#[tokio::test]
async fn refuses_debug_td() {
    let cluster = Cluster::dev();
    let bad = || {
        Node::new(harness::NodeOptions {
            td: cluster.td.debug(),
            ..cluster.options()
        })
    };
    let expected = Refusal {
        alert: AlertDescription::CertificateUnknown,
        reason: "Other(OtherError(debug_td))",
        code: "debug_td",
    };
    refused_both_ways(&cluster, bad, expected).await;
}

#[tokio::test]
async fn refuses_node_of_another_network() {
    let cluster = Cluster::dev();
    let bad = || {
        Node::new(harness::NodeOptions {
            network: NetworkId::from_name("other"),
            ..cluster.options()
        })
    };
    let expected = Refusal {
        alert: AlertDescription::CertificateUnknown,
        reason: "Other(OtherError(report_data_binding))",
        code: "report_data_binding",
    };
    refused_both_ways(&cluster, bad, expected).await;
}

#[tokio::test]
async fn refuses_quote_from_another_dev_pki() {
    let cluster = Cluster::dev();
    let foreign = Arc::new(DevPki::generate(b"someone else").expect("foreign pki"));
    assert_eq!(foreign.platform().fmspc, cluster.pki.platform().fmspc);
    let bad = || {
        Node::new(harness::NodeOptions {
            pki: foreign.clone(),
            ..cluster.options()
        })
    };
    // The foreign chain's root has our root's name, so webpki finds our
    // anchor and fails its signature: not under our anchor.
    let expected = Refusal {
        alert: AlertDescription::CertificateUnknown,
        reason: "Other(OtherError(certificate_chain))",
        code: "certificate_chain",
    };
    refused_both_ways(&cluster, bad, expected).await;
}

#[tokio::test]
async fn reconnect_hits_the_verdict_cache() {
    let cluster = Cluster::dev();
    let (a, b) = (cluster.node(), cluster.node());
    let server = a.serve();
    let (c1, s1, _ep1) = handshake(&b, &server).await.established();
    let first = peer_identity(&a, &s1);
    assert_eq!(a.verifier.cache().len(), 1);

    harness::echo(&c1, &s1, b"hello").await;
    let (c2, s2, _ep2) = handshake(&b, &server).await.established();
    let second = peer_identity(&a, &s2);
    assert_eq!(a.verifier.cache().len(), 1, "same certificate, one verdict");
    assert_eq!(b.verifier.cache().len(), 1);
    // An uncached verification would have inserted a new verdict; the second
    // handshake was served the very same one.
    assert!(Arc::ptr_eq(&first, &second), "second handshake re-verified");
    assert!(Arc::ptr_eq(
        &peer_identity(&b, &c1),
        &peer_identity(&b, &c2)
    ));
    assert!(peer_cert(&s1) == peer_cert(&s2), "same client certificate");
    assert!(s1.close_reason().is_none() && c1.close_reason().is_none());
}

#[tokio::test]
async fn renewal_keeps_live_connections() {
    let cluster = Cluster::dev();
    let (a, b) = (cluster.node(), cluster.node());
    let server = a.serve();
    let (client_conn, server_conn, _ep) = handshake(&b, &server).await.established();

    let before = b.resolver().current();
    let due = before.not_before() + (before.not_after() - before.not_before()) * 2 / 3;
    for node in [&a, &b] {
        node.clock.set(due - 1);
    }
    let renewed = b
        .resolver()
        .renew_if_due(&b.provider, &b.network, due - 1, b.lifetime)
        .expect("renew");
    assert!(!renewed, "renewed before two thirds of the lifetime");
    assert!(b.cert() == *before.cert_der(), "certificate replaced early");
    for node in [&a, &b] {
        node.clock.set(due);
    }
    let renewed = b
        .resolver()
        .renew_if_due(&b.provider, &b.network, due, b.lifetime)
        .expect("renew");
    assert!(renewed, "not renewed at two thirds of the lifetime");
    let after = b.resolver().current();
    assert!(
        after.cert_der() != before.cert_der(),
        "certificate not replaced"
    );
    // The resolver renews for the same key: the node id is stable.
    assert_eq!(after.node_id(), before.node_id());
    assert_eq!(b.node_id(), before.node_id());
    assert_eq!(after.not_before(), due - 60);
    assert_eq!(after.not_after(), due + b.lifetime);

    // The connection made with the old certificate carries on.
    let (heard, echoed) =
        harness::echo(&client_conn, &server_conn, b"still here after renewal").await;
    assert_eq!(heard, b"still here after renewal");
    assert_eq!(echoed, heard);
    assert!(client_conn.close_reason().is_none());

    // New handshakes present the renewed certificate.
    let (_c, s2, _ep2) = handshake(&b, &server).await.established();
    assert!(
        peer_cert(&s2) == *after.cert_der(),
        "server saw the old certificate"
    );
    assert_eq!(peer_identity(&a, &s2).node_id, before.node_id());
    assert_eq!(a.verifier.cache().len(), 2, "old and renewed certificate");
}

#[tokio::test]
async fn reconnect_runs_the_verifier_again() {
    // No TLS session resumption: a resumed handshake would restore the
    // peer's certificate without asking the verifier, so a certificate
    // that expired since the first connection would still get in.
    let cluster = Cluster::dev();
    let (a, b) = (cluster.node(), cluster.node());
    let server = a.serve();
    let (c1, s1, _ep1) = handshake(&b, &server).await.established();
    assert_eq!(a.verifier.cache().len(), 1);
    harness::echo(&c1, &s1, b"hello").await;

    a.clock.set(b.resolver().current().not_after() + 1);
    let outcome = handshake(&b, &server).await;
    let expected = Refusal {
        alert: AlertDescription::CertificateExpired,
        reason: "invalid peer certificate: Expired",
        code: "certificate_expired",
    };
    match &outcome.server {
        Err(ConnectionError::TransportError(e)) => {
            assert_eq!(e.code, crypto_code(expected.alert), "reason {:?}", e.reason);
            assert_eq!(e.reason, expected.reason);
        }
        other => panic!("reconnect after expiry: expected a refusal, got {other:?}"),
    }
    match &outcome.client {
        Err(ConnectionError::ConnectionClosed(close)) => {
            assert_eq!(close.error_code, crypto_code(expected.alert));
            assert_eq!(&close.reason[..], expected.reason.as_bytes());
        }
        other => panic!("refused client: expected the server's close, got {other:?}"),
    }
    let typed = a
        .verifier
        .verify_cert(b.cert().as_ref())
        .expect_err("expired");
    assert_eq!(typed.code(), expected.code);
    // The expired verdict is no longer served either.
    assert!(a.verifier.peer_identity(b.cert().as_ref()).is_none());
}

//! Admission refusals on real nodes: a peer that fails RA-TLS (measurement
//! not allow-listed, debug TD, another network's certificate, a plain TLS
//! certificate, no certificate) or the ticket check (ticket for another
//! network, expired, missing, for another node, from an untrusted issuer, a
//! Hello naming another network) is refused with the documented code and
//! reason, and never appears in any good node's catalog, connections or
//! events. An admitted session ends when the ticket that admitted it expires.
//!
//! "Never" is checked after a barrier: a fresh good node joins through the
//! node the intruder attacked and is seen by every good node, so gossip has
//! run across the cluster after each refusal.

mod common;

use std::sync::Arc;

use common::{
    app_close, bounded, catalog_ids, connected_ids, crypto_code, drain, event_node,
    full_mesh_catalogs, handshake_refused, measurement_policy_for, metric, now, send_hello,
    wait_until, Fixture, NodeOptions, RawOptions, RawPeer,
};
use quinn::crypto::rustls::QuicClientConfig;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName, UnixTime};
use rustls::{AlertDescription, DigitallySignedStruct, SignatureScheme};
use tessella_attestation::clock::ManualClock;
use tessella_attestation::dev::DevTd;
use tessella_attestation::identity::{NetworkId, NodeId};
use tessella_attestation::TicketIssuer;
use tessella_node::admission::{ControlMsg, Hello};
use tessella_node::discovery::CatalogEvent;
use tessella_node::wire::{self, CloseCode};
use tessella_node::{Node, TicketSource};
use tokio::sync::broadcast;

const REFUSED: &str = "tessella_admissions_refused_total";

/// A good cluster under attack, with a subscriber on each node from the start.
struct Target {
    fixture: Fixture,
    nodes: Vec<Node>,
    events: Vec<broadcast::Receiver<CatalogEvent>>,
}

impl Target {
    /// Two converged good nodes.
    async fn new(network: &str) -> Target {
        let fixture = Fixture::new(network);
        let nodes = fixture.converged(2).await;
        let events = nodes.iter().map(|n| n.subscribe()).collect();
        Target {
            fixture,
            nodes,
            events,
        }
    }

    fn addr(&self) -> std::net::SocketAddr {
        self.nodes[0].local_addr()
    }

    /// Runs the barrier, then asserts none of `intruders` is known to any
    /// good node: catalog, connections, events, verdict cache of admitted
    /// peers. Shuts the cluster down.
    async fn assert_never_admitted(mut self, intruders: &[NodeId]) {
        let canary = self.fixture.node(vec![self.addr()]).await;
        {
            let all: Vec<&Node> = self.nodes.iter().chain([&canary]).collect();
            wait_until(
                || full_mesh_catalogs(&all),
                "a canary node joins and every good node sees it",
            )
            .await;
            for n in &all {
                let catalog = catalog_ids(n);
                let connected = connected_ids(n);
                for id in intruders {
                    assert!(!catalog.contains(id), "intruder {id} in a catalog");
                    assert!(!connected.contains(id), "intruder {id} connected");
                }
                assert_eq!(catalog.len(), self.nodes.len(), "only good nodes");
            }
        }
        for rx in &mut self.events {
            for event in drain(rx) {
                assert!(
                    !intruders.contains(&event_node(&event)),
                    "an event names an intruder: {event:?}"
                );
            }
        }
        canary.shutdown().await;
        for n in &self.nodes {
            n.shutdown().await;
        }
    }
}

/// A full node that is wrong in one way, bootstrapping from the target:
/// refused during the handshake both as dialer and as listener, with
/// `code` the RA-TLS refusal code.
async fn full_node_refused(target: &Target, bad: Node, code: &str) -> NodeId {
    let refused_before = metric(REFUSED, &[r#"reason="handshake""#]);
    // As dialer (its bootstrap dial is retrying too).
    let err = bad
        .connect(target.addr())
        .await
        .expect_err("the good node refuses the intruder");
    assert!(
        err.contains(&format!(
            "invalid peer certificate: Other(OtherError({code}))"
        )),
        "the intruder is told why: {err}"
    );
    // As listener: a good node dials it and refuses its certificate.
    let err = target.nodes[1]
        .connect(bad.local_addr())
        .await
        .expect_err("a good node refuses the intruder's server certificate");
    assert!(
        err.contains(&format!("OtherError({code})")),
        "the good dialer's reason: {err}"
    );
    assert!(
        metric(REFUSED, &[r#"reason="handshake""#]) > refused_before,
        "the refused handshake is counted"
    );
    // The refusal is the good nodes' verifier's, and its verdict is not cached.
    let cert = bad.certificate();
    for n in &target.nodes {
        let e = n
            .verifier()
            .verify_cert(cert.cert_der().as_ref())
            .expect_err("the good verifier refuses the intruder");
        assert_eq!(e.code(), code);
        assert!(n
            .verifier()
            .peer_identity(cert.cert_der().as_ref())
            .is_none());
    }
    assert!(bad.catalog().is_empty(), "the intruder learned nothing");
    assert!(bad.connected().is_empty(), "the intruder has no session");
    bad.node_id()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refuses_full_nodes_with_a_rogue_measurement_or_of_another_network() {
    let target = Target::new("refusals-full-nodes").await;
    let f = &target.fixture;

    // Same dev PKI, valid ticket from the network's issuer, but a TD the
    // policy does not list. Its own policy lists both, so the refusal under
    // test is the good side's.
    let rogue_td = DevTd::named("rogue");
    let rogue = NodeOptions {
        td: rogue_td,
        policy: measurement_policy_for(&[rogue_td, f.td]),
        bootstrap: vec![target.addr()],
        ..f.options()
    }
    .build()
    .await
    .expect("the rogue node starts (its own policy admits it)");
    let rogue = full_node_refused(&target, rogue, "measurement_mismatch").await;

    // The good TD and PKI, a ticket from a trusted issuer, but another
    // network: its certificate binds another network id.
    let other = NodeOptions {
        network: "other-network".into(),
        bootstrap: vec![target.addr()],
        ..f.options()
    }
    .build()
    .await
    .expect("the other network's node starts");
    let other = full_node_refused(&target, other, "report_data_binding").await;

    target.assert_never_admitted(&[rogue, other]).await;
}

/// Accepts any server certificate: a plain TLS client that does not care.
#[derive(Debug)]
struct AnyServer(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for AnyServer {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        _: &[u8],
        _: &CertificateDer<'_>,
        _: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Ok(HandshakeSignatureValid::assertion())
    }

    fn verify_tls13_signature(
        &self,
        _: &[u8],
        _: &CertificateDer<'_>,
        _: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Ok(HandshakeSignatureValid::assertion())
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// A plain TLS 1.3 QUIC client offering the tessella ALPN, presenting
/// `cert` (or no certificate at all).
fn plain_client(
    cert: Option<(CertificateDer<'static>, PrivateKeyDer<'static>)>,
) -> quinn::ClientConfig {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .expect("tls13")
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AnyServer(provider)));
    let mut tls = match cert {
        Some((cert, key)) => builder
            .with_client_auth_cert(vec![cert], key)
            .expect("client cert"),
        None => builder.with_no_client_auth(),
    };
    tls.alpn_protocols = vec![wire::ALPN.to_vec()];
    quinn::ClientConfig::new(Arc::new(
        QuicClientConfig::try_from(tls).expect("quic client config"),
    ))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refuses_debug_tds_and_plain_tls_clients_in_the_handshake() {
    let target = Target::new("refusals-handshake").await;
    let f = &target.fixture;
    let refused_before = metric(REFUSED, &[r#"reason="handshake""#]);

    // The allow-listed TD with the DEBUG attribute: every policy refuses it.
    let debug = RawPeer::new(RawOptions {
        td: f.td.debug(),
        ..f.raw_options()
    });
    let close = handshake_refused(debug.connect(target.addr()).await).await;
    assert_eq!(
        close.error_code,
        crypto_code(AlertDescription::CertificateUnknown)
    );
    assert_eq!(
        String::from_utf8_lossy(&close.reason),
        "invalid peer certificate: Other(OtherError(debug_td))"
    );
    let e = target.nodes[0]
        .verifier()
        .verify_cert(debug.cert().as_ref())
        .expect_err("debug TD refused");
    assert_eq!(e.code(), "debug_td");

    // A rogue TD through a raw client, for the same check without a node.
    let rogue = RawPeer::new(RawOptions {
        td: DevTd::named("rogue"),
        ..f.raw_options()
    });
    let close = handshake_refused(rogue.connect(target.addr()).await).await;
    assert_eq!(
        close.error_code,
        crypto_code(AlertDescription::CertificateUnknown)
    );
    assert_eq!(
        String::from_utf8_lossy(&close.reason),
        "invalid peer certificate: Other(OtherError(measurement_mismatch))"
    );

    // A plain TLS client with a self-signed certificate carrying no quote.
    let self_signed =
        rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).expect("rcgen cert");
    let plain_cert = self_signed.cert.der().clone();
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(
        self_signed.signing_key.serialize_der(),
    ));
    let endpoint = common::client_endpoint();
    let outcome = bounded(
        "the plain client's handshake",
        endpoint
            .connect_with(
                plain_client(Some((plain_cert.clone(), key))),
                target.addr(),
                "tessella",
            )
            .expect("connect"),
    )
    .await;
    let close = handshake_refused(outcome).await;
    assert_eq!(
        close.error_code,
        crypto_code(AlertDescription::CertificateUnknown)
    );
    assert_eq!(
        String::from_utf8_lossy(&close.reason),
        "invalid peer certificate: Other(OtherError(no_quote))"
    );

    // A plain TLS client presenting no certificate at all.
    let outcome = bounded(
        "the certificate-less client's handshake",
        endpoint
            .connect_with(plain_client(None), target.addr(), "tessella")
            .expect("connect"),
    )
    .await;
    let close = handshake_refused(outcome).await;
    assert_eq!(
        close.error_code,
        crypto_code(AlertDescription::CertificateRequired),
        "reason {:?}",
        String::from_utf8_lossy(&close.reason)
    );

    assert!(
        metric(REFUSED, &[r#"reason="handshake""#]) >= refused_before + 4.0,
        "each refused handshake is counted"
    );
    // Refused certificates never enter the verdict cache.
    for n in &target.nodes {
        for cert in [debug.cert(), rogue.cert(), plain_cert.clone()] {
            assert!(n.verifier().peer_identity(cert.as_ref()).is_none());
        }
    }
    target
        .assert_never_admitted(&[debug.node_id(), rogue.node_id()])
        .await;
}

/// One attested peer presenting a bad Hello.
struct TicketCase {
    what: &'static str,
    hello: fn(&Fixture, &NodeId) -> Hello,
    code: CloseCode,
    reason: &'static str,
}

fn hello(network: NetworkId, ticket: String) -> Hello {
    Hello {
        network,
        ticket,
        software: "test".into(),
        incarnation: 1,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refuses_attested_peers_with_bad_tickets_or_another_network() {
    let target = Target::new("refusals-tickets").await;
    let cases = [
        TicketCase {
            what: "a ticket for another network",
            hello: |f, id| hello(f.network_id(), f.ticket(id, "other-network", now(), 3600)),
            code: CloseCode::AdmissionRefused,
            reason: "ticket wrong_audience",
        },
        TicketCase {
            what: "an expired ticket",
            hello: |f, id| hello(f.network_id(), f.ticket(id, &f.network, now() - 7200, 3600)),
            code: CloseCode::TicketExpired,
            reason: "ticket expired",
        },
        TicketCase {
            what: "no ticket",
            hello: |f, _| hello(f.network_id(), String::new()),
            code: CloseCode::AdmissionRefused,
            reason: "ticket malformed",
        },
        TicketCase {
            what: "a Hello naming another network",
            hello: |f, id| hello(NetworkId::from_name("other-network"), f.good_ticket(id)),
            code: CloseCode::WrongNetwork,
            reason: "different network",
        },
        TicketCase {
            what: "a ticket issued to another node",
            hello: |f, _| hello(f.network_id(), f.good_ticket(&NodeId([7; 32]))),
            code: CloseCode::AdmissionRefused,
            reason: "ticket wrong_subject",
        },
        TicketCase {
            what: "a ticket from an untrusted issuer",
            hello: |f, id| {
                let stranger = TicketIssuer::generate_es256("test-issuer").expect("issuer");
                let claims = stranger.claims(id.to_string(), f.network.clone(), now(), 3600);
                hello(f.network_id(), stranger.issue(&claims).expect("ticket"))
            },
            code: CloseCode::AdmissionRefused,
            reason: "ticket unknown_issuer",
        },
    ];
    let mut intruders = Vec::new();
    for case in &cases {
        // Metrics label ticket refusals by the ticket error code alone (a
        // fixed set), other refusals by their fixed phrase.
        let label = format!(
            r#"reason="{}""#,
            case.reason.strip_prefix("ticket ").unwrap_or(case.reason)
        );
        let before = metric(REFUSED, &[&label]);
        let peer = target.fixture.raw_peer();
        let conn = peer
            .connect(target.addr())
            .await
            .unwrap_or_else(|e| panic!("{}: the attested handshake succeeds: {e}", case.what));
        let msg = ControlMsg::V1((case.hello)(&target.fixture, &peer.node_id()));
        let (_send, mut recv) = send_hello(&conn, &msg).await;
        assert_eq!(
            app_close(&conn).await,
            (case.code, case.reason.to_string()),
            "{}: close code and reason",
            case.what
        );
        // The node never answered with its own Hello (and ticket).
        let reply = wire::read_frame::<_, ControlMsg>(&mut recv, wire::DEFAULT_MAX_FRAME).await;
        assert!(reply.is_err(), "{}: no Hello for a refused peer", case.what);
        assert!(
            metric(REFUSED, &[&label]) > before,
            "{}: the refusal is counted by reason",
            case.what
        );
        intruders.push(peer.node_id());
    }
    // The RA-TLS verdicts were fine, the peers still never got in.
    target.assert_never_admitted(&intruders).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_ticket_closes_the_session_it_admitted() {
    let fixture = Fixture::new("refusals-expiry");
    let clock = Arc::new(ManualClock::new(now()));
    let node = NodeOptions {
        clock: clock.clone(),
        ticket: TicketSource::Issuer(fixture.issuer.clone(), 24 * 3600),
        ..fixture.options()
    }
    .build()
    .await
    .expect("node");
    let peer = fixture.raw_peer();
    let conn = peer.connect(node.local_addr()).await.expect("handshake");
    let ttl = 60;
    let ticket = fixture.ticket(&peer.node_id(), &fixture.network, clock_now(&clock), ttl);
    let (_send, mut recv) =
        send_hello(&conn, &ControlMsg::V1(hello(fixture.network_id(), ticket))).await;
    let reply = wire::read_frame::<_, ControlMsg>(&mut recv, wire::DEFAULT_MAX_FRAME)
        .await
        .expect("read the node's Hello");
    assert!(reply.is_some(), "admitted: the node answers");
    let id = peer.node_id();
    wait_until(
        || connected_ids(&node).contains(&id),
        "the peer is connected",
    )
    .await;
    let session = node
        .connected()
        .into_iter()
        .find(|p| p.identity.node_id == id)
        .expect("session");
    assert_eq!(session.ticket_expires, clock_now(&clock) + ttl);
    assert_eq!(
        session.identity.matched_entry.as_deref(),
        Some(common::ENTRY)
    );

    // Within the leeway (30 s) the session stays.
    clock.advance(ttl + 10);
    tokio::time::sleep(common::scaled(common::GOSSIP * 3)).await;
    assert!(
        conn.close_reason().is_none(),
        "still open within the leeway"
    );
    // Past expiry and leeway, the next tick ends it.
    clock.advance(30);
    assert_eq!(
        app_close(&conn).await,
        (CloseCode::TicketExpired, "ticket expired".to_string())
    );
    wait_until(
        || !connected_ids(&node).contains(&id),
        "the expired session is dropped",
    )
    .await;
    node.shutdown().await;
}

fn clock_now(clock: &ManualClock) -> u64 {
    use tessella_attestation::clock::Clock;
    clock.now_unix()
}

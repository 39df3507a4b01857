//! Smoke: two dev nodes complete a mutually attested QUIC handshake.

use std::sync::Arc;

use tessella_attestation::clock::ManualClock;
use tessella_attestation::dev::{DevPki, DevQuoteProvider, DevTd};
use tessella_attestation::identity::NetworkId;
use tessella_attestation::measurements::{MeasurementPolicy, PolicyEntry, TcbRules};
use tessella_attestation::ratls::{self, CertResolver, RatlsVerifier};
use tessella_attestation::{CollateralStore, Policy};

#[tokio::test]
async fn two_dev_nodes_connect() {
    let now = 1_800_000_000;
    let clock = Arc::new(ManualClock::new(now));
    let pki = Arc::new(DevPki::generate(b"smoke").expect("pki"));
    let td = DevTd::named("node");
    let network = NetworkId::from_name("smoke");
    let store = Arc::new(CollateralStore::new());
    store.insert(pki.collateral().clone());
    let policy = Arc::new(Policy::new(
        MeasurementPolicy::new(
            vec![PolicyEntry::new("dev", vec![td.measurements.mrtd])],
            TcbRules::default(),
        )
        .expect("policy"),
    ));
    let provider = DevQuoteProvider::new(pki.clone(), td);
    let mk = || {
        let id = ratls::issue(&provider, &network, now, 86_400).expect("issue");
        let resolver = CertResolver::new(id).expect("resolver");
        let verifier = RatlsVerifier::new(
            pki.verifier(),
            store.clone(),
            policy.clone(),
            network,
            clock.clone(),
        );
        (resolver, verifier)
    };
    let (server_id, server_verifier) = mk();
    let (client_id, client_verifier) = mk();
    let mut server_tls =
        ratls::server_config(server_id.clone(), server_verifier.clone()).expect("server tls");
    server_tls.alpn_protocols = vec![b"tessella/1".to_vec()];
    let mut client_tls =
        ratls::client_config(client_id.clone(), client_verifier.clone()).expect("client tls");
    client_tls.alpn_protocols = vec![b"tessella/1".to_vec()];
    let server_config = quinn::ServerConfig::with_crypto(Arc::new(
        quinn::crypto::rustls::QuicServerConfig::try_from(server_tls).expect("quic server"),
    ));
    let server =
        quinn::Endpoint::server(server_config, "127.0.0.1:0".parse().expect("addr")).expect("bind");
    let addr = server.local_addr().expect("addr");
    let mut client = quinn::Endpoint::client("127.0.0.1:0".parse().expect("addr")).expect("client");
    client.set_default_client_config(quinn::ClientConfig::new(Arc::new(
        quinn::crypto::rustls::QuicClientConfig::try_from(client_tls).expect("quic client"),
    )));
    let accept = tokio::spawn(async move {
        let incoming = server.accept().await.expect("incoming");
        let conn = incoming.await.expect("server handshake");
        let certs = conn
            .peer_identity()
            .and_then(|i| {
                i.downcast::<Vec<rustls::pki_types::CertificateDer<'static>>>()
                    .ok()
            })
            .expect("peer certs");
        let id = server_verifier
            .peer_identity(certs[0].as_ref())
            .expect("identity");
        (id.node_id, server)
    });
    let conn = client
        .connect(addr, "tessella")
        .expect("connect")
        .await
        .expect("client handshake");
    let (seen, _server) = accept.await.expect("join");
    assert_eq!(seen, client_id.current().node_id());
    let certs = conn
        .peer_identity()
        .and_then(|i| {
            i.downcast::<Vec<rustls::pki_types::CertificateDer<'static>>>()
                .ok()
        })
        .expect("peer certs");
    let id = client_verifier
        .peer_identity(certs[0].as_ref())
        .expect("identity");
    assert_eq!(id.node_id, server_id.current().node_id());
    assert_eq!(id.matched_entry.as_deref(), Some("dev"));
}

//! A node started without a ticket is refused by its peers until an operator
//! installs one for its id; then it joins.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tessella_attestation::dev::{DevPki, DevTd};
use tessella_attestation::measurements::{MeasurementPolicy, PolicyEntry, TcbRules};
use tessella_attestation::{Policy, TicketIssuer};
use tessella_node::{Identity, Network, TicketSource};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pending_ticket_then_install() {
    let pki = Arc::new(DevPki::generate(b"ticket-install").expect("pki"));
    let td = DevTd::named("node");
    let issuer = Arc::new(TicketIssuer::generate_es256("ops").expect("issuer"));
    let build = |ticket: TicketSource, bootstrap: Vec<std::net::SocketAddr>| {
        Network::builder("install")
            .identity(Identity::Dev {
                pki: pki.clone(),
                td: Box::new(td),
            })
            .policy(Policy::new(
                MeasurementPolicy::new(
                    vec![PolicyEntry::new("dev", vec![td.measurements.mrtd])],
                    TcbRules::default(),
                )
                .expect("policy"),
            ))
            .ticket(ticket)
            .trusted_issuers(vec![issuer.public_key()])
            .bootstrap(bootstrap)
            .gossip_interval(Duration::from_millis(50))
            .build()
    };
    let a = build(TicketSource::Issuer(issuer.clone(), 3600), vec![])
        .await
        .expect("a");
    let b = build(TicketSource::Pending, vec![a.local_addr()])
        .await
        .expect("b starts without a ticket");
    assert_eq!(b.ticket_expires(), 0);
    // Without a ticket b is refused: a direct attempt names the reason.
    let err = b.connect(a.local_addr()).await.expect_err("refused");
    assert!(err.contains("ticket"), "{err}");
    assert!(a.connected().is_empty());

    // A ticket for another node, or another network, is refused at install.
    let now = b.now();
    let wrong_node = issuer
        .issue(&issuer.claims("ab".repeat(32), "install", now, 3600))
        .expect("issue");
    assert!(b.install_ticket(&wrong_node).is_err());
    let wrong_net = issuer
        .issue(&issuer.claims(b.node_id().to_string(), "other", now, 3600))
        .expect("issue");
    assert!(b.install_ticket(&wrong_net).is_err());

    let good = issuer
        .issue(&issuer.claims(b.node_id().to_string(), "install", now, 3600))
        .expect("issue");
    let exp = b.install_ticket(&good).expect("installed");
    assert_eq!(exp, now + 3600);
    let deadline = Instant::now() + Duration::from_secs(20);
    while a.catalog().len() != 1 || b.catalog().len() != 1 {
        assert!(Instant::now() < deadline, "b did not join after install");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    b.shutdown().await;
    a.shutdown().await;
}

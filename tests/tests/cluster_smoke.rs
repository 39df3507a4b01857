//! Smoke: five dev nodes, given one bootstrap address, converge.

use std::sync::Arc;
use std::time::Duration;

use tessella_attestation::dev::{DevPki, DevTd};
use tessella_attestation::measurements::{MeasurementPolicy, PolicyEntry, TcbRules};
use tessella_attestation::{Policy, TicketIssuer};
use tessella_node::{Identity, Network, TicketSource};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_nodes_converge() {
    let pki = Arc::new(DevPki::generate(b"cluster").expect("pki"));
    let td = DevTd::named("node");
    let issuer = Arc::new(TicketIssuer::generate_es256("dev-issuer").expect("issuer"));
    let policy = || {
        Policy::new(
            MeasurementPolicy::new(
                vec![PolicyEntry::new("dev", vec![td.measurements.mrtd])],
                TcbRules::default(),
            )
            .expect("policy"),
        )
    };
    let build = |bootstrap: Vec<std::net::SocketAddr>| {
        Network::builder("smoke")
            .identity(Identity::Dev {
                pki: pki.clone(),
                td: Box::new(td),
            })
            .policy(policy())
            .ticket(TicketSource::Issuer(issuer.clone(), 3600))
            .trusted_issuers(vec![issuer.public_key()])
            .bootstrap(bootstrap)
            .gossip_interval(Duration::from_millis(50))
            .build()
    };
    let first = build(vec![]).await.expect("first node");
    let addr = first.local_addr();
    let mut nodes = vec![first];
    for _ in 0..4 {
        nodes.push(build(vec![addr]).await.expect("node"));
    }
    let started = std::time::Instant::now();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let sizes: Vec<usize> = nodes.iter().map(|n| n.catalog().len()).collect();
        if sizes.iter().all(|s| *s == 4) {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "not converged: catalog sizes {sizes:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    eprintln!("converged in {:?}", started.elapsed());
    let t = std::time::Instant::now();
    for n in &nodes {
        n.shutdown().await;
    }
    eprintln!("shutdown in {:?}", t.elapsed());
}

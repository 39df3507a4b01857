//! Tickets end sessions: a revoked ticket (by node id) or an expired one
//! closes the sessions that relied on it, and is not admitted again.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tessella_attestation::clock::ManualClock;
use tessella_attestation::dev::{DevPki, DevTd};
use tessella_attestation::measurements::{MeasurementPolicy, PolicyEntry, TcbRules};
use tessella_attestation::{Policy, TicketIssuer};
use tessella_node::{Identity, Network, TicketSource};

const NOW: u64 = 1_800_000_000;

async fn wait(what: &str, ok: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !ok() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

struct Fixture {
    pki: Arc<DevPki>,
    issuer: Arc<TicketIssuer>,
    td: DevTd,
}

impl Fixture {
    fn new() -> Fixture {
        Fixture {
            pki: Arc::new(DevPki::generate(b"lifecycle").expect("pki")),
            issuer: Arc::new(TicketIssuer::generate_es256("ops").expect("issuer")),
            td: DevTd::named("node"),
        }
    }

    async fn node(
        &self,
        clock: Arc<ManualClock>,
        ttl: u64,
        bootstrap: Vec<std::net::SocketAddr>,
    ) -> Network {
        Network::builder("lifecycle")
            .identity(Identity::Dev {
                pki: self.pki.clone(),
                td: Box::new(self.td),
            })
            .policy(Policy::new(
                MeasurementPolicy::new(
                    vec![PolicyEntry::new("dev", vec![self.td.measurements.mrtd])],
                    TcbRules::default(),
                )
                .expect("policy"),
            ))
            .ticket(TicketSource::Issuer(self.issuer.clone(), ttl))
            .trusted_issuers(vec![self.issuer.public_key()])
            .ticket_leeway(0)
            .clock(clock)
            .bootstrap(bootstrap)
            .gossip_interval(Duration::from_millis(50))
            .build()
            .await
            .expect("node")
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoking_a_node_closes_its_session_and_keeps_it_out() {
    let f = Fixture::new();
    let clock = Arc::new(ManualClock::new(NOW));
    let a = f.node(clock.clone(), 3600, vec![]).await;
    let b = f.node(clock.clone(), 3600, vec![a.local_addr()]).await;
    wait("A admits B", || a.connected().len() == 1).await;
    let closed = a.revoke(&b.node_id().to_string()).expect("room");
    assert_eq!(closed, 1);
    wait("the session closes", || {
        a.connected().is_empty() && b.connected().is_empty()
    })
    .await;
    let err = b.connect(a.local_addr()).await.expect_err("refused");
    assert!(err.contains("revoked"), "{err}");
    assert!(a.connected().is_empty());
    b.shutdown().await;
    a.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_ticket_ends_the_session() {
    let f = Fixture::new();
    let clock_a = Arc::new(ManualClock::new(NOW));
    let clock_b = Arc::new(ManualClock::new(NOW));
    let a = f.node(clock_a.clone(), 3600, vec![]).await;
    // B's ticket lives 600 s; B's own clock stays put, so it never renews.
    let b = f.node(clock_b, 600, vec![a.local_addr()]).await;
    wait("A admits B", || a.connected().len() == 1).await;
    let expires = a.connected()[0].ticket_expires;
    assert_eq!(expires, NOW + 600);
    // On A's clock B's ticket expires; A's next tick closes the session.
    clock_a.set(expires + 1);
    wait("A closes B's expired session", || a.connected().is_empty()).await;
    let err = b.connect(a.local_addr()).await.expect_err("refused");
    assert!(err.contains("expired"), "{err}");
    b.shutdown().await;
    a.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_renewed_ticket_carries_the_session_past_the_old_expiry() {
    let f = Fixture::new();
    let clock_a = Arc::new(ManualClock::new(NOW));
    let clock_b = Arc::new(ManualClock::new(NOW));
    let a = f.node(clock_a.clone(), 3600, vec![]).await;
    let b = f.node(clock_b.clone(), 600, vec![a.local_addr()]).await;
    wait("A admits B", || a.connected().len() == 1).await;
    assert_eq!(a.connected()[0].ticket_expires, NOW + 600);
    // Past two thirds of its life B renews its ticket and presents it to A
    // (both clocks move together: a ticket is not valid before it is issued).
    clock_a.set(NOW + 450);
    clock_b.set(NOW + 450);
    wait("A holds B's renewed ticket", || {
        a.connected().first().map(|p| p.ticket_expires) == Some(NOW + 450 + 600)
    })
    .await;
    // The old ticket's expiry passes on A's clock: the session stays.
    clock_a.set(NOW + 700);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(a.connected().len(), 1, "session kept by the renewed ticket");
    b.shutdown().await;
    a.shutdown().await;
}

//! Tickets end sessions: a revoked ticket (by node id) or an expired one
//! closes the sessions that relied on it and is not admitted again; a renewed
//! one carries the session on.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{wait_until, Fixture, NodeOptions};
use tessella_attestation::clock::ManualClock;
use tessella_node::{Node, TicketSource};

const NOW: u64 = 1_800_000_000;

/// A node on `clock` whose self-issued tickets live `ttl` seconds, no leeway.
async fn node(
    f: &Fixture,
    clock: Arc<ManualClock>,
    ttl: u64,
    bootstrap: Vec<std::net::SocketAddr>,
) -> Node {
    NodeOptions {
        ticket: TicketSource::Issuer(f.issuer.clone(), ttl),
        ticket_leeway: 0,
        clock,
        bootstrap,
        ..f.options()
    }
    .build()
    .await
    .expect("node")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoking_a_node_closes_its_session_and_keeps_it_out() {
    let f = Fixture::new("lifecycle-revoke");
    let clock = Arc::new(ManualClock::new(NOW));
    let a = node(&f, clock.clone(), 3600, vec![]).await;
    let b = node(&f, clock.clone(), 3600, vec![a.local_addr()]).await;
    wait_until(|| a.connected().len() == 1, "A admits B").await;
    let closed = a.network().revoke(&b.node_id().to_string()).expect("room");
    assert_eq!(closed, 1);
    wait_until(
        || a.connected().is_empty() && b.connected().is_empty(),
        "the session closes",
    )
    .await;
    let err = b.connect(a.local_addr()).await.expect_err("refused");
    assert!(err.contains("revoked"), "{err}");
    assert!(a.connected().is_empty());
    b.shutdown().await;
    a.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_ticket_ends_the_session() {
    let f = Fixture::new("lifecycle-expiry");
    let clock_a = Arc::new(ManualClock::new(NOW));
    let a = node(&f, clock_a.clone(), 3600, vec![]).await;
    // B's ticket lives 600 s; B's own clock stays put, so it never renews.
    let b = node(
        &f,
        Arc::new(ManualClock::new(NOW)),
        600,
        vec![a.local_addr()],
    )
    .await;
    wait_until(|| a.connected().len() == 1, "A admits B").await;
    let expires = a.connected()[0].ticket_expires;
    assert_eq!(expires, NOW + 600);
    // On A's clock B's ticket expires; A's next tick closes the session.
    clock_a.set(expires + 1);
    wait_until(|| a.connected().is_empty(), "A closes B's expired session").await;
    let err = b.connect(a.local_addr()).await.expect_err("refused");
    assert!(err.contains("expired"), "{err}");
    b.shutdown().await;
    a.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_renewed_ticket_carries_the_session_past_the_old_expiry() {
    let f = Fixture::new("lifecycle-renewal");
    let clock_a = Arc::new(ManualClock::new(NOW));
    let clock_b = Arc::new(ManualClock::new(NOW));
    let a = node(&f, clock_a.clone(), 3600, vec![]).await;
    let b = node(&f, clock_b.clone(), 600, vec![a.local_addr()]).await;
    wait_until(|| a.connected().len() == 1, "A admits B").await;
    assert_eq!(a.connected()[0].ticket_expires, NOW + 600);
    // Past two thirds of its life B renews its ticket and presents it to A
    // (both clocks move together: a ticket is not valid before it is issued).
    clock_a.set(NOW + 450);
    clock_b.set(NOW + 450);
    wait_until(
        || a.connected().first().map(|p| p.ticket_expires) == Some(NOW + 450 + 600),
        "A holds B's renewed ticket",
    )
    .await;
    // The old ticket's expiry passes on A's clock: the session stays.
    clock_a.set(NOW + 700);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(a.connected().len(), 1, "session kept by the renewed ticket");
    b.shutdown().await;
    a.shutdown().await;
}

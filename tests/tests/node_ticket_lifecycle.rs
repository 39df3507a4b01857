//! Tickets end sessions: a revoked ticket (by node id) or an expired one
//! closes the sessions that relied on it and is not admitted again; a renewed
//! one carries the session on, and protocol handlers and peer handles hear
//! of the renewed claims and of the session's end. A renewed certificate
//! keeps sessions and admits newcomers.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{scaled, wait_until, Fixture, NodeOptions};
use tessella_attestation::clock::ManualClock;
use tessella_node::id::NodeId;
use tessella_node::wire::StreamFamily;
use tessella_node::{Node, PeerInfo, ProtocolHandler, TicketSource};

/// What a subsystem hears of its peers, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Heard {
    Up(NodeId, u64),
    Updated(NodeId, u64),
    Down(NodeId),
}

/// A subsystem (on the otherwise unused functions family) that records the
/// peer events the transport hands it, with the ticket expiry it was shown.
#[derive(Default)]
struct Recorder(Mutex<Vec<Heard>>);

impl Recorder {
    fn heard(&self) -> Vec<Heard> {
        self.0.lock().expect("lock").clone()
    }
}

impl ProtocolHandler for Recorder {
    fn family(&self) -> StreamFamily {
        StreamFamily::Functions
    }

    fn peer_up(&self, peer: &PeerInfo) {
        let heard = Heard::Up(peer.node_id(), peer.claims.exp);
        self.0.lock().expect("lock").push(heard);
    }

    fn peer_updated(&self, peer: &PeerInfo) {
        let heard = Heard::Updated(peer.node_id(), peer.claims.exp);
        self.0.lock().expect("lock").push(heard);
    }

    fn peer_down(&self, peer: NodeId) {
        self.0.lock().expect("lock").push(Heard::Down(peer));
    }
}

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
    let recorder = Arc::new(Recorder::default());
    a.network().register(recorder.clone()).expect("register");
    let b = node(&f, clock_b.clone(), 600, vec![a.local_addr()]).await;
    wait_until(|| a.connected().len() == 1, "A admits B").await;
    assert_eq!(a.connected()[0].ticket_expires, NOW + 600);
    let handle = a.network().peer(b.node_id());
    let mut watch = handle.watch();
    assert_eq!(
        watch.borrow_and_update().as_ref().map(|p| p.claims.exp),
        Some(NOW + 600)
    );
    // Past two thirds of its life B renews its ticket and presents it to A
    // (both clocks move together: a ticket is not valid before it is issued).
    clock_a.set(NOW + 450);
    clock_b.set(NOW + 450);
    wait_until(
        || a.connected().first().map(|p| p.ticket_expires) == Some(NOW + 450 + 600),
        "A holds B's renewed ticket",
    )
    .await;
    // The subsystem and the peer handle's watch see the renewed claims.
    let renewed = NOW + 450 + 600;
    wait_until(
        || {
            recorder
                .heard()
                .contains(&Heard::Updated(b.node_id(), renewed))
        },
        "the handler hears of the renewed claims",
    )
    .await;
    assert_eq!(recorder.heard()[0], Heard::Up(b.node_id(), NOW + 600));
    assert!(watch.has_changed().expect("watch open"));
    assert_eq!(
        watch.borrow_and_update().as_ref().map(|p| p.claims.exp),
        Some(renewed)
    );
    // The old ticket's expiry passes on A's clock: the session stays
    // through several sweeps (250 ms each).
    clock_a.set(NOW + 700);
    tokio::time::sleep(scaled(Duration::from_millis(1000))).await;
    assert_eq!(a.connected().len(), 1, "session kept by the renewed ticket");
    assert!(!recorder.heard().contains(&Heard::Down(b.node_id())));
    // B goes away: the subsystem hears the session end, the watch empties.
    b.shutdown().await;
    wait_until(
        || recorder.heard().last() == Some(&Heard::Down(b.node_id())),
        "the handler hears the session end",
    )
    .await;
    wait_until(
        || watch.borrow().is_none(),
        "the peer handle's watch empties",
    )
    .await;
    a.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_renewed_certificate_keeps_sessions_and_admits_newcomers() {
    let f = Fixture::new("lifecycle-cert");
    let clock = Arc::new(ManualClock::new(NOW));
    let mut spec = NodeOptions {
        clock: clock.clone(),
        ..f.options()
    }
    .spec();
    spec.cert_lifetime = 600;
    let a = Node::start(spec).await.expect("node");
    let b = node(&f, clock.clone(), 3600, vec![a.local_addr()]).await;
    wait_until(|| a.connected().len() == 1, "A admits B").await;
    let first = a.certificate();
    assert!(
        first.not_after() <= NOW + 600 + 300,
        "a short-lived certificate"
    );
    // Past two thirds of its life A's next sweep renews it, off the
    // async workers, once.
    clock.set(first.not_after() - 100);
    wait_until(
        || a.certificate().cert_der() != first.cert_der(),
        "A renews its certificate",
    )
    .await;
    let renewed = a.certificate();
    assert!(renewed.not_after() > first.not_after());
    assert_eq!(renewed.node_id(), first.node_id(), "same key, same node id");
    // The session made under the old certificate stays up.
    assert_eq!(a.connected().len(), 1);
    // A newcomer verifies the new certificate and is admitted.
    let c = node(&f, clock.clone(), 3600, vec![]).await;
    c.connect(a.local_addr()).await.expect("newcomer admitted");
    wait_until(|| a.connected().len() == 2, "A holds both sessions").await;
    c.shutdown().await;
    b.shutdown().await;
    a.shutdown().await;
}

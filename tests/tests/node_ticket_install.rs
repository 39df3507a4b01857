//! A node started without a ticket is refused by its peers until an operator
//! installs one for its id; then it joins.

mod common;

use common::{wait_until, Fixture, NodeOptions};
use tessella_node::TicketSource;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pending_ticket_then_install() {
    let f = Fixture::new("install");
    let a = f.node(vec![]).await;
    let b = NodeOptions {
        ticket: TicketSource::Pending,
        bootstrap: vec![a.local_addr()],
        ..f.options()
    }
    .build()
    .await
    .expect("b starts without a ticket");
    assert_eq!(b.network().ticket_expires(), 0);
    // Without a ticket b is refused: a direct attempt names the reason.
    let err = b.connect(a.local_addr()).await.expect_err("refused");
    assert!(err.contains("ticket"), "{err}");
    assert!(a.connected().is_empty());

    // A ticket for another node, or another network, is refused at install.
    let now = b.network().now();
    let other: tessella_attestation::identity::NodeId = "ab".repeat(32).parse().expect("id");
    assert!(b
        .network()
        .install_ticket(&f.ticket(&other, &f.network, now, 3600))
        .is_err());
    assert!(b
        .network()
        .install_ticket(&f.ticket(&b.node_id(), "other", now, 3600))
        .is_err());

    let exp = b
        .network()
        .install_ticket(&f.ticket(&b.node_id(), &f.network, now, 3600))
        .expect("installed");
    assert_eq!(exp, now + 3600);
    wait_until(
        || a.catalog().len() == 1 && b.catalog().len() == 1,
        "b joins after its ticket is installed",
    )
    .await;
    b.shutdown().await;
    a.shutdown().await;
}

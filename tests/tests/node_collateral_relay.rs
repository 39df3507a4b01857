//! Collateral travels between peers: a node lacking a platform's collateral
//! refuses a peer of that platform, then verifies a bundle relayed by another
//! admitted peer against the refused quote, stores it and admits the peer.
//! Unverifiable bundles are never used.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{wait_until, Fixture, NodeOptions};
use tessella_attestation::dev::{DevPki, DevPlatform};
use tessella_attestation::CollateralStore;
use tessella_node::Node;

/// Platform Y: same dev seed (so the same root) as the fixture, other FMSPC.
fn platform_y() -> DevPlatform {
    DevPlatform {
        fmspc: [0x0e, 0x1f, 0x2a, 0x00, 0x00, 0x00],
        ..DevPlatform::default()
    }
}

/// A node of `f`'s network on `pki`'s platform, starting with `held`.
async fn node(
    f: &Fixture,
    pki: Arc<DevPki>,
    held: &[&DevPki],
    bootstrap: Vec<std::net::SocketAddr>,
) -> Node {
    let store = Arc::new(CollateralStore::new());
    for p in held {
        store.insert(p.collateral().clone());
    }
    NodeOptions {
        pki,
        collateral: store,
        bootstrap,
        ..f.options()
    }
    .build()
    .await
    .expect("node")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relayed_collateral_is_verified_then_admits_the_waiting_peer() {
    let f = Fixture::new("relay");
    let pki_x = f.pki.clone();
    let pki_y = Arc::new(DevPki::generate_for(b"relay", platform_y()).expect("pki y"));
    assert_eq!(
        pki_x.root_der(),
        pki_y.root_der(),
        "one dev root, two platforms"
    );
    let fmspc_y = pki_y.collateral().fmspc();
    // A holds both platforms' collateral; B only its own; C is on platform Y.
    let a = node(&f, pki_x.clone(), &[&pki_y], vec![]).await;
    let b = node(&f, pki_x.clone(), &[], vec![a.local_addr()]).await;
    wait_until(
        || a.connected().len() == 1 && b.connected().len() == 1,
        "A and B admit each other",
    )
    .await;
    // B received Y's bundle from A but cannot verify it yet: not stored.
    assert!(b.network().collateral().get(&fmspc_y).is_none());

    let c = node(&f, pki_y.clone(), &[&pki_x], vec![b.local_addr()]).await;
    wait_until(
        || {
            b.network().collateral().get(&fmspc_y).is_some()
                && b.connected()
                    .iter()
                    .any(|p| p.identity.node_id == c.node_id())
        },
        "B stores Y's collateral and admits C",
    )
    .await;
    wait_until(
        || a.catalog().len() == 2 && b.catalog().len() == 2 && c.catalog().len() == 2,
        "everyone knows everyone",
    )
    .await;
    for n in [c, b, a] {
        n.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_relayed_collateral_is_not_stored() {
    // A bundle for platform Y signed by a different dev PKI (another root):
    // verification against the refused quote fails, nothing is stored.
    let f = Fixture::new("relay");
    let pki_x = f.pki.clone();
    let pki_y = Arc::new(DevPki::generate_for(b"relay", platform_y()).expect("pki y"));
    let forged = DevPki::generate_for(b"someone else", platform_y()).expect("forger");
    let a = node(&f, pki_x.clone(), &[&forged], vec![]).await;
    let b = node(&f, pki_x.clone(), &[], vec![a.local_addr()]).await;
    let c = node(&f, pki_y, &[&pki_x], vec![b.local_addr()]).await;
    // Give relay, refusal and retries time to happen (bounded, not a target).
    let deadline = Instant::now() + Duration::from_secs(2);
    while Instant::now() < deadline {
        assert!(b.collateral().get(&forged.collateral().fmspc()).is_none());
        assert!(!b
            .connected()
            .iter()
            .any(|p| p.identity.node_id == c.node_id()));
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for n in [c, b, a] {
        n.shutdown().await;
    }
}

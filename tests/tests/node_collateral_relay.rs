//! Collateral travels between peers: a node lacking a platform's collateral
//! refuses a peer of that platform, then verifies a bundle relayed by another
//! admitted peer against the refused quote, stores it and admits the peer.
//! Unverifiable bundles are never used.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tessella_attestation::dev::{DevPki, DevPlatform, DevTd};
use tessella_attestation::measurements::{MeasurementPolicy, PolicyEntry, TcbRules};
use tessella_attestation::{CollateralStore, Policy, TicketIssuer};
use tessella_node::{Identity, Network, TicketSource};

const SEED: &[u8] = b"relay";

/// Poll `ok` until it holds, or fail naming `what` after a generous bound.
async fn wait(what: &str, ok: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !ok() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relayed_collateral_is_verified_then_admits_the_waiting_peer() {
    let pki_x = Arc::new(DevPki::generate(SEED).expect("pki x"));
    let pki_y = Arc::new(
        DevPki::generate_for(
            SEED,
            DevPlatform {
                fmspc: [0x0e, 0x1f, 0x2a, 0x00, 0x00, 0x00],
                ..DevPlatform::default()
            },
        )
        .expect("pki y"),
    );
    assert_eq!(
        pki_x.root_der(),
        pki_y.root_der(),
        "one dev root, two platforms"
    );
    let fmspc_y = pki_y.collateral().fmspc();
    let td = DevTd::named("node");
    let issuer = Arc::new(TicketIssuer::generate_es256("ops").expect("issuer"));
    let build = |pki: Arc<DevPki>, store: Arc<CollateralStore>, bootstrap| {
        Network::builder("relay")
            .identity(Identity::Dev {
                pki,
                td: Box::new(td),
            })
            .collateral(store)
            .policy(Policy::new(
                MeasurementPolicy::new(
                    vec![PolicyEntry::new("dev", vec![td.measurements.mrtd])],
                    TcbRules::default(),
                )
                .expect("policy"),
            ))
            .ticket(TicketSource::Issuer(issuer.clone(), 3600))
            .trusted_issuers(vec![issuer.public_key()])
            .bootstrap(bootstrap)
            .gossip_interval(Duration::from_millis(50))
            .build()
    };
    // A holds both platforms' collateral; B only its own; C is on platform Y.
    let store_a = Arc::new(CollateralStore::new());
    store_a.insert(pki_y.collateral().clone());
    let a = build(pki_x.clone(), store_a, vec![]).await.expect("a");
    let b = build(
        pki_x.clone(),
        Arc::new(CollateralStore::new()),
        vec![a.local_addr()],
    )
    .await
    .expect("b");
    let store_c = Arc::new(CollateralStore::new());
    store_c.insert(pki_x.collateral().clone());
    wait("A and B admit each other", || {
        a.connected().len() == 1 && b.connected().len() == 1
    })
    .await;
    // B received Y's bundle from A but cannot verify it yet: not stored.
    assert!(b.collateral().get(&fmspc_y).is_none());

    let c = build(pki_y.clone(), store_c, vec![b.local_addr()])
        .await
        .expect("c");
    wait("B stores Y's collateral and admits C", || {
        b.collateral().get(&fmspc_y).is_some()
            && b.connected()
                .iter()
                .any(|p| p.identity.node_id == c.node_id())
    })
    .await;
    wait("everyone knows everyone", || {
        a.catalog().len() == 2 && b.catalog().len() == 2 && c.catalog().len() == 2
    })
    .await;
    for n in [c, b, a] {
        n.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_relayed_collateral_is_not_stored() {
    // A bundle for platform Y signed by a different dev PKI (another root):
    // verification against the refused quote fails, nothing is stored.
    let pki_x = Arc::new(DevPki::generate(SEED).expect("pki x"));
    let platform_y = DevPlatform {
        fmspc: [0x0e, 0x1f, 0x2a, 0x00, 0x00, 0x00],
        ..DevPlatform::default()
    };
    let pki_y = Arc::new(DevPki::generate_for(SEED, platform_y.clone()).expect("pki y"));
    let forged = DevPki::generate_for(b"someone else", platform_y).expect("forger");
    let td = DevTd::named("node");
    let issuer = Arc::new(TicketIssuer::generate_es256("ops").expect("issuer"));
    let policy = || {
        Policy::new(
            MeasurementPolicy::new(
                vec![PolicyEntry::new("dev", vec![td.measurements.mrtd])],
                TcbRules::default(),
            )
            .expect("policy"),
        )
    };
    let store_a = Arc::new(CollateralStore::new());
    store_a.insert(forged.collateral().clone());
    let mk = |pki: Arc<DevPki>, store: Arc<CollateralStore>, bootstrap| {
        Network::builder("relay")
            .identity(Identity::Dev {
                pki,
                td: Box::new(td),
            })
            .collateral(store)
            .policy(policy())
            .ticket(TicketSource::Issuer(issuer.clone(), 3600))
            .trusted_issuers(vec![issuer.public_key()])
            .bootstrap(bootstrap)
            .gossip_interval(Duration::from_millis(50))
            .build()
    };
    let a = mk(pki_x.clone(), store_a, vec![]).await.expect("a");
    let b = mk(
        pki_x.clone(),
        Arc::new(CollateralStore::new()),
        vec![a.local_addr()],
    )
    .await
    .expect("b");
    let store_c = Arc::new(CollateralStore::new());
    store_c.insert(pki_x.collateral().clone());
    let c = mk(pki_y, store_c, vec![b.local_addr()]).await.expect("c");
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

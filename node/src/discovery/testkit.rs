//! Test fixtures: dev-PKI identities and records.

use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};

use tessella_attestation::dev::{DevPki, DevQuoteProvider, DevTd};
use tessella_attestation::identity::NetworkId;
use tessella_attestation::ratls::{issue, RatlsIdentity};

use super::gossip::RecordVerifier;
use super::record::{PeerRecord, RecordError, SignedRecord, VerifiedRecord};

/// Test time, Unix seconds.
pub(crate) const NOW: u64 = 1_800_000_000;
/// Test time, Unix milliseconds.
pub(crate) const NOW_MS: u64 = NOW * 1000;

const POOL: usize = 40;

/// The network every test node belongs to.
pub(crate) fn network() -> NetworkId {
    NetworkId::from_name("discovery-test")
}

/// The first `n` identities of a shared pool (generated once per test run).
pub(crate) fn identities(n: usize) -> Vec<RatlsIdentity> {
    assert!(n <= POOL, "the identity pool holds {POOL}");
    static IDS: OnceLock<Vec<RatlsIdentity>> = OnceLock::new();
    IDS.get_or_init(|| {
        let pki = Arc::new(DevPki::generate(b"discovery-tests").expect("dev PKI"));
        let provider = DevQuoteProvider::new(pki, DevTd::named("node"));
        (0..POOL)
            .map(|_| issue(&provider, &network(), NOW, 86_400).expect("identity"))
            .collect()
    })[..n]
        .to_vec()
}

/// A plausible record for `id`.
pub(crate) fn record_for(id: &RatlsIdentity, version: u64, issued_at: u64) -> PeerRecord {
    let port = 4000 + (id.node_id().0[0] as u16);
    PeerRecord {
        node_id: id.node_id(),
        network: network(),
        addrs: vec![SocketAddr::from(([127, 0, 0, 1], port))],
        tags: vec![[7; 32]],
        services: vec!["orders".into()],
        version,
        issued_at,
        software: "tessella-test".into(),
        departing: false,
    }
}

/// Sign and verify `record` with `id`.
pub(crate) fn verified(record: &PeerRecord, id: &RatlsIdentity) -> VerifiedRecord {
    SignedRecord::sign(record, id)
        .expect("signs")
        .verify(&network(), record.issued_at, 60)
        .expect("verifies")
}

/// Checks records as the node does (signature, network, time).
#[derive(Debug)]
pub(crate) struct TestVerifier;

impl RecordVerifier for TestVerifier {
    fn verify(
        &self,
        signed: &SignedRecord,
        now_ms: u64,
    ) -> Result<Arc<VerifiedRecord>, RecordError> {
        signed.verify(&network(), now_ms / 1000, 10).map(Arc::new)
    }

    fn expires(&self, _record: &VerifiedRecord) -> u64 {
        u64::MAX
    }
}

/// The verifier test nodes use.
pub(crate) fn verifier() -> Arc<dyn RecordVerifier> {
    Arc::new(TestVerifier)
}

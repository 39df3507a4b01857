//! Test fixtures: dev-PKI identities, a ticket issuer and records.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, OnceLock};

use tessella_attestation::dev::{DevPki, DevQuoteProvider, DevTd};
use tessella_attestation::identity::{NetworkId, NodeId};
use tessella_attestation::ratls::{issue, RatlsIdentity};
use tessella_attestation::{TicketClaims, TicketIssuer, TicketValidator};

use super::gossip::RecordVerifier;
use super::record::{PeerRecord, RecordCheck, SignedRecord, VerifiedRecord};
use super::service::{Service, StreamRole};
use crate::id::StreamId;

/// Test time, Unix seconds.
pub(crate) const NOW: u64 = 1_800_000_000;
/// Test time, Unix milliseconds.
pub(crate) const NOW_MS: u64 = NOW * 1000;
/// The test network's name (a ticket's audience).
pub(crate) const NETWORK_NAME: &str = "discovery-test";
/// When fixture tickets from [`ticket`] expire: far enough for any simulated
/// run.
pub(crate) const TICKET_EXP: u64 = NOW + 30 * 86_400;
/// When fixture tickets become valid: before any time a test uses.
const TICKET_IAT: u64 = NOW - 86_400;
/// Tolerated skew of [`record_check`], seconds.
pub(crate) const SKEW: u64 = 30;

const POOL: usize = 40;

/// The network every test node belongs to.
pub(crate) fn network() -> NetworkId {
    NetworkId::from_name(NETWORK_NAME)
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

/// The issuer every test node trusts (generated once per test run).
pub(crate) fn issuer() -> &'static TicketIssuer {
    static ISSUER: OnceLock<TicketIssuer> = OnceLock::new();
    ISSUER.get_or_init(|| TicketIssuer::generate_es256("discovery-test-issuer").expect("issuer"))
}

/// A ticket for `id` in the test network, from [`issuer`], expiring at `exp`.
pub(crate) fn ticket_for(id: &RatlsIdentity, exp: u64) -> String {
    issuer()
        .issue(&claims_for(id, exp))
        .expect("issues a ticket")
}

/// The claims of [`ticket_for`], to alter before issuing.
pub(crate) fn claims_for(id: &RatlsIdentity, exp: u64) -> TicketClaims {
    TicketClaims::new(
        issuer().name(),
        id.node_id().to_string(),
        NETWORK_NAME,
        TICKET_IAT,
        exp,
    )
}

/// A ticket for `id` valid throughout every test ([`TICKET_EXP`]), issued
/// once per identity (simulations ask for many).
pub(crate) fn ticket(id: &RatlsIdentity) -> String {
    static TICKETS: OnceLock<Mutex<HashMap<NodeId, String>>> = OnceLock::new();
    let mut tickets = TICKETS
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|p| p.into_inner());
    tickets
        .entry(id.node_id())
        .or_insert_with(|| ticket_for(id, TICKET_EXP))
        .clone()
}

/// What test records must satisfy: the test network, [`issuer`] trusted,
/// [`SKEW`] seconds of clock difference.
pub(crate) fn record_check() -> RecordCheck {
    let validator = TicketValidator::new(NETWORK_NAME, [issuer().public_key()]).expect("validator");
    RecordCheck::new(validator, SKEW)
}

/// A plausible record for `id`, with a valid ticket.
pub(crate) fn record_for(id: &RatlsIdentity, version: u64, issued_at: u64) -> PeerRecord {
    let port = 4000 + (id.node_id().0[0] as u16);
    PeerRecord {
        node_id: id.node_id(),
        network: network(),
        addrs: vec![SocketAddr::from(([127, 0, 0, 1], port))],
        tags: vec![[7; 32]],
        services: vec![Service::Stream {
            id: StreamId::from_name("orders"),
            role: StreamRole::Producer,
        }],
        ticket: ticket(id),
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
        .verify(&record_check(), record.issued_at)
        .expect("verifies")
}

/// The verifier test nodes use.
pub(crate) fn verifier() -> Arc<dyn RecordVerifier> {
    Arc::new(record_check())
}

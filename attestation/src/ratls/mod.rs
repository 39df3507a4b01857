//! RA-TLS: TLS certificates that carry a TDX quote binding their own key.
//!
//! A node generates a P-256 key in memory, computes
//! `report_data = SHA-512("tessella-ratls-v1" ‖ SPKI DER ‖ not_before ‖ not_after ‖ network id)`
//! (times as big-endian u64 Unix seconds), asks its quote provider for a quote
//! over it, and self-signs a short-lived certificate with the quote in a
//! non-critical extension ([`QUOTE_EXTENSION_OID`]). The quote thus binds
//! this key, this validity window and this network; the TLS handshake proves
//! possession of the key. The rustls verifiers in [`verifier`] run the whole
//! chain (window, binding, quote, TCB, measurements) on every peer
//! certificate, cache the verdict per certificate, and hand the verified
//! [`PeerIdentity`] to the application.
//!
//! Quote generation is slow (tens of ms on hardware) and never happens on the
//! handshake path: [`CertResolver`] serves the current certificate and is
//! renewed ahead of expiry.

mod cert;
pub mod verifier;

pub use cert::{
    issue, issue_for_key, report_data_for, verify_node_signature, CertResolver, NodeKey,
    ParsedCert, RatlsError, RatlsIdentity, QUOTE_EXTENSION_OID, REPORT_DATA_DOMAIN,
};
pub use verifier::{
    client_config, refusal_of, server_config, Fingerprint, PeerIdentity, RatlsClientVerifier,
    RatlsServerVerifier, RatlsVerifier, VerdictCache, DEFAULT_CACHE_CAPACITY,
};

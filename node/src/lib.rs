//! The tessella node runtime.
//!
//! Not built yet: the attested QUIC transport, discovery, streams, Raft groups,
//! replicated collections and the admin API arrive with later issues. Today this
//! crate only re-exports the attestation layer that everything here will admit
//! peers through, so the dependency direction of DESIGN.md is in place.

pub use tessella_attestation as attestation;

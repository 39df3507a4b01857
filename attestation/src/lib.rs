//! Evidence that a peer runs inside an Intel TDX trust domain, and its offline
//! verification.
//!
//! The trust root of tessella: every later subsystem admits a peer only through
//! [`Verifier`] and [`Policy`]. Verification is two steps, each returning proof
//! that only this crate can construct:
//!
//! 1. [`Verifier::verify_quote`]: the quote's signature chain up to the trust
//!    anchor (Intel's root, or the dev PKI's), the collateral's signatures and
//!    validity at an explicit `now`, and the TCB level the platform sits at
//!    (dcap-qvl does the cryptography). Yields [`Attested`].
//! 2. [`Policy::appraise`]: the TCB rules (statuses, advisories, platform flags,
//!    evaluation data number), the debug bit, the measurement allow-list and the
//!    expected `report_data`. Yields [`Verified`], naming the entry that matched.
//!
//! [`Verifier::verify`] runs both. Every refusal is a typed [`VerifyError`] or
//! [`Rejection`] that says exactly why.
//!
//! Modules: [`quote`] parses quotes, [`collateral`] loads and stores Intel
//! collateral, [`policy`] holds the admission rules, [`verify`] ties them
//! together, [`clock`] converts timestamps.

pub mod clock;
pub mod collateral;
pub mod dev;
pub mod identity;
pub mod policy;
pub mod provider;
pub mod quote;
pub mod ratls;
pub mod ticket;
pub mod verify;

pub use collateral::{Collateral, CollateralError, CollateralStore, ValidityWindow};

pub use quote::{Fmspc, Quote, QuoteError, TdAttributes, TdBody};
pub use tessella_measurements as measurements;

pub use policy::{MeasurementRule, Policy, PolicyError, Rejection};
pub use provider::{ConfigfsTsm, ProviderError, QuoteProvider};
pub use ticket::{
    Permission, ResourceKind, TicketAlgorithm, TicketClaims, TicketError, TicketIssuer,
    TicketValidator, TrustedIssuer,
};
pub use verify::{Attested, PlatformFlags, TrustAnchor, Verified, Verifier, VerifyError};

//! Dev mode evidence: a PKI shaped like Intel's and real TDX quotes signed
//! under it, so dev nodes and tests run the exact verification code that
//! production runs, with only the trust anchor changed.
//!
//! Nothing here is secure: every key derives from a public seed. A production
//! verifier trusts only Intel's root ([`crate::Verifier::intel`]); dev evidence
//! verifies only under [`DevPki::verifier`], whose anchor is named
//! [`DEV_ANCHOR_NAME`] in every report.

mod key;
mod pki;
mod quote;

pub use key::DevKey;
pub use pki::{DevPki, DevPkiError, DevPlatform, DEV_ANCHOR_NAME, DEV_NOT_AFTER, DEV_NOT_BEFORE};
pub use quote::{DevQuoteProvider, DevTd, DEBUG_TD_ATTRIBUTES, DEV_TD_ATTRIBUTES, DEV_XFAM};

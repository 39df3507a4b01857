//! The deployment config bound to the TD's MRCONFIGID.
//!
//! MRCONFIGID is 48 bytes the host chooses when it launches a TD (QEMU's
//! `tdx-guest` object property `mrconfigid`, base64) and that the TDX module
//! reports, unchanged, in every TD report and quote. A node in TDX identity
//! mode refuses to start unless MRCONFIGID equals the SHA-384 of the exact
//! config bytes it loaded: so the config a verifier sees in the quote is the
//! config the node runs, although the config itself travels outside the
//! measured image (fw_cfg, a file).
//!
//! Dev identity mode skips the check (its quotes come from the dev PKI and
//! prove nothing anyway).
//!
//! The register is read from a quote decoded by [`Quote::decode`]
//! (`TDReport10::mr_config_id`, quote offset 232): [`check_provider`] takes
//! one fresh quote before the node starts, and [`check_measurements`]
//! checks the quote in the started node's certificate
//! ([`crate::Network::own_measurements`]).

use std::fmt;

use base64::Engine as _;
use tessella_attestation::measurements::TdMeasurements;
use tessella_attestation::{Quote, QuoteProvider};

/// MRCONFIGID's size, a SHA-384 digest.
pub const MR_CONFIG_ID_LEN: usize = 48;

/// What `report_data` the binding check's own quote carries: a fixed label,
/// so that quote is never mistaken for a certificate's.
pub const CHECK_REPORT_DATA: [u8; 64] = {
    let label = b"tessella mrconfigid check v1";
    let mut out = [0u8; 64];
    let mut i = 0;
    while i < label.len() {
        out[i] = label[i];
        i += 1;
    }
    out
};

/// SHA-384 of the config bytes: what MRCONFIGID must be.
pub fn config_sha384(config_bytes: &[u8]) -> [u8; MR_CONFIG_ID_LEN] {
    tessella_attestation::measurements::sha384(config_bytes).0
}

/// The value to give QEMU's `tdx-guest` `mrconfigid` property for
/// `config_bytes`: base64 of their SHA-384.
pub fn mrconfigid_property(config_bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(config_sha384(config_bytes))
}

/// A config that matched MRCONFIGID.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConfigBinding {
    /// SHA-384 of the config bytes, equal to the TD's MRCONFIGID.
    pub config_sha384: [u8; MR_CONFIG_ID_LEN],
}

impl fmt::Display for ConfigBinding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", hex::encode(self.config_sha384))
    }
}

/// Why the config is not the one the TD was launched for.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigBindingError {
    /// MRCONFIGID is another value than the config's SHA-384.
    #[error(
        "the config is not bound to this TD: SHA-384 of the config is {} but MRCONFIGID is {}; \
         launch the TD with mrconfigid = {} (base64 of the config's SHA-384, QEMU's tdx-guest \
         `mrconfigid` property) or supply the config it was launched for",
        hex::encode(config_sha384),
        hex::encode(mr_config_id),
        base64::engine::general_purpose::STANDARD.encode(config_sha384)
    )]
    Mismatch {
        /// SHA-384 of the config bytes.
        config_sha384: [u8; MR_CONFIG_ID_LEN],
        /// The TD's MRCONFIGID.
        mr_config_id: [u8; MR_CONFIG_ID_LEN],
    },
    /// What was passed as MRCONFIGID is not 48 bytes.
    #[error("MRCONFIGID must be {MR_CONFIG_ID_LEN} bytes, got {0}")]
    WrongLength(usize),
    /// No quote could be obtained to read MRCONFIGID from (the cause is
    /// the error's source, printed by `{:#}` chains).
    #[error("cannot obtain a quote to read MRCONFIGID")]
    Provider(#[from] tessella_attestation::ProviderError),
    /// The quote does not decode (the cause is the error's source).
    #[error("cannot read MRCONFIGID from this node's quote")]
    Quote(#[from] tessella_attestation::QuoteError),
    /// The started node's certificate carries no readable quote.
    #[error("cannot read MRCONFIGID: this node's certificate carries no readable quote")]
    NoOwnQuote,
}

/// Checks that `mr_config_id` (the TD's MRCONFIGID, 48 bytes) is SHA-384 of
/// `config_bytes`, exactly as loaded.
pub fn check_config_binding(
    config_bytes: &[u8],
    mr_config_id: &[u8],
) -> Result<ConfigBinding, ConfigBindingError> {
    let mr_config_id: [u8; MR_CONFIG_ID_LEN] = mr_config_id
        .try_into()
        .map_err(|_| ConfigBindingError::WrongLength(mr_config_id.len()))?;
    let config_sha384 = config_sha384(config_bytes);
    // Both values are public: no constant-time comparison needed.
    if config_sha384 == mr_config_id {
        Ok(ConfigBinding { config_sha384 })
    } else {
        Err(ConfigBindingError::Mismatch {
            config_sha384,
            mr_config_id,
        })
    }
}

/// MRCONFIGID as a quote reports it.
pub fn mr_config_id_of_quote(quote: &[u8]) -> Result<[u8; MR_CONFIG_ID_LEN], ConfigBindingError> {
    Ok(Quote::decode(quote)?.measurements().mrconfigid.0)
}

/// The check before a node starts: one quote from `provider` (the one the
/// node will use), its MRCONFIGID against `config_bytes`. Blocks while the
/// provider does (configfs-tsm may wait seconds for the host).
pub fn check_provider(
    config_bytes: &[u8],
    provider: &dyn QuoteProvider,
) -> Result<ConfigBinding, ConfigBindingError> {
    let quote = provider.quote(&CHECK_REPORT_DATA)?;
    check_config_binding(config_bytes, &mr_config_id_of_quote(&quote)?)
}

/// The check on a started node: the registers of the quote in its own
/// certificate ([`crate::Network::own_measurements`]).
pub fn check_measurements(
    config_bytes: &[u8],
    own: Option<TdMeasurements>,
) -> Result<ConfigBinding, ConfigBindingError> {
    let own = own.ok_or(ConfigBindingError::NoOwnQuote)?;
    check_config_binding(config_bytes, &own.mrconfigid.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    // SHA-384("abc") from FIPS 180-2, appendix D.1: an independent vector.
    const ABC_SHA384: &str = "cb00753f45a35e8bb5a03d699ac65007272c32ab0eded1631a8b605a43ff5bed\
                              8086072ba1e7cc2358baeca134c825a7";

    #[test]
    fn digest_is_sha384() {
        assert_eq!(hex::encode(config_sha384(b"abc")), ABC_SHA384);
    }

    #[test]
    fn matching_config_is_bound() {
        let id = hex::decode(ABC_SHA384).expect("hex");
        let b = check_config_binding(b"abc", &id).expect("match");
        assert_eq!(b.to_string(), ABC_SHA384);
    }

    #[test]
    fn mismatch_names_both_values_and_the_fix() {
        let id = [7u8; 48];
        let e = check_config_binding(b"abc", &id).expect_err("mismatch");
        assert!(matches!(e, ConfigBindingError::Mismatch { .. }));
        let msg = e.to_string();
        assert!(msg.contains(ABC_SHA384), "{msg}");
        assert!(msg.contains(&hex::encode(id)), "{msg}");
        // base64 of the digest; the expected text was computed with Python's
        // hashlib and base64 modules, independently of this crate.
        let b64 = mrconfigid_property(b"abc");
        assert!(msg.contains(&format!("mrconfigid = {b64}")), "{msg}");
        assert_eq!(
            b64,
            "ywB1P0WjXou1oD1pmsZQBycsMqsO3tFjGotgWkP/W+2AhgcroefMI1i67KE0yCWn"
        );
        // A single changed byte of the config is refused too.
        let id = hex::decode(ABC_SHA384).expect("hex");
        assert!(check_config_binding(b"abd", &id).is_err());
    }

    #[test]
    fn wrong_length_is_refused() {
        for len in [0, 32, 47, 49, 64] {
            let e = check_config_binding(b"abc", &vec![0; len]).expect_err("length");
            assert!(matches!(e, ConfigBindingError::WrongLength(n) if n == len));
        }
    }

    #[test]
    fn no_own_quote_is_refused() {
        let e = check_measurements(b"abc", None).expect_err("none");
        assert!(matches!(e, ConfigBindingError::NoOwnQuote));
    }

    #[test]
    fn garbage_quote_is_refused() {
        let e = mr_config_id_of_quote(&[0u8; 10]).expect_err("garbage");
        assert!(matches!(e, ConfigBindingError::Quote(_)));
    }
}

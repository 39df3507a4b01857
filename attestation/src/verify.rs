//! Offline quote verification against a trust anchor, with an explicit `now`.

use std::fmt;

use dcap_qvl::verify::{QuoteVerifier, VerifiedReport};
use serde::Serialize;
use tessella_measurements::{Digest48, MatchedEntry, TdMeasurements};

use crate::collateral::{Collateral, CollateralStore, ValidityWindow};
use crate::policy::{Policy, Rejection};
use crate::quote::{Fmspc, PckFacts, Quote, QuoteError, TdAttributes};

/// The root certificate quotes must chain to.
#[derive(Clone)]
pub enum TrustAnchor {
    /// Intel's SGX/TDX provisioning root CA, as shipped in dcap-qvl.
    Intel,
    /// Another root (the dev PKI), named for reports and logs.
    Custom {
        /// A name for people, e.g. `tessella-dev`.
        name: String,
        /// The root certificate, DER.
        root_der: Vec<u8>,
    },
}

impl fmt::Debug for TrustAnchor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TrustAnchor::Intel => f.write_str("Intel"),
            TrustAnchor::Custom { name, .. } => write!(f, "Custom({name})"),
        }
    }
}

impl fmt::Display for TrustAnchor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TrustAnchor::Intel => f.write_str("Intel SGX Root CA"),
            TrustAnchor::Custom { name, .. } => f.write_str(name),
        }
    }
}

/// Why a quote failed verification.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum VerifyError {
    /// The quote itself is unusable (for example its PCK certificate is unreadable).
    #[error(transparent)]
    Quote(#[from] QuoteError),
    /// The store has no collateral for the quote's platform model.
    #[error("no collateral for FMSPC {fmspc}: fetch it from Intel PCS or a PCCS and add it")]
    NoCollateral {
        /// The quote's FMSPC.
        fmspc: Fmspc,
    },
    /// The collateral is for another platform model.
    #[error("FMSPC mismatch: the quote is from {quote}, the collateral is for {collateral}")]
    FmspcMismatch {
        /// The quote's FMSPC.
        quote: Fmspc,
        /// The collateral's FMSPC.
        collateral: Fmspc,
    },
    /// `now` is before the collateral became valid.
    #[error("collateral is not valid yet at {}: valid {window}", crate::clock::format_rfc3339(*now))]
    CollateralNotYetValid {
        /// The verification time.
        now: u64,
        /// The collateral's window.
        window: ValidityWindow,
    },
    /// `now` is after the collateral expired: fetch fresh collateral.
    #[error("collateral expired at {}: valid {window}; fetch fresh collateral", crate::clock::format_rfc3339(*now))]
    CollateralExpired {
        /// The verification time.
        now: u64,
        /// The collateral's window.
        window: ValidityWindow,
    },
    /// A certificate in the quote or collateral is outside its validity at `now`.
    #[error("not valid at {}: {detail}", crate::clock::format_rfc3339(*now))]
    NotValidAt {
        /// The verification time.
        now: u64,
        /// dcap-qvl's account.
        detail: String,
    },
    /// A debug TD.
    #[error("the TD has the DEBUG attribute set")]
    DebugTd,
    /// TD attributes that are never acceptable (migratable, profiling, SEPT #VE enabled, ...).
    #[error("TD attributes refused: {0}")]
    TdAttributes(String),
    /// A signature does not verify: quote body, QE report, TCB info or QE identity.
    #[error("bad signature: {0}")]
    Signature(String),
    /// The PCK or collateral certificates do not chain to the trust anchor, or one is revoked.
    #[error("certificate chain: {0}")]
    CertificateChain(String),
    /// Intel revoked the platform's TCB.
    #[error("the platform's TCB is revoked")]
    Revoked,
    /// The platform is older than every TCB level the collateral knows.
    #[error(
        "no matching TCB level: the platform's TCB is below every level in the collateral ({0})"
    )]
    NoMatchingTcbLevel(String),
    /// Another verification failure, in dcap-qvl's words.
    #[error("quote verification failed: {0}")]
    Other(String),
    /// Genuine, but refused by policy.
    #[error("refused by policy: {0}")]
    Rejected(#[from] Rejection),
}

impl VerifyError {
    /// A stable snake_case code for scripts and metrics.
    pub fn code(&self) -> &'static str {
        match self {
            VerifyError::Quote(_) => "bad_quote",
            VerifyError::NoCollateral { .. } => "no_collateral",
            VerifyError::FmspcMismatch { .. } => "fmspc_mismatch",
            VerifyError::CollateralNotYetValid { .. } => "collateral_not_yet_valid",
            VerifyError::CollateralExpired { .. } => "collateral_expired",
            VerifyError::NotValidAt { .. } => "not_valid_at_time",
            VerifyError::DebugTd => "debug_td",
            VerifyError::TdAttributes(_) => "td_attributes",
            VerifyError::Signature(_) => "bad_signature",
            VerifyError::CertificateChain(_) => "certificate_chain",
            VerifyError::Revoked => "tcb_revoked",
            VerifyError::NoMatchingTcbLevel(_) => "no_matching_tcb_level",
            VerifyError::Other(_) => "verification_failed",
            VerifyError::Rejected(r) => r.code(),
        }
    }

    /// Sort a dcap-qvl failure into a variant. dcap-qvl reports errors as text;
    /// its version is pinned exactly and tests cover every branch used here.
    fn from_dcap(err: &anyhow::Error, now: u64) -> Self {
        let detail = format!("{err:#}");
        let has = |s: &str| detail.contains(s);
        if has("Debug mode is enabled") {
            VerifyError::DebugTd
        } else if has("TD profiling")
            || has("TD migration")
            || has("SEPT_VE_DISABLE")
            || has("Reserved bits in TD attributes")
            || has("SERVTD_EXT")
            || has("Invalid MR service TD")
        {
            VerifyError::TdAttributes(detail)
        } else if has("TCB status is invalid: Revoked") {
            VerifyError::Revoked
        } else if has("No matching TCB level") {
            VerifyError::NoMatchingTcbLevel(detail)
        } else if has("expired")
            || has("in the future")
            || has("CertExpired")
            || has("CertNotValidYet")
            || has("CrlExpired")
        {
            VerifyError::NotValidAt { now, detail }
        } else if has("root CA CRL")
            || has("UnknownIssuer")
            || has("Failed to load root ca")
            || has("Failed to verify certificate chain")
        {
            // The collateral or PCK chain was not issued under this trust
            // anchor (dev evidence under Intel's root, or the reverse).
            VerifyError::CertificateChain(detail)
        } else if has("ignature is invalid")
            || has("hash mismatch")
            || has("BadSignature")
            || has("InvalidSignatureForPublicKey")
            || has("InvalidCrlSignatureForPublicKey")
        {
            VerifyError::Signature(detail)
        } else if has("UnknownIssuer")
            || has("CertRevoked")
            || has("Failed to load root ca")
            || has("certificate")
        {
            VerifyError::CertificateChain(detail)
        } else {
            VerifyError::Other(detail)
        }
    }
}

/// The PCK certificate's platform flags (`None` for Processor-CA certificates,
/// which do not carry them).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct PlatformFlags {
    /// The platform can gain packages (multi-package hosts).
    pub dynamic_platform: Option<bool>,
    /// Platform root keys are cached by the registration service.
    pub cached_keys: Option<bool>,
    /// SMT (hyper-threading) is enabled.
    pub smt: Option<bool>,
}

/// Proof that a quote is genuine: signed by a TDX quoting enclave on a platform
/// whose PCK chain reaches the trust anchor, under collateral valid at `now`,
/// at a TCB level the collateral knows. Says nothing yet about whether the
/// policy likes it; see [`Policy::appraise`].
#[derive(Debug, Clone)]
pub struct Attested {
    report: VerifiedReport,
    td: dcap_qvl::quote::TDReport10,
    pck: PckFacts,
    eval_data_number: u32,
    window: ValidityWindow,
    now: u64,
}

impl Attested {
    /// dcap-qvl's verified report (converged status, platform and QE levels, PPID).
    pub fn report(&self) -> &VerifiedReport {
        &self.report
    }

    /// The time verification ran at.
    pub fn now(&self) -> u64 {
        self.now
    }

    /// The platform model.
    pub fn fmspc(&self) -> Fmspc {
        self.pck.fmspc
    }

    /// Converged TCB status, as Intel names it (`UpToDate`, `OutOfDate`, ...).
    pub fn tcb_status(&self) -> &str {
        &self.report.status
    }

    /// Advisory ids that apply to the platform and quoting enclave.
    pub fn advisory_ids(&self) -> &[String] {
        &self.report.advisory_ids
    }

    /// The lower of the TCB info's and QE identity's TCB evaluation data numbers.
    pub fn tcb_eval_data_number(&self) -> u32 {
        self.eval_data_number
    }

    /// The PCK certificate's platform flags.
    pub fn platform_flags(&self) -> PlatformFlags {
        PlatformFlags {
            dynamic_platform: self.pck.dynamic_platform,
            cached_keys: self.pck.cached_keys,
            smt: self.pck.smt,
        }
    }

    /// When the evidence as a whole is valid: the collateral's window
    /// narrowed by the PCK certificate's. (The PCK CA is the collateral's PCK
    /// CRL issuer, so its window is already in the collateral's.)
    pub fn valid_window(&self) -> ValidityWindow {
        self.window
    }

    /// The verified measurements.
    pub fn measurements(&self) -> TdMeasurements {
        crate::quote::measurements_of(&self.td)
    }

    /// The verified TD attributes.
    pub fn td_attributes(&self) -> TdAttributes {
        TdAttributes::from_bytes(self.td.td_attributes)
    }

    /// The verified `report_data`.
    pub fn report_data(&self) -> [u8; 64] {
        self.td.report_data
    }

    /// MRSEAM of the TDX module.
    pub fn mr_seam(&self) -> Digest48 {
        Digest48(self.td.mr_seam)
    }
}

/// Proof that a quote is genuine *and* satisfies a [`Policy`]. Only
/// [`Policy::appraise`] makes one.
#[derive(Debug, Clone)]
pub struct Verified {
    attested: Attested,
    matched: Option<MatchedEntry>,
}

impl Verified {
    pub(crate) fn new(attested: Attested, matched: Option<MatchedEntry>) -> Self {
        Verified { attested, matched }
    }

    /// The genuine-quote facts.
    pub fn attested(&self) -> &Attested {
        &self.attested
    }

    /// The allow-list entry that matched; `None` under an unpinned policy.
    pub fn matched_entry(&self) -> Option<&MatchedEntry> {
        self.matched.as_ref()
    }
}

/// Verifies quotes against one trust anchor.
pub struct Verifier {
    anchor: TrustAnchor,
    dcap: QuoteVerifier,
}

impl fmt::Debug for Verifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Verifier")
            .field("anchor", &self.anchor)
            .finish()
    }
}

impl Verifier {
    /// A verifier that trusts Intel's root only.
    pub fn intel() -> Self {
        Verifier {
            anchor: TrustAnchor::Intel,
            dcap: QuoteVerifier::new_prod(),
        }
    }

    /// A verifier that trusts another root (the dev PKI). The name appears in
    /// reports so nobody mistakes dev evidence for Intel's.
    pub fn with_root(name: impl Into<String>, root_der: Vec<u8>) -> Self {
        Verifier {
            dcap: QuoteVerifier::new(root_der.clone()),
            anchor: TrustAnchor::Custom {
                name: name.into(),
                root_der,
            },
        }
    }

    /// The trust anchor.
    pub fn anchor(&self) -> &TrustAnchor {
        &self.anchor
    }

    /// Step 1: check that `quote` is genuine under `collateral` at `now`.
    pub fn verify_quote(
        &self,
        quote: &Quote,
        collateral: &Collateral,
        now: u64,
    ) -> Result<Attested, VerifyError> {
        // Cheap checks first, each with a precise error; dcap-qvl repeats them.
        if quote.td_attributes().debug() {
            return Err(VerifyError::DebugTd);
        }
        let fmspc = quote.fmspc()?;
        if fmspc != collateral.fmspc() {
            return Err(VerifyError::FmspcMismatch {
                quote: fmspc,
                collateral: collateral.fmspc(),
            });
        }
        let window = collateral.validity();
        if now < window.not_before {
            return Err(VerifyError::CollateralNotYetValid { now, window });
        }
        if now > window.not_after {
            return Err(VerifyError::CollateralExpired { now, window });
        }
        let report = self
            .dcap
            .verify(quote.as_bytes(), collateral.as_dcap(), now)
            .map_err(|e| VerifyError::from_dcap(&e, now))?;
        let td = *report
            .report
            .as_td10()
            .ok_or(QuoteError::NotTdx(quote.raw().header.tee_type))?;
        // dcap-qvl verified the PCK leaf these facts were read from.
        let pck = quote.pck()?;
        Ok(Attested {
            report,
            td,
            pck,
            eval_data_number: collateral.eval_data_number(),
            window: ValidityWindow {
                not_before: window.not_before.max(pck.not_before),
                not_after: window.not_after.min(pck.not_after),
            },
            now,
        })
    }

    /// Step 1 with collateral looked up by the quote's FMSPC.
    pub fn verify_quote_in(
        &self,
        quote: &Quote,
        store: &CollateralStore,
        now: u64,
    ) -> Result<Attested, VerifyError> {
        let fmspc = quote.fmspc()?;
        let collateral = store
            .get(&fmspc)
            .ok_or(VerifyError::NoCollateral { fmspc })?;
        self.verify_quote(quote, &collateral, now)
    }

    /// Both steps: genuine, then acceptable to `policy`.
    pub fn verify(
        &self,
        quote: &Quote,
        collateral: &Collateral,
        policy: &Policy,
        now: u64,
        expected_report_data: Option<&[u8; 64]>,
    ) -> Result<Verified, VerifyError> {
        let attested = self.verify_quote(quote, collateral, now)?;
        Ok(policy.appraise(attested, expected_report_data)?)
    }

    /// Both steps with collateral looked up by FMSPC.
    pub fn verify_in(
        &self,
        quote: &Quote,
        store: &CollateralStore,
        policy: &Policy,
        now: u64,
        expected_report_data: Option<&[u8; 64]>,
    ) -> Result<Verified, VerifyError> {
        let attested = self.verify_quote_in(quote, store, now)?;
        Ok(policy.appraise(attested, expected_report_data)?)
    }
}

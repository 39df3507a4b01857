//! Intel collateral (TCB info, QE identity, CRLs and their issuer chains) and a
//! store of it keyed by FMSPC.
//!
//! Collateral is per platform model, Intel-signed and 16-25 KB: too big for a
//! TLS handshake, so it travels out of band (operator files, peers, the admin
//! API) and is looked up locally by the FMSPC of the quote's PCK certificate.
//! The JSON form is dcap-qvl's `QuoteCollateralV3`. Loading checks shape and
//! computes the validity window; signatures are checked by verification, so a
//! forged bundle is refused when it is used, never trusted for being stored.

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use dcap_qvl::QuoteCollateralV3;
use serde::{Deserialize, Serialize};
use x509_parser::pem::Pem;
use x509_parser::prelude::FromDer;
use x509_parser::revocation_list::CertificateRevocationList;

use crate::clock::{format_rfc3339, parse_rfc3339};
use crate::quote::Fmspc;

/// Largest collateral file accepted; real bundles are 16-25 KB.
pub const MAX_COLLATERAL_BYTES: usize = 1 << 20;

/// Why a collateral bundle could not be loaded.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CollateralError {
    /// The file could not be read.
    #[error("cannot read {path}: {error}")]
    Io {
        /// File.
        path: PathBuf,
        /// Cause (in the message, not a `source`, so chains do not repeat it).
        error: std::io::Error,
    },
    /// Larger than [`MAX_COLLATERAL_BYTES`].
    #[error("collateral is {size} bytes, more than the {MAX_COLLATERAL_BYTES} allowed")]
    TooLarge {
        /// Size found.
        size: u64,
    },
    /// Not a `QuoteCollateralV3` JSON document.
    #[error("not a collateral bundle (QuoteCollateralV3 JSON): {0}")]
    Json(String),
    /// The embedded TCB info cannot be read.
    #[error("collateral tcb_info: {0}")]
    TcbInfo(String),
    /// The embedded QE identity cannot be read.
    #[error("collateral qe_identity: {0}")]
    QeIdentity(String),
    /// SGX collateral where TDX collateral is needed.
    #[error("collateral is for {found:?}, not TDX")]
    NotTdx {
        /// The TCB info `id`.
        found: String,
    },
    /// An issuer chain or CRL that does not parse.
    #[error("collateral {what}: {detail}")]
    Pki {
        /// Which field.
        what: &'static str,
        /// Parser message.
        detail: String,
    },
    /// The validity window is empty (a source expires before another is issued).
    #[error("collateral is never valid: window {0} is empty")]
    EmptyWindow(ValidityWindow),
}

/// The time span in which every part of a bundle is valid (inclusive, Unix seconds).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct ValidityWindow {
    /// The latest issue date / notBefore / thisUpdate of all parts.
    pub not_before: u64,
    /// The earliest nextUpdate / notAfter of all parts.
    pub not_after: u64,
}

impl ValidityWindow {
    /// True when `now` lies inside the window.
    pub fn contains(&self, now: u64) -> bool {
        self.not_before <= now && now <= self.not_after
    }

    fn narrow(&mut self, not_before: u64, not_after: u64) {
        self.not_before = self.not_before.max(not_before);
        self.not_after = self.not_after.min(not_after);
    }
}

impl fmt::Display for ValidityWindow {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} .. {}",
            format_rfc3339(self.not_before),
            format_rfc3339(self.not_after)
        )
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct TcbInfoHead {
    id: String,
    issue_date: String,
    next_update: String,
    fmspc: String,
    tcb_evaluation_data_number: u32,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct QeIdentityHead {
    issue_date: String,
    next_update: String,
    tcb_evaluation_data_number: u32,
}

/// A loaded collateral bundle for one platform model.
#[derive(Clone)]
pub struct Collateral {
    inner: QuoteCollateralV3,
    fmspc: Fmspc,
    tcb_eval_data_number: u32,
    qe_eval_data_number: u32,
    tcb_info_issued: u64,
    window: ValidityWindow,
}

impl fmt::Debug for Collateral {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Collateral")
            .field("fmspc", &self.fmspc)
            .field("tcb_eval_data_number", &self.tcb_eval_data_number)
            .field("window", &self.window)
            .finish_non_exhaustive()
    }
}

fn date(what: &'static str, text: &str) -> Result<u64, String> {
    parse_rfc3339(text).ok_or_else(|| format!("{what} {text:?} is not an RFC 3339 date"))
}

impl Collateral {
    /// Read a bundle from a file (at most [`MAX_COLLATERAL_BYTES`]).
    pub fn from_file(path: &Path) -> Result<Self, CollateralError> {
        let bytes = read_bounded(path)?;
        Self::from_json(&bytes)
    }

    /// Parse `QuoteCollateralV3` JSON.
    pub fn from_json(bytes: &[u8]) -> Result<Self, CollateralError> {
        if bytes.len() > MAX_COLLATERAL_BYTES {
            return Err(CollateralError::TooLarge {
                size: bytes.len() as u64,
            });
        }
        let inner: QuoteCollateralV3 =
            serde_json::from_slice(bytes).map_err(|e| CollateralError::Json(e.to_string()))?;
        Self::new(inner)
    }

    /// Check the shape of a bundle and compute its window.
    pub fn new(inner: QuoteCollateralV3) -> Result<Self, CollateralError> {
        let tcb: TcbInfoHead = serde_json::from_str(&inner.tcb_info)
            .map_err(|e| CollateralError::TcbInfo(e.to_string()))?;
        if tcb.id != "TDX" {
            return Err(CollateralError::NotTdx { found: tcb.id });
        }
        let fmspc = tcb
            .fmspc
            .parse::<Fmspc>()
            .map_err(|e| CollateralError::TcbInfo(format!("fmspc {:?}: {e}", tcb.fmspc)))?;
        let tcb_issued = date("issueDate", &tcb.issue_date).map_err(CollateralError::TcbInfo)?;
        let tcb_next = date("nextUpdate", &tcb.next_update).map_err(CollateralError::TcbInfo)?;
        let qe: QeIdentityHead = serde_json::from_str(&inner.qe_identity)
            .map_err(|e| CollateralError::QeIdentity(e.to_string()))?;
        let qe_issued = date("issueDate", &qe.issue_date).map_err(CollateralError::QeIdentity)?;
        let qe_next = date("nextUpdate", &qe.next_update).map_err(CollateralError::QeIdentity)?;

        let mut window = ValidityWindow {
            not_before: 0,
            not_after: u64::MAX,
        };
        window.narrow(tcb_issued, tcb_next);
        window.narrow(qe_issued, qe_next);
        for (what, chain) in [
            ("tcb_info_issuer_chain", &inner.tcb_info_issuer_chain),
            ("qe_identity_issuer_chain", &inner.qe_identity_issuer_chain),
            ("pck_crl_issuer_chain", &inner.pck_crl_issuer_chain),
        ] {
            let (nb, na) = chain_window(chain.as_bytes())
                .map_err(|detail| CollateralError::Pki { what, detail })?;
            window.narrow(nb, na);
        }
        for (what, crl) in [
            ("root_ca_crl", &inner.root_ca_crl),
            ("pck_crl", &inner.pck_crl),
        ] {
            let (nb, na) =
                crl_window(crl).map_err(|detail| CollateralError::Pki { what, detail })?;
            window.narrow(nb, na);
        }
        if window.not_before > window.not_after {
            return Err(CollateralError::EmptyWindow(window));
        }
        Ok(Collateral {
            inner,
            fmspc,
            tcb_eval_data_number: tcb.tcb_evaluation_data_number,
            qe_eval_data_number: qe.tcb_evaluation_data_number,
            tcb_info_issued: tcb_issued,
            window,
        })
    }

    /// The platform model this bundle is for.
    pub fn fmspc(&self) -> Fmspc {
        self.fmspc
    }

    /// When every part of the bundle is valid.
    pub fn validity(&self) -> ValidityWindow {
        self.window
    }

    /// The TCB info's evaluation data number (higher is newer).
    pub fn tcb_eval_data_number(&self) -> u32 {
        self.tcb_eval_data_number
    }

    /// The lower of the TCB info's and QE identity's evaluation data numbers:
    /// how recent Intel's assessment behind this bundle is.
    pub fn eval_data_number(&self) -> u32 {
        self.tcb_eval_data_number.min(self.qe_eval_data_number)
    }

    /// dcap-qvl's form, as verification consumes it.
    pub fn as_dcap(&self) -> &QuoteCollateralV3 {
        &self.inner
    }

    /// The JSON form, for relaying to peers or writing to disk.
    pub fn to_json(&self) -> Vec<u8> {
        // Strings and byte vectors always serialise.
        serde_json::to_vec(&self.inner).unwrap_or_default()
    }

    /// Newer means a later TCB evaluation, then a later TCB info.
    fn is_newer_than(&self, other: &Collateral) -> bool {
        (
            self.tcb_eval_data_number,
            self.tcb_info_issued,
            self.window.not_after,
        ) > (
            other.tcb_eval_data_number,
            other.tcb_info_issued,
            other.window.not_after,
        )
    }
}

fn to_unix(t: x509_parser::time::ASN1Time) -> u64 {
    t.timestamp().max(0) as u64
}

fn chain_window(pem: &[u8]) -> Result<(u64, u64), String> {
    let mut window = (0u64, u64::MAX);
    let mut count = 0;
    for item in Pem::iter_from_buffer(pem) {
        let item = item.map_err(|e| format!("bad PEM: {e}"))?;
        let cert = item
            .parse_x509()
            .map_err(|e| format!("bad certificate: {e}"))?;
        let v = cert.validity();
        window.0 = window.0.max(to_unix(v.not_before));
        window.1 = window.1.min(to_unix(v.not_after));
        count += 1;
    }
    if count == 0 {
        return Err("no certificates".into());
    }
    Ok(window)
}

fn crl_window(der: &[u8]) -> Result<(u64, u64), String> {
    let (_, crl) = CertificateRevocationList::from_der(der).map_err(|e| format!("bad CRL: {e}"))?;
    let next = crl
        .next_update()
        .ok_or_else(|| "CRL has no nextUpdate".to_string())?;
    // webpki treats nextUpdate as exclusive (expired when now >= nextUpdate).
    Ok((to_unix(crl.last_update()), to_unix(next).saturating_sub(1)))
}

fn read_bounded(path: &Path) -> Result<Vec<u8>, CollateralError> {
    let io = |error| CollateralError::Io {
        path: path.to_path_buf(),
        error,
    };
    let size = std::fs::metadata(path).map_err(io)?.len();
    if size > MAX_COLLATERAL_BYTES as u64 {
        return Err(CollateralError::TooLarge { size });
    }
    std::fs::read(path).map_err(io)
}

/// What loading one file of a directory gave.
#[derive(Debug)]
pub struct LoadOutcome {
    /// The file.
    pub path: PathBuf,
    /// Its FMSPC and window, or why it was skipped.
    pub result: Result<(Fmspc, ValidityWindow), CollateralError>,
}

/// Collateral bundles by FMSPC, shared between threads. Keeps the newest
/// bundle per platform model.
#[derive(Debug, Default)]
pub struct CollateralStore {
    by_fmspc: RwLock<HashMap<Fmspc, Arc<Collateral>>>,
}

impl CollateralStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// Add a bundle unless a newer one for the same FMSPC is present. Returns
    /// whether it was stored.
    pub fn insert(&self, collateral: Collateral) -> bool {
        let mut map = self.by_fmspc.write().unwrap_or_else(|p| p.into_inner());
        match map.get(&collateral.fmspc) {
            Some(existing) if !collateral.is_newer_than(existing) => false,
            _ => {
                tracing::debug!(fmspc = %collateral.fmspc, window = %collateral.window, "collateral stored");
                map.insert(collateral.fmspc, Arc::new(collateral));
                true
            }
        }
    }

    /// The bundle for a platform model.
    pub fn get(&self, fmspc: &Fmspc) -> Option<Arc<Collateral>> {
        self.by_fmspc
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(fmspc)
            .cloned()
    }

    /// Every stored bundle, ordered by FMSPC.
    pub fn all(&self) -> Vec<Arc<Collateral>> {
        let mut v: Vec<_> = self
            .by_fmspc
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .cloned()
            .collect();
        v.sort_by_key(|c| c.fmspc);
        v
    }

    /// Number of platform models with collateral.
    pub fn len(&self) -> usize {
        self.by_fmspc
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .len()
    }

    /// True when no collateral is stored.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Load every `*.json` file of a directory (not recursive), in name order.
    /// Files that are not collateral are reported, not fatal.
    pub fn load_dir(&self, dir: &Path) -> Result<Vec<LoadOutcome>, CollateralError> {
        let io = |error| CollateralError::Io {
            path: dir.to_path_buf(),
            error,
        };
        let mut paths: Vec<PathBuf> = std::fs::read_dir(dir)
            .map_err(io)?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.is_file() && p.extension().is_some_and(|x| x == "json"))
            .collect();
        paths.sort();
        Ok(paths
            .into_iter()
            .map(|path| {
                let result = Collateral::from_file(&path).map(|c| {
                    let key = (c.fmspc, c.window);
                    self.insert(c);
                    key
                });
                if let Err(e) = &result {
                    tracing::warn!(path = %path.display(), error = %e, "collateral file skipped");
                }
                LoadOutcome { path, result }
            })
            .collect())
    }
}

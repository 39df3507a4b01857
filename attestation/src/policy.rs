//! Admission rules applied to an attested quote: TCB rules, the debug bit, the
//! measurement allow-list and the expected `report_data`.
//!
//! The TCB rules read what dcap-qvl verified: the converged TCB status and
//! advisories, the PCK platform flags and the collateral's evaluation data
//! number. (dcap-qvl's `QuotePolicy` needs its `QuoteClaims`, whose
//! construction costs about 8% of a verification; these rules need none of it.)

use std::path::Path;

use tessella_measurements::{
    MatchedEntry, MeasurementMismatch, MeasurementPolicy, PolicyFileError, TcbRules, TcbStatusName,
};

use crate::verify::{Attested, Verified};

/// Largest policy file accepted.
pub const MAX_POLICY_BYTES: u64 = 4 << 20;

/// Why a policy could not be loaded.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PolicyError {
    /// The file could not be read.
    #[error("cannot read policy {path}: {error}")]
    Io {
        /// File.
        path: std::path::PathBuf,
        /// Cause (in the message, not a `source`, so chains do not repeat it).
        error: std::io::Error,
    },
    /// Larger than [`MAX_POLICY_BYTES`].
    #[error("policy file is {0} bytes, more than the {MAX_POLICY_BYTES} allowed")]
    TooLarge(u64),
    /// The file is not a valid policy.
    #[error(transparent)]
    File(#[from] PolicyFileError),
}

/// What measurements a policy admits.
#[derive(Debug, Clone)]
pub enum MeasurementRule {
    /// Only TDs matching an entry of the allow-list.
    AllowList(MeasurementPolicy),
    /// Measurements are reported but not checked. For inspection tools only:
    /// such a policy admits any software that runs in a genuine TD.
    Unpinned,
}

/// Why an attested quote was refused by policy.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Rejection {
    /// The TCB status is not in `allowed_statuses`.
    #[error("TCB status {status} is not allowed (policy allows {})", list(allowed))]
    TcbStatus {
        /// The platform's converged status.
        status: String,
        /// What the policy allows.
        allowed: Vec<String>,
    },
    /// An advisory the policy blocks applies to the platform.
    #[error("advisory {id} is blocked by policy")]
    Advisory {
        /// Advisory id.
        id: String,
    },
    /// A PCK platform flag the policy does not allow.
    #[error(
        "platform flag {flag} is set and the policy does not allow it (tcb rule allow_{flag})"
    )]
    PlatformFlag {
        /// `dynamic_platform`, `cached_keys` or `smt`.
        flag: &'static str,
    },
    /// Collateral from an older TCB evaluation than the policy requires.
    #[error("TCB evaluation data number {found} is below the minimum {min}")]
    TcbEvaluation {
        /// In the collateral.
        found: u32,
        /// Required.
        min: u32,
    },
    /// A debug TD: the host can read and change its memory.
    #[error("the TD has the DEBUG attribute set")]
    DebugTd,
    /// No allow-list entry matches the measurements.
    #[error("{0}")]
    Measurements(MeasurementMismatch),
    /// `report_data` differs from what the caller expected (for RA-TLS: the
    /// quote does not bind this key, window and network).
    #[error("report_data mismatch: expected {expected}, quote has {actual}")]
    ReportData {
        /// Expected, hex.
        expected: String,
        /// In the quote, hex.
        actual: String,
    },
}

impl Rejection {
    /// A stable snake_case code for scripts and metrics.
    pub fn code(&self) -> &'static str {
        match self {
            Rejection::TcbStatus { .. } => "tcb_status",
            Rejection::Advisory { .. } => "advisory",
            Rejection::PlatformFlag { .. } => "platform_flag",
            Rejection::TcbEvaluation { .. } => "tcb_evaluation",
            Rejection::DebugTd => "debug_td",
            Rejection::Measurements(_) => "measurement_mismatch",
            Rejection::ReportData { .. } => "report_data_mismatch",
        }
    }
}

fn list(v: &[String]) -> String {
    if v.is_empty() {
        "none".into()
    } else {
        v.join(", ")
    }
}

/// The admission policy for quotes: TCB rules plus measurements.
#[derive(Debug, Clone)]
pub struct Policy {
    tcb: TcbRules,
    measurements: MeasurementRule,
}

impl Policy {
    /// A policy from a measurement policy, with the TCB rules it carries.
    pub fn new(measurements: MeasurementPolicy) -> Self {
        Policy {
            tcb: measurements.tcb().clone(),
            measurements: MeasurementRule::AllowList(measurements),
        }
    }

    /// A policy that checks the platform but not the software: any TD on a
    /// platform satisfying `tcb` is admitted. Logs a warning: a node must never
    /// run with it; it exists for inspection tools.
    pub fn insecure_unpinned_measurements(tcb: TcbRules) -> Self {
        tracing::warn!("measurement policy is unpinned: any software in a genuine TD passes");
        Policy {
            tcb,
            measurements: MeasurementRule::Unpinned,
        }
    }

    /// Read a tessella policy file, or import a flashbots `measurements.json`.
    /// Returns notes about entries that were skipped on import.
    pub fn from_file(path: &Path) -> Result<(Self, Vec<String>), PolicyError> {
        let io = |error| PolicyError::Io {
            path: path.to_path_buf(),
            error,
        };
        let size = std::fs::metadata(path).map_err(io)?.len();
        if size > MAX_POLICY_BYTES {
            return Err(PolicyError::TooLarge(size));
        }
        let bytes = std::fs::read(path).map_err(io)?;
        let (m, notes) = MeasurementPolicy::from_json_any(&bytes)?;
        Ok((Policy::new(m), notes))
    }

    /// The TCB rules.
    pub fn tcb(&self) -> &TcbRules {
        &self.tcb
    }

    /// The TCB rules, to loosen or tighten explicitly.
    pub fn tcb_mut(&mut self) -> &mut TcbRules {
        &mut self.tcb
    }

    /// The measurement rule.
    pub fn measurements(&self) -> &MeasurementRule {
        &self.measurements
    }

    /// Check the TCB rules against an attested quote.
    pub fn check_tcb(&self, attested: &Attested) -> Result<(), Rejection> {
        let t = &self.tcb;
        let status = TcbStatusName::parse(attested.tcb_status());
        let allowed =
            status.is_some_and(|s| s != TcbStatusName::Revoked && t.allowed_statuses.contains(&s));
        if !allowed {
            return Err(Rejection::TcbStatus {
                status: attested.tcb_status().to_string(),
                allowed: t.allowed_statuses.iter().map(|s| s.to_string()).collect(),
            });
        }
        for id in attested.advisory_ids() {
            if t.rejected_advisory_ids
                .iter()
                .any(|r| r.eq_ignore_ascii_case(id))
            {
                return Err(Rejection::Advisory { id: id.clone() });
            }
        }
        let flags = attested.platform_flags();
        for (set, allowed, flag) in [
            (
                flags.dynamic_platform,
                t.allow_dynamic_platform,
                "dynamic_platform",
            ),
            (flags.cached_keys, t.allow_cached_keys, "cached_keys"),
            (flags.smt, t.allow_smt, "smt"),
        ] {
            if set == Some(true) && !allowed {
                return Err(Rejection::PlatformFlag { flag });
            }
        }
        let found = attested.tcb_eval_data_number();
        if found < t.min_tcb_eval_data_number {
            return Err(Rejection::TcbEvaluation {
                found,
                min: t.min_tcb_eval_data_number,
            });
        }
        Ok(())
    }

    /// Apply the whole policy. `expected_report_data`, when given, must equal
    /// the quote's `report_data` byte for byte.
    pub fn appraise(
        &self,
        attested: Attested,
        expected_report_data: Option<&[u8; 64]>,
    ) -> Result<Verified, Rejection> {
        if attested.td_attributes().debug() {
            return Err(Rejection::DebugTd);
        }
        self.check_tcb(&attested)?;
        let matched = self.check_measurements(&attested)?;
        Self::check_report_data(&attested, expected_report_data)?;
        Ok(Verified::new(attested, matched))
    }

    /// Compare `report_data` with what the caller expects, if anything.
    pub fn check_report_data(
        attested: &Attested,
        expected: Option<&[u8; 64]>,
    ) -> Result<(), Rejection> {
        let actual = attested.report_data();
        match expected {
            Some(expected) if &actual != expected => Err(Rejection::ReportData {
                expected: hex::encode(expected),
                actual: hex::encode(actual),
            }),
            _ => Ok(()),
        }
    }

    /// Match the measurement allow-list; `None` when measurements are unpinned.
    pub fn check_measurements(
        &self,
        attested: &Attested,
    ) -> Result<Option<MatchedEntry>, Rejection> {
        match &self.measurements {
            MeasurementRule::AllowList(p) => p
                .evaluate(&attested.measurements())
                .map(Some)
                .map_err(Rejection::Measurements),
            MeasurementRule::Unpinned => Ok(None),
        }
    }
}

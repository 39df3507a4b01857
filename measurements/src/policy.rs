//! The measurement policy file: which TDs may join, and on which platforms.
//!
//! ```text
//! {
//!   "format": "tessella-measurement-policy",   // required, fixed
//!   "version": 1,                              // required; other versions are refused
//!   "entries": [                               // any-of: the first entry that matches wins
//!     {
//!       "id": "prod-2026-11",                  // unique, reported in verdicts
//!       "description": "...",                  // optional, free text
//!       "mrtd":  ["<96 hex>", ...],            // required: every entry pins the firmware
//!       "rtmr0": [...], "rtmr1": [...],        // optional any-of lists; an absent register
//!       "rtmr2": [...], "rtmr3": [...],        // is not checked, an empty list is refused
//!       "mrconfigid": [...], "mrowner": [...], "mrownerconfig": [...],
//!       "td_attributes": ["0000001000000000"], // 16 hex digits, bytes as in the quote
//!       "xfam": ["e702060000000000"]
//!     }
//!   ],
//!   "tcb": {                                   // optional; absent = strictest rules
//!     "allowed_statuses": ["UpToDate"],
//!     "rejected_advisory_ids": ["INTEL-SA-00837"],
//!     "allow_dynamic_platform": false, "allow_cached_keys": false, "allow_smt": false,
//!     "min_tcb_eval_data_number": 0
//!   }
//! }
//! ```
//!
//! Unknown fields are refused everywhere: a misspelt key in a security policy
//! must fail loudly rather than silently drop a constraint.

use std::collections::HashSet;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::digest::Bytes8;
use crate::{Digest48, Register, TdMeasurements};

/// Value of the `format` field.
pub const POLICY_FORMAT: &str = "tessella-measurement-policy";
/// The only policy file version this build reads and writes.
pub const POLICY_VERSION: u32 = 1;

/// Why a policy file could not be loaded.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PolicyFileError {
    /// Not JSON, or JSON of the wrong shape.
    #[error("policy is not valid: {0}")]
    Json(serde_json::Error),
    /// The `format` field names another format.
    #[error("policy format is {found:?}, expected {POLICY_FORMAT:?}")]
    Format {
        /// What the file says.
        found: String,
    },
    /// A version this build does not understand.
    #[error("policy version {found} is not supported (this build reads version {POLICY_VERSION})")]
    Version {
        /// What the file says.
        found: u32,
    },
    /// No entries: such a policy could never admit anything.
    #[error("policy has no entries; it would refuse every TD")]
    NoEntries,
    /// Two entries share an id, so verdicts would be ambiguous.
    #[error("duplicate entry id {0:?}")]
    DuplicateId(String),
    /// An entry whose id is empty.
    #[error("entry #{0} has an empty id")]
    EmptyId(usize),
    /// A register list that is present but empty matches nothing.
    #[error("entry {entry:?}: {register} is an empty list (omit the key to leave it unchecked)")]
    EmptyList {
        /// Entry id.
        entry: String,
        /// Register whose list is empty.
        register: Register,
    },
    /// An entry without MRTD would admit any firmware.
    #[error("entry {0:?} does not pin mrtd")]
    MissingMrtd(String),
    /// A file in the flashbots format that cannot be imported safely.
    #[error("flashbots policy: {0}")]
    Flashbots(String),
}

// Not `#[from]`: that would also make the JSON error the source, and chains
// printed with `{:#}` would repeat it.
impl From<serde_json::Error> for PolicyFileError {
    fn from(e: serde_json::Error) -> Self {
        PolicyFileError::Json(e)
    }
}

/// Intel TCB status names, as they appear in TCB info and dcap-qvl.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[allow(missing_docs)]
pub enum TcbStatusName {
    UpToDate,
    SWHardeningNeeded,
    ConfigurationNeeded,
    ConfigurationAndSWHardeningNeeded,
    OutOfDate,
    OutOfDateConfigurationNeeded,
    TDRelaunchAdvised,
    TDRelaunchAdvisedConfigurationNeeded,
    Revoked,
}

impl TcbStatusName {
    /// Every status name, in Intel's order.
    pub const ALL: [TcbStatusName; 9] = [
        TcbStatusName::UpToDate,
        TcbStatusName::SWHardeningNeeded,
        TcbStatusName::ConfigurationNeeded,
        TcbStatusName::ConfigurationAndSWHardeningNeeded,
        TcbStatusName::OutOfDate,
        TcbStatusName::OutOfDateConfigurationNeeded,
        TcbStatusName::TDRelaunchAdvised,
        TcbStatusName::TDRelaunchAdvisedConfigurationNeeded,
        TcbStatusName::Revoked,
    ];

    /// The name as Intel spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            TcbStatusName::UpToDate => "UpToDate",
            TcbStatusName::SWHardeningNeeded => "SWHardeningNeeded",
            TcbStatusName::ConfigurationNeeded => "ConfigurationNeeded",
            TcbStatusName::ConfigurationAndSWHardeningNeeded => "ConfigurationAndSWHardeningNeeded",
            TcbStatusName::OutOfDate => "OutOfDate",
            TcbStatusName::OutOfDateConfigurationNeeded => "OutOfDateConfigurationNeeded",
            TcbStatusName::TDRelaunchAdvised => "TDRelaunchAdvised",
            TcbStatusName::TDRelaunchAdvisedConfigurationNeeded => {
                "TDRelaunchAdvisedConfigurationNeeded"
            }
            TcbStatusName::Revoked => "Revoked",
        }
    }

    /// Parse a status name, ignoring ASCII case.
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL
            .into_iter()
            .find(|s| s.as_str().eq_ignore_ascii_case(name))
    }
}

impl fmt::Display for TcbStatusName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Platform (TCB) rules. The default is the strictest: only `UpToDate`, no
/// platform flags. A status listed here is accepted as long as the collateral
/// is valid; allowing `OutOfDate` is how an operator rides out a TCB recovery.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TcbRules {
    /// TCB statuses that are accepted. `Revoked` is refused whatever this says.
    pub allowed_statuses: Vec<TcbStatusName>,
    /// Advisory ids (for example `INTEL-SA-00837`) that refuse a platform.
    pub rejected_advisory_ids: Vec<String>,
    /// Accept PCK certificates with the dynamic-platform flag (multi-package hosts).
    pub allow_dynamic_platform: bool,
    /// Accept PCK certificates with the cached-keys flag.
    pub allow_cached_keys: bool,
    /// Accept platforms with SMT (hyper-threading) enabled.
    pub allow_smt: bool,
    /// Refuse collateral older than this TCB evaluation data number (0 = any).
    pub min_tcb_eval_data_number: u32,
}

impl Default for TcbRules {
    fn default() -> Self {
        TcbRules {
            allowed_statuses: vec![TcbStatusName::UpToDate],
            rejected_advisory_ids: Vec::new(),
            allow_dynamic_platform: false,
            allow_cached_keys: false,
            allow_smt: false,
            min_tcb_eval_data_number: 0,
        }
    }
}

/// One allowed TD shape. Absent registers are not checked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyEntry {
    /// Unique name, reported when this entry matches.
    pub id: String,
    /// Free text for people.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Allowed MRTD values (required).
    #[serde(default)]
    pub mrtd: Vec<Digest48>,
    /// Allowed RTMR0 values.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rtmr0: Option<Vec<Digest48>>,
    /// Allowed RTMR1 values.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rtmr1: Option<Vec<Digest48>>,
    /// Allowed RTMR2 values.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rtmr2: Option<Vec<Digest48>>,
    /// Allowed RTMR3 values.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rtmr3: Option<Vec<Digest48>>,
    /// Allowed MRCONFIGID values.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mrconfigid: Option<Vec<Digest48>>,
    /// Allowed MROWNER values.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mrowner: Option<Vec<Digest48>>,
    /// Allowed MROWNERCONFIG values.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mrownerconfig: Option<Vec<Digest48>>,
    /// Allowed TD attributes (exact 8-byte values).
    #[serde(default, skip_serializing_if = "Option::is_none", with = "opt_bytes8")]
    pub td_attributes: Option<Vec<[u8; 8]>>,
    /// Allowed XFAM values (exact 8-byte values).
    #[serde(default, skip_serializing_if = "Option::is_none", with = "opt_bytes8")]
    pub xfam: Option<Vec<[u8; 8]>>,
}

mod opt_bytes8 {
    use super::Bytes8;
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    pub fn serialize<S: Serializer>(v: &Option<Vec<[u8; 8]>>, s: S) -> Result<S::Ok, S::Error> {
        v.as_ref()
            .map(|l| l.iter().copied().map(Bytes8).collect::<Vec<_>>())
            .serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Vec<[u8; 8]>>, D::Error> {
        let v = Option::<Vec<Bytes8>>::deserialize(d)?;
        Ok(v.map(|l| l.into_iter().map(|b| b.0).collect()))
    }
}

impl PolicyEntry {
    /// An entry that pins only MRTD; add registers with the public fields.
    pub fn new(id: impl Into<String>, mrtd: Vec<Digest48>) -> Self {
        PolicyEntry {
            id: id.into(),
            description: None,
            mrtd,
            rtmr0: None,
            rtmr1: None,
            rtmr2: None,
            rtmr3: None,
            mrconfigid: None,
            mrowner: None,
            mrownerconfig: None,
            td_attributes: None,
            xfam: None,
        }
    }

    /// The allowed values of each register this entry constrains, as hex, in
    /// a fixed order.
    fn constraints(&self) -> Vec<(Register, Vec<String>)> {
        fn digests(list: &[Digest48]) -> Vec<String> {
            list.iter().map(Digest48::to_hex).collect()
        }
        let mut out = vec![(Register::Mrtd, digests(&self.mrtd))];
        let optional = [
            (Register::Rtmr0, &self.rtmr0),
            (Register::Rtmr1, &self.rtmr1),
            (Register::Rtmr2, &self.rtmr2),
            (Register::Rtmr3, &self.rtmr3),
            (Register::Mrconfigid, &self.mrconfigid),
            (Register::Mrowner, &self.mrowner),
            (Register::Mrownerconfig, &self.mrownerconfig),
        ];
        for (register, list) in optional {
            if let Some(list) = list {
                out.push((register, digests(list)));
            }
        }
        for (register, list) in [
            (Register::TdAttributes, &self.td_attributes),
            (Register::Xfam, &self.xfam),
        ] {
            if let Some(list) = list {
                out.push((register, list.iter().map(hex::encode).collect()));
            }
        }
        out
    }

    fn validate(&self, index: usize) -> Result<(), PolicyFileError> {
        if self.id.trim().is_empty() {
            return Err(PolicyFileError::EmptyId(index));
        }
        if self.mrtd.is_empty() {
            return Err(PolicyFileError::MissingMrtd(self.id.clone()));
        }
        for (register, allowed) in self.constraints() {
            if allowed.is_empty() {
                return Err(PolicyFileError::EmptyList {
                    entry: self.id.clone(),
                    register,
                });
            }
        }
        Ok(())
    }

    /// Every register of `m` that this entry does not allow.
    pub fn mismatches(&self, m: &TdMeasurements) -> Vec<RegisterMismatch> {
        self.constraints()
            .into_iter()
            .filter_map(|(register, allowed)| {
                let actual = m.hex(register);
                (!allowed.contains(&actual)).then_some(RegisterMismatch {
                    register,
                    actual,
                    allowed,
                })
            })
            .collect()
    }
}

/// A register whose value no allowed value matched.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RegisterMismatch {
    /// The register.
    pub register: Register,
    /// Its value in the report, hex.
    pub actual: String,
    /// What the entry allows, hex.
    pub allowed: Vec<String>,
}

/// How one entry failed to match.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EntryMismatch {
    /// Entry id.
    pub entry: String,
    /// The registers that differ (never empty).
    pub registers: Vec<RegisterMismatch>,
}

/// No entry of the policy matched. Carries every entry's differences; the
/// display form names the closest entry and its differing registers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MeasurementMismatch {
    /// One element per policy entry, in policy order.
    pub entries: Vec<EntryMismatch>,
}

impl MeasurementMismatch {
    /// The entry with the fewest differing registers.
    pub fn closest(&self) -> Option<&EntryMismatch> {
        self.entries.iter().min_by_key(|e| e.registers.len())
    }
}

impl fmt::Display for MeasurementMismatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Some(closest) = self.closest() else {
            return f.write_str("measurement policy has no entries");
        };
        let names: Vec<&str> = closest
            .registers
            .iter()
            .map(|r| r.register.name())
            .collect();
        write!(
            f,
            "measurement mismatch: {} not allowed by entry {:?}",
            names.join(", "),
            closest.entry
        )?;
        if let Some(first) = closest.registers.first() {
            write!(f, " ({} is {})", first.register, first.actual)?;
        }
        if self.entries.len() > 1 {
            write!(f, "; {} entries checked, none matched", self.entries.len())?;
        }
        Ok(())
    }
}

impl std::error::Error for MeasurementMismatch {}

/// The entry that admitted a TD.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MatchedEntry {
    /// Entry id.
    pub id: String,
    /// Position in the policy.
    pub index: usize,
}

/// A validated measurement policy: allow-list entries plus TCB rules.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MeasurementPolicy {
    format: &'static str,
    version: u32,
    entries: Vec<PolicyEntry>,
    tcb: TcbRules,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PolicyFile {
    format: String,
    version: u32,
    entries: Vec<PolicyEntry>,
    #[serde(default)]
    tcb: TcbRules,
}

impl MeasurementPolicy {
    /// Build a policy from entries and TCB rules, checking them as a file is checked.
    pub fn new(entries: Vec<PolicyEntry>, tcb: TcbRules) -> Result<Self, PolicyFileError> {
        if entries.is_empty() {
            return Err(PolicyFileError::NoEntries);
        }
        let mut ids = HashSet::new();
        for (i, entry) in entries.iter().enumerate() {
            entry.validate(i)?;
            if !ids.insert(entry.id.as_str()) {
                return Err(PolicyFileError::DuplicateId(entry.id.clone()));
            }
        }
        Ok(MeasurementPolicy {
            format: POLICY_FORMAT,
            version: POLICY_VERSION,
            entries,
            tcb,
        })
    }

    /// Read a tessella policy file (JSON object).
    pub fn from_json(bytes: &[u8]) -> Result<Self, PolicyFileError> {
        let file: PolicyFile = serde_json::from_slice(bytes)?;
        if file.format != POLICY_FORMAT {
            return Err(PolicyFileError::Format { found: file.format });
        }
        if file.version != POLICY_VERSION {
            return Err(PolicyFileError::Version {
                found: file.version,
            });
        }
        Self::new(file.entries, file.tcb)
    }

    /// Read either a tessella policy (JSON object) or a flashbots
    /// `measurements.json` (JSON array). Returns notes about anything skipped.
    pub fn from_json_any(bytes: &[u8]) -> Result<(Self, Vec<String>), PolicyFileError> {
        let first = bytes
            .iter()
            .find(|b| !b.is_ascii_whitespace())
            .copied()
            .unwrap_or(b'{');
        if first == b'[' {
            crate::flashbots::import(bytes)
        } else {
            Ok((Self::from_json(bytes)?, Vec::new()))
        }
    }

    /// Pretty JSON in the tessella format.
    pub fn to_json_pretty(&self) -> String {
        // Serialising plain strings, lists and numbers cannot fail.
        serde_json::to_string_pretty(self).unwrap_or_default()
    }

    /// The entries, in match order.
    pub fn entries(&self) -> &[PolicyEntry] {
        &self.entries
    }

    /// The TCB rules.
    pub fn tcb(&self) -> &TcbRules {
        &self.tcb
    }

    /// Mutable TCB rules, for callers that loosen or tighten them explicitly.
    pub fn tcb_mut(&mut self) -> &mut TcbRules {
        &mut self.tcb
    }

    /// The first entry that allows `m`, or every entry's differences.
    pub fn evaluate(&self, m: &TdMeasurements) -> Result<MatchedEntry, MeasurementMismatch> {
        let mut misses = Vec::with_capacity(self.entries.len());
        for (index, entry) in self.entries.iter().enumerate() {
            let registers = entry.mismatches(m);
            if registers.is_empty() {
                return Ok(MatchedEntry {
                    id: entry.id.clone(),
                    index,
                });
            }
            misses.push(EntryMismatch {
                entry: entry.id.clone(),
                registers,
            });
        }
        Err(MeasurementMismatch { entries: misses })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(b: u8) -> Digest48 {
        Digest48([b; 48])
    }

    fn measurements() -> TdMeasurements {
        TdMeasurements {
            mrtd: d(1),
            rtmr: [d(2), d(3), d(4), Digest48::ZERO],
            mrconfigid: Digest48::ZERO,
            mrowner: Digest48::ZERO,
            mrownerconfig: Digest48::ZERO,
            td_attributes: [0, 0, 0, 0x10, 0, 0, 0, 0],
            xfam: [0xe7, 0x02, 0x06, 0, 0, 0, 0, 0],
        }
    }

    #[test]
    fn first_matching_entry_wins_and_absent_registers_are_unchecked() {
        let mut other = PolicyEntry::new("other", vec![d(9)]);
        other.rtmr1 = Some(vec![d(3)]);
        let mut good = PolicyEntry::new("good", vec![d(1)]);
        good.rtmr1 = Some(vec![d(7), d(3)]);
        good.td_attributes = Some(vec![[0, 0, 0, 0x10, 0, 0, 0, 0]]);
        let policy = MeasurementPolicy::new(vec![other, good], TcbRules::default()).expect("ok");
        let matched = policy.evaluate(&measurements()).expect("matches");
        assert_eq!(matched.id, "good");
        assert_eq!(matched.index, 1);
    }

    #[test]
    fn mismatch_names_the_register() {
        let mut e = PolicyEntry::new("prod", vec![d(1)]);
        e.rtmr2 = Some(vec![d(5)]);
        let policy = MeasurementPolicy::new(vec![e], TcbRules::default()).expect("ok");
        let err = policy.evaluate(&measurements()).expect_err("rtmr2 differs");
        let closest = err.closest().expect("one entry");
        assert_eq!(closest.registers.len(), 1);
        assert_eq!(closest.registers[0].register, Register::Rtmr2);
        assert_eq!(closest.registers[0].actual, d(4).to_hex());
        let text = err.to_string();
        assert!(
            text.contains("rtmr2") && text.contains("\"prod\""),
            "{text}"
        );
    }

    #[test]
    fn file_round_trips_and_refuses_loose_files() {
        let mut e = PolicyEntry::new("prod", vec![d(1)]);
        e.xfam = Some(vec![[0xe7, 0x02, 0x06, 0, 0, 0, 0, 0]]);
        let policy = MeasurementPolicy::new(vec![e], TcbRules::default()).expect("ok");
        let text = policy.to_json_pretty();
        assert!(
            text.contains("\"xfam\": [\n        \"e702060000000000\""),
            "{text}"
        );
        let back = MeasurementPolicy::from_json(text.as_bytes()).expect("round trip");
        assert_eq!(back, policy);

        let typo = text.replace("\"xfam\"", "\"xafm\"");
        assert!(matches!(
            MeasurementPolicy::from_json(typo.as_bytes()),
            Err(PolicyFileError::Json(_))
        ));
        let v2 = text.replace("\"version\": 1", "\"version\": 2");
        assert!(matches!(
            MeasurementPolicy::from_json(v2.as_bytes()),
            Err(PolicyFileError::Version { found: 2 })
        ));
        let empty = text.replace(
            "\"xfam\": [\n        \"e702060000000000\"\n      ]",
            "\"xfam\": []",
        );
        assert!(matches!(
            MeasurementPolicy::from_json(empty.as_bytes()),
            Err(PolicyFileError::EmptyList {
                register: Register::Xfam,
                ..
            })
        ));
        let no_mrtd = format!(
            r#"{{"format":"{POLICY_FORMAT}","version":1,"entries":[{{"id":"x","rtmr0":["{}"]}}]}}"#,
            d(1)
        );
        assert!(matches!(
            MeasurementPolicy::from_json(no_mrtd.as_bytes()),
            Err(PolicyFileError::MissingMrtd(_))
        ));
        assert!(matches!(
            MeasurementPolicy::from_json(b"{not json"),
            Err(PolicyFileError::Json(_))
        ));
    }

    #[test]
    fn duplicate_ids_and_empty_policies_are_refused() {
        let a = PolicyEntry::new("a", vec![d(1)]);
        assert!(matches!(
            MeasurementPolicy::new(vec![a.clone(), a], TcbRules::default()),
            Err(PolicyFileError::DuplicateId(_))
        ));
        assert!(matches!(
            MeasurementPolicy::new(vec![], TcbRules::default()),
            Err(PolicyFileError::NoEntries)
        ));
    }

    #[test]
    fn tcb_status_names_parse_case_insensitively() {
        assert_eq!(
            TcbStatusName::parse("uptodate"),
            Some(TcbStatusName::UpToDate)
        );
        assert_eq!(TcbStatusName::parse("nope"), None);
        for s in TcbStatusName::ALL {
            assert_eq!(TcbStatusName::parse(s.as_str()), Some(s));
        }
    }
}

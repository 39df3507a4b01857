//! Import of the measurement allow-list used by flashbots' attested-tls and
//! cvm-reverse-proxy.
//!
//! ```text
//! [ { "measurement_id": "...",
//!     "attestation_type": "dcap-tdx" | "qemu-tdx" | "azure-tdx" | ...,
//!     "measurements": { "0" | "mrtd": {"expected": "<hex>"} | {"expected_any": ["<hex>", ...]},
//!                       "1".."4" | "rtmr0".."rtmr3": ... } } ]
//! ```
//!
//! For DCAP types key `0` is MRTD and `1`..`4` are RTMR0..RTMR3. Entries of other
//! attestation types (Azure vTPM PCRs, ...) cannot be checked against a TDX quote
//! and are skipped with a note; skipping one only removes a way in. A DCAP entry
//! with a key we do not understand is an error, because dropping that constraint
//! would widen the policy. The imported policy gets the default (strictest) TCB
//! rules: the flashbots format has none.

use std::collections::BTreeMap;

use serde::Deserialize;

use crate::{Digest48, MeasurementPolicy, PolicyEntry, PolicyFileError, TcbRules};

/// Attestation types whose measurements are TDX quote registers.
const DCAP_TYPES: [&str; 2] = ["dcap-tdx", "qemu-tdx"];

#[derive(Deserialize)]
struct Record {
    measurement_id: String,
    attestation_type: String,
    measurements: BTreeMap<String, Expected>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Expected {
    #[serde(default)]
    expected: Option<String>,
    #[serde(default)]
    expected_any: Option<Vec<String>>,
}

fn bad(msg: String) -> PolicyFileError {
    PolicyFileError::Flashbots(msg)
}

/// Convert a flashbots `measurements.json` into a tessella policy, with notes
/// about skipped entries.
pub fn import(bytes: &[u8]) -> Result<(MeasurementPolicy, Vec<String>), PolicyFileError> {
    let records: Vec<Record> = serde_json::from_slice(bytes)?;
    let mut notes = Vec::new();
    let mut entries = Vec::new();
    for record in records {
        if !DCAP_TYPES.contains(&record.attestation_type.as_str()) {
            notes.push(format!(
                "skipped {:?}: attestation type {:?} is not a TDX quote",
                record.measurement_id, record.attestation_type
            ));
            continue;
        }
        let id = record.measurement_id;
        let mut entry = PolicyEntry::new(id.clone(), Vec::new());
        for (key, expected) in record.measurements {
            let values = match (expected.expected, expected.expected_any) {
                (Some(one), None) => vec![one],
                (None, Some(any)) => any,
                _ => {
                    return Err(bad(format!(
                        "entry {id:?} key {key:?}: give exactly one of expected, expected_any"
                    )))
                }
            };
            let digests = values
                .iter()
                .map(|v| v.parse::<Digest48>())
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| bad(format!("entry {id:?} key {key:?}: {e}")))?;
            let slot = match key.as_str() {
                "0" | "mrtd" => {
                    entry.mrtd = digests;
                    continue;
                }
                "1" | "rtmr0" => &mut entry.rtmr0,
                "2" | "rtmr1" => &mut entry.rtmr1,
                "3" | "rtmr2" => &mut entry.rtmr2,
                "4" | "rtmr3" => &mut entry.rtmr3,
                other => {
                    return Err(bad(format!(
                        "entry {id:?}: unknown register key {other:?} for a DCAP entry"
                    )))
                }
            };
            *slot = Some(digests);
        }
        entries.push(entry);
    }
    if entries.is_empty() {
        return Err(bad("no dcap-tdx entries to import".into()));
    }
    let policy = MeasurementPolicy::new(entries, TcbRules::default())?;
    Ok((policy, notes))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Register;

    #[test]
    fn imports_dcap_entries_and_skips_others() {
        let json = format!(
            r#"[{{"measurement_id":"az","attestation_type":"azure-tdx","measurements":{{"4":{{"expected":"00"}}}}}},
               {{"measurement_id":"dc","attestation_type":"dcap-tdx","measurements":{{
                  "0":{{"expected":"{a}"}},"rtmr1":{{"expected_any":["{a}","{b}"]}}}}}}]"#,
            a = "11".repeat(48),
            b = "22".repeat(48)
        );
        let (policy, notes) = import(json.as_bytes()).expect("imports");
        assert_eq!(notes.len(), 1);
        assert!(notes[0].contains("az"));
        let e = &policy.entries()[0];
        assert_eq!(e.id, "dc");
        assert_eq!(e.mrtd, vec![Digest48([0x11; 48])]);
        assert_eq!(e.rtmr1.as_ref().map(Vec::len), Some(2));
        assert!(e.rtmr0.is_none());
        assert_eq!(policy.tcb(), &TcbRules::default());
        let _ = Register::Mrtd;
    }

    #[test]
    fn unknown_keys_and_bad_values_fail() {
        let unknown = format!(
            r#"[{{"measurement_id":"dc","attestation_type":"dcap-tdx","measurements":{{"0":{{"expected":"{}"}},"9":{{"expected":"{}"}}}}}}]"#,
            "11".repeat(48),
            "11".repeat(48)
        );
        assert!(matches!(
            import(unknown.as_bytes()),
            Err(PolicyFileError::Flashbots(m)) if m.contains("\"9\"")
        ));
        let short = r#"[{"measurement_id":"dc","attestation_type":"dcap-tdx","measurements":{"0":{"expected":"abcd"}}}]"#;
        assert!(matches!(
            import(short.as_bytes()),
            Err(PolicyFileError::Flashbots(_))
        ));
        let none = r#"[{"measurement_id":"az","attestation_type":"azure-tdx","measurements":{}}]"#;
        assert!(matches!(
            import(none.as_bytes()),
            Err(PolicyFileError::Flashbots(_))
        ));
    }
}

//! The verdict on one quote, as text for people and as stable JSON for scripts.
//!
//! JSON report, schema version 1 (fields are only ever added):
//!
//! ```text
//! { "report_version": 1, "accepted": bool,
//!   "quote": {file, version, body, size, fmspc},
//!   "trust_anchor": str, "now": u64, "now_rfc3339": str,
//!   "collateral": {fmspc, tcb_eval_data_number, valid_from, valid_until} | null,
//!   "quote_verified": bool,                // signatures, PCK chain, collateral, TCB level
//!   "tcb": {status, advisory_ids, eval_data_number, platform_flags} | null,
//!   "measurements": {verified, mrtd, rtmr0..rtmr3, mrconfigid, mrowner, mrownerconfig,
//!                    td_attributes: {hex, flags}, xfam, report_data},
//!   "tdx_module": {mr_seam, tee_tcb_svn},
//!   "policy": {source, measurements_checked, matched_entry},
//!   "certificate": {node_id, not_before, not_after, network, network_id} | null,
//!   "reasons": [{stage, code, message, detail?}] }   // stage: certificate | verification | policy
//! ```

use std::fmt::Write as _;
use std::path::Path;

use serde::Serialize;
use serde_json::{json, Value};
use tessella_attestation::measurements::Register;
use tessella_attestation::{
    clock::format_rfc3339, Attested, Collateral, CollateralStore, MeasurementRule, Policy, Quote,
    Rejection, Verifier, VerifyError,
};

/// Where collateral comes from: one file, or a directory by FMSPC.
pub enum CollateralSource {
    /// A single bundle.
    File(Box<Collateral>),
    /// Bundles by FMSPC.
    Store(CollateralStore),
}

#[derive(Serialize)]
struct Reason {
    stage: &'static str,
    code: &'static str,
    message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    detail: Option<Value>,
}

impl Reason {
    fn verification(e: &VerifyError) -> Self {
        Reason {
            stage: "verification",
            code: e.code(),
            message: e.to_string(),
            detail: None,
        }
    }

    fn policy(r: &Rejection) -> Self {
        let detail = match r {
            Rejection::Measurements(m) => serde_json::to_value(m).ok(),
            _ => None,
        };
        Reason {
            stage: "policy",
            code: r.code(),
            message: r.to_string(),
            detail,
        }
    }
}

/// What an RA-TLS certificate added to the evidence (for `tessella-verify cert`).
pub struct CertificateFacts {
    /// Node id, validity, network: shown in the report.
    pub json: Value,
    /// Certificate-level refusals (window, binding) found before the quote.
    pub refusals: Vec<(&'static str, String)>,
}

/// Everything known about one quote after verification.
pub struct Report {
    /// The verdict.
    pub accepted: bool,
    json: Value,
    text: String,
}

const REGISTERS: [Register; 10] = [
    Register::Mrtd,
    Register::Rtmr0,
    Register::Rtmr1,
    Register::Rtmr2,
    Register::Rtmr3,
    Register::Mrconfigid,
    Register::Mrowner,
    Register::Mrownerconfig,
    Register::TdAttributes,
    Register::Xfam,
];

impl Report {
    /// Verify `quote` and describe the outcome.
    #[allow(clippy::too_many_arguments)]
    pub fn build(
        file: &Path,
        quote: &Quote,
        collateral: &CollateralSource,
        verifier: &Verifier,
        policy: &Policy,
        policy_source: Option<String>,
        now: u64,
        report_data: Option<&[u8; 64]>,
        certificate: Option<CertificateFacts>,
    ) -> Report {
        let fmspc = quote.fmspc().ok();
        let used: Option<Collateral> = match collateral {
            CollateralSource::File(c) => Some((**c).clone()),
            CollateralSource::Store(s) => fmspc.and_then(|f| s.get(&f)).map(|c| (*c).clone()),
        };
        let attested: Result<Attested, VerifyError> = match collateral {
            CollateralSource::File(c) => verifier.verify_quote(quote, c, now),
            CollateralSource::Store(s) => verifier.verify_quote_in(quote, s, now),
        };

        let mut reasons = Vec::new();
        let mut cert_json = Value::Null;
        if let Some(c) = certificate {
            for (code, message) in c.refusals {
                reasons.push(Reason {
                    stage: "certificate",
                    code,
                    message,
                    detail: None,
                });
            }
            cert_json = c.json;
        }
        let mut matched = None;
        match &attested {
            Err(e) => reasons.push(Reason::verification(e)),
            Ok(a) => {
                if a.td_attributes().debug() {
                    reasons.push(Reason::policy(&Rejection::DebugTd));
                }
                if let Err(r) = policy.check_tcb(a) {
                    reasons.push(Reason::policy(&r));
                }
                match policy.check_measurements(a) {
                    Ok(m) => matched = m,
                    Err(r) => reasons.push(Reason::policy(&r)),
                }
                if let Err(r) = Policy::check_report_data(a, report_data) {
                    reasons.push(Reason::policy(&r));
                }
                // The combined check is the verdict; the separate ones above
                // list every failure rather than the first.
                if let Err(r) = policy.appraise(a.clone(), report_data) {
                    if reasons.is_empty() {
                        reasons.push(Reason::policy(&r));
                    }
                }
            }
        }
        let accepted = reasons.is_empty();

        let m = match &attested {
            Ok(a) => a.measurements(),
            Err(_) => quote.measurements(),
        };
        let verified = attested.is_ok();
        let td_attributes = match &attested {
            Ok(a) => a.td_attributes(),
            Err(_) => quote.td_attributes(),
        };
        let mut measurements = serde_json::Map::new();
        measurements.insert("verified".into(), verified.into());
        for r in REGISTERS {
            let v = if r == Register::TdAttributes {
                serde_json::to_value(td_attributes).unwrap_or(Value::Null)
            } else {
                m.hex(r).into()
            };
            measurements.insert(r.name().into(), v);
        }
        measurements.insert(
            "report_data".into(),
            hex::encode(quote.report_data()).into(),
        );
        let tdx_module = json!({
            "mr_seam": quote.mr_seam().to_hex(),
            "tee_tcb_svn": hex::encode(quote.tee_tcb_svn()),
        });

        let tcb = attested.as_ref().ok().map(|a| {
            json!({
                "status": a.tcb_status(),
                "advisory_ids": a.advisory_ids(),
                "eval_data_number": a.tcb_eval_data_number(),
                "platform_flags": a.platform_flags(),
            })
        });
        let measurements_checked = matches!(policy.measurements(), MeasurementRule::AllowList(_));
        let json = json!({
            "report_version": 1,
            "accepted": accepted,
            "quote": {
                "file": file.display().to_string(),
                "version": quote.version(),
                "body": quote.body(),
                "size": quote.as_bytes().len(),
                "fmspc": fmspc,
            },
            "trust_anchor": verifier.anchor().to_string(),
            "now": now,
            "now_rfc3339": format_rfc3339(now),
            "collateral": used.as_ref().map(|c| json!({
                "fmspc": c.fmspc(),
                "tcb_eval_data_number": c.tcb_eval_data_number(),
                "valid_from": format_rfc3339(c.validity().not_before),
                "valid_until": format_rfc3339(c.validity().not_after),
            })),
            "quote_verified": verified,
            "tcb": tcb,
            "measurements": measurements,
            "tdx_module": tdx_module,
            "policy": {
                "source": policy_source,
                "measurements_checked": measurements_checked,
                "tcb": policy.tcb(),
                "matched_entry": matched.as_ref().map(|e| e.id.clone()),
            },
            "certificate": cert_json,
            "reasons": reasons,
        });

        let text = render_text(&json, &reasons, accepted);
        Report {
            accepted,
            json,
            text,
        }
    }

    /// Pretty JSON.
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(&self.json).unwrap_or_default()
    }

    /// Text for a terminal.
    pub fn to_text(&self) -> String {
        self.text.clone()
    }
}

fn s(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => "-".into(),
        other => other.to_string(),
    }
}

fn flag(v: &Value) -> &'static str {
    match v {
        Value::Bool(true) => "yes",
        Value::Bool(false) => "no",
        _ => "n/a",
    }
}

fn render_text(j: &Value, reasons: &[Reason], accepted: bool) -> String {
    let mut out = String::new();
    if accepted {
        out.push_str("ACCEPTED\n");
    } else {
        let first = reasons.first().map(|r| r.message.as_str()).unwrap_or("");
        let _ = writeln!(out, "REJECTED: {first}");
    }
    let q = &j["quote"];
    let _ = writeln!(
        out,
        "quote         {} (TDX v{} {}, {} bytes, FMSPC {})",
        s(&q["file"]),
        q["version"],
        s(&q["body"]),
        q["size"],
        s(&q["fmspc"])
    );
    if let Value::Object(c) = &j["certificate"] {
        let _ = writeln!(
            out,
            "certificate   node {}, valid {} .. {}, network {}",
            s(&c["node_id"]),
            s(&c["not_before"]),
            s(&c["not_after"]),
            s(&c["network"])
        );
    }
    let _ = writeln!(out, "trust anchor  {}", s(&j["trust_anchor"]));
    let _ = writeln!(out, "now           {} ({})", s(&j["now_rfc3339"]), j["now"]);
    match &j["collateral"] {
        Value::Null => {
            let _ = writeln!(out, "collateral    none for this FMSPC");
        }
        c => {
            let _ = writeln!(
                out,
                "collateral    FMSPC {}, TCB evaluation {}, valid {} .. {}",
                s(&c["fmspc"]),
                c["tcb_eval_data_number"],
                s(&c["valid_from"]),
                s(&c["valid_until"])
            );
        }
    }
    let _ = writeln!(
        out,
        "verified      {}",
        if j["quote_verified"] == Value::Bool(true) {
            "yes: quote and collateral signatures, PCK chain, TCB level"
        } else {
            "no"
        }
    );
    if let Value::Object(_) = &j["tcb"] {
        let t = &j["tcb"];
        let adv = t["advisory_ids"]
            .as_array()
            .filter(|a| !a.is_empty())
            .map(|a| a.iter().map(s).collect::<Vec<_>>().join(", "))
            .unwrap_or_else(|| "none".into());
        let _ = writeln!(
            out,
            "tcb           {}, advisories: {}, evaluation data number {}",
            s(&t["status"]),
            adv,
            t["eval_data_number"]
        );
        let f = &t["platform_flags"];
        let _ = writeln!(
            out,
            "platform      dynamic_platform={} cached_keys={} smt={}",
            flag(&f["dynamic_platform"]),
            flag(&f["cached_keys"]),
            flag(&f["smt"])
        );
    }
    let m = &j["measurements"];
    let _ = writeln!(
        out,
        "measurements  {}",
        if m["verified"] == Value::Bool(true) {
            "(verified)"
        } else {
            "(UNVERIFIED: read from a quote that did not verify)"
        }
    );
    for r in REGISTERS {
        let v = &m[r.name()];
        let shown = if r == Register::TdAttributes {
            let flags = v["flags"]
                .as_array()
                .map(|a| a.iter().map(s).collect::<Vec<_>>().join(", "))
                .unwrap_or_default();
            format!(
                "{} ({})",
                s(&v["hex"]),
                if flags.is_empty() {
                    "none".into()
                } else {
                    flags
                }
            )
        } else {
            s(v)
        };
        let _ = writeln!(out, "  {:<14}{}", r.name(), shown);
    }
    let _ = writeln!(out, "  {:<14}{}", "report_data", s(&m["report_data"]));
    let tdx = &j["tdx_module"];
    let _ = writeln!(
        out,
        "tdx module    MRSEAM {}, TEE_TCB_SVN {}",
        s(&tdx["mr_seam"]),
        s(&tdx["tee_tcb_svn"])
    );
    let p = &j["policy"];
    let policy_line = match (&p["source"], &p["matched_entry"]) {
        (Value::Null, _) => {
            "default: strict TCB rules; measurements NOT checked (no --policy)".to_string()
        }
        (src, Value::String(id)) => format!("{}: entry {id:?} matched", s(src)),
        (src, _) => format!("{}: no entry matched", s(src)),
    };
    let _ = writeln!(out, "policy        {policy_line}");
    if !reasons.is_empty() {
        out.push_str("reasons\n");
        for r in reasons {
            let _ = writeln!(out, "  - [{}] {}", r.code, r.message);
            if r.code == "platform_flag" {
                out.push_str(
                    "    (allow it with --allow-platform-flag, or in the policy's tcb rules)\n",
                );
            }
        }
    }
    out
}

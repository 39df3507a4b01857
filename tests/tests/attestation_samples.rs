//! The real TDX samples in `../shared/tdx-samples` behave as its README says,
//! through the library.

use std::path::PathBuf;

use tessella_attestation::measurements::{
    Digest48, MeasurementPolicy, PolicyEntry, Register, TcbRules, TcbStatusName,
};
use tessella_attestation::{
    Collateral, CollateralStore, Policy, Quote, QuoteError, Rejection, TdBody, Verifier,
    VerifyError,
};
use tessella_tests::tdx_samples;

const INTEL_NOW: u64 = 1_750_500_000;
const OUTDATED_NOW: u64 = 1_772_000_000;
const FLASHBOTS_NOW: u64 = 1_769_509_141;

fn sample(rel: &str) -> PathBuf {
    tdx_samples().join(rel)
}

fn quote(rel: &str) -> Quote {
    let bytes = std::fs::read(sample(rel)).expect("read sample");
    Quote::decode(&bytes).expect("sample parses")
}

fn collateral(rel: &str) -> Collateral {
    Collateral::from_file(&sample(rel)).expect("sample collateral loads")
}

/// Platform rules the cloud samples need: all three PCK flags are set on them.
fn cloud_tcb() -> TcbRules {
    TcbRules {
        allow_dynamic_platform: true,
        allow_cached_keys: true,
        allow_smt: true,
        ..TcbRules::default()
    }
}

fn unpinned(tcb: TcbRules) -> Policy {
    Policy::insecure_unpinned_measurements(tcb)
}

#[test]
fn intel_v4_quote_fields() {
    let q = quote("intel/tdx_quote");
    assert_eq!(q.version(), 4);
    assert_eq!(q.body(), TdBody::Td10);
    assert_eq!(q.fmspc().expect("fmspc").to_string(), "B0C06F000000");
    let m = q.measurements();
    assert_eq!(
        m.mrtd.to_hex(),
        "91eb2b44d141d4ece09f0c75c2c53d247a3c68edd7fafe8a3520c942a604a407de03ae6dc5f87f27428b2538873118b7"
    );
    assert_eq!(hex::encode(m.td_attributes), "0000001000000000");
    assert_eq!(hex::encode(m.xfam), "e702060000000000");
    assert_eq!(m.rtmr[3], Digest48::ZERO);
    assert_eq!(q.td_attributes().flags(), vec!["sept_ve_disable"]);
    // The file carries 70 bytes of zero padding after the quote.
    assert_eq!(q.as_bytes().len(), 4936);
}

#[test]
fn hex_sample_parses_like_binary() {
    let q = quote("intel/tdx-quote.hex");
    assert_eq!(q.version(), 4);
    assert_eq!(q.body(), TdBody::Td10);
    // Trailing newline and whitespace are fine too.
    let mut text = std::fs::read(sample("intel/tdx-quote.hex")).expect("read");
    text.extend_from_slice(b"  \n\n");
    let again = Quote::decode(&text).expect("parses with whitespace");
    assert_eq!(again.as_bytes(), q.as_bytes());
    // Wrapped at 60 columns, as `xxd -p` writes it.
    let digits = hex::encode(q.as_bytes());
    let wrapped: Vec<&str> = digits
        .as_bytes()
        .chunks(60)
        .map(|c| std::str::from_utf8(c).expect("ascii"))
        .collect();
    assert_eq!(
        Quote::decode(wrapped.join("\n").as_bytes())
            .expect("wrapped hex")
            .as_bytes(),
        q.as_bytes()
    );
    // Without the 0x prefix.
    let bare = std::str::from_utf8(&text)
        .expect("utf8")
        .trim()
        .trim_start_matches("0x");
    assert_eq!(
        Quote::decode(bare.as_bytes()).expect("bare hex").as_bytes(),
        q.as_bytes()
    );
}

#[test]
fn v5_td15_quote_fields() {
    let q = quote("intel/tdx_quote_outdated");
    assert_eq!(q.version(), 5);
    assert_eq!(q.body(), TdBody::Td15);
    assert_eq!(q.fmspc().expect("fmspc").to_string(), "90C06F000000");
    assert!(q.measurements().rtmr.iter().all(|r| *r == Digest48::ZERO));
}

#[test]
fn padded_flashbots_quote_is_trimmed_but_garbage_is_not_tolerated() {
    let raw = std::fs::read(sample("flashbots/dcap-tdx-1766059550570652607")).expect("read");
    assert_eq!(raw.len(), 8000);
    let q = Quote::parse(&raw).expect("zero padding tolerated");
    assert!(q.as_bytes().len() < 8000);
    assert!(raw[q.as_bytes().len()..].iter().all(|b| *b == 0));
    let mut dirty = raw.clone();
    dirty[7990] = 1;
    let end = q.as_bytes().len();
    assert_eq!(
        Quote::parse(&dirty).map(|_| ()),
        Err(QuoteError::TrailingData { end, offset: 7990 })
    );
}

#[test]
fn truncated_quotes_are_typed_errors_at_every_length() {
    let raw = quote("intel/tdx_quote").as_bytes().to_vec();
    for len in [0, 1, 47, 48, 100, 631, 632, 636, 1000, 4000, raw.len() - 1] {
        let err = Quote::parse(&raw[..len]).expect_err("truncated must fail");
        assert!(
            matches!(
                err,
                QuoteError::Empty | QuoteError::Truncated { .. } | QuoteError::Malformed(_)
            ),
            "len {len}: {err:?}"
        );
    }
}

#[test]
fn collateral_windows_and_fmspc() {
    let c = collateral("intel/tdx_quote_collateral.json");
    assert_eq!(c.fmspc().to_string(), "B0C06F000000");
    let w = c.validity();
    assert_eq!((w.not_before, w.not_after), (1_750_329_147, 1_752_919_234));
    let f = collateral("flashbots/dcap-quote-collateral-00.json");
    let w = f.validity();
    assert_eq!((w.not_before, w.not_after), (1_769_507_399, 1_772_096_505));
}

#[test]
fn intel_sample_is_up_to_date() {
    let q = quote("intel/tdx_quote");
    let c = collateral("intel/tdx_quote_collateral.json");
    let verified = Verifier::intel()
        .verify(&q, &c, &unpinned(cloud_tcb()), INTEL_NOW, None)
        .expect("verifies");
    let a = verified.attested();
    assert_eq!(a.tcb_status(), "UpToDate");
    assert!(a.advisory_ids().is_empty());
    assert_eq!(a.measurements(), q.measurements());
    assert!(verified.matched_entry().is_none());
}

#[test]
fn strict_default_names_the_platform_flag() {
    let q = quote("intel/tdx_quote");
    let c = collateral("intel/tdx_quote_collateral.json");
    let err = Verifier::intel()
        .verify(&q, &c, &unpinned(TcbRules::default()), INTEL_NOW, None)
        .expect_err("strict policy refuses cloud flags");
    assert_eq!(
        err,
        VerifyError::Rejected(Rejection::PlatformFlag {
            flag: "dynamic_platform"
        })
    );
}

#[test]
fn outdated_sample_is_refused_for_its_tcb() {
    let q = quote("intel/tdx_quote_outdated");
    let c = collateral("intel/tdx_quote_outdated_collateral.json");
    let err = Verifier::intel()
        .verify(&q, &c, &unpinned(cloud_tcb()), OUTDATED_NOW, None)
        .expect_err("outdated");
    assert!(matches!(err, VerifyError::NoMatchingTcbLevel(_)), "{err:?}");
}

/// The values the flashbots sample quote carries, in the flashbots format, as
/// flashbots' own attested-tls test writes them inline.
fn flashbots_policy_for_sample() -> String {
    let m = quote("flashbots/dcap-tdx-1766059550570652607").measurements();
    format!(
        r#"[{{"measurement_id":"gcp-sample","attestation_type":"dcap-tdx","measurements":{{
            "0":{{"expected":"{}"}},"1":{{"expected":"{}"}},"2":{{"expected_any":["{}","{}"]}},
            "3":{{"expected":"{}"}},"4":{{"expected":"{}"}}}}}}]"#,
        m.mrtd,
        m.rtmr[0],
        Digest48([9; 48]),
        m.rtmr[1],
        m.rtmr[2],
        m.rtmr[3]
    )
}

#[test]
fn flashbots_quote_is_accepted_under_a_flashbots_format_policy() {
    let q = quote("flashbots/dcap-tdx-1766059550570652607");
    let c = collateral("flashbots/dcap-quote-collateral-00.json");
    let dir = tempfile::tempdir().expect("tmp");
    let path = dir.path().join("measurements.json");
    std::fs::write(&path, flashbots_policy_for_sample()).expect("write");
    let (mut policy, notes) = Policy::from_file(&path).expect("imports");
    assert!(notes.is_empty());
    // The flashbots format has no TCB rules, so the strictest apply and the
    // cloud host's PCK flags are refused until allowed by name.
    let err = Verifier::intel()
        .verify(&q, &c, &policy, FLASHBOTS_NOW, None)
        .expect_err("strict TCB rules");
    assert!(matches!(
        err,
        VerifyError::Rejected(Rejection::PlatformFlag { .. })
    ));
    *policy.tcb_mut() = cloud_tcb();
    // The report_data flashbots' own benchmark expects from this quote.
    let expected: [u8; 64] = hex::decode(
        "74276a648f1fd491f474a2d52c72d850e3768157b43ec297a9917482bd77278ba1882588391d1956b6f6466ad8b8dccd55f57221ad81b420f746fa8db0f8637d",
    )
    .expect("hex")
    .try_into()
    .expect("64 bytes");
    let v = Verifier::intel()
        .verify(&q, &c, &policy, FLASHBOTS_NOW, Some(&expected))
        .expect("accepted");
    assert_eq!(v.attested().tcb_status(), "UpToDate");
    assert_eq!(v.matched_entry().map(|m| m.id.as_str()), Some("gcp-sample"));
}

/// `flashbots/measurements.json` imports (its two Azure vTPM entries are
/// skipped), but its `dcap-tdx-example` record does not hold the sample quote's
/// values, contrary to the samples README: MRTD and RTMR0-2 differ, RTMR3
/// (zero) agrees. The refusal names exactly those registers.
#[test]
fn shared_flashbots_policy_imports_and_names_the_differing_registers() {
    let q = quote("flashbots/dcap-tdx-1766059550570652607");
    let c = collateral("flashbots/dcap-quote-collateral-00.json");
    let (mut policy, notes) =
        Policy::from_file(&sample("flashbots/measurements.json")).expect("imports");
    assert_eq!(notes.len(), 2, "two azure entries skipped: {notes:?}");
    *policy.tcb_mut() = cloud_tcb();
    let err = Verifier::intel()
        .verify(&q, &c, &policy, FLASHBOTS_NOW, None)
        .expect_err("values differ");
    let VerifyError::Rejected(Rejection::Measurements(mismatch)) = &err else {
        panic!("wrong error {err:?}");
    };
    let closest = mismatch.closest().expect("one entry");
    assert_eq!(closest.entry, "dcap-tdx-example");
    let registers: Vec<Register> = closest.registers.iter().map(|r| r.register).collect();
    assert_eq!(
        registers,
        vec![
            Register::Mrtd,
            Register::Rtmr0,
            Register::Rtmr1,
            Register::Rtmr2
        ]
    );
}

#[test]
fn measurement_mismatch_names_the_register() {
    let q = quote("intel/tdx_quote");
    let c = collateral("intel/tdx_quote_collateral.json");
    let m = q.measurements();
    let mut entry = PolicyEntry::new("expected", vec![m.mrtd]);
    entry.rtmr2 = Some(vec![Digest48([7; 48])]);
    let policy = Policy::new(MeasurementPolicy::new(vec![entry], cloud_tcb()).expect("valid"));
    let err = Verifier::intel()
        .verify(&q, &c, &policy, INTEL_NOW, None)
        .expect_err("rtmr2 differs");
    let VerifyError::Rejected(Rejection::Measurements(mismatch)) = &err else {
        panic!("wrong error {err:?}");
    };
    let closest = mismatch.closest().expect("one entry");
    assert_eq!(closest.registers.len(), 1);
    assert_eq!(closest.registers[0].register, Register::Rtmr2);
    assert!(err.to_string().contains("rtmr2"), "{err}");
}

#[test]
fn report_data_must_match_when_expected() {
    let q = quote("intel/tdx_quote");
    let c = collateral("intel/tdx_quote_collateral.json");
    let policy = unpinned(cloud_tcb());
    let good = q.report_data();
    Verifier::intel()
        .verify(&q, &c, &policy, INTEL_NOW, Some(&good))
        .expect("matching report_data");
    let mut bad = good;
    bad[0] ^= 1;
    let err = Verifier::intel()
        .verify(&q, &c, &policy, INTEL_NOW, Some(&bad))
        .expect_err("mismatch");
    assert!(
        matches!(err, VerifyError::Rejected(Rejection::ReportData { .. })),
        "{err:?}"
    );
}

#[test]
fn wrong_now_is_refused_both_ways() {
    let q = quote("intel/tdx_quote");
    let c = collateral("intel/tdx_quote_collateral.json");
    let p = unpinned(cloud_tcb());
    let v = Verifier::intel();
    assert!(matches!(
        v.verify(&q, &c, &p, 1_752_919_235, None),
        Err(VerifyError::CollateralExpired { .. })
    ));
    assert!(matches!(
        v.verify(&q, &c, &p, 1_750_329_146, None),
        Err(VerifyError::CollateralNotYetValid { .. })
    ));
    // The window's edges are inclusive.
    v.verify(&q, &c, &p, 1_752_919_234, None)
        .expect("last second");
    v.verify(&q, &c, &p, 1_750_329_147, None)
        .expect("first second");
}

#[test]
fn cross_paired_collateral_is_an_fmspc_mismatch() {
    let q = quote("intel/tdx_quote");
    let c = collateral("intel/tdx_quote_outdated_collateral.json");
    let err = Verifier::intel()
        .verify(&q, &c, &unpinned(cloud_tcb()), INTEL_NOW, None)
        .expect_err("other platform");
    assert!(matches!(err, VerifyError::FmspcMismatch { .. }), "{err:?}");
}

#[test]
fn flipped_bytes_in_the_signed_body_break_the_signature() {
    let raw = std::fs::read(sample("intel/tdx_quote")).expect("read");
    let c = collateral("intel/tdx_quote_collateral.json");
    let p = unpinned(cloud_tcb());
    // In MRTD, RTMR1 and report_data: all covered by the attestation key's signature.
    for offset in [184, 430, 600] {
        let mut bytes = raw.clone();
        bytes[offset] ^= 0x01;
        let q = Quote::parse(&bytes).expect("still parses");
        let err = Verifier::intel()
            .verify(&q, &c, &p, INTEL_NOW, None)
            .expect_err("tampered");
        assert!(
            matches!(err, VerifyError::Signature(_)),
            "offset {offset}: {err:?}"
        );
    }
}

#[test]
fn flipped_bytes_in_the_qe_report_break_the_pck_signature() {
    let raw = std::fs::read(sample("intel/tdx_quote")).expect("read");
    let c = collateral("intel/tdx_quote_collateral.json");
    // The QE report sits after header+body (632), auth length (4), signature
    // (64), attestation key (64), cert type (2) and size (4).
    let mut bytes = raw.clone();
    bytes[632 + 4 + 64 + 64 + 6 + 100] ^= 0x80;
    let q = Quote::parse(&bytes).expect("still parses");
    let err = Verifier::intel()
        .verify(&q, &c, &unpinned(cloud_tcb()), INTEL_NOW, None)
        .expect_err("tampered");
    assert!(matches!(err, VerifyError::Signature(_)), "{err:?}");
}

fn intel_collateral_json() -> serde_json::Value {
    let text = std::fs::read_to_string(sample("intel/tdx_quote_collateral.json")).expect("read");
    serde_json::from_str(&text).expect("json")
}

fn verify_with(json: &serde_json::Value) -> VerifyError {
    let q = quote("intel/tdx_quote");
    let c = Collateral::from_json(json.to_string().as_bytes()).expect("still shaped right");
    Verifier::intel()
        .verify(&q, &c, &unpinned(cloud_tcb()), INTEL_NOW, None)
        .expect_err("forged collateral")
}

#[test]
fn forged_collateral_is_refused() {
    // A flipped bit in the TCB info signature.
    let mut json = intel_collateral_json();
    let mut sig = hex::decode(json["tcb_info_signature"].as_str().expect("hex")).expect("hex");
    sig[5] ^= 1;
    json["tcb_info_signature"] = hex::encode(sig).into();
    assert!(matches!(verify_with(&json), VerifyError::Signature(_)));

    // An attacker upgrading every TCB level to UpToDate.
    let mut json = intel_collateral_json();
    let tcb = json["tcb_info"].as_str().expect("string").to_string();
    assert!(tcb.contains("\"OutOfDate\""));
    json["tcb_info"] = tcb.replace("\"OutOfDate\"", "\"UpToDate\"").into();
    assert!(matches!(verify_with(&json), VerifyError::Signature(_)));

    // The QE identity edited.
    let mut json = intel_collateral_json();
    let qe = json["qe_identity"].as_str().expect("string").to_string();
    json["qe_identity"] = qe.replacen("\"isvprodid\":2", "\"isvprodid\":3", 1).into();
    assert_ne!(json["qe_identity"].as_str(), Some(qe.as_str()));
    assert!(matches!(verify_with(&json), VerifyError::Signature(_)));
}

#[test]
fn collateral_from_another_root_is_refused() {
    // The TCB info signer chain replaced by the PCK CRL chain: a real Intel
    // certificate, but not the TCB signing key.
    let mut json = intel_collateral_json();
    json["tcb_info_issuer_chain"] = json["pck_crl_issuer_chain"].clone();
    let err = verify_with(&json);
    assert!(
        matches!(
            err,
            VerifyError::Signature(_) | VerifyError::CertificateChain(_)
        ),
        "{err:?}"
    );
}

#[test]
fn tcb_rules_name_what_refused() {
    let q = quote("intel/tdx_quote");
    let c = collateral("intel/tdx_quote_collateral.json");
    let v = Verifier::intel();
    let only_outdated = TcbRules {
        allowed_statuses: vec![TcbStatusName::OutOfDate],
        ..cloud_tcb()
    };
    assert!(matches!(
        v.verify(&q, &c, &unpinned(only_outdated), INTEL_NOW, None),
        Err(VerifyError::Rejected(Rejection::TcbStatus { .. }))
    ));
    let newer = TcbRules {
        min_tcb_eval_data_number: 1000,
        ..cloud_tcb()
    };
    assert!(matches!(
        v.verify(&q, &c, &unpinned(newer), INTEL_NOW, None),
        Err(VerifyError::Rejected(Rejection::TcbEvaluation {
            min: 1000,
            ..
        }))
    ));
    let no_smt = TcbRules {
        allow_smt: false,
        ..cloud_tcb()
    };
    assert_eq!(
        v.verify(&q, &c, &unpinned(no_smt), INTEL_NOW, None)
            .map(|_| ()),
        Err(VerifyError::Rejected(Rejection::PlatformFlag {
            flag: "smt"
        }))
    );
}

#[test]
fn store_looks_up_by_fmspc_and_keeps_the_newest() {
    let store = CollateralStore::new();
    let dir = tempfile::tempdir().expect("tmp");
    std::fs::copy(
        sample("intel/tdx_quote_collateral.json"),
        dir.path().join("a.json"),
    )
    .expect("copy");
    std::fs::copy(
        sample("flashbots/dcap-quote-collateral-00.json"),
        dir.path().join("b.json"),
    )
    .expect("copy");
    std::fs::write(dir.path().join("junk.json"), b"{\"not\": 1}").expect("write");
    let outcomes = store.load_dir(dir.path()).expect("dir reads");
    assert_eq!(outcomes.len(), 3);
    assert_eq!(outcomes.iter().filter(|o| o.result.is_ok()).count(), 2);
    assert_eq!(
        store.len(),
        2,
        "both samples share FMSPC? {:?}",
        store.all()
    );
    let q = quote("intel/tdx_quote");
    let attested = Verifier::intel()
        .verify_quote_in(&q, &store, INTEL_NOW)
        .expect("found by FMSPC");
    assert_eq!(attested.tcb_status(), "UpToDate");
    let outdated = quote("intel/tdx_quote_outdated");
    assert!(matches!(
        Verifier::intel().verify_quote_in(&outdated, &store, INTEL_NOW),
        Err(VerifyError::NoCollateral { .. })
    ));
}

/// A TD1.5-ex body (v5 type 4, 885 bytes) built from the v5 TD1.5 sample by
/// appending the extension fields: it parses as TD1.5-ex with the same base
/// registers, and, since the signed body changed, fails the signature check.
#[test]
fn td15_ex_body_parses_and_changed_body_is_refused() {
    let raw = quote("intel/tdx_quote_outdated").as_bytes().to_vec();
    const HEADER: usize = 48;
    const TD15: usize = 648;
    const TD15_EX: usize = 885;
    assert_eq!(u16::from_le_bytes([raw[HEADER], raw[HEADER + 1]]), 3);
    let mut ex = raw[..HEADER].to_vec();
    ex.extend_from_slice(&4u16.to_le_bytes());
    ex.extend_from_slice(&(TD15_EX as u32).to_le_bytes());
    ex.extend_from_slice(&raw[HEADER + 6..HEADER + 6 + TD15]);
    ex.extend(std::iter::repeat_n(0u8, TD15_EX - TD15));
    ex.extend_from_slice(&raw[HEADER + 6 + TD15..]);
    let q = Quote::parse(&ex).expect("TD1.5-ex parses");
    assert_eq!(q.version(), 5);
    assert_eq!(q.body(), TdBody::Td15Ex);
    let base = quote("intel/tdx_quote_outdated");
    assert_eq!(q.measurements(), base.measurements());
    assert_eq!(q.fmspc().expect("fmspc"), base.fmspc().expect("fmspc"));
    let c = collateral("intel/tdx_quote_outdated_collateral.json");
    let err = Verifier::intel()
        .verify(&q, &c, &unpinned(cloud_tcb()), OUTDATED_NOW, None)
        .expect_err("body changed");
    assert!(matches!(err, VerifyError::Signature(_)), "{err:?}");
}

/// Setting the DEBUG attribute is refused by name, before any cryptography.
#[test]
fn debug_td_is_refused() {
    let mut raw = quote("intel/tdx_quote").as_bytes().to_vec();
    const TD_ATTRIBUTES: usize = 48 + 120;
    raw[TD_ATTRIBUTES] |= 1;
    let q = Quote::parse(&raw).expect("parses");
    assert!(q.td_attributes().debug());
    assert_eq!(q.td_attributes().flags(), vec!["debug", "sept_ve_disable"]);
    let c = collateral("intel/tdx_quote_collateral.json");
    let err = Verifier::intel()
        .verify(&q, &c, &unpinned(cloud_tcb()), INTEL_NOW, None)
        .expect_err("debug");
    assert_eq!(err, VerifyError::DebugTd);
    assert_eq!(err.code(), "debug_td");
}

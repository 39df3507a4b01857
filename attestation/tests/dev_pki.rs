//! The dev PKI produces real TDX quotes: dcap-qvl accepts them under the dev
//! root, refuses them under Intel's, and refuses debug TDs.

use tessella_attestation::dev::{DevPki, DevPlatform, DevTd, DEV_ANCHOR_NAME};
use tessella_attestation::measurements::{MeasurementPolicy, PolicyEntry, TcbRules};
use tessella_attestation::{Policy, Quote, Rejection, TdBody, Verifier, VerifyError};

const NOW: u64 = 1_800_000_000;

fn pki() -> DevPki {
    DevPki::generate(b"dev-pki-test").expect("dev PKI")
}

fn pinned(td: &DevTd) -> Policy {
    let m = td.measurements;
    let mut e = PolicyEntry::new("dev", vec![m.mrtd]);
    e.rtmr0 = Some(vec![m.rtmr[0]]);
    e.rtmr1 = Some(vec![m.rtmr[1]]);
    e.rtmr2 = Some(vec![m.rtmr[2]]);
    e.rtmr3 = Some(vec![m.rtmr[3]]);
    Policy::new(MeasurementPolicy::new(vec![e], TcbRules::default()).expect("policy"))
}

#[test]
fn dev_quotes_verify_under_the_dev_root_with_the_strict_policy() {
    let pki = pki();
    let td = DevTd::named("node");
    let report_data = [7u8; 64];
    let quote = Quote::decode(&pki.quote(&td, &report_data)).expect("parses");
    assert_eq!(quote.version(), 4);
    assert_eq!(quote.body(), TdBody::Td10);
    assert_eq!(quote.measurements(), td.measurements);
    let verifier = pki.verifier();
    assert_eq!(verifier.anchor().to_string(), DEV_ANCHOR_NAME);
    let verified = verifier
        .verify(
            &quote,
            pki.collateral(),
            &pinned(&td),
            NOW,
            Some(&report_data),
        )
        .expect("dev quote verifies");
    assert_eq!(verified.attested().tcb_status(), "UpToDate");
    assert_eq!(verified.matched_entry().map(|e| e.id.as_str()), Some("dev"));
    let flags = verified.attested().platform_flags();
    assert_eq!(flags.smt, Some(false));
}

#[test]
fn dev_quotes_are_refused_under_the_intel_root() {
    let pki = pki();
    let td = DevTd::named("node");
    let quote = Quote::decode(&pki.quote(&td, &[0; 64])).expect("parses");
    let err = Verifier::intel()
        .verify_quote(&quote, pki.collateral(), NOW)
        .expect_err("not Intel");
    assert!(matches!(err, VerifyError::CertificateChain(_)), "{err:?}");
}

#[test]
fn debug_dev_td_is_refused() {
    let pki = pki();
    let td = DevTd::named("node").debug();
    let quote = Quote::decode(&pki.quote(&td, &[0; 64])).expect("parses");
    let err = pki
        .verifier()
        .verify(&quote, pki.collateral(), &pinned(&td), NOW, None)
        .expect_err("debug");
    assert_eq!(err, VerifyError::DebugTd);
}

#[test]
fn generation_is_deterministic_per_seed() {
    let td = DevTd::named("node");
    let a = DevPki::generate(b"seed-a").expect("a");
    let a2 = DevPki::generate(b"seed-a").expect("a2");
    let b = DevPki::generate(b"seed-b").expect("b");
    assert_eq!(a.root_der(), a2.root_der());
    assert_eq!(a.collateral().to_json(), a2.collateral().to_json());
    assert_eq!(a.quote(&td, &[1; 64]), a2.quote(&td, &[1; 64]));
    assert_ne!(a.root_der(), b.root_der());
    // A quote from one dev PKI does not verify under another's root.
    let quote = Quote::decode(&b.quote(&td, &[1; 64])).expect("parses");
    assert!(a
        .verifier()
        .verify_quote(&quote, b.collateral(), NOW)
        .is_err());
}

#[test]
fn collateral_window_covers_years() {
    let pki = pki();
    let w = pki.collateral().validity();
    assert!(
        w.not_before <= 1_704_067_200 && w.not_after >= 2_500_000_000,
        "{w:?}"
    );
}

#[test]
fn platform_flags_follow_the_dev_platform() {
    let platform = DevPlatform {
        smt: true,
        dynamic_platform: true,
        ..DevPlatform::default()
    };
    let pki = DevPki::generate_for(b"flags", platform).expect("pki");
    let td = DevTd::named("node");
    let quote = Quote::decode(&pki.quote(&td, &[0; 64])).expect("parses");
    let err = pki
        .verifier()
        .verify(&quote, pki.collateral(), &pinned(&td), NOW, None)
        .expect_err("strict policy refuses flags");
    assert_eq!(
        err,
        VerifyError::Rejected(Rejection::PlatformFlag {
            flag: "dynamic_platform"
        })
    );
}

#[test]
fn tampered_dev_quote_is_refused() {
    let pki = pki();
    let td = DevTd::named("node");
    let mut raw = pki.quote(&td, &[0; 64]);
    raw[48 + 136] ^= 1; // inside MRTD
    let quote = Quote::decode(&raw).expect("parses");
    let err = pki
        .verifier()
        .verify_quote(&quote, pki.collateral(), NOW)
        .expect_err("tampered");
    assert!(matches!(err, VerifyError::Signature(_)), "{err:?}");
}

#[test]
fn node_signatures_verify_and_name_the_node() {
    use tessella_attestation::dev::DevQuoteProvider;
    use tessella_attestation::identity::NetworkId;
    use tessella_attestation::ratls;
    let pki = std::sync::Arc::new(pki());
    let provider = DevQuoteProvider::new(pki, DevTd::named("node"));
    let id = ratls::issue(&provider, &NetworkId::from_name("n"), NOW, 3600).expect("issue");
    let spki = id.spki_der().expect("spki");
    let sig = id.sign(b"record").expect("sign");
    assert_eq!(
        ratls::verify_node_signature(&spki, b"record", &sig).expect("verifies"),
        id.node_id()
    );
    assert!(ratls::verify_node_signature(&spki, b"recorD", &sig).is_err());
    // Renewal keeps the key, so the id and signatures stay valid.
    let renewed = id
        .renew(&provider, &NetworkId::from_name("n"), NOW + 3000, 3600)
        .expect("renew");
    assert_eq!(renewed.node_id(), id.node_id());
    assert_ne!(renewed.cert_der(), id.cert_der());
}

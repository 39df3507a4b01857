//! `tessella-verify cert` and `--dev-root` on dev-mode evidence, run as a user
//! would: RA-TLS certificates and dev quotes are made with the library, written
//! to a temp dir, and inspected with the binary.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;
use tessella_attestation::dev::{DevPki, DevQuoteProvider, DevTd, DEV_ANCHOR_NAME};
use tessella_attestation::identity::NetworkId;
use tessella_attestation::ratls;

const NOW: u64 = 1_800_000_000;
const LIFETIME: u64 = 86_400;

struct Fixture {
    dir: tempfile::TempDir,
    pki: std::sync::Arc<DevPki>,
}

impl Fixture {
    fn new() -> Fixture {
        let dir = tempfile::tempdir().expect("tmp");
        let pki = std::sync::Arc::new(DevPki::generate(b"cli-cert").expect("pki"));
        std::fs::write(dir.path().join("root.pem"), pki.root_pem()).expect("write");
        std::fs::write(dir.path().join("root.der"), pki.root_der()).expect("write");
        std::fs::write(
            dir.path().join("collateral.json"),
            pki.collateral().to_json(),
        )
        .expect("write");
        Fixture { dir, pki }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// An RA-TLS certificate for `network`, written as PEM.
    fn cert(&self, network: &str, td: DevTd) -> PathBuf {
        let provider = DevQuoteProvider::new(self.pki.clone(), td);
        let id =
            ratls::issue(&provider, &NetworkId::from_name(network), NOW, LIFETIME).expect("issue");
        let path = self.path("node.pem");
        std::fs::write(&path, id.cert_pem()).expect("write");
        path
    }
}

fn s(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

fn run(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_tessella-verify"))
        .args(args)
        .output()
        .expect("run tessella-verify");
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(!stderr.contains("panicked"), "{stderr}");
    (
        out.status.code().expect("exit code"),
        String::from_utf8_lossy(&out.stdout).to_string(),
        stderr,
    )
}

fn json(stdout: &str) -> Value {
    serde_json::from_str(stdout).expect("JSON report")
}

fn codes(report: &Value) -> Vec<String> {
    report["reasons"]
        .as_array()
        .expect("reasons")
        .iter()
        .map(|r| r["code"].as_str().expect("code").to_string())
        .collect()
}

fn verify_cert(f: &Fixture, cert: &Path, extra: &[&str]) -> (i32, Value) {
    verify_cert_at(f, cert, NOW, extra)
}

fn verify_cert_at(f: &Fixture, cert: &Path, now: u64, extra: &[&str]) -> (i32, Value) {
    let collateral = f.path("collateral.json");
    let root = f.path("root.pem");
    let now = now.to_string();
    let mut args = vec![
        "cert",
        s(cert),
        "-c",
        s(&collateral),
        "--dev-root",
        s(&root),
        "--now",
        &now,
        "--json",
    ];
    args.extend_from_slice(extra);
    let (code, stdout, stderr) = run(&args);
    assert!(!stdout.is_empty(), "no report: {stderr}");
    (code, json(&stdout))
}

#[test]
fn dev_cert_is_accepted_under_the_dev_root() {
    let f = Fixture::new();
    let cert = f.cert("prod", DevTd::named("node"));
    let (code, report) = verify_cert(&f, &cert, &["--network", "prod"]);
    assert_eq!(code, 0, "{report:#}");
    assert_eq!(report["accepted"], true);
    assert_eq!(report["trust_anchor"], DEV_ANCHOR_NAME);
    assert_eq!(report["certificate"]["binding_ok"], true);
    assert_eq!(report["tcb"]["status"], "UpToDate");
    assert_eq!(
        report["measurements"]["mrtd"],
        DevTd::named("node").measurements.mrtd.to_hex()
    );
    // The same by network id, and with the DER root.
    let id = NetworkId::from_name("prod").to_string();
    let (code, _) = verify_cert(&f, &cert, &["--network-id", &id]);
    assert_eq!(code, 0);
}

#[test]
fn cert_for_another_network_is_refused_for_its_binding() {
    let f = Fixture::new();
    let cert = f.cert("prod", DevTd::named("node"));
    let (code, report) = verify_cert(&f, &cert, &["--network", "staging"]);
    assert_eq!(code, 1);
    assert_eq!(report["certificate"]["binding_ok"], false);
    assert_eq!(codes(&report), vec!["report_data_mismatch"]);
}

#[test]
fn expired_cert_is_refused() {
    let f = Fixture::new();
    let cert = f.cert("prod", DevTd::named("node"));
    let (code, report) = verify_cert_at(&f, &cert, NOW + LIFETIME + 1, &["--network", "prod"]);
    assert_eq!(code, 1);
    assert_eq!(codes(&report), vec!["certificate_expired"]);
}

#[test]
fn debug_td_cert_is_refused() {
    let f = Fixture::new();
    let cert = f.cert("prod", DevTd::named("node").debug());
    let (code, report) = verify_cert(&f, &cert, &["--network", "prod"]);
    assert_eq!(code, 1);
    assert_eq!(codes(&report), vec!["debug_td"]);
}

#[test]
fn dev_evidence_is_refused_under_the_intel_root() {
    let f = Fixture::new();
    let cert = f.cert("prod", DevTd::named("node"));
    let collateral = f.path("collateral.json");
    let now = NOW.to_string();
    let (code, stdout, _) = run(&[
        "cert",
        s(&cert),
        "-c",
        s(&collateral),
        "--network",
        "prod",
        "--now",
        &now,
        "--json",
    ]);
    assert_eq!(code, 1);
    let report = json(&stdout);
    assert_eq!(report["trust_anchor"], "Intel SGX Root CA");
    assert_eq!(codes(&report), vec!["certificate_chain"]);
}

#[test]
fn plain_certificate_is_not_ra_tls() {
    let f = Fixture::new();
    let plain = rcgen_plain_cert();
    let path = f.path("plain.pem");
    std::fs::write(&path, plain).expect("write");
    let (code, report) = verify_cert(&f, &path, &["--network", "prod"]);
    assert_eq!(code, 1);
    assert_eq!(codes(&report), vec!["no_quote"]);
}

fn rcgen_plain_cert() -> String {
    // The dev root itself is a well-formed certificate without a quote.
    DevPki::generate(b"plain")
        .expect("pki")
        .root_pem()
        .to_string()
}

#[test]
fn bad_cert_files_are_bad_input() {
    let f = Fixture::new();
    let garbage = f.path("garbage.pem");
    std::fs::write(
        &garbage,
        "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
    )
    .expect("write");
    let text = f.path("text.txt");
    std::fs::write(&text, "hello").expect("write");
    let collateral = f.path("collateral.json");
    for file in [&garbage, &text, &f.path("missing.pem")] {
        let (code, stdout, stderr) =
            run(&["cert", s(file), "-c", s(&collateral), "--network", "prod"]);
        assert_eq!(code, 2, "{file:?}: {stdout} {stderr}");
        assert!(stdout.is_empty());
        assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    }
    // A bad --dev-root is bad input too.
    let cert = f.cert("prod", DevTd::named("node"));
    let (code, _, stderr) = run(&[
        "cert",
        s(&cert),
        "-c",
        s(&collateral),
        "--network",
        "prod",
        "--dev-root",
        s(&text),
    ]);
    assert_eq!(code, 2, "{stderr}");
    // Network is required.
    let (code, _, _) = run(&["cert", s(&cert), "-c", s(&collateral)]);
    assert_eq!(code, 2);
}

#[test]
fn dev_quote_verifies_with_dev_root_der() {
    let f = Fixture::new();
    let td = DevTd::named("node");
    let quote = f.path("quote.bin");
    std::fs::write(&quote, f.pki.quote(&td, &[9; 64])).expect("write");
    let collateral = f.path("collateral.json");
    let root = f.path("root.der");
    let now = NOW.to_string();
    let (code, stdout, stderr) = run(&[
        "quote",
        s(&quote),
        "-c",
        s(&collateral),
        "--dev-root",
        s(&root),
        "--now",
        &now,
        "--json",
        "--report-data",
        &hex::encode([9u8; 64]),
    ]);
    assert_eq!(code, 0, "{stdout} {stderr}");
    assert_eq!(json(&stdout)["trust_anchor"], DEV_ANCHOR_NAME);
}

#[test]
fn dev_sample_writes_evidence_that_verifies() {
    let dir = tempfile::tempdir().expect("tmp");
    let out = dir.path().join("sample");
    let (code, stdout, stderr) = run(&["dev-sample", "--out", s(&out), "--network", "lab"]);
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("node-cert.pem"), "{stdout}");
    let p = |n: &str| out.join(n);
    let (code, stdout, _) = run(&[
        "cert",
        s(&p("node-cert.pem")),
        "--network",
        "lab",
        "-c",
        s(&p("dev-collateral.json")),
        "--dev-root",
        s(&p("dev-root.pem")),
        "--json",
    ]);
    assert_eq!(code, 0, "{stdout}");
    let (code, stdout, _) = run(&[
        "quote",
        s(&p("dev-quote.bin")),
        "-c",
        s(&p("dev-collateral.json")),
        "--dev-root",
        s(&p("dev-root.pem")),
        "--json",
    ]);
    assert_eq!(code, 0, "{stdout}");
    // A debug sample is refused.
    let dbg = dir.path().join("debug");
    let (code, _, _) = run(&["dev-sample", "--out", s(&dbg), "--debug"]);
    assert_eq!(code, 0);
    let (code, stdout, _) = run(&[
        "cert",
        s(&dbg.join("node-cert.pem")),
        "--network",
        "dev",
        "-c",
        s(&dbg.join("dev-collateral.json")),
        "--dev-root",
        s(&dbg.join("dev-root.pem")),
        "--json",
    ]);
    assert_eq!(code, 1);
    assert_eq!(codes(&json(&stdout)), vec!["debug_td"]);
}

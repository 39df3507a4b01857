//! `tessella-node run` is production: off a TD it cannot get a quote and
//! refuses to start with a clear message; config errors name the key; and a
//! TDX identity never trusts a dev root nor keeps its key on a disk.

mod common;

use std::sync::Arc;

use tessella_attestation::dev::{DevPki, DevQuoteProvider, DevTd};
use tessella_attestation::TicketIssuer;
use tessella_node::devnet::dev_policy;
use tessella_node::{Identity, Network, NetworkError, TicketSource};

use common::tessella_node;

#[test]
fn run_without_a_td_refuses_to_start() {
    let dir = tempfile::tempdir().expect("tmp");
    let policy = dir.path().join("policy.json");
    std::fs::write(&policy, dev_policy().to_json_pretty()).expect("write");
    let issuer = TicketIssuer::generate_es256("ops").expect("issuer");
    let issuers = dir.path().join("issuers.json");
    std::fs::write(
        &issuers,
        serde_json::to_string(&vec![issuer.public_key()]).expect("json"),
    )
    .expect("write");
    let config = dir.path().join("node.toml");
    std::fs::write(
        &config,
        format!(
            "data_dir = {:?}\n[network]\nlisten = \"127.0.0.1:0\"\n[policy]\nfile = {:?}\n[tickets]\ntrusted_issuers_file = {:?}\n[admin]\nlisten = \"127.0.0.1:0\"\n",
            dir.path(),
            policy,
            issuers
        ),
    )
    .expect("write");
    let config = config.to_str().expect("utf-8");
    let (code, stderr) = tessella_node(&["run", "--config", config], &[]);
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.contains("cannot obtain a quote") && stderr.contains("configfs"),
        "{stderr}"
    );

    // A config error names the key.
    let (code, stderr) = tessella_node(
        &["run", "--config", config],
        &[("TESSELLA_LIMITS_MAX_PEERS", "many")],
    );
    assert_eq!(code, 1);
    assert!(stderr.contains("TESSELLA_LIMITS_MAX_PEERS"), "{stderr}");
}

#[tokio::test]
async fn tdx_identity_refuses_a_dev_root() {
    let pki = Arc::new(DevPki::generate(b"prod").expect("pki"));
    let issuer = Arc::new(TicketIssuer::generate_es256("ops").expect("issuer"));
    let provider = DevQuoteProvider::new(pki.clone(), DevTd::named("node"));
    let err = Network::builder("prod")
        .identity(Identity::Tdx(Arc::new(provider)))
        .trust_anchor(pki.verifier())
        .policy(tessella_attestation::Policy::new(dev_policy()))
        .ticket(TicketSource::Issuer(issuer.clone(), 3600))
        .trusted_issuers(vec![issuer.public_key()])
        .build()
        .await
        .err()
        .expect("refused");
    assert!(matches!(err, NetworkError::DevRootInProduction(_)), "{err}");
}

#[tokio::test]
async fn tdx_identity_refuses_a_data_dir_on_disk() {
    // Under target/ (a disk), not /tmp, which may be a tmpfs.
    let disk = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).expect("tmp");
    let pki = Arc::new(DevPki::generate(b"prod").expect("pki"));
    let issuer = Arc::new(TicketIssuer::generate_es256("ops").expect("issuer"));
    let provider = DevQuoteProvider::new(pki.clone(), DevTd::named("node"));
    let err = Network::builder("prod")
        .identity(Identity::Tdx(Arc::new(provider)))
        .policy(tessella_attestation::Policy::new(dev_policy()))
        .ticket(TicketSource::Issuer(issuer.clone(), 3600))
        .trusted_issuers(vec![issuer.public_key()])
        .data_dir(disk.path().join("data"))
        .build()
        .await
        .err()
        .expect("refused");
    assert!(
        matches!(
            err,
            NetworkError::Key(tessella_node::keyfile::KeyFileError::NotInMemory { .. })
        ),
        "{err}"
    );
    let message = err.to_string();
    assert!(
        message.contains("memory-backed") && message.contains("/run"),
        "{message}"
    );
    // Refused before any key was written.
    assert!(!disk.path().join("data").join("node.key").exists());
}

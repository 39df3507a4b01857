//! The deployment config bound to MRCONFIGID, end to end through real
//! (dev-PKI-signed) quotes: a TD launched with MRCONFIGID = SHA-384(config)
//! accepts that config and refuses any other, both from a fresh quote (the
//! check `run`/`init` make before starting) and from a started node's own
//! certificate. Also the binary's refusals around `init` and TDX configs.

mod common;

use std::process::Command;
use std::sync::Arc;

use tessella_attestation::dev::{DevPki, DevQuoteProvider, DevTd};
use tessella_attestation::measurements::Digest48;
use tessella_attestation::{Policy, TicketIssuer};
use tessella_node::configid::{self, ConfigBindingError};
use tessella_node::devnet::{dev_policy, DEV_TD_NAME};
use tessella_node::{Identity, Network, TicketSource};

use common::tessella_node;

const CONFIG: &[u8] =
    b"[network]\nname = \"prod\"\n[policy]\nfile = \"/etc/tessella/policy.json\"\n";

/// The dev TD, launched as a host would with `mrconfigid` = base64(SHA-384(config)).
fn td_launched_for(config: &[u8]) -> DevTd {
    let mut td = DevTd::named(DEV_TD_NAME);
    td.measurements.mrconfigid = Digest48(configid::config_sha384(config));
    td
}

#[test]
fn a_fresh_quote_binds_the_config() {
    let pki = Arc::new(DevPki::generate(b"binding").expect("pki"));
    let provider = DevQuoteProvider::new(pki.clone(), td_launched_for(CONFIG));
    let b = configid::check_provider(CONFIG, &provider).expect("bound");
    assert_eq!(b.config_sha384, configid::config_sha384(CONFIG));

    // Another config (one byte more) is refused, naming both values and the fix.
    let mut other = CONFIG.to_vec();
    other.push(b'\n');
    let e = configid::check_provider(&other, &provider).expect_err("mismatch");
    assert!(matches!(e, ConfigBindingError::Mismatch { .. }), "{e}");
    let msg = e.to_string();
    assert!(
        msg.contains(&hex::encode(configid::config_sha384(&other))),
        "{msg}"
    );
    assert!(
        msg.contains(&hex::encode(configid::config_sha384(CONFIG))),
        "{msg}"
    );
    assert!(
        msg.contains(&format!(
            "mrconfigid = {}",
            configid::mrconfigid_property(&other)
        )),
        "{msg}"
    );

    // The standard dev TD (MRCONFIGID all zero) binds nothing.
    let plain = DevQuoteProvider::new(pki, DevTd::named(DEV_TD_NAME));
    assert!(configid::check_provider(CONFIG, &plain).is_err());
}

#[tokio::test]
async fn a_started_nodes_own_quote_binds_the_config() {
    let pki = Arc::new(DevPki::generate(b"binding").expect("pki"));
    let issuer = Arc::new(TicketIssuer::generate_es256("ops").expect("issuer"));
    let network = Network::builder("prod")
        .identity(Identity::Dev {
            pki,
            td: Box::new(td_launched_for(CONFIG)),
        })
        .policy(Policy::new(dev_policy()))
        .ticket(TicketSource::Issuer(issuer.clone(), 3600))
        .trusted_issuers(vec![issuer.public_key()])
        .listen("127.0.0.1:0".parse().expect("addr"))
        .build()
        .await
        .expect("node");
    let own = network.own_measurements();
    configid::check_measurements(CONFIG, own).expect("bound");
    let e = configid::check_measurements(b"[network]\nname = \"evil\"\n", own).expect_err("other");
    assert!(matches!(e, ConfigBindingError::Mismatch { .. }), "{e}");
    network.shutdown().await;
}

#[test]
fn init_refuses_unless_pid1() {
    // A test process is never PID 1: init must not mount over this machine.
    let (code, stderr) = tessella_node(&["init"], &[]);
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.contains("init is PID 1 of the node's image"),
        "{stderr}"
    );
    // Without a subcommand (and not PID 1): a usage error.
    let (code, stderr) = tessella_node(&[], &[]);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("a subcommand is required"), "{stderr}");
}

#[test]
fn run_refuses_environment_options_in_tdx_mode() {
    let dir = tempfile::tempdir().expect("tmp");
    let config = dir.path().join("node.toml");
    std::fs::write(&config, CONFIG).expect("write");
    let config = config.to_str().expect("utf-8");
    let (code, stderr) = tessella_node(
        &["run", "--config", config],
        &[("TESSELLA_ADMIN_LISTEN", "0.0.0.0:7947")],
    );
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.contains("TESSELLA_ADMIN_LISTEN: identity.mode \"tdx\" binds the config file"),
        "{stderr}"
    );
}

#[test]
fn example_config_documents_the_guest_section() {
    let out = Command::new(env!("CARGO_BIN_EXE_tessella-node"))
        .arg("example-config")
        .output()
        .expect("run");
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).expect("utf-8");
    assert!(text.contains("\n[guest]\n"), "{text}");
    // Every value printed is the default, [guest] included.
    let parsed = tessella_node::config::NodeConfig::from_toml_str(&text).expect("parses");
    assert_eq!(parsed, tessella_node::config::NodeConfig::default());
}

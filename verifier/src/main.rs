//! `tessella-verify`: check TDX evidence offline, for people and scripts.
//!
//! Exit codes: 0 accepted, 1 rejected, 2 bad input or usage.

mod report;

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context};
use clap::{Parser, Subcommand, ValueEnum};
use tessella_attestation::collateral::MAX_COLLATERAL_BYTES;
use tessella_attestation::dev::DEV_ANCHOR_NAME;
use tessella_attestation::identity::NetworkId;
use tessella_attestation::measurements::{TcbRules, TcbStatusName};
use tessella_attestation::ratls::{report_data_for, ParsedCert, RatlsError};
use tessella_attestation::{clock, Collateral, CollateralStore, Policy, Quote, Verifier};

use crate::report::{CertificateFacts, CollateralSource, Report};

/// Largest evidence file read; real quotes are 5-10 KB.
const MAX_QUOTE_BYTES: u64 = 1 << 20;

#[derive(Parser)]
#[command(
    name = "tessella-verify",
    version,
    about = "Verify Intel TDX evidence offline",
    long_about = "Verify Intel TDX evidence offline against Intel's root, collateral and a policy.\n\n\
                  Exit status: 0 accepted, 1 rejected, 2 bad input or usage."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Verify a TDX quote (binary or hex text; `-` reads standard input).
    Quote(QuoteArgs),
    /// Verify an RA-TLS certificate (PEM or DER): its window, the quote's
    /// binding of its key, validity and network, then the quote.
    Cert(CertArgs),
    /// Write dev-mode sample evidence (dev root, collateral, a quote, an RA-TLS
    /// certificate) to a directory, to try `quote` and `cert` without a TD.
    /// Dev evidence is signed by a PKI derived from a public seed: never trust it.
    DevSample(DevSampleArgs),
}

#[derive(clap::Args)]
struct DevSampleArgs {
    /// Directory to write into (created if missing).
    #[arg(long)]
    out: PathBuf,
    /// Network the certificate is bound to.
    #[arg(long, default_value = "dev")]
    network: String,
    /// Seed of the dev PKI.
    #[arg(long, default_value = "tessella-dev")]
    seed: String,
    /// Make a debug TD's evidence (which every verifier must refuse).
    #[arg(long)]
    debug: bool,
}

#[derive(Clone, Copy, ValueEnum)]
enum PlatformFlag {
    /// PCK certificate of a multi-package platform that can gain packages.
    DynamicPlatform,
    /// Platform keys cached by the registration service.
    CachedKeys,
    /// Hyper-threading enabled.
    Smt,
    /// All three (typical of cloud hosts).
    All,
}

#[derive(clap::Args)]
struct QuoteArgs {
    /// The quote file.
    file: PathBuf,
    /// Require this report_data (128 hex digits).
    #[arg(long = "report-data", value_name = "HEX")]
    report_data: Option<String>,
    #[command(flatten)]
    evidence: EvidenceArgs,
}

#[derive(clap::Args)]
struct CertArgs {
    /// The certificate file (PEM or DER; `-` reads standard input).
    file: PathBuf,
    /// The network the certificate must be bound to, by name.
    #[arg(long, required_unless_present = "network_id")]
    network: Option<String>,
    /// The network by id (64 hex digits), instead of --network.
    #[arg(long = "network-id", value_name = "HEX", conflicts_with = "network")]
    network_id: Option<String>,
    #[command(flatten)]
    evidence: EvidenceArgs,
}

#[derive(clap::Args)]
struct EvidenceArgs {
    /// Collateral: a QuoteCollateralV3 JSON file, or a directory of them (picked by FMSPC).
    #[arg(long, short)]
    collateral: PathBuf,
    /// Measurement policy: a tessella policy file or a flashbots measurements.json.
    /// Without it, measurements are shown but not checked.
    #[arg(long, short)]
    policy: Option<PathBuf>,
    /// Verification time, Unix seconds or RFC 3339 (default: now).
    #[arg(long)]
    now: Option<String>,
    /// Print a JSON report instead of text.
    #[arg(long)]
    json: bool,
    /// Trust this root certificate (PEM or DER) instead of Intel's: for
    /// inspecting dev-mode evidence. Reports name the dev anchor.
    #[arg(long = "dev-root", value_name = "FILE")]
    dev_root: Option<PathBuf>,
    /// Also accept this TCB status (repeatable), e.g. SWHardeningNeeded.
    #[arg(long = "allow-status", value_name = "STATUS")]
    allow_status: Vec<String>,
    /// Accept a PCK platform flag (repeatable).
    #[arg(long = "allow-platform-flag", value_enum, value_name = "FLAG")]
    allow_platform_flag: Vec<PlatformFlag>,
    /// Refuse platforms affected by this advisory (repeatable), e.g. INTEL-SA-00837.
    #[arg(long = "reject-advisory", value_name = "ID")]
    reject_advisory: Vec<String>,
    /// Refuse collateral older than this TCB evaluation data number.
    #[arg(long = "min-tcb-eval", value_name = "N")]
    min_tcb_eval: Option<u32>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Quote(args) => quote(args),
        Command::Cert(args) => cert(args),
        Command::DevSample(args) => dev_sample(args).map(|()| true),
    };
    match result {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            eprintln!("tessella-verify: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn read_bounded(path: &Path, max: u64) -> anyhow::Result<Vec<u8>> {
    let mut buf = Vec::new();
    let read = if path == Path::new("-") {
        std::io::stdin().take(max + 1).read_to_end(&mut buf)
    } else {
        std::fs::File::open(path).and_then(|f| f.take(max + 1).read_to_end(&mut buf))
    };
    read.with_context(|| format!("cannot read {}", path.display()))?;
    if buf.len() as u64 > max {
        bail!("{}: larger than {max} bytes", path.display());
    }
    Ok(buf)
}

fn apply_tcb_flags(tcb: &mut TcbRules, args: &EvidenceArgs) -> anyhow::Result<()> {
    for name in &args.allow_status {
        let status = TcbStatusName::parse(name).with_context(|| {
            let all: Vec<&str> = TcbStatusName::ALL.iter().map(|s| s.as_str()).collect();
            format!("unknown TCB status {name:?} (one of {})", all.join(", "))
        })?;
        if !tcb.allowed_statuses.contains(&status) {
            tcb.allowed_statuses.push(status);
        }
    }
    for flag in &args.allow_platform_flag {
        match flag {
            PlatformFlag::DynamicPlatform => tcb.allow_dynamic_platform = true,
            PlatformFlag::CachedKeys => tcb.allow_cached_keys = true,
            PlatformFlag::Smt => tcb.allow_smt = true,
            PlatformFlag::All => {
                tcb.allow_dynamic_platform = true;
                tcb.allow_cached_keys = true;
                tcb.allow_smt = true;
            }
        }
    }
    tcb.rejected_advisory_ids
        .extend(args.reject_advisory.iter().cloned());
    if let Some(n) = args.min_tcb_eval {
        tcb.min_tcb_eval_data_number = n;
    }
    Ok(())
}

/// Everything but the evidence itself: collateral, policy, time, anchor.
struct Inputs {
    collateral: CollateralSource,
    policy: Policy,
    policy_source: Option<String>,
    now: u64,
    verifier: Verifier,
    json: bool,
}

fn inputs(args: &EvidenceArgs) -> anyhow::Result<Inputs> {
    let collateral = if args.collateral.is_dir() {
        let store = CollateralStore::new();
        let outcomes = store
            .load_dir(&args.collateral)
            .with_context(|| format!("cannot list {}", args.collateral.display()))?;
        for o in &outcomes {
            if let Err(e) = &o.result {
                eprintln!("tessella-verify: skipped {}: {e}", o.path.display());
            }
        }
        if store.is_empty() {
            bail!(
                "{}: no collateral bundles (*.json) found",
                args.collateral.display()
            );
        }
        CollateralSource::Store(store)
    } else {
        let json = read_bounded(&args.collateral, MAX_COLLATERAL_BYTES as u64)?;
        let c = Collateral::from_json(&json)
            .with_context(|| format!("{}", args.collateral.display()))?;
        CollateralSource::File(Box::new(c))
    };

    let (mut policy, policy_source) = match &args.policy {
        Some(path) => {
            let (p, notes) = Policy::from_file(path)?;
            for note in notes {
                eprintln!("tessella-verify: {}: {note}", path.display());
            }
            (p, Some(path.display().to_string()))
        }
        None => (
            Policy::insecure_unpinned_measurements(TcbRules::default()),
            None,
        ),
    };
    apply_tcb_flags(policy.tcb_mut(), args)?;

    let now = match &args.now {
        Some(text) => clock::parse_time(text)
            .with_context(|| format!("--now {text:?}: not Unix seconds or RFC 3339"))?,
        None => clock::now_unix(),
    };
    let verifier = match &args.dev_root {
        Some(path) => {
            let bytes = read_bounded(path, 64 * 1024)?;
            let der = der_from_pem_or_der(&bytes, "CERTIFICATE")
                .with_context(|| format!("--dev-root {}", path.display()))?;
            Verifier::with_root(DEV_ANCHOR_NAME, der)
        }
        None => Verifier::intel(),
    };
    Ok(Inputs {
        collateral,
        policy,
        policy_source,
        now,
        verifier,
        json: args.json,
    })
}

impl Inputs {
    /// Verify `quote` with these inputs and describe the outcome.
    fn report(
        self,
        file: &Path,
        quote: &Quote,
        report_data: Option<&[u8; 64]>,
        certificate: Option<CertificateFacts>,
    ) -> Report {
        Report::build(
            file,
            quote,
            &self.collateral,
            &self.verifier,
            &self.policy,
            self.policy_source,
            self.now,
            report_data,
            certificate,
        )
    }
}

/// Accept a PEM block of `label` or raw DER.
fn der_from_pem_or_der(bytes: &[u8], label: &str) -> anyhow::Result<Vec<u8>> {
    if bytes.trim_ascii_start().starts_with(b"-----BEGIN") {
        let block = pem::parse(bytes).context("not valid PEM")?;
        if block.tag() != label {
            bail!("PEM block is {:?}, expected {label:?}", block.tag());
        }
        Ok(block.into_contents())
    } else if bytes.first() == Some(&0x30) {
        Ok(bytes.to_vec())
    } else {
        bail!("neither PEM nor DER")
    }
}

fn print(report: &Report, json: bool) {
    if json {
        println!("{}", report.to_json());
    } else {
        print!("{}", report.to_text());
    }
}

fn quote(args: QuoteArgs) -> anyhow::Result<bool> {
    let bytes = read_bounded(&args.file, MAX_QUOTE_BYTES)?;
    let quote = Quote::decode(&bytes)
        .with_context(|| format!("{}: not a usable TDX quote", args.file.display()))?;
    let ctx = inputs(&args.evidence)?;
    let report_data = match &args.report_data {
        Some(text) => {
            let v = hex::decode(text.trim().trim_start_matches("0x"))
                .ok()
                .and_then(|v| <[u8; 64]>::try_from(v).ok())
                .context("--report-data: expected 128 hex digits")?;
            Some(v)
        }
        None => None,
    };
    let json = ctx.json;
    let report = ctx.report(&args.file, &quote, report_data.as_ref(), None);
    print(&report, json);
    Ok(report.accepted)
}

fn cert(args: CertArgs) -> anyhow::Result<bool> {
    let bytes = read_bounded(&args.file, MAX_QUOTE_BYTES)?;
    let der = der_from_pem_or_der(&bytes, "CERTIFICATE")
        .with_context(|| format!("{}: not a certificate", args.file.display()))?;
    let network = match (&args.network, &args.network_id) {
        (Some(name), _) => NetworkId::from_name(name),
        (None, Some(hex)) => hex
            .parse::<NetworkId>()
            .ok()
            .context("--network-id: expected 64 hex digits")?,
        (None, None) => bail!("give --network or --network-id"),
    };
    let ctx = inputs(&args.evidence)?;
    let parsed = match ParsedCert::parse(&der) {
        Ok(p) => p,
        Err(e @ RatlsError::BadCertificate(_)) => bail!("{}: {e}", args.file.display()),
        Err(e) => {
            // A well-formed certificate that is not RA-TLS evidence: refused.
            let (code, message) = (e.code(), e.to_string());
            if ctx.json {
                let report = serde_json::json!({
                    "report_version": 1,
                    "accepted": false,
                    "quote": null,
                    "reasons": [{"stage": "certificate", "code": code, "message": message}],
                });
                println!("{report:#}");
            } else {
                println!("REJECTED: {message}\nreasons\n  - [{code}] {message}");
            }
            return Ok(false);
        }
    };
    let quote = Quote::decode(&parsed.quote)
        .with_context(|| format!("{}: the embedded quote", args.file.display()))?;
    let mut refusals = Vec::new();
    if let Err(e) = parsed.check(&network, ctx.now) {
        refusals.push((e.code(), e.to_string()));
    }
    let binding = report_data_for(&parsed.spki, parsed.not_before, parsed.not_after, &network);
    let facts = CertificateFacts {
        json: serde_json::json!({
            "node_id": parsed.node_id,
            "not_before": clock::format_rfc3339(parsed.not_before),
            "not_after": clock::format_rfc3339(parsed.not_after),
            "network": args.network.clone().unwrap_or_default(),
            "network_id": network,
            "binding_ok": quote.report_data() == binding,
        }),
        refusals,
    };
    let json = ctx.json;
    let report = ctx.report(&args.file, &quote, Some(&binding), Some(facts));
    print(&report, json);
    Ok(report.accepted)
}

fn dev_sample(args: DevSampleArgs) -> anyhow::Result<()> {
    use std::sync::Arc;
    use tessella_attestation::dev::{DevPki, DevQuoteProvider, DevTd};

    let pki = Arc::new(DevPki::generate(args.seed.as_bytes()).context("dev PKI")?);
    let mut td = DevTd::named("tessella-dev-node");
    if args.debug {
        td = td.debug();
    }
    let now = clock::now_unix();
    let provider = DevQuoteProvider::new(pki.clone(), td);
    let identity = tessella_attestation::ratls::issue(
        &provider,
        &NetworkId::from_name(&args.network),
        now,
        24 * 3600,
    )
    .context("issuing the RA-TLS certificate")?;
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("cannot create {}", args.out.display()))?;
    let write = |name: &str, bytes: &[u8]| -> anyhow::Result<()> {
        let path = args.out.join(name);
        std::fs::write(&path, bytes).with_context(|| format!("cannot write {}", path.display()))
    };
    write("dev-root.pem", pki.root_pem().as_bytes())?;
    write("dev-collateral.json", &pki.collateral().to_json())?;
    write("dev-quote.bin", &pki.quote(&td, &[0; 64]))?;
    write("node-cert.pem", identity.cert_pem().as_bytes())?;
    println!(
        "wrote dev-root.pem, dev-collateral.json, dev-quote.bin and node-cert.pem to {}\n\
         node {} on network {:?}, certificate valid for 24 h\n\
         try: tessella-verify cert {}/node-cert.pem --network {} -c {}/dev-collateral.json --dev-root {}/dev-root.pem",
        args.out.display(),
        identity.node_id(),
        args.network,
        args.out.display(),
        args.network,
        args.out.display(),
        args.out.display()
    );
    Ok(())
}

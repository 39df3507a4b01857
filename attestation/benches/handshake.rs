//! Full QUIC handshakes on loopback, RA-TLS beside plain TLS, and the verdict
//! cache on its own.
//!
//! Three handshake kinds, in interleaved rounds of the same run so machine
//! noise hits all of them:
//! - **ratls cold**: fresh `RatlsVerifier`s on both sides for every handshake,
//!   so each side verifies the other's quote (dcap-qvl, policy) in full;
//! - **ratls cached**: the same verifiers and certificates every time, so
//!   each side's verdict comes from its cache;
//! - **plain**: quinn + rustls (ring) with a self-signed rcgen P-256
//!   certificate on each side, pinned by the peer, TLS 1.3 signatures
//!   checked with `rustls::crypto::verify_tls13_signature`.
//!
//! All three are mutual TLS (each side presents and checks a certificate) and
//! all are full handshakes: TLS session resumption is off everywhere (RA-TLS
//! turns it off because a resumed session would skip the verifier). Each
//! sample runs from `connect` until both the client and the server report the
//! connection established. One current-thread tokio runtime drives both ends.
//!
//! Then: cached verdicts per second through `RatlsVerifier::verify_cert`
//! (fingerprint, look-up, DER comparison), `VerdictCache::get` alone and the
//! fingerprint alone; and what issuing a certificate costs (key, quote,
//! self-signature), which happens at start and renewal, never in a handshake.
//!
//! Run: `cargo bench -p tessella-attestation --bench handshake`
//! (`TESSELLA_BENCH_ROUNDS`, `TESSELLA_BENCH_ITERS` (handshakes per kind per
//! round), `TESSELLA_BENCH_LOOKUPS` (cache loop length) change the effort.)
//! Targets: cached p50 <= 1.5x plain p50; >= 1M cached verdicts per second.

mod stats;

use stats::{env_usize, median, percentile, time_per_iter};

use std::hint::black_box;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use quinn::crypto::rustls::{QuicClientConfig, QuicServerConfig};
use quinn::{ClientConfig, Endpoint, ServerConfig, VarInt};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{DigitallySignedStruct, DistinguishedName, SignatureScheme};
use tessella_attestation::clock::ManualClock;
use tessella_attestation::dev::{DevPki, DevQuoteProvider, DevTd};
use tessella_attestation::identity::NetworkId;
use tessella_attestation::measurements::{MeasurementPolicy, PolicyEntry, TcbRules};
use tessella_attestation::ratls::{self, CertResolver, Fingerprint, RatlsVerifier};
use tessella_attestation::{CollateralStore, Policy, QuoteProvider};

const NOW: u64 = 1_800_000_000;
const DAY: u64 = 86_400;
const ALPN: &[u8] = b"tessella/1";

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// One dev cluster: PKI, allow-listed TD, network, collateral, policy, clock.
struct Dev {
    pki: Arc<DevPki>,
    network: NetworkId,
    store: Arc<CollateralStore>,
    policy: Arc<Policy>,
    clock: Arc<ManualClock>,
    provider: DevQuoteProvider,
}

impl Dev {
    fn new() -> Dev {
        let pki = Arc::new(DevPki::generate(b"handshake bench").expect("dev pki"));
        let td = DevTd::named("node");
        let store = Arc::new(CollateralStore::new());
        store.insert(pki.collateral().clone());
        let policy = Arc::new(Policy::new(
            MeasurementPolicy::new(
                vec![PolicyEntry::new("dev", vec![td.measurements.mrtd])],
                TcbRules::default(),
            )
            .expect("policy"),
        ));
        Dev {
            provider: DevQuoteProvider::new(pki.clone(), td),
            pki,
            network: NetworkId::from_name("bench"),
            store,
            policy,
            clock: Arc::new(ManualClock::new(NOW)),
        }
    }

    fn verifier(&self) -> Arc<RatlsVerifier> {
        RatlsVerifier::new(
            self.pki.verifier(),
            self.store.clone(),
            self.policy.clone(),
            self.network,
            self.clock.clone(),
        )
    }

    fn identity(&self) -> Arc<CertResolver> {
        let id = ratls::issue(&self.provider, &self.network, NOW, DAY).expect("issue");
        CertResolver::new(id).expect("resolver")
    }
}

fn ratls_server(id: &Arc<CertResolver>, verifier: Arc<RatlsVerifier>) -> ServerConfig {
    let mut tls = ratls::server_config(id.clone(), verifier).expect("server tls");
    tls.alpn_protocols = vec![ALPN.to_vec()];
    ServerConfig::with_crypto(Arc::new(
        QuicServerConfig::try_from(tls).expect("quic server"),
    ))
}

fn ratls_client(id: &Arc<CertResolver>, verifier: Arc<RatlsVerifier>) -> ClientConfig {
    let mut tls = ratls::client_config(id.clone(), verifier).expect("client tls");
    tls.alpn_protocols = vec![ALPN.to_vec()];
    ClientConfig::new(Arc::new(
        QuicClientConfig::try_from(tls).expect("quic client"),
    ))
}

/// Plain TLS peer check: the certificate must be the pinned one; the
/// handshake signature is checked by rustls' ring code, as RA-TLS does.
#[derive(Debug)]
struct Pinned {
    cert: CertificateDer<'static>,
    algorithms: WebPkiSupportedAlgorithms,
}

impl Pinned {
    fn new(cert: CertificateDer<'static>) -> Arc<Pinned> {
        Arc::new(Pinned {
            cert,
            algorithms: rustls::crypto::ring::default_provider().signature_verification_algorithms,
        })
    }

    fn check(&self, end_entity: &CertificateDer<'_>) -> Result<(), rustls::Error> {
        if end_entity.as_ref() == self.cert.as_ref() {
            Ok(())
        } else {
            Err(rustls::Error::InvalidCertificate(
                rustls::CertificateError::UnknownIssuer,
            ))
        }
    }
}

impl ServerCertVerifier for Pinned {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        self.check(end_entity)?;
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Err(rustls::Error::PeerIncompatible(
            rustls::PeerIncompatible::Tls12NotOffered,
        ))
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

impl ClientCertVerifier for Pinned {
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        self.check(end_entity)?;
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Err(rustls::Error::PeerIncompatible(
            rustls::PeerIncompatible::Tls12NotOffered,
        ))
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

/// A self-signed P-256 certificate (the key type RA-TLS uses) and its key.
fn plain_cert() -> (CertificateDer<'static>, PrivateKeyDer<'static>) {
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("key");
    let params = rcgen::CertificateParams::new(vec!["tessella".to_string()]).expect("params");
    let cert = params.self_signed(&key).expect("self-signed");
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
    (cert.der().clone(), key)
}

/// Mutual plain TLS 1.3 on ring, no resumption, like the RA-TLS configs.
fn plain_configs() -> (ClientConfig, ServerConfig, usize) {
    let (server_cert, server_key) = plain_cert();
    let (client_cert, client_key) = plain_cert();
    let cert_len = server_cert.len();
    let mut server = rustls::ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .expect("tls13")
        .with_client_cert_verifier(Pinned::new(client_cert.clone()))
        .with_single_cert(vec![server_cert.clone()], server_key)
        .expect("server cert");
    server.send_tls13_tickets = 0;
    server.alpn_protocols = vec![ALPN.to_vec()];
    let mut client = rustls::ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .expect("tls13")
        .dangerous()
        .with_custom_certificate_verifier(Pinned::new(server_cert))
        .with_client_auth_cert(vec![client_cert], client_key)
        .expect("client cert");
    client.resumption = rustls::client::Resumption::disabled();
    client.alpn_protocols = vec![ALPN.to_vec()];
    (
        ClientConfig::new(Arc::new(
            QuicClientConfig::try_from(client).expect("quic client"),
        )),
        ServerConfig::with_crypto(Arc::new(
            QuicServerConfig::try_from(server).expect("quic server"),
        )),
        cert_len,
    )
}

fn loopback() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 0))
}

/// Seconds from `connect` until both sides are established.
async fn handshake(client: &Endpoint, server: &Endpoint, config: ClientConfig) -> f64 {
    let addr = server.local_addr().expect("server addr");
    let start = Instant::now();
    let connecting = client
        .connect_with(config, addr, "tessella")
        .expect("connect");
    let accept = async {
        let incoming = server.accept().await.expect("incoming");
        incoming.await
    };
    let (c, s) = tokio::join!(connecting, accept);
    let elapsed = start.elapsed().as_secs_f64();
    let (c, s) = (c.expect("client handshake"), s.expect("server handshake"));
    c.close(VarInt::from_u32(0), b"bench");
    drop(s);
    elapsed
}

struct Kind {
    name: &'static str,
    samples: Vec<f64>,
    round_medians: Vec<f64>,
}

impl Kind {
    fn new(name: &'static str) -> Kind {
        Kind {
            name,
            samples: Vec::new(),
            round_medians: Vec::new(),
        }
    }

    fn record(&mut self, mut round: Vec<f64>) {
        self.samples.extend_from_slice(&round);
        self.round_medians.push(median(&mut round));
    }

    fn sorted(&self) -> Vec<f64> {
        let mut s = self.samples.clone();
        s.sort_by(|a, b| a.total_cmp(b));
        s
    }
}

fn main() {
    let rounds = env_usize("TESSELLA_BENCH_ROUNDS", 15);
    let iters = env_usize("TESSELLA_BENCH_ITERS", 20);
    let lookups = env_usize("TESSELLA_BENCH_LOOKUPS", 1_000_000);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    rt.block_on(handshakes(rounds, iters));
    cache_loops(lookups);
    issuing();
}

async fn handshakes(rounds: usize, iters: usize) {
    let dev = Dev::new();
    let (server_id, client_id) = (dev.identity(), dev.identity());
    let ratls_cert_len = server_id.current().cert_der().len();

    // Cached: one pair of verifiers for the whole run.
    let cached_server =
        Endpoint::server(ratls_server(&server_id, dev.verifier()), loopback()).expect("bind");
    let cached_client = ratls_client(&client_id, dev.verifier());
    // Cold: the server's config (and so its verifier) is replaced before
    // every handshake, the client's is new for every handshake.
    let cold_server =
        Endpoint::server(ratls_server(&server_id, dev.verifier()), loopback()).expect("bind");
    let (plain_client, plain_server_config, plain_cert_len) = plain_configs();
    let plain_server = Endpoint::server(plain_server_config, loopback()).expect("bind");
    let client = Endpoint::client(loopback()).expect("bind client");

    // Warm up: fills the cached verifiers, the allocator, the sockets.
    for _ in 0..5 {
        handshake(&client, &cached_server, cached_client.clone()).await;
        handshake(&client, &plain_server, plain_client.clone()).await;
        cold_server.set_server_config(Some(ratls_server(&server_id, dev.verifier())));
        handshake(
            &client,
            &cold_server,
            ratls_client(&client_id, dev.verifier()),
        )
        .await;
    }

    let mut kinds = [
        Kind::new("ratls cold"),
        Kind::new("ratls cached"),
        Kind::new("plain"),
    ];
    for round in 0..rounds {
        // Rotate the order so drift does not favour one kind.
        for k in 0..3 {
            let kind = (round + k) % 3;
            let mut samples = Vec::with_capacity(iters);
            for _ in 0..iters {
                let t = match kind {
                    0 => {
                        cold_server
                            .set_server_config(Some(ratls_server(&server_id, dev.verifier())));
                        let config = ratls_client(&client_id, dev.verifier());
                        handshake(&client, &cold_server, config).await
                    }
                    1 => handshake(&client, &cached_server, cached_client.clone()).await,
                    _ => handshake(&client, &plain_server, plain_client.clone()).await,
                };
                samples.push(t);
            }
            kinds[kind].record(samples);
        }
    }

    println!(
        "QUIC handshakes on loopback, mutual TLS 1.3 both ways, no resumption, one current-thread \
         runtime; {rounds} rounds x {iters} per kind, interleaved"
    );
    println!(
        "certificates: RA-TLS {ratls_cert_len} bytes (dev quote inside), plain {plain_cert_len} bytes"
    );
    println!(
        "{:<14} {:>10} {:>10} {:>10} {:>12}",
        "kind", "p50 us", "p99 us", "max us", "handshakes/s"
    );
    let mut p = Vec::new();
    for kind in &kinds {
        let s = kind.sorted();
        let (p50, p99) = (percentile(&s, 50.0), percentile(&s, 99.0));
        println!(
            "{:<14} {:>10.0} {:>10.0} {:>10.0} {:>12.0}",
            kind.name,
            p50 * 1e6,
            p99 * 1e6,
            s[s.len() - 1] * 1e6,
            1.0 / p50
        );
        p.push((p50, p99));
        stats::bench_line("handshake", &format!("{}_p50", kind.name), p50 * 1e6, "us");
        stats::bench_line("handshake", &format!("{}_p99", kind.name), p99 * 1e6, "us");
        let max = s[s.len() - 1] * 1e6;
        stats::bench_line("handshake", &format!("{}_max", kind.name), max, "us");
        let rate = 1.0 / p50;
        stats::bench_line("handshake", &format!("{}_per_s", kind.name), rate, "per_s");
    }
    let mut round_ratios: Vec<f64> = kinds[1]
        .round_medians
        .iter()
        .zip(&kinds[2].round_medians)
        .map(|(c, p)| c / p)
        .collect();
    println!(
        "cached/plain: p50 {:.2}x, p99 {:.2}x, median of per-round median ratios {:.2}x (target <= 1.5x)",
        p[1].0 / p[2].0,
        p[1].1 / p[2].1,
        median(&mut round_ratios)
    );
    stats::bench_line(
        "handshake",
        "cached_over_plain_p50",
        p[1].0 / p[2].0,
        "ratio",
    );
    let ratios = [
        ("cached_over_plain_p99", p[1].1 / p[2].1),
        ("cached_over_plain_round_median", median(&mut round_ratios)),
        ("cold_over_plain_p50", p[0].0 / p[2].0),
        ("cold_over_plain_p99", p[0].1 / p[2].1),
    ];
    for (figure, value) in ratios {
        stats::bench_line("handshake", figure, value, "ratio");
    }
    println!(
        "cold/plain:   p50 {:.2}x, p99 {:.2}x (two full quote verifications per handshake)",
        p[0].0 / p[2].0,
        p[0].1 / p[2].1
    );
    client.wait_idle().await;
}

fn cache_loops(lookups: usize) {
    let dev = Dev::new();
    let id = dev.identity().current();
    let cert = id.cert_der().clone();
    let verifier = dev.verifier();
    verifier.verify_cert(cert.as_ref()).expect("admitted");
    let cache = verifier.cache();

    let t_verify = time_per_iter(lookups, || {
        black_box(
            verifier
                .verify_cert(black_box(cert.as_ref()))
                .expect("cached"),
        );
    });
    let t_get = time_per_iter(lookups, || {
        black_box(cache.get(black_box(cert.as_ref()), NOW).expect("cached"));
    });
    let t_key = time_per_iter(lookups, || {
        black_box(Fingerprint::of(black_box(cert.as_ref())));
    });
    // For comparison: hashing the whole certificate (what a hash-keyed cache
    // would pay per look-up) and the DER equality the cache checks on a hit.
    let t_blake3 = time_per_iter(lookups, || {
        black_box(blake3::hash(black_box(cert.as_ref())));
    });
    let copy = cert.to_vec();
    let t_eq = time_per_iter(lookups, || {
        black_box(black_box(copy.as_slice()) == black_box(cert.as_ref()));
    });
    let cold_iters = (lookups / 10_000).max(20);
    let t_cold = time_per_iter(cold_iters, || {
        black_box(dev.verifier().verify_cert(cert.as_ref()).expect("admitted"));
    });
    println!();
    println!("verdicts from the cache, {lookups} iterations each, one thread");
    println!("{:<44} {:>12} {:>10}", "operation", "per second", "ns each");
    for (name, t) in [
        ("RatlsVerifier::verify_cert, cached", t_verify),
        ("  Fingerprint::of (length + last 64 bytes)", t_key),
        ("  VerdictCache::get", t_get),
        ("RatlsVerifier::verify_cert, cold (new verifier)", t_cold),
        ("for comparison: BLAKE3 of the whole cert", t_blake3),
        ("  DER equality (memcmp, part of every hit)", t_eq),
    ] {
        println!("{:<44} {:>12.0} {:>10.0}", name, 1.0 / t, t * 1e9);
        let figure: String = name
            .trim()
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
            .collect();
        stats::bench_line("handshake", &figure, 1.0 / t, "per_s");
    }
    println!(
        "target: cached verify_cert >= 1,000,000/s ({} byte certificate)",
        cert.len()
    );
}

fn issuing() {
    let dev = Dev::new();
    let iters = 50;
    let report_data = [7u8; 64];
    let mut quote = Vec::with_capacity(iters);
    let mut issue = Vec::with_capacity(iters);
    let mut resolver = Vec::with_capacity(iters);
    for _ in 0..iters {
        let start = Instant::now();
        black_box(dev.provider.quote(black_box(&report_data)).expect("quote"));
        quote.push(start.elapsed().as_secs_f64());
        let start = Instant::now();
        let id = ratls::issue(&dev.provider, &dev.network, NOW, DAY).expect("issue");
        issue.push(start.elapsed().as_secs_f64());
        let start = Instant::now();
        black_box(CertResolver::new(id).expect("resolver"));
        resolver.push(start.elapsed().as_secs_f64());
    }
    println!();
    println!("issuing a certificate (at start and at renewal, never during a handshake), median of {iters}");
    println!(
        "  dev quote alone                       {:>8.0} us",
        median(&mut quote) * 1e6
    );
    println!(
        "  ratls::issue (key + quote + cert)     {:>8.0} us",
        median(&mut issue) * 1e6
    );
    println!(
        "  CertResolver::new (load the key)      {:>8.0} us",
        median(&mut resolver) * 1e6
    );
    println!("  (a hardware TDX quote through configfs takes tens of ms instead of the dev quote)");
    stats::bench_line(
        "handshake",
        "dev_quote_median",
        median(&mut quote) * 1e6,
        "us",
    );
    let resolver_us = median(&mut resolver) * 1e6;
    stats::bench_line("handshake", "cert_resolver_new_median", resolver_us, "us");
    stats::bench_line(
        "handshake",
        "issue_cert_median",
        median(&mut issue) * 1e6,
        "us",
    );
}

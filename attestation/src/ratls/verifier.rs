//! rustls verifiers that admit a peer only on verified TDX evidence.
//!
//! Both directions share one [`RatlsVerifier`]: parse the certificate, check
//! its window against the injected clock, recompute the report_data binding,
//! verify the quote under the trust anchor with collateral from the local
//! store (no network), apply the policy, then let rustls (ring) check the
//! TLS 1.3 handshake signature. Verdicts are cached by SHA-256 of the
//! certificate until the earlier of the certificate's and the evidence's
//! expiry, so reconnecting peers cost a hash and a map look-up.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, RwLock};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{CertificateError, DigitallySignedStruct, DistinguishedName, SignatureScheme};
use serde::Serialize;
use tessella_measurements::TdMeasurements;

use super::cert::{CertResolver, ParsedCert, RatlsError};
use crate::clock::Clock;
use crate::collateral::CollateralStore;
use crate::identity::{NetworkId, NodeId};
use crate::policy::Policy;
use crate::quote::{Fmspc, Quote};
use crate::verify::Verifier;

/// Verdicts kept by default; beyond it, the soonest-expiring are dropped.
/// Each holds its certificate (about 5 KB), so the cache stays under 6 MB.
pub const DEFAULT_CACHE_CAPACITY: usize = 1024;

/// What the application learns about a verified peer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PeerIdentity {
    /// The peer's node id (from its TLS key).
    pub node_id: NodeId,
    /// Its verified measurements.
    pub measurements: TdMeasurements,
    /// The policy entry that admitted it (`None` under an unpinned policy).
    pub matched_entry: Option<String>,
    /// Its platform's TCB status.
    pub tcb_status: String,
    /// Advisories that apply to its platform.
    pub advisory_ids: Vec<String>,
    /// Its platform model.
    pub fmspc: Fmspc,
    /// The trust anchor the quote chains to.
    pub anchor: String,
    /// When the certificate starts being valid.
    pub cert_not_before: u64,
    /// When the certificate expires.
    pub cert_not_after: u64,
    /// When this verdict expires (the earlier of certificate and evidence).
    pub verdict_expires: u64,
}

/// A cheap hash-table key for a certificate: its length and its last 64
/// bytes (inside the signature, which differs for every certificate). It only
/// picks the slot; a hit also requires the whole DER to be equal, so a
/// collision can cost a verification, never admit the wrong certificate.
/// Hashing the whole 5 KB certificate would dominate a cached look-up.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct Fingerprint {
    len: usize,
    tail: [u8; 64],
}

impl Fingerprint {
    /// The fingerprint of a DER certificate.
    pub fn of(cert_der: &[u8]) -> Fingerprint {
        let mut tail = [0u8; 64];
        let n = cert_der.len().min(64);
        tail[64 - n..].copy_from_slice(&cert_der[cert_der.len() - n..]);
        Fingerprint {
            len: cert_der.len(),
            tail,
        }
    }
}

struct CacheEntry {
    der: Box<[u8]>,
    identity: Arc<PeerIdentity>,
}

/// Verified identities by certificate, bounded.
pub struct VerdictCache {
    entries: RwLock<HashMap<Fingerprint, CacheEntry>>,
    capacity: usize,
}

impl fmt::Debug for VerdictCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VerdictCache")
            .field("len", &self.len())
            .field("capacity", &self.capacity)
            .finish()
    }
}

impl VerdictCache {
    /// A cache holding at most `capacity` verdicts.
    pub fn new(capacity: usize) -> Self {
        VerdictCache {
            entries: RwLock::new(HashMap::new()),
            capacity: capacity.max(1),
        }
    }

    /// The verdict for exactly this certificate, if still valid at `now`.
    pub fn get(&self, cert_der: &[u8], now: u64) -> Option<Arc<PeerIdentity>> {
        let map = self.entries.read().unwrap_or_else(|p| p.into_inner());
        map.get(&Fingerprint::of(cert_der))
            .filter(|e| *e.der == *cert_der)
            .map(|e| &e.identity)
            .filter(|id| id.cert_not_before <= now && now <= id.verdict_expires)
            .cloned()
    }

    fn insert(&self, cert_der: &[u8], identity: Arc<PeerIdentity>, now: u64) {
        let key = Fingerprint::of(cert_der);
        let mut map = self.entries.write().unwrap_or_else(|p| p.into_inner());
        if map.len() >= self.capacity && !map.contains_key(&key) {
            map.retain(|_, e| now <= e.identity.verdict_expires);
            if map.len() >= self.capacity {
                // Evict the verdict that would expire first.
                if let Some(victim) = map
                    .iter()
                    .min_by_key(|(_, e)| e.identity.verdict_expires)
                    .map(|(k, _)| *k)
                {
                    map.remove(&victim);
                }
            }
        }
        map.insert(
            key,
            CacheEntry {
                der: cert_der.into(),
                identity,
            },
        );
    }

    /// Number of cached verdicts.
    pub fn len(&self) -> usize {
        self.entries.read().unwrap_or_else(|p| p.into_inner()).len()
    }

    /// True when empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The shared verification core of both rustls verifiers.
pub struct RatlsVerifier {
    verifier: Verifier,
    store: Arc<CollateralStore>,
    policy: Arc<Policy>,
    network: NetworkId,
    clock: Arc<dyn Clock>,
    cache: VerdictCache,
    algorithms: WebPkiSupportedAlgorithms,
    /// Quotes refused only for lack of collateral, by FMSPC (bounded): with
    /// one, collateral relayed by a peer can be verified before it is stored.
    wanted: std::sync::Mutex<HashMap<Fmspc, Quote>>,
}

/// Platform models remembered as lacking collateral.
const MAX_WANTED: usize = 16;

impl fmt::Debug for RatlsVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RatlsVerifier")
            .field("anchor", self.verifier.anchor())
            .field("network", &self.network)
            .field("cached", &self.cache.len())
            .finish_non_exhaustive()
    }
}

impl RatlsVerifier {
    /// A verifier for peers of `network`, trusting `verifier`'s anchor,
    /// collateral from `store`, admitting by `policy`, timed by `clock`.
    pub fn new(
        verifier: Verifier,
        store: Arc<CollateralStore>,
        policy: Arc<Policy>,
        network: NetworkId,
        clock: Arc<dyn Clock>,
    ) -> Arc<Self> {
        Arc::new(RatlsVerifier {
            verifier,
            store,
            policy,
            network,
            clock,
            cache: VerdictCache::new(DEFAULT_CACHE_CAPACITY),
            algorithms: rustls::crypto::ring::default_provider().signature_verification_algorithms,
            wanted: std::sync::Mutex::new(HashMap::new()),
        })
    }

    /// The verdict cache.
    pub fn cache(&self) -> &VerdictCache {
        &self.cache
    }

    /// The quote verifier (trust anchor).
    pub fn quote_verifier(&self) -> &Verifier {
        &self.verifier
    }

    /// The collateral store verification reads.
    pub fn store(&self) -> &Arc<CollateralStore> {
        &self.store
    }

    /// Platform models a peer was refused for because no collateral was at
    /// hand, with the refused quote (to verify relayed collateral against).
    pub fn wanted_collateral(&self) -> Vec<(Fmspc, Quote)> {
        let wanted = self.wanted.lock().unwrap_or_else(|p| p.into_inner());
        wanted.iter().map(|(f, q)| (*f, q.clone())).collect()
    }

    /// Forget a wanted platform once its collateral is stored.
    pub fn collateral_found(&self, fmspc: &Fmspc) {
        self.wanted
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(fmspc);
    }

    /// The network peers must be bound to.
    pub fn network(&self) -> &NetworkId {
        &self.network
    }

    /// The identity behind a certificate the handshake already verified
    /// (for the application after the handshake): a cache look-up.
    pub fn peer_identity(&self, cert_der: &[u8]) -> Option<Arc<PeerIdentity>> {
        self.cache.get(cert_der, self.clock.now_unix())
    }

    /// Verify a peer certificate at the clock's time, using the cache.
    pub fn verify_cert(&self, cert_der: &[u8]) -> Result<Arc<PeerIdentity>, RatlsError> {
        let now = self.clock.now_unix();
        if let Some(hit) = self.cache.get(cert_der, now) {
            return Ok(hit);
        }
        let result = self.verify_uncached(cert_der, now);
        match &result {
            Ok(id) => {
                tracing::info!(peer = %id.node_id, entry = ?id.matched_entry, tcb = %id.tcb_status, "peer admitted");
                self.cache.insert(cert_der, id.clone(), now);
            }
            Err(e) => tracing::warn!(code = e.code(), reason = %e, "peer certificate refused"),
        }
        result
    }

    fn verify_uncached(&self, cert_der: &[u8], now: u64) -> Result<Arc<PeerIdentity>, RatlsError> {
        let parsed = ParsedCert::parse(cert_der)?;
        let report_data = parsed.check(&self.network, now)?;
        let quote = Quote::decode(&parsed.quote).map_err(crate::VerifyError::from)?;
        if quote.report_data() != report_data {
            return Err(RatlsError::Binding);
        }
        let verified = self
            .verifier
            .verify_in(&quote, &self.store, &self.policy, now, Some(&report_data))
            .inspect_err(|e| {
                if let crate::VerifyError::NoCollateral { fmspc } = e {
                    let mut wanted = self.wanted.lock().unwrap_or_else(|p| p.into_inner());
                    if wanted.len() < MAX_WANTED || wanted.contains_key(fmspc) {
                        wanted.insert(*fmspc, quote.clone());
                    }
                }
            })?;
        let a = verified.attested();
        Ok(Arc::new(PeerIdentity {
            node_id: parsed.node_id,
            measurements: a.measurements(),
            matched_entry: verified.matched_entry().map(|e| e.id.clone()),
            tcb_status: a.tcb_status().to_string(),
            advisory_ids: a.advisory_ids().to_vec(),
            fmspc: a.fmspc(),
            anchor: self.verifier.anchor().to_string(),
            cert_not_before: parsed.not_before,
            cert_not_after: parsed.not_after,
            verdict_expires: parsed.not_after.min(a.valid_window().not_after),
        }))
    }

    fn check(&self, end_entity: &CertificateDer<'_>) -> Result<(), rustls::Error> {
        self.verify_cert(end_entity.as_ref())
            .map(|_| ())
            .map_err(to_rustls)
    }
}

/// What a refused peer is told: the stable code only. rustls renders the
/// error with `Debug` into the TLS alert's close reason, which reaches the
/// peer; the full account (which may name our allow-list) stays in our log.
struct Refusal(RatlsError);

impl fmt::Debug for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0.code())
    }
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

impl std::error::Error for Refusal {}

/// Map a refusal onto rustls: expiry keeps its own alert, everything else
/// carries the refusal (code for the peer, full error for local callers via
/// [`refusal_of`]).
fn to_rustls(e: RatlsError) -> rustls::Error {
    let cert_error = match e {
        RatlsError::Expired { .. } => CertificateError::Expired,
        RatlsError::NotYetValid { .. } => CertificateError::NotValidYet,
        other => CertificateError::Other(rustls::OtherError(Arc::new(Refusal(other)))),
    };
    rustls::Error::InvalidCertificate(cert_error)
}

/// The typed reason inside a rustls error produced by these verifiers.
pub fn refusal_of(e: &rustls::Error) -> Option<&RatlsError> {
    match e {
        rustls::Error::InvalidCertificate(CertificateError::Other(other)) => {
            other.0.downcast_ref::<Refusal>().map(|r| &r.0)
        }
        _ => None,
    }
}

/// Only TLS 1.3 is configured; a TLS 1.2 signature check cannot be reached.
const TLS12_REFUSED: rustls::Error =
    rustls::Error::PeerIncompatible(rustls::PeerIncompatible::Tls12NotOffered);

impl RatlsVerifier {
    /// The TLS 1.3 handshake signature, checked by ring against the
    /// certificate's key (the key the quote binds).
    fn tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }
}

/// Client side: verifies the server's certificate.
#[derive(Debug)]
pub struct RatlsServerVerifier(pub Arc<RatlsVerifier>);

impl ServerCertVerifier for RatlsServerVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        // Identity is the attested key, not a name; RA-TLS certs are self-signed.
        if !intermediates.is_empty() {
            return Err(rustls::Error::InvalidCertificate(
                CertificateError::BadEncoding,
            ));
        }
        self.0.check(end_entity)?;
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Err(TLS12_REFUSED)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.algorithms.supported_schemes()
    }
}

/// Server side: verifies the client's certificate (mandatory).
#[derive(Debug)]
pub struct RatlsClientVerifier(pub Arc<RatlsVerifier>);

impl ClientCertVerifier for RatlsClientVerifier {
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        if !intermediates.is_empty() {
            return Err(rustls::Error::InvalidCertificate(
                CertificateError::BadEncoding,
            ));
        }
        self.0.check(end_entity)?;
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Err(TLS12_REFUSED)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.algorithms.supported_schemes()
    }
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A TLS 1.3-only client config on the ring provider that presents `identity`
/// and admits servers through `verifier`. The caller sets ALPN.
pub fn client_config(
    identity: Arc<CertResolver>,
    verifier: Arc<RatlsVerifier>,
) -> Result<rustls::ClientConfig, rustls::Error> {
    let mut config = rustls::ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(RatlsServerVerifier(verifier)))
        .with_client_cert_resolver(identity);
    config.resumption = rustls::client::Resumption::disabled(); // resuming skips the verifier
    Ok(config)
}

/// A TLS 1.3-only server config on the ring provider that presents
/// `identity` and requires clients to pass `verifier`. The caller sets ALPN.
pub fn server_config(
    identity: Arc<CertResolver>,
    verifier: Arc<RatlsVerifier>,
) -> Result<rustls::ServerConfig, rustls::Error> {
    let mut config = rustls::ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_client_cert_verifier(Arc::new(RatlsClientVerifier(verifier)))
        .with_cert_resolver(identity);
    config.send_tls13_tickets = 0; // no resumption: it would skip the verifier
    Ok(config)
}

//! Issuing, parsing and binding RA-TLS certificates.

use std::fmt;
use std::sync::{Arc, RwLock};

use rcgen::{
    CertificateParams, CustomExtension, DistinguishedName, DnType, KeyPair, PublicKeyData,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use x509_parser::prelude::{FromDer, X509Certificate};

use crate::identity::{NetworkId, NodeId};
use crate::provider::{ProviderError, QuoteProvider};

/// OID of the extension carrying the raw TDX quote:
/// `1.3.6.1.4.1.65230.1.1`. Provisional: the private-enterprise arc is not
/// registered yet and must be before a stable release.
pub const QUOTE_EXTENSION_OID: &[u64] = &[1, 3, 6, 1, 4, 1, 65230, 1, 1];
const QUOTE_EXTENSION_OID_STR: &str = "1.3.6.1.4.1.65230.1.1";

/// Domain separation prefix of the report_data binding.
pub const REPORT_DATA_DOMAIN: &[u8] = b"tessella-ratls-v1";

/// Largest quote accepted in a certificate (real quotes are 5-10 KB).
const MAX_QUOTE_LEN: usize = 32 * 1024;
/// Tolerated clock skew: certificates start this many seconds in the past.
const BACKDATE_SECS: u64 = 60;

/// Why a certificate could not be issued or is not acceptable RA-TLS evidence.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RatlsError {
    /// Not a parsable X.509 certificate.
    #[error("not an X.509 certificate: {0}")]
    BadCertificate(String),
    /// A certificate without the quote extension: plain TLS, not RA-TLS.
    #[error("certificate carries no TDX quote (not an RA-TLS certificate)")]
    NoQuote,
    /// The quote extension is marked critical or appears twice.
    #[error("malformed quote extension: {0}")]
    BadExtension(String),
    /// The certificate's validity window does not contain `now`.
    #[error("certificate expired at {not_after} (now {now})")]
    Expired {
        /// Verification time.
        now: u64,
        /// End of validity.
        not_after: u64,
    },
    /// The certificate is not valid yet.
    #[error("certificate not valid before {not_before} (now {now})")]
    NotYetValid {
        /// Verification time.
        now: u64,
        /// Start of validity.
        not_before: u64,
    },
    /// The quote's report_data does not bind this key, window and network.
    #[error("quote does not bind this certificate's key, validity and network")]
    Binding,
    /// The quote failed verification or policy.
    #[error("{0}")]
    Quote(#[from] crate::VerifyError),
    /// The quote provider failed while issuing.
    #[error("quote provider: {0}")]
    Provider(String),
    /// Key or certificate generation failed while issuing.
    #[error("certificate generation: {0}")]
    Generate(String),
    /// A stored node key is not a P-256 PKCS#8 key.
    #[error("not a P-256 PKCS#8 node key: {0}")]
    BadKey(String),
}

impl RatlsError {
    /// A stable snake_case code for logs, metrics and peers.
    pub fn code(&self) -> &'static str {
        match self {
            RatlsError::BadCertificate(_) => "bad_certificate",
            RatlsError::NoQuote => "no_quote",
            RatlsError::BadExtension(_) => "bad_quote_extension",
            RatlsError::Expired { .. } => "certificate_expired",
            RatlsError::NotYetValid { .. } => "certificate_not_yet_valid",
            RatlsError::Binding => "report_data_binding",
            RatlsError::Quote(e) => e.code(),
            RatlsError::Provider(_) => "quote_provider",
            RatlsError::Generate(_) => "certificate_generation",
            RatlsError::BadKey(_) => "bad_node_key",
        }
    }
}

impl From<ProviderError> for RatlsError {
    fn from(e: ProviderError) -> Self {
        RatlsError::Provider(e.to_string())
    }
}

/// The one place the RA-TLS binding is computed.
pub fn report_data_for(
    spki_der: &[u8],
    not_before: u64,
    not_after: u64,
    network: &NetworkId,
) -> [u8; 64] {
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA512);
    ctx.update(REPORT_DATA_DOMAIN);
    ctx.update(spki_der);
    ctx.update(&not_before.to_be_bytes());
    ctx.update(&not_after.to_be_bytes());
    ctx.update(&network.0);
    let mut out = [0u8; 64];
    out.copy_from_slice(ctx.finish().as_ref());
    out
}

/// A node's own RA-TLS certificate and key. The key never leaves memory and
/// is not printed by `Debug`.
#[derive(Clone)]
pub struct RatlsIdentity {
    cert: CertificateDer<'static>,
    key_pkcs8: Arc<Vec<u8>>,
    node_id: NodeId,
    not_before: u64,
    not_after: u64,
}

impl fmt::Debug for RatlsIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RatlsIdentity")
            .field("node_id", &self.node_id)
            .field("not_before", &self.not_before)
            .field("not_after", &self.not_after)
            .finish_non_exhaustive()
    }
}

impl RatlsIdentity {
    /// The certificate, DER.
    pub fn cert_der(&self) -> &CertificateDer<'static> {
        &self.cert
    }

    /// The certificate, PEM.
    pub fn cert_pem(&self) -> String {
        pem::encode(&pem::Pem::new("CERTIFICATE", self.cert.to_vec()))
    }

    /// The private key for rustls.
    pub fn key_der(&self) -> PrivateKeyDer<'static> {
        PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(self.key_pkcs8.as_ref().clone()))
    }

    /// This node's id.
    pub fn node_id(&self) -> NodeId {
        self.node_id
    }

    /// The node key this certificate was issued for.
    pub fn node_key(&self) -> NodeKey {
        NodeKey {
            pkcs8: self.key_pkcs8.clone(),
            node_id: self.node_id,
        }
    }

    /// The key's SubjectPublicKeyInfo, DER (what the node id is derived from).
    pub fn spki_der(&self) -> Result<Vec<u8>, RatlsError> {
        ParsedCert::parse(self.cert.as_ref()).map(|p| p.spki)
    }

    /// Sign `msg` with the node's key (ECDSA P-256 / SHA-256, ASN.1 DER), for
    /// records that must be attributable to this node, such as discovery
    /// records. Verify with [`verify_node_signature`].
    pub fn sign(&self, msg: &[u8]) -> Result<Vec<u8>, RatlsError> {
        let rng = ring::rand::SystemRandom::new();
        let key = ring::signature::EcdsaKeyPair::from_pkcs8(
            &ring::signature::ECDSA_P256_SHA256_ASN1_SIGNING,
            &self.key_pkcs8,
            &rng,
        )
        .map_err(|e| RatlsError::Generate(e.to_string()))?;
        key.sign(&rng, msg)
            .map(|s| s.as_ref().to_vec())
            .map_err(|e| RatlsError::Generate(e.to_string()))
    }

    /// Start of validity (Unix seconds).
    pub fn not_before(&self) -> u64 {
        self.not_before
    }

    /// End of validity (Unix seconds).
    pub fn not_after(&self) -> u64 {
        self.not_after
    }

    /// True once two thirds of the lifetime have passed: time to renew.
    pub fn renewal_due(&self, now: u64) -> bool {
        let life = self.not_after.saturating_sub(self.not_before);
        now >= self.not_before + life * 2 / 3
    }

    fn certified_key(&self) -> Result<Arc<rustls::sign::CertifiedKey>, rustls::Error> {
        let provider = rustls::crypto::ring::default_provider();
        let key = provider.key_provider.load_private_key(self.key_der())?;
        Ok(Arc::new(rustls::sign::CertifiedKey::new(
            vec![self.cert.clone()],
            key,
        )))
    }
}

/// A node's long-lived P-256 key (PKCS#8). The node id derives from it, so
/// a node that keeps its key keeps its id (and its ticket) across restarts.
/// `Debug` never prints the key.
#[derive(Clone)]
pub struct NodeKey {
    pkcs8: Arc<Vec<u8>>,
    node_id: NodeId,
}

impl fmt::Debug for NodeKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NodeKey")
            .field("node_id", &self.node_id)
            .finish_non_exhaustive()
    }
}

impl NodeKey {
    /// A fresh key from the system's random source.
    pub fn generate() -> Result<NodeKey, RatlsError> {
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)
            .map_err(|e| RatlsError::Generate(e.to_string()))?;
        NodeKey::from_pkcs8_der(&key.serialize_der())
    }

    /// A key from its PKCS#8 DER; anything but a P-256 ECDSA key is refused.
    pub fn from_pkcs8_der(der: &[u8]) -> Result<NodeKey, RatlsError> {
        let parsed = KeyPair::from_pkcs8_der_and_sign_algo(
            &PrivatePkcs8KeyDer::from(der),
            &rcgen::PKCS_ECDSA_P256_SHA256,
        )
        .map_err(|e| RatlsError::BadKey(e.to_string()))?;
        let node_id = NodeId::from_spki(&parsed.subject_public_key_info());
        Ok(NodeKey {
            pkcs8: Arc::new(der.to_vec()),
            node_id,
        })
    }

    /// The key as PKCS#8 DER (secret: store it where only the node reads it).
    pub fn pkcs8_der(&self) -> &[u8] {
        &self.pkcs8
    }

    /// The node id this key gives.
    pub fn node_id(&self) -> NodeId {
        self.node_id
    }
}

/// Issue a certificate valid for `lifetime_secs` from `now`, with a fresh
/// in-memory key and a quote from `provider` binding it to `network`.
pub fn issue(
    provider: &dyn QuoteProvider,
    network: &NetworkId,
    now: u64,
    lifetime_secs: u64,
) -> Result<RatlsIdentity, RatlsError> {
    issue_for_key(&NodeKey::generate()?, provider, network, now, lifetime_secs)
}

/// Issue a certificate for an existing `key` (a node restarted on its data
/// dir), valid for `lifetime_secs` from `now`, with a quote from `provider`
/// binding it to `network`.
pub fn issue_for_key(
    key: &NodeKey,
    provider: &dyn QuoteProvider,
    network: &NetworkId,
    now: u64,
    lifetime_secs: u64,
) -> Result<RatlsIdentity, RatlsError> {
    issue_with_key(key.pkcs8.clone(), provider, network, now, lifetime_secs)
}

impl RatlsIdentity {
    /// A new certificate for the same key (so the node id stays), a new
    /// window and a fresh quote.
    pub fn renew(
        &self,
        provider: &dyn QuoteProvider,
        network: &NetworkId,
        now: u64,
        lifetime_secs: u64,
    ) -> Result<RatlsIdentity, RatlsError> {
        issue_with_key(
            self.key_pkcs8.clone(),
            provider,
            network,
            now,
            lifetime_secs,
        )
    }
}

fn issue_with_key(
    key_pkcs8: Arc<Vec<u8>>,
    provider: &dyn QuoteProvider,
    network: &NetworkId,
    now: u64,
    lifetime_secs: u64,
) -> Result<RatlsIdentity, RatlsError> {
    let gen = |e: rcgen::Error| RatlsError::Generate(e.to_string());
    let der = PrivatePkcs8KeyDer::from(key_pkcs8.as_slice());
    let key =
        KeyPair::from_pkcs8_der_and_sign_algo(&der, &rcgen::PKCS_ECDSA_P256_SHA256).map_err(gen)?;
    let spki = key.subject_public_key_info();
    let node_id = NodeId::from_spki(&spki);
    let not_before = now.saturating_sub(BACKDATE_SECS);
    let not_after = now.saturating_add(lifetime_secs);
    let report_data = report_data_for(&spki, not_before, not_after, network);
    let quote = provider.quote(&report_data)?;

    let mut params = CertificateParams::new(vec!["tessella".to_string()]).map_err(gen)?;
    let mut dn = DistinguishedName::new();
    dn.push(
        DnType::CommonName,
        format!("tessella node {}", &node_id.to_string()[..16]),
    );
    params.distinguished_name = dn;
    let at = |t: u64| {
        time::OffsetDateTime::from_unix_timestamp(t as i64)
            .map_err(|e| RatlsError::Generate(e.to_string()))
    };
    params.not_before = at(not_before)?;
    params.not_after = at(not_after)?;
    params
        .custom_extensions
        .push(CustomExtension::from_oid_content(
            QUOTE_EXTENSION_OID,
            yasna::construct_der(|w| w.write_bytes(&quote)),
        ));
    let cert = params.self_signed(&key).map_err(gen)?;
    Ok(RatlsIdentity {
        cert: cert.der().clone(),
        key_pkcs8,
        node_id,
        not_before,
        not_after,
    })
}

/// Check a signature made by [`RatlsIdentity::sign`]: `spki_der` must be a
/// P-256 SubjectPublicKeyInfo. Returns the signer's node id.
pub fn verify_node_signature(
    spki_der: &[u8],
    msg: &[u8],
    signature: &[u8],
) -> Result<NodeId, RatlsError> {
    use x509_parser::prelude::FromDer;
    let (_, spki) = x509_parser::x509::SubjectPublicKeyInfo::from_der(spki_der)
        .map_err(|e| RatlsError::BadCertificate(format!("bad public key: {e}")))?;
    let point = spki.subject_public_key.data.as_ref();
    ring::signature::UnparsedPublicKey::new(&ring::signature::ECDSA_P256_SHA256_ASN1, point)
        .verify(msg, signature)
        .map_err(|_| RatlsError::BadCertificate("signature does not verify".into()))?;
    Ok(NodeId::from_spki(spki_der))
}

/// What an RA-TLS certificate claims, before verification.
#[derive(Debug, Clone)]
pub struct ParsedCert {
    /// SubjectPublicKeyInfo, DER.
    pub spki: Vec<u8>,
    /// The id of that key.
    pub node_id: NodeId,
    /// Start of validity.
    pub not_before: u64,
    /// End of validity.
    pub not_after: u64,
    /// The raw quote from the extension.
    pub quote: Vec<u8>,
}

impl ParsedCert {
    /// Parse a DER certificate and extract the quote extension.
    pub fn parse(der: &[u8]) -> Result<ParsedCert, RatlsError> {
        let (rest, cert) = X509Certificate::from_der(der)
            .map_err(|e| RatlsError::BadCertificate(e.to_string()))?;
        if !rest.is_empty() {
            return Err(RatlsError::BadCertificate(format!(
                "{} bytes after the certificate",
                rest.len()
            )));
        }
        let mut found = None;
        for ext in cert.extensions() {
            if ext.oid.to_id_string() != QUOTE_EXTENSION_OID_STR {
                continue;
            }
            if ext.critical {
                return Err(RatlsError::BadExtension("marked critical".into()));
            }
            if found.is_some() {
                return Err(RatlsError::BadExtension("present twice".into()));
            }
            let quote = yasna::parse_der(ext.value, |r| r.read_bytes())
                .map_err(|e| RatlsError::BadExtension(format!("not an OCTET STRING: {e}")))?;
            if quote.len() > MAX_QUOTE_LEN {
                return Err(RatlsError::BadExtension(format!(
                    "quote of {} bytes exceeds {MAX_QUOTE_LEN}",
                    quote.len()
                )));
            }
            found = Some(quote);
        }
        let quote = found.ok_or(RatlsError::NoQuote)?;
        let spki = cert.public_key().raw.to_vec();
        let v = cert.validity();
        Ok(ParsedCert {
            node_id: NodeId::from_spki(&spki),
            spki,
            not_before: v.not_before.timestamp().max(0) as u64,
            not_after: v.not_after.timestamp().max(0) as u64,
            quote,
        })
    }

    /// Check the window against `now` and the binding against `network`;
    /// returns the report_data the quote must carry.
    pub fn check(&self, network: &NetworkId, now: u64) -> Result<[u8; 64], RatlsError> {
        if now > self.not_after {
            return Err(RatlsError::Expired {
                now,
                not_after: self.not_after,
            });
        }
        if now < self.not_before {
            return Err(RatlsError::NotYetValid {
                now,
                not_before: self.not_before,
            });
        }
        Ok(report_data_for(
            &self.spki,
            self.not_before,
            self.not_after,
            network,
        ))
    }
}

/// Serves this node's current certificate to rustls, as client and server,
/// and swaps in a renewed one without touching established sessions.
#[derive(Debug)]
pub struct CertResolver {
    current: RwLock<(RatlsIdentity, Arc<rustls::sign::CertifiedKey>)>,
}

impl CertResolver {
    /// Serve `identity`.
    pub fn new(identity: RatlsIdentity) -> Result<Arc<Self>, RatlsError> {
        let key = identity
            .certified_key()
            .map_err(|e| RatlsError::Generate(e.to_string()))?;
        Ok(Arc::new(CertResolver {
            current: RwLock::new((identity, key)),
        }))
    }

    /// The identity being served.
    pub fn current(&self) -> RatlsIdentity {
        self.current
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .0
            .clone()
    }

    /// Serve `identity` from now on (new handshakes only).
    pub fn replace(&self, identity: RatlsIdentity) -> Result<(), RatlsError> {
        let key = identity
            .certified_key()
            .map_err(|e| RatlsError::Generate(e.to_string()))?;
        *self.current.write().unwrap_or_else(|p| p.into_inner()) = (identity, key);
        Ok(())
    }

    /// Issue and serve a new certificate for the same key (the node id
    /// stays) if the current one is two thirds through its life. Returns
    /// whether it renewed. Call it from a background task, never from a
    /// handshake.
    pub fn renew_if_due(
        &self,
        provider: &dyn QuoteProvider,
        network: &NetworkId,
        now: u64,
        lifetime_secs: u64,
    ) -> Result<bool, RatlsError> {
        if !self.current().renewal_due(now) {
            return Ok(false);
        }
        let renewed = self
            .current()
            .renew(provider, network, now, lifetime_secs)?;
        self.replace(renewed)?;
        Ok(true)
    }

    fn key(&self) -> Arc<rustls::sign::CertifiedKey> {
        self.current
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .1
            .clone()
    }
}

impl rustls::server::ResolvesServerCert for CertResolver {
    fn resolve(
        &self,
        _hello: rustls::server::ClientHello<'_>,
    ) -> Option<Arc<rustls::sign::CertifiedKey>> {
        Some(self.key())
    }
}

impl rustls::client::ResolvesClientCert for CertResolver {
    fn resolve(
        &self,
        _root_hint_subjects: &[&[u8]],
        _sigschemes: &[rustls::SignatureScheme],
    ) -> Option<Arc<rustls::sign::CertifiedKey>> {
        Some(self.key())
    }

    fn has_certs(&self) -> bool {
        true
    }
}

#[cfg(test)]
mod node_key_tests {
    use super::*;

    #[test]
    fn a_node_key_round_trips_and_keeps_its_id() {
        let key = NodeKey::generate().expect("generate");
        let again = NodeKey::from_pkcs8_der(key.pkcs8_der()).expect("parse");
        assert_eq!(key.node_id(), again.node_id());
        assert!(!format!("{key:?}").contains(&hex::encode(key.pkcs8_der())));
        let other = NodeKey::generate().expect("generate");
        assert_ne!(key.node_id(), other.node_id());
    }

    #[test]
    fn garbage_and_foreign_keys_are_refused() {
        assert!(matches!(
            NodeKey::from_pkcs8_der(b"not a key"),
            Err(RatlsError::BadKey(_))
        ));
        let p384 = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P384_SHA384).expect("p384");
        assert!(matches!(
            NodeKey::from_pkcs8_der(&p384.serialize_der()),
            Err(RatlsError::BadKey(_))
        ));
    }
}

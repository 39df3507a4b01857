//! Deterministic P-256 keys for the dev PKI.

use p256::ecdsa::signature::Signer;
use p256::ecdsa::{Signature, SigningKey, VerifyingKey};

/// A P-256 key derived from a seed and a label, so the same seed gives the
/// same PKI. Signatures are RFC 6979 (deterministic) too, so certificates,
/// CRLs, collateral and quotes are reproducible byte for byte.
pub struct DevKey {
    signing: SigningKey,
    public_sec1: Vec<u8>,
}

impl std::fmt::Debug for DevKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print private keys.
        write!(f, "DevKey({})", hex::encode(&self.public_sec1[1..9]))
    }
}

impl DevKey {
    /// Derive the key named `label` from `seed`.
    pub fn derive(seed: &[u8], label: &str) -> DevKey {
        let mut counter = 0u32;
        loop {
            let mut hasher = blake3::Hasher::new_derive_key("tessella dev-pki key v1");
            hasher.update(&(seed.len() as u64).to_le_bytes());
            hasher.update(seed);
            hasher.update(label.as_bytes());
            hasher.update(&counter.to_le_bytes());
            let bytes: [u8; 32] = *hasher.finalize().as_bytes();
            // A scalar of zero or above the group order is invalid; the chance
            // is about 2^-32, and the next counter value fixes it.
            if let Ok(signing) = SigningKey::from_bytes(&bytes.into()) {
                let public_sec1 = VerifyingKey::from(&signing)
                    .to_encoded_point(false)
                    .as_bytes()
                    .to_vec();
                return DevKey {
                    signing,
                    public_sec1,
                };
            }
            counter += 1;
        }
    }

    /// The public key as the 64 bytes `x ‖ y` that quotes carry.
    pub fn public_raw(&self) -> [u8; 64] {
        let mut out = [0u8; 64];
        out.copy_from_slice(&self.public_sec1[1..65]);
        out
    }

    /// ECDSA P-256 / SHA-256 signature as `r ‖ s`, the form quotes and
    /// collateral JSON signatures use.
    pub fn sign_raw(&self, msg: &[u8]) -> [u8; 64] {
        let sig: Signature = self.signing.sign(msg);
        let mut out = [0u8; 64];
        out.copy_from_slice(&sig.to_bytes());
        out
    }
}

impl rcgen::PublicKeyData for DevKey {
    fn der_bytes(&self) -> &[u8] {
        &self.public_sec1
    }

    fn algorithm(&self) -> &'static rcgen::SignatureAlgorithm {
        &rcgen::PKCS_ECDSA_P256_SHA256
    }
}

impl rcgen::SigningKey for DevKey {
    fn sign(&self, msg: &[u8]) -> Result<Vec<u8>, rcgen::Error> {
        let sig: Signature = self.signing.sign(msg);
        Ok(sig.to_der().as_bytes().to_vec())
    }
}

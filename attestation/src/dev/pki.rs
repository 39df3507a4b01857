//! A PKI shaped like Intel's SGX/TDX provisioning PKI, for dev mode and tests.
//!
//! ```text
//! Dev Root CA ──┬── Dev PCK Platform CA ── Dev PCK certificate (SGX extension: FMSPC,
//!               │                           PCE id, CPU SVN, PCE SVN, platform flags)
//!               └── Dev TCB Signing ── signs TCB info and QE identity JSON
//! Root CRL (by the root), PCK CRL (by the PCK Platform CA)
//! ```
//!
//! dcap-qvl verifies quotes under it exactly as under Intel's root (same code,
//! different anchor): the signers are issued directly by the root, the TCB
//! info carries a `tdxModuleIdentities` entry matching the dev quotes, and
//! every certificate, CRL and JSON document is valid from 2024 to 2049 so
//! tests do not age. Everything derives from a seed: same seed, same bytes.

use dcap_qvl::qe_identity::{QeIdentity, QeTcb, QeTcbLevel};
use dcap_qvl::tcb_info::{
    Tcb, TcbComponents, TcbInfo, TcbLevel, TcbStatus, TdxModule, TdxModuleIdentity, TdxModuleTcb,
    TdxModuleTcbLevel,
};
use dcap_qvl::QuoteCollateralV3;
use rcgen::{
    BasicConstraints, CertificateParams, CertificateRevocationListParams, DistinguishedName,
    DnType, IsCa, Issuer, KeyIdMethod, KeyUsagePurpose, SerialNumber,
};
use time::OffsetDateTime;

use super::key::DevKey;
use crate::collateral::{Collateral, CollateralError};
use crate::verify::Verifier;

/// Name under which verifiers report the dev trust anchor.
pub const DEV_ANCHOR_NAME: &str = "tessella dev PKI (NOT Intel; dev mode only)";

/// Start of every validity period in the dev PKI (2024-01-01T00:00:00Z).
pub const DEV_NOT_BEFORE: u64 = 1_704_067_200;
/// End of every validity period in the dev PKI (2049-12-31T00:00:00Z).
pub const DEV_NOT_AFTER: u64 = 2_524_521_600;

const ISSUE_DATE: &str = "2024-01-01T00:00:00Z";
const NEXT_UPDATE: &str = "2049-12-31T00:00:00Z";
const TCB_DATE: &str = "2024-01-01T00:00:00Z";

/// Why the dev PKI could not be built.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DevPkiError {
    /// rcgen refused a certificate or CRL.
    #[error("dev PKI certificate: {0}")]
    Certificate(#[from] rcgen::Error),
    /// The generated collateral did not load (a bug in this module).
    #[error("dev PKI collateral: {0}")]
    Collateral(#[from] CollateralError),
    /// Serialising the TCB info or QE identity failed.
    #[error("dev PKI JSON: {0}")]
    Json(String),
}

/// The platform a dev PCK certificate describes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DevPlatform {
    /// Platform model id (the collateral key).
    pub fmspc: [u8; 6],
    /// PCE id.
    pub pce_id: [u8; 2],
    /// CPU SVN (16 SGX TCB components).
    pub cpu_svn: [u8; 16],
    /// PCE SVN.
    pub pce_svn: u16,
    /// TEE_TCB_SVN the dev TDX module reports: `[0]` module SVN, `[1]` major version.
    pub tee_tcb_svn: [u8; 16],
    /// MRSIGNERSEAM of the dev TDX module.
    pub mr_signer_seam: [u8; 48],
    /// PCK configuration flag: dynamic platform.
    pub dynamic_platform: bool,
    /// PCK configuration flag: cached keys.
    pub cached_keys: bool,
    /// PCK configuration flag: SMT enabled.
    pub smt: bool,
}

impl Default for DevPlatform {
    fn default() -> Self {
        DevPlatform {
            fmspc: [0x7e, 0x55, 0xe1, 0x1a, 0x00, 0x00],
            pce_id: [0, 0],
            cpu_svn: [3, 3, 2, 2, 4, 1, 0, 5, 0, 0, 0, 0, 0, 0, 0, 0],
            pce_svn: 11,
            tee_tcb_svn: [3, 1, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
            mr_signer_seam: [0; 48],
            dynamic_platform: false,
            cached_keys: false,
            smt: false,
        }
    }
}

/// The dev quoting enclave's identity.
#[derive(Debug, Clone, Copy)]
pub(crate) struct DevQe {
    pub mr_signer: [u8; 32],
    pub isv_prod_id: u16,
    pub isv_svn: u16,
    pub attributes: [u8; 16],
}

/// The generated dev PKI: keys, certificates, signed collateral.
#[derive(Debug)]
pub struct DevPki {
    root_der: Vec<u8>,
    root_pem: String,
    pck_chain_pem: String,
    pub(crate) pck_key: DevKey,
    pub(crate) attestation_key: DevKey,
    pub(crate) qe: DevQe,
    pub(crate) qe_id: [u8; 16],
    platform: DevPlatform,
    collateral: Collateral,
}

fn at(unix: u64) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp(unix as i64).unwrap_or(OffsetDateTime::UNIX_EPOCH)
}

fn name(common_name: &str) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, common_name);
    dn.push(DnType::OrganizationName, "tessella dev (not Intel)");
    dn.push(DnType::CountryName, "US");
    dn
}

fn params(common_name: &str, serial: u64, ca: Option<BasicConstraints>) -> CertificateParams {
    let mut p = CertificateParams::default();
    p.distinguished_name = name(common_name);
    p.not_before = at(DEV_NOT_BEFORE);
    p.not_after = at(DEV_NOT_AFTER);
    p.serial_number = Some(SerialNumber::from(serial));
    p.key_identifier_method = KeyIdMethod::Sha256;
    p.use_authority_key_identifier_extension = true;
    match ca {
        Some(c) => {
            p.is_ca = IsCa::Ca(c);
            p.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        }
        None => {
            p.is_ca = IsCa::ExplicitNoCa;
            p.key_usages = vec![
                KeyUsagePurpose::DigitalSignature,
                KeyUsagePurpose::ContentCommitment,
            ];
        }
    }
    p
}

/// DER of Intel's SGX extension (OID 1.2.840.113741.1.13.1): a sequence of
/// (OID, value) pairs, laid out as in real PCK certificates.
fn sgx_extension(platform: &DevPlatform, ppid: &[u8; 16], instance: &[u8; 16]) -> Vec<u8> {
    const BASE: [u64; 7] = [1, 2, 840, 113741, 1, 13, 1];
    fn oid(tail: &[u64]) -> yasna::models::ObjectIdentifier {
        let mut v = BASE.to_vec();
        v.extend_from_slice(tail);
        yasna::models::ObjectIdentifier::from_slice(&v)
    }
    yasna::construct_der(|w| {
        w.write_sequence(|w| {
            w.next().write_sequence(|w| {
                w.next().write_oid(&oid(&[1]));
                w.next().write_bytes(ppid);
            });
            w.next().write_sequence(|w| {
                w.next().write_oid(&oid(&[2]));
                w.next().write_sequence(|w| {
                    for (i, svn) in platform.cpu_svn.iter().enumerate() {
                        w.next().write_sequence(|w| {
                            w.next().write_oid(&oid(&[2, i as u64 + 1]));
                            w.next().write_u8(*svn);
                        });
                    }
                    w.next().write_sequence(|w| {
                        w.next().write_oid(&oid(&[2, 17]));
                        w.next().write_u16(platform.pce_svn);
                    });
                    w.next().write_sequence(|w| {
                        w.next().write_oid(&oid(&[2, 18]));
                        w.next().write_bytes(&platform.cpu_svn);
                    });
                });
            });
            w.next().write_sequence(|w| {
                w.next().write_oid(&oid(&[3]));
                w.next().write_bytes(&platform.pce_id);
            });
            w.next().write_sequence(|w| {
                w.next().write_oid(&oid(&[4]));
                w.next().write_bytes(&platform.fmspc);
            });
            w.next().write_sequence(|w| {
                w.next().write_oid(&oid(&[5]));
                // SGX type 1 = Scalable, as on TDX-capable Xeons.
                w.next().write_enum(1);
            });
            w.next().write_sequence(|w| {
                w.next().write_oid(&oid(&[6]));
                w.next().write_bytes(instance);
            });
            w.next().write_sequence(|w| {
                w.next().write_oid(&oid(&[7]));
                w.next().write_sequence(|w| {
                    for (i, flag) in [
                        platform.dynamic_platform,
                        platform.cached_keys,
                        platform.smt,
                    ]
                    .into_iter()
                    .enumerate()
                    {
                        w.next().write_sequence(|w| {
                            w.next().write_oid(&oid(&[7, i as u64 + 1]));
                            w.next().write_bool(flag);
                        });
                    }
                });
            });
        });
    })
}

fn derive_bytes<const N: usize>(seed: &[u8], label: &str) -> [u8; N] {
    let mut hasher = blake3::Hasher::new_derive_key("tessella dev-pki value v1");
    hasher.update(&(seed.len() as u64).to_le_bytes());
    hasher.update(seed);
    hasher.update(label.as_bytes());
    let mut out = [0u8; N];
    hasher.finalize_xof().fill(&mut out);
    out
}

fn json<T: serde::Serialize>(v: &T) -> Result<String, DevPkiError> {
    serde_json::to_string(v).map_err(|e| DevPkiError::Json(e.to_string()))
}

impl DevPki {
    /// Generate the dev PKI for `seed` and the default platform.
    pub fn generate(seed: &[u8]) -> Result<DevPki, DevPkiError> {
        Self::generate_for(seed, DevPlatform::default())
    }

    /// Generate the dev PKI for `seed` and a chosen platform (flags, SVNs, FMSPC).
    pub fn generate_for(seed: &[u8], platform: DevPlatform) -> Result<DevPki, DevPkiError> {
        let root_key = DevKey::derive(seed, "root-ca");
        let pck_ca_key = DevKey::derive(seed, "pck-platform-ca");
        let tcb_key = DevKey::derive(seed, "tcb-signing");
        let pck_key = DevKey::derive(seed, "pck");
        let attestation_key = DevKey::derive(seed, "attestation-key");

        let root_params = params(
            "tessella Dev SGX Root CA",
            1,
            Some(BasicConstraints::Unconstrained),
        );
        let root_cert = root_params.self_signed(&root_key)?;
        let root = Issuer::from_params(&root_params, &root_key);

        let pck_ca_params = params(
            "tessella Dev SGX PCK Platform CA",
            2,
            Some(BasicConstraints::Constrained(0)),
        );
        let pck_ca_cert = pck_ca_params.signed_by(&pck_ca_key, &root)?;
        let pck_ca = Issuer::from_params(&pck_ca_params, &pck_ca_key);

        let tcb_params = params("tessella Dev SGX TCB Signing", 3, None);
        let tcb_cert = tcb_params.signed_by(&tcb_key, &root)?;

        let mut leaf_params = params("tessella Dev SGX PCK Certificate", 4, None);
        let ppid = derive_bytes::<16>(seed, "ppid");
        let instance = derive_bytes::<16>(seed, "platform-instance");
        leaf_params
            .custom_extensions
            .push(rcgen::CustomExtension::from_oid_content(
                &[1, 2, 840, 113741, 1, 13, 1],
                sgx_extension(&platform, &ppid, &instance),
            ));
        let leaf_cert = leaf_params.signed_by(&pck_key, &pck_ca)?;

        let crl = |number: u64| CertificateRevocationListParams {
            this_update: at(DEV_NOT_BEFORE),
            next_update: at(DEV_NOT_AFTER),
            crl_number: SerialNumber::from(number),
            issuing_distribution_point: None,
            revoked_certs: Vec::new(),
            key_identifier_method: KeyIdMethod::Sha256,
        };
        let root_crl = crl(1).signed_by(&root)?;
        let pck_crl = crl(1).signed_by(&pck_ca)?;

        let qe = DevQe {
            mr_signer: derive_bytes::<32>(seed, "qe-mrsigner"),
            isv_prod_id: 2,
            isv_svn: 8,
            // INIT | MODE64BIT, no DEBUG: what real TD quoting enclaves report.
            attributes: [0x11, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
        };

        let module_mrsigner = hex::encode_upper(platform.mr_signer_seam);
        let tdx_components = |svn: &[u8; 16]| {
            svn.iter()
                .map(|s| TcbComponents { svn: *s })
                .collect::<Vec<_>>()
        };
        let level = |cpu: &[u8; 16], pce: u16, tdx: &[u8; 16], status: TcbStatus| TcbLevel {
            tcb: Tcb {
                sgx_components: tdx_components(cpu),
                tdx_components: tdx_components(tdx),
                pce_svn: pce,
            },
            tcb_date: TCB_DATE.into(),
            tcb_status: status,
            advisory_ids: Vec::new(),
        };
        let tcb_info = TcbInfo {
            id: "TDX".into(),
            version: 3,
            issue_date: ISSUE_DATE.into(),
            next_update: NEXT_UPDATE.into(),
            fmspc: hex::encode_upper(platform.fmspc),
            pce_id: hex::encode_upper(platform.pce_id),
            tcb_type: 0,
            tcb_evaluation_data_number: 17,
            tcb_levels: vec![
                level(
                    &platform.cpu_svn,
                    platform.pce_svn,
                    &platform.tee_tcb_svn,
                    TcbStatus::UpToDate,
                ),
                level(&[0; 16], 0, &[0; 16], TcbStatus::OutOfDate),
            ],
            tdx_module: Some(TdxModule {
                mrsigner: module_mrsigner.clone(),
                attributes: "0000000000000000".into(),
                attributes_mask: "FFFFFFFFFFFFFFFF".into(),
            }),
            tdx_module_identities: vec![TdxModuleIdentity {
                id: format!("TDX_{:02X}", platform.tee_tcb_svn[1]),
                mrsigner: module_mrsigner,
                attributes: "0000000000000000".into(),
                attributes_mask: "FFFFFFFFFFFFFFFF".into(),
                tcb_levels: vec![TdxModuleTcbLevel {
                    tcb: TdxModuleTcb {
                        isvsvn: platform.tee_tcb_svn[0],
                    },
                    tcb_date: TCB_DATE.into(),
                    tcb_status: TcbStatus::UpToDate,
                    advisory_ids: Vec::new(),
                }],
            }],
        };
        let qe_identity = QeIdentity {
            id: "TD_QE".into(),
            version: 2,
            issue_date: ISSUE_DATE.into(),
            next_update: NEXT_UPDATE.into(),
            tcb_evaluation_data_number: 17,
            miscselect: [0; 4],
            miscselect_mask: [0xff; 4],
            attributes: qe.attributes,
            attributes_mask: [
                0xfb, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0, 0, 0, 0, 0,
            ],
            mrsigner: qe.mr_signer,
            isvprodid: qe.isv_prod_id,
            tcb_levels: vec![QeTcbLevel {
                tcb: QeTcb { isvsvn: qe.isv_svn },
                tcb_date: TCB_DATE.into(),
                tcb_status: TcbStatus::UpToDate,
                advisory_ids: Vec::new(),
            }],
        };
        let tcb_info_json = json(&tcb_info)?;
        let qe_identity_json = json(&qe_identity)?;
        let root_pem = root_cert.pem();
        let signer_chain = format!("{}{root_pem}", tcb_cert.pem());
        let collateral = Collateral::new(QuoteCollateralV3 {
            pck_crl_issuer_chain: format!("{}{root_pem}", pck_ca_cert.pem()),
            root_ca_crl: root_crl.der().to_vec(),
            pck_crl: pck_crl.der().to_vec(),
            tcb_info_issuer_chain: signer_chain.clone(),
            tcb_info_signature: tcb_key.sign_raw(tcb_info_json.as_bytes()).to_vec(),
            tcb_info: tcb_info_json,
            qe_identity_issuer_chain: signer_chain,
            qe_identity_signature: tcb_key.sign_raw(qe_identity_json.as_bytes()).to_vec(),
            qe_identity: qe_identity_json,
            pck_certificate_chain: None,
        })?;

        Ok(DevPki {
            root_der: root_cert.der().to_vec(),
            pck_chain_pem: format!("{}{}{root_pem}", leaf_cert.pem(), pck_ca_cert.pem()),
            root_pem,
            pck_key,
            attestation_key,
            qe,
            qe_id: derive_bytes::<16>(seed, "qe-id"),
            platform,
            collateral,
        })
    }

    /// The root certificate, DER: the trust anchor for dev quotes.
    pub fn root_der(&self) -> &[u8] {
        &self.root_der
    }

    /// The root certificate, PEM, for `tessella-verify --dev-root`.
    pub fn root_pem(&self) -> &str {
        &self.root_pem
    }

    /// The signed collateral for the dev platform.
    pub fn collateral(&self) -> &Collateral {
        &self.collateral
    }

    /// The dev platform.
    pub fn platform(&self) -> &DevPlatform {
        &self.platform
    }

    /// The PCK chain as quotes embed it (leaf, platform CA, root; PEM).
    pub(crate) fn pck_chain_pem(&self) -> &str {
        &self.pck_chain_pem
    }

    /// A verifier that trusts this dev root (and nothing else).
    pub fn verifier(&self) -> Verifier {
        Verifier::with_root(DEV_ANCHOR_NAME, self.root_der.clone())
    }
}

//! Real TDX v4 quotes signed under the dev PKI.
//!
//! ```text
//! header (48) | TD report (584) | u32 auth len | attestation-key sig (64) |
//! attestation key (64) | cert data type 6 { QE report (384) | PCK sig over it (64) |
//! u16 len + QE auth data | cert data type 5 { PEM chain: PCK, PCK CA, root } }
//! ```
//! The QE report binds the attestation key: `report_data[..32] =
//! SHA-256(attestation key ‖ QE auth data)`.

use dcap_qvl::quote::{
    AuthData, AuthDataV4, CertificationData, Data, EnclaveReport, Header,
    QEReportCertificationData, Quote as RawQuote, Report, TDReport10,
};
use parity_scale_codec::Encode;
use tessella_measurements::{Digest48, TdMeasurements};

use super::pki::DevPki;

/// TD attributes with only SEPT_VE_DISABLE set, as production TDs run.
pub const DEV_TD_ATTRIBUTES: [u8; 8] = [0, 0, 0, 0x10, 0, 0, 0, 0];
/// TD attributes of a debug TD (DEBUG plus SEPT_VE_DISABLE).
pub const DEBUG_TD_ATTRIBUTES: [u8; 8] = [1, 0, 0, 0x10, 0, 0, 0, 0];
/// XFAM of the real samples (x87, SSE, AVX, AVX-512, PKRU, ...).
pub const DEV_XFAM: [u8; 8] = [0xe7, 0x02, 0x06, 0, 0, 0, 0, 0];

/// The software identity a dev quote claims: the registers of its TD report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DevTd {
    /// The measurements, TD attributes and XFAM to report.
    pub measurements: TdMeasurements,
}

impl DevTd {
    /// The standard dev TD: fixed, recognisable registers derived from `name`
    /// (so a dev policy can pin them), production attributes.
    pub fn named(name: &str) -> DevTd {
        let reg = |label: &str| {
            let mut h = blake3::Hasher::new_derive_key("tessella dev-td register v1");
            h.update(name.as_bytes());
            h.update(label.as_bytes());
            let mut out = [0u8; 48];
            h.finalize_xof().fill(&mut out);
            Digest48(out)
        };
        DevTd {
            measurements: TdMeasurements {
                mrtd: reg("mrtd"),
                rtmr: [reg("rtmr0"), reg("rtmr1"), reg("rtmr2"), Digest48::ZERO],
                mrconfigid: Digest48::ZERO,
                mrowner: Digest48::ZERO,
                mrownerconfig: Digest48::ZERO,
                td_attributes: DEV_TD_ATTRIBUTES,
                xfam: DEV_XFAM,
            },
        }
    }

    /// The same TD with the DEBUG attribute set: every policy must refuse it.
    pub fn debug(mut self) -> DevTd {
        self.measurements.td_attributes = DEBUG_TD_ATTRIBUTES;
        self
    }
}

impl DevPki {
    /// A TDX v4 quote for `td` carrying `report_data`, signed like a real one:
    /// the attestation key signs header and body, the PCK key signs the QE
    /// report that binds the attestation key, the PCK chain rides along.
    pub fn quote(&self, td: &DevTd, report_data: &[u8; 64]) -> Vec<u8> {
        let m = &td.measurements;
        let platform = self.platform();
        let mut user_data = [0u8; 20];
        user_data[..16].copy_from_slice(&self.qe_id);
        let header = Header {
            version: 4,
            attestation_key_type: 2,
            tee_type: 0x81,
            qe_svn: self.qe.isv_svn,
            pce_svn: platform.pce_svn,
            qe_vendor_id: dcap_qvl::INTEL_QE_VENDOR_ID,
            user_data,
        };
        let body = TDReport10 {
            tee_tcb_svn: platform.tee_tcb_svn,
            mr_seam: [0x5e; 48],
            mr_signer_seam: platform.mr_signer_seam,
            seam_attributes: [0; 8],
            td_attributes: m.td_attributes,
            xfam: m.xfam,
            mr_td: m.mrtd.0,
            mr_config_id: m.mrconfigid.0,
            mr_owner: m.mrowner.0,
            mr_owner_config: m.mrownerconfig.0,
            rt_mr0: m.rtmr[0].0,
            rt_mr1: m.rtmr[1].0,
            rt_mr2: m.rtmr[2].0,
            rt_mr3: m.rtmr[3].0,
            report_data: *report_data,
        };
        let mut signed = header.encode();
        body.encode_to(&mut signed);
        let attestation_key = self.attestation_key.public_raw();
        let ecdsa_signature = self.attestation_key.sign_raw(&signed);

        let qe_auth_data = [0u8; 32];
        let mut bound = Vec::with_capacity(96);
        bound.extend_from_slice(&attestation_key);
        bound.extend_from_slice(&qe_auth_data);
        let mut qe_report_data = [0u8; 64];
        qe_report_data[..32]
            .copy_from_slice(ring::digest::digest(&ring::digest::SHA256, &bound).as_ref());
        let qe_report = EnclaveReport {
            cpu_svn: platform.cpu_svn,
            misc_select: 0,
            reserved1: [0; 28],
            attributes: self.qe.attributes,
            mr_enclave: [0x9e; 32],
            reserved2: [0; 32],
            mr_signer: self.qe.mr_signer,
            reserved3: [0; 96],
            isv_prod_id: self.qe.isv_prod_id,
            isv_svn: self.qe.isv_svn,
            reserved4: [0; 60],
            report_data: qe_report_data,
        };
        let qe_report_bytes: [u8; 384] = match qe_report.encode().try_into() {
            Ok(b) => b,
            Err(v) => unreachable!("an enclave report encodes to 384 bytes, not {}", v.len()),
        };
        let qe_report_signature = self.pck_key.sign_raw(&qe_report_bytes);

        let quote = RawQuote {
            header,
            report: Report::TD10(body),
            auth_data: AuthData::V4(AuthDataV4 {
                ecdsa_signature,
                ecdsa_attestation_key: attestation_key,
                // The encoder fills this body with the QE report data below.
                certification_data: CertificationData {
                    cert_type: 6,
                    body: Data::new(Vec::new()),
                },
                qe_report_data: QEReportCertificationData {
                    qe_report: qe_report_bytes,
                    qe_report_signature,
                    qe_auth_data: Data::new(qe_auth_data.to_vec()),
                    certification_data: CertificationData {
                        cert_type: 5,
                        body: Data::new(self.pck_chain_pem().as_bytes().to_vec()),
                    },
                },
            }),
        };
        quote.encode()
    }
}

/// A quote provider for dev mode: real quotes for a chosen TD, signed under
/// the dev PKI, in microseconds and on any machine.
#[derive(Debug, Clone)]
pub struct DevQuoteProvider {
    pki: std::sync::Arc<DevPki>,
    td: DevTd,
}

impl DevQuoteProvider {
    /// Quotes for `td` under `pki`.
    pub fn new(pki: std::sync::Arc<DevPki>, td: DevTd) -> Self {
        DevQuoteProvider { pki, td }
    }

    /// The TD this provider claims to be.
    pub fn td(&self) -> &DevTd {
        &self.td
    }
}

impl crate::provider::QuoteProvider for DevQuoteProvider {
    fn quote(&self, report_data: &[u8; 64]) -> Result<Vec<u8>, crate::provider::ProviderError> {
        Ok(self.pki.quote(&self.td, report_data))
    }

    fn name(&self) -> &str {
        "dev"
    }
}

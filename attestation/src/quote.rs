//! TDX quotes (v4 and v5; TD1.0, TD1.5 and TD1.5-ex bodies).
//!
//! ```text
//! v4: | header 48 | TD report body 584          | u32 auth len | auth data ... |
//! v5: | header 48 | u16 type | u32 size | body  | u32 auth len | auth data ... |
//!                   2 = TD1.0 (584), 3 = TD1.5 (648), 4 = TD1.5-ex (885)
//! header: u16 version | u16 att key type | u32 tee type (0x81 = TDX) | u16 qe svn |
//!         u16 pce svn | 16 qe vendor id | 20 user data
//! ```
//!
//! Decoding is dcap-qvl's (the same code that later verifies the signatures);
//! this module adds what a user of evidence needs: hex input, padding rules,
//! TDX-only checks and named accessors.

use std::fmt;
use std::sync::OnceLock;

use dcap_qvl::quote::{Quote as RawQuote, Report, TDAttributes, TDReport10};
use serde::Serialize;
use tessella_measurements::{Digest48, TdMeasurements};

/// The 6-byte platform model id of the PCK certificate that collateral is keyed by.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Fmspc(pub [u8; 6]);

impl fmt::Display for Fmspc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode_upper(self.0))
    }
}

impl fmt::Debug for Fmspc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Fmspc({self})")
    }
}

impl Serialize for Fmspc {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl std::str::FromStr for Fmspc {
    type Err = hex::FromHexError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut out = [0u8; 6];
        hex::decode_to_slice(s.trim(), &mut out)?;
        Ok(Fmspc(out))
    }
}

/// Why bytes are not a usable TDX quote.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum QuoteError {
    /// No bytes at all.
    #[error("quote is empty")]
    Empty,
    /// Text input that is not hex.
    #[error("quote text is not valid hex: {0}")]
    Hex(String),
    /// Fewer bytes than the structure needs.
    #[error("quote is truncated ({len} bytes): {detail}")]
    Truncated {
        /// Bytes given.
        len: usize,
        /// What ran out.
        detail: String,
    },
    /// A header version other than 4 or 5.
    #[error("unsupported quote version {0} (TDX quotes are version 4 or 5)")]
    UnsupportedVersion(u16),
    /// An SGX (or unknown TEE) quote.
    #[error("not a TDX quote (TEE type {0:#x}, expected 0x81)")]
    NotTdx(u32),
    /// Structurally invalid.
    #[error("malformed quote: {0}")]
    Malformed(String),
    /// Non-zero bytes after the quote's end (zero padding is allowed).
    #[error("unexpected non-zero byte at offset {offset}, after the quote's end at {end}")]
    TrailingData {
        /// Length of the quote proper.
        end: usize,
        /// Offset of the first non-zero byte after it.
        offset: usize,
    },
    /// The PCK certificate (and so the FMSPC) cannot be read from the quote.
    #[error("cannot read the PCK certificate from the quote: {0}")]
    Pck(String),
}

/// Which TD report body a quote carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum TdBody {
    /// TDX 1.0 report (584 bytes).
    #[serde(rename = "TD1.0")]
    Td10,
    /// TDX 1.5 report (648 bytes: adds TEE_TCB_SVN2 and MRSERVICETD).
    #[serde(rename = "TD1.5")]
    Td15,
    /// TDX 1.5 extended report (885 bytes).
    #[serde(rename = "TD1.5-ex")]
    Td15Ex,
}

impl fmt::Display for TdBody {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            TdBody::Td10 => "TD1.0",
            TdBody::Td15 => "TD1.5",
            TdBody::Td15Ex => "TD1.5-ex",
        })
    }
}

/// TD attributes decoded into named flags (Intel TDX module ABI, table 3.23).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TdAttributes {
    raw: [u8; 8],
}

impl TdAttributes {
    /// Wrap the 8 bytes as they appear in the report.
    pub fn from_bytes(raw: [u8; 8]) -> Self {
        TdAttributes { raw }
    }

    /// The bytes as in the report.
    pub fn bytes(&self) -> [u8; 8] {
        self.raw
    }

    /// DEBUG (bit 0): the host can read and change the TD. Never trusted.
    pub fn debug(&self) -> bool {
        self.raw[0] & 1 != 0
    }

    /// The names of all set flags, in bit order; unknown set bits are named `reserved`.
    pub fn flags(&self) -> Vec<&'static str> {
        // dcap-qvl's parser cannot fail on 8 bytes; should that change, name the
        // bits reserved, which every policy refuses.
        let Ok(p) = TDAttributes::parse(self.raw) else {
            return vec!["reserved"];
        };
        let mut out = Vec::new();
        let named = [
            (self.debug(), "debug"),
            (self.raw[0] & 0x70 != 0, "profiling"),
            (p.sec.icssd, "icssd"),
            (p.sec.servtd_ext, "servtd_ext"),
            (p.sec.lass, "lass"),
            (p.sec.sept_ve_disable, "sept_ve_disable"),
            (p.sec.migratable, "migratable"),
            (p.sec.pks, "pks"),
            (p.sec.kl, "kl"),
            (p.other.tpa, "tpa"),
            (p.other.perfmon, "perfmon"),
            (p.reserved != 0, "reserved"),
        ];
        for (set, name) in named {
            if set {
                out.push(name);
            }
        }
        out
    }
}

impl Serialize for TdAttributes {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let mut st = s.serialize_struct("TdAttributes", 2)?;
        st.serialize_field("hex", &hex::encode(self.raw))?;
        st.serialize_field("flags", &self.flags())?;
        st.end()
    }
}

/// A parsed TDX quote and its exact bytes (padding removed).
#[derive(Clone)]
pub struct Quote {
    raw: Vec<u8>,
    parsed: RawQuote,
    td: TDReport10,
    pck: OnceLock<Result<PckFacts, QuoteError>>,
}

impl fmt::Debug for Quote {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Quote")
            .field("version", &self.version())
            .field("body", &self.body())
            .field("len", &self.raw.len())
            .finish_non_exhaustive()
    }
}

/// Header bytes before the body.
const HEADER_LEN: usize = 48;
const TEE_TYPE_TDX: u32 = 0x81;

impl Quote {
    /// Parse quote bytes, or hex text (optional `0x`, surrounding whitespace).
    pub fn decode(input: &[u8]) -> Result<Self, QuoteError> {
        if looks_like_hex(input) {
            Self::from_hex(input)
        } else {
            Self::parse(input)
        }
    }

    /// Parse hex text into a quote: an optional `0x`, whitespace (including
    /// line breaks, as `xxd -p` writes) anywhere.
    pub fn from_hex(text: &[u8]) -> Result<Self, QuoteError> {
        let t = text.trim_ascii();
        let t = t
            .strip_prefix(b"0x")
            .or_else(|| t.strip_prefix(b"0X"))
            .unwrap_or(t);
        let digits: Vec<u8> = t
            .iter()
            .copied()
            .filter(|b| !b.is_ascii_whitespace())
            .collect();
        let bytes = hex::decode(digits).map_err(|e| QuoteError::Hex(e.to_string()))?;
        Self::parse(&bytes)
    }

    /// Parse binary quote bytes. Zero padding after the quote is tolerated
    /// (some tools write quotes into fixed-size buffers); any other trailing
    /// byte is an error.
    pub fn parse(bytes: &[u8]) -> Result<Self, QuoteError> {
        if bytes.is_empty() {
            return Err(QuoteError::Empty);
        }
        if bytes.len() < HEADER_LEN {
            return Err(QuoteError::Truncated {
                len: bytes.len(),
                detail: format!("the header alone is {HEADER_LEN} bytes"),
            });
        }
        let version = u16::from_le_bytes([bytes[0], bytes[1]]);
        if !(4..=5).contains(&version) {
            return Err(QuoteError::UnsupportedVersion(version));
        }
        let tee_type = u32::from_le_bytes([bytes[4], bytes[5], bytes[6], bytes[7]]);
        if tee_type != TEE_TYPE_TDX {
            return Err(QuoteError::NotTdx(tee_type));
        }
        let parsed = RawQuote::parse(bytes).map_err(|e| {
            // dcap-qvl's decoder messages span lines; errors here are one line.
            let detail = format!("{e:#}")
                .split_whitespace()
                .collect::<Vec<_>>()
                .join(" ");
            if detail.contains("Not enough data") {
                QuoteError::Truncated {
                    len: bytes.len(),
                    detail,
                }
            } else {
                QuoteError::Malformed(detail)
            }
        })?;
        let td = *parsed
            .report
            .as_td10()
            .ok_or(QuoteError::NotTdx(tee_type))?;
        // The decoder ignores what follows the auth data; find where that is.
        let signed = parsed.signed_length();
        let auth_len = bytes
            .get(signed..signed + 4)
            .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize)
            .ok_or_else(|| QuoteError::Malformed("auth data length missing".into()))?;
        let end = signed + 4 + auth_len;
        let rest = bytes.get(end..).unwrap_or_default();
        if let Some(i) = rest.iter().position(|&b| b != 0) {
            return Err(QuoteError::TrailingData {
                end,
                offset: end + i,
            });
        }
        Ok(Quote {
            raw: bytes[..end.min(bytes.len())].to_vec(),
            parsed,
            td,
            pck: OnceLock::new(),
        })
    }

    /// The quote's exact bytes, without padding: what the signature covers.
    pub fn as_bytes(&self) -> &[u8] {
        &self.raw
    }

    /// dcap-qvl's decoded form, for callers that need fields not exposed here.
    pub fn raw(&self) -> &RawQuote {
        &self.parsed
    }

    /// Header version, 4 or 5.
    pub fn version(&self) -> u16 {
        self.parsed.header.version
    }

    /// The body type.
    pub fn body(&self) -> TdBody {
        match &self.parsed.report {
            Report::TD15(_) => TdBody::Td15,
            Report::TD15Ex(_) => TdBody::Td15Ex,
            _ => TdBody::Td10,
        }
    }

    /// MRTD, RTMR0-3, MRCONFIGID, MROWNER, MROWNERCONFIG, TD attributes, XFAM.
    /// Unverified until the quote passes [`crate::Verifier`].
    pub fn measurements(&self) -> TdMeasurements {
        measurements_of(&self.td)
    }

    /// TD attributes with named flags.
    pub fn td_attributes(&self) -> TdAttributes {
        TdAttributes::from_bytes(self.td.td_attributes)
    }

    /// XFAM as a little-endian integer.
    pub fn xfam(&self) -> u64 {
        u64::from_le_bytes(self.td.xfam)
    }

    /// TEE_TCB_SVN (the TDX module's security version at launch).
    pub fn tee_tcb_svn(&self) -> [u8; 16] {
        self.td.tee_tcb_svn
    }

    /// MRSEAM, the TDX module's measurement.
    pub fn mr_seam(&self) -> Digest48 {
        Digest48(self.td.mr_seam)
    }

    /// The 64 bytes the TD chose to bind into the quote.
    pub fn report_data(&self) -> [u8; 64] {
        self.td.report_data
    }

    /// The FMSPC from the PCK certificate embedded in the quote.
    pub fn fmspc(&self) -> Result<Fmspc, QuoteError> {
        self.pck().map(|p| p.fmspc)
    }

    /// The PCK leaf's facts, decoded once.
    pub(crate) fn pck(&self) -> Result<PckFacts, QuoteError> {
        self.pck.get_or_init(|| pck_facts(&self.parsed)).clone()
    }
}

/// Intel's SGX extension in PCK certificates and the entries we read.
const SGX_EXTENSION_OID: &str = "1.2.840.113741.1.13.1";
const FMSPC_OID: &str = "1.2.840.113741.1.13.1.4";
const CONFIGURATION_OID: &str = "1.2.840.113741.1.13.1.7";
const DYNAMIC_PLATFORM_OID: &str = "1.2.840.113741.1.13.1.7.1";
const CACHED_KEYS_OID: &str = "1.2.840.113741.1.13.1.7.2";
const SMT_ENABLED_OID: &str = "1.2.840.113741.1.13.1.7.3";

/// What the quote's PCK leaf certificate says about the platform. Read from
/// the quote before verification (to find collateral); only trusted once
/// dcap-qvl has verified that leaf, which [`crate::Attested`] stands for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct PckFacts {
    pub fmspc: Fmspc,
    pub dynamic_platform: Option<bool>,
    pub cached_keys: Option<bool>,
    pub smt: Option<bool>,
    pub not_before: u64,
    pub not_after: u64,
}

/// Read the PCK leaf, the first certificate of the chain (as dcap-qvl takes
/// it). This runs on every verification, so only the leaf is decoded and only
/// the entries we need are read from its SGX extension: decoding the chain and
/// the whole extension would cost more than the rest of our path together.
fn pck_facts(quote: &RawQuote) -> Result<PckFacts, QuoteError> {
    use x509_parser::der_parser::ber::{BerObject, BerObjectContent};
    use x509_parser::prelude::{FromDer, X509Certificate};

    fn entry<'a, 'b>(item: &'b BerObject<'a>) -> Option<(String, &'b BerObject<'a>)> {
        match item.as_sequence().ok()?.as_slice() {
            [key, value] => Some((key.as_oid().ok()?.to_id_string(), value)),
            _ => None,
        }
    }

    let pck = QuoteError::Pck;
    let chain = quote.raw_cert_chain().map_err(|e| pck(format!("{e:#}")))?;
    let (_, leaf) = x509_parser::pem::parse_x509_pem(chain)
        .map_err(|e| pck(format!("no PEM certificate in the chain: {e}")))?;
    let (_, cert) = X509Certificate::from_der(&leaf.contents)
        .map_err(|e| pck(format!("bad PCK certificate: {e}")))?;
    let ext = cert
        .extensions()
        .iter()
        .find(|e| e.oid.to_id_string() == SGX_EXTENSION_OID)
        .ok_or_else(|| pck("PCK certificate has no SGX extension".into()))?;
    let (_, seq) = x509_parser::der_parser::parse_der(ext.value)
        .map_err(|e| pck(format!("bad SGX extension: {e}")))?;
    let items = seq
        .as_sequence()
        .map_err(|e| pck(format!("bad SGX extension: {e}")))?;
    let validity = cert.validity();
    let mut facts = PckFacts {
        fmspc: Fmspc([0; 6]),
        dynamic_platform: None,
        cached_keys: None,
        smt: None,
        not_before: validity.not_before.timestamp().max(0) as u64,
        not_after: validity.not_after.timestamp().max(0) as u64,
    };
    let mut fmspc = None;
    for (oid, value) in items.iter().filter_map(entry) {
        match oid.as_str() {
            FMSPC_OID => {
                let BerObjectContent::OctetString(b) = &value.content else {
                    return Err(pck("FMSPC is not an OCTET STRING".into()));
                };
                fmspc = Some(
                    <[u8; 6]>::try_from(*b)
                        .map_err(|_| pck(format!("FMSPC is {} bytes, expected 6", b.len())))?,
                );
            }
            CONFIGURATION_OID => {
                for (flag, v) in value.as_sequence().into_iter().flatten().filter_map(entry) {
                    let set = v.as_bool().ok();
                    match flag.as_str() {
                        DYNAMIC_PLATFORM_OID => facts.dynamic_platform = set,
                        CACHED_KEYS_OID => facts.cached_keys = set,
                        SMT_ENABLED_OID => facts.smt = set,
                        _ => {}
                    }
                }
            }
            _ => {}
        }
    }
    facts.fmspc = Fmspc(fmspc.ok_or_else(|| pck("SGX extension has no FMSPC".into()))?);
    Ok(facts)
}

/// The measurement registers of a TD report.
pub(crate) fn measurements_of(r: &TDReport10) -> TdMeasurements {
    TdMeasurements {
        mrtd: Digest48(r.mr_td),
        rtmr: [
            Digest48(r.rt_mr0),
            Digest48(r.rt_mr1),
            Digest48(r.rt_mr2),
            Digest48(r.rt_mr3),
        ],
        mrconfigid: Digest48(r.mr_config_id),
        mrowner: Digest48(r.mr_owner),
        mrownerconfig: Digest48(r.mr_owner_config),
        td_attributes: r.td_attributes,
        xfam: r.xfam,
    }
}

/// True when the input is hex text rather than a binary quote: a binary quote
/// starts with the version bytes `04 00` or `05 00`, never with ASCII digits.
fn looks_like_hex(input: &[u8]) -> bool {
    let t = input.trim_ascii();
    let t = t
        .strip_prefix(b"0x")
        .or_else(|| t.strip_prefix(b"0X"))
        .unwrap_or(t);
    !t.is_empty()
        && t.iter()
            .all(|b| b.is_ascii_hexdigit() || b.is_ascii_whitespace())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_and_foreign_inputs_are_typed_errors() {
        assert_eq!(Quote::parse(&[]).map(|_| ()), Err(QuoteError::Empty));
        assert!(matches!(
            Quote::parse(&[4, 0, 2, 0]),
            Err(QuoteError::Truncated { len: 4, .. })
        ));
        let mut sgx = vec![0u8; 64];
        sgx[0] = 3;
        assert_eq!(
            Quote::parse(&sgx).map(|_| ()),
            Err(QuoteError::UnsupportedVersion(3))
        );
        let mut v4sgx = vec![0u8; 64];
        v4sgx[0] = 4;
        assert_eq!(Quote::parse(&v4sgx).map(|_| ()), Err(QuoteError::NotTdx(0)));
        let mut short = vec![0u8; 200];
        short[0] = 4;
        short[4] = 0x81;
        assert!(matches!(
            Quote::parse(&short),
            Err(QuoteError::Truncated { len: 200, .. })
        ));
        assert!(matches!(Quote::decode(b"0xabc"), Err(QuoteError::Hex(_))));
        assert!(matches!(
            Quote::decode(b"hello world, this is not a quote but is long enough"),
            Err(QuoteError::UnsupportedVersion(_))
        ));
    }

    /// Our leaf-only read of the PCK certificate agrees with dcap-qvl's full
    /// decoding on every real sample.
    #[test]
    fn pck_facts_agree_with_dcap_qvl() {
        let dir = tessella_tests::tdx_samples();
        for name in [
            "intel/tdx_quote",
            "intel/tdx_quote_outdated",
            "flashbots/dcap-tdx-1766059550570652607",
        ] {
            let bytes = std::fs::read(dir.join(name)).expect("read sample");
            let q = Quote::decode(&bytes).expect("parses");
            let ours = q.pck().expect("pck facts");
            let chain = dcap_qvl::intel::extract_cert_chain(q.raw()).expect("chain");
            let theirs = dcap_qvl::intel::parse_pck_extension(&chain[0]).expect("extension");
            assert_eq!(ours.fmspc.0, theirs.fmspc, "{name}");
            assert_eq!(ours.dynamic_platform, theirs.dynamic_platform, "{name}");
            assert_eq!(ours.cached_keys, theirs.cached_keys, "{name}");
            assert_eq!(ours.smt, theirs.smt_enabled, "{name}");
            assert!(ours.not_before < ours.not_after, "{name}");
        }
    }

    #[test]
    fn attribute_flags_are_named() {
        let a = TdAttributes::from_bytes(0x1000_0000u64.to_le_bytes());
        assert_eq!(a.flags(), vec!["sept_ve_disable"]);
        assert!(!a.debug());
        let d = TdAttributes::from_bytes((1u64 | 1 << 63 | 1 << 29).to_le_bytes());
        assert_eq!(d.flags(), vec!["debug", "migratable", "perfmon"]);
        assert!(d.debug());
        let r = TdAttributes::from_bytes((1u64 << 40).to_le_bytes());
        assert_eq!(r.flags(), vec!["reserved"]);
    }
}

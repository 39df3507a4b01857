//! The TCG2 crypto-agile CC event log, as the firmware publishes it in the ACPI
//! CCEL table.
//!
//! Record layout (all integers little-endian):
//!
//! ```text
//! Spec ID header (TCG_PCClientPCREvent, SHA-1 format, exactly once, first):
//!   u32 pcrIndex (0) | u32 eventType (3 = EV_NO_ACTION) | [20] digest (zero)
//!   | u32 eventSize | event:
//!       [16] "Spec ID Event03\0" | u32 platformClass | u8 minor | u8 major
//!       | u8 errata | u8 uintnSize | u32 numberOfAlgorithms
//!       | numberOfAlgorithms x { u16 algId | u16 digestSize }
//!       | u8 vendorInfoSize | [vendorInfoSize] vendorInfo
//!
//! Then TCG_PCR_EVENT2 records until the end or trailing 0xFF / 0x00 padding:
//!   u32 pcrIndex (= MrIndex) | u32 eventType | u32 digestCount
//!   | digestCount x { u16 algId | [digestSize(algId) from the header] digest }
//!   | u32 eventSize | [eventSize] event
//!
//! MrIndex 0 = MRTD (not replayed), MrIndex i (1..=4) = RTMR i-1.
//! SHA-384 = algId 0x000C. EV_NO_ACTION (3) records are not extended.
//! ```

use super::{Event, EventLog, LogFormat};
use crate::Digest48;

/// TCG algorithm id of SHA-384.
pub const TPM_ALG_SHA384: u16 = 0x000C;
/// `EV_NO_ACTION`: informational records that are never extended.
pub const EV_NO_ACTION: u32 = 3;
/// Largest accepted input, in bytes.
pub const MAX_INPUT_BYTES: usize = 16 << 20;
/// Most event records accepted.
pub const MAX_EVENTS: usize = 4096;
/// Largest accepted event data, in bytes.
pub const MAX_EVENT_BYTES: usize = 1 << 20;
/// Most algorithms accepted in the Spec ID header or digests in one record.
pub const MAX_ALGORITHMS: usize = 16;
const SPEC_ID_SIGNATURE: &[u8; 16] = b"Spec ID Event03\0";

/// Why a TCG2 / CCEL event log was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TcgLogError {
    /// The input is larger than [`MAX_INPUT_BYTES`].
    #[error("input is {size} bytes, more than the {max}-byte limit")]
    InputTooLarge {
        /// Input size.
        size: usize,
        /// The limit.
        max: usize,
    },
    /// The input ends inside a record.
    #[error("truncated at byte {offset}: {what} needs {needed} more bytes, {available} left")]
    Truncated {
        /// Byte offset where the field starts.
        offset: usize,
        /// The field being read.
        what: &'static str,
        /// Bytes the field needs.
        needed: usize,
        /// Bytes left in the input.
        available: usize,
    },
    /// The first record is not a valid Spec ID Event03 header.
    #[error("bad Spec ID header: {0}")]
    BadHeader(&'static str),
    /// Too many algorithms or digests (more than [`MAX_ALGORITHMS`]).
    #[error("record {record}: {count} algorithms/digests, more than {max}")]
    TooManyDigests {
        /// Record index (0 = header).
        record: usize,
        /// The stated count.
        count: u32,
        /// The limit.
        max: usize,
    },
    /// A digest with an algorithm id the header did not declare.
    #[error("record {record}: algorithm {alg:#06x} not declared in the Spec ID header")]
    UnknownAlgorithm {
        /// Record index (1 = first event after the header).
        record: usize,
        /// The algorithm id.
        alg: u16,
    },
    /// A measured record without a SHA-384 digest.
    #[error("record {record}: no SHA-384 digest")]
    MissingSha384 {
        /// Record index.
        record: usize,
    },
    /// Event data larger than [`MAX_EVENT_BYTES`].
    #[error("record {record}: event data is {size} bytes, more than the {max}-byte limit")]
    EventTooLarge {
        /// Record index.
        record: usize,
        /// Stated size.
        size: u32,
        /// The limit.
        max: usize,
    },
    /// More than [`MAX_EVENTS`] records.
    #[error("more than {max} records")]
    TooManyEvents {
        /// The limit.
        max: usize,
    },
    /// A MrIndex other than 0..=4.
    #[error("record {record}: MrIndex {mr_index} is not 0 (MRTD) or 1..=4 (RTMR0..3)")]
    BadMrIndex {
        /// Record index.
        record: usize,
        /// The stated MrIndex.
        mr_index: u32,
    },
}

/// One TCG_PCR_EVENT2 record with all its digests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TcgRecord {
    /// MrIndex: 0 = MRTD, 1..=4 = RTMR0..3.
    pub mr_index: u32,
    /// The TCG event type.
    pub event_type: u32,
    /// `(algorithm id, digest)` pairs in record order.
    pub digests: Vec<(u16, Vec<u8>)>,
    /// The event data.
    pub event: Vec<u8>,
}

impl TcgRecord {
    /// The SHA-384 digest, if the record has one.
    pub fn sha384(&self) -> Option<Digest48> {
        self.digests.iter().find_map(|(alg, d)| {
            if *alg != TPM_ALG_SHA384 {
                return None;
            }
            <[u8; 48]>::try_from(d.as_slice()).ok().map(Digest48)
        })
    }

    /// Whether the record extends an RTMR (MrIndex 1..=4 and not EV_NO_ACTION).
    pub fn extends_rtmr(&self) -> bool {
        (1..=4).contains(&self.mr_index) && self.event_type != EV_NO_ACTION
    }
}

/// A parsed CCEL log: the header's digest sizes and every record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TcgLog {
    /// `(algorithm id, digest size)` from the Spec ID header.
    pub algorithms: Vec<(u16, u16)>,
    /// The TCG_PCR_EVENT2 records after the header, in order.
    pub records: Vec<TcgRecord>,
}

impl TcgLog {
    /// The records that extend RTMRs as [`Event`]s (MRTD and EV_NO_ACTION
    /// records are left out).
    pub fn into_event_log(self) -> EventLog {
        let events = self
            .records
            .into_iter()
            .filter(TcgRecord::extends_rtmr)
            .filter_map(|r| {
                let digest = r.sha384()?;
                let rtmr = u8::try_from(r.mr_index - 1).ok()?;
                Some(Event {
                    rtmr,
                    event_type: r.event_type,
                    digest,
                    name: event_type_name(r.event_type).to_string(),
                    payload: r.event,
                })
            })
            .collect();
        EventLog {
            format: LogFormat::Tcg,
            events,
        }
    }
}

/// The TCG name of an event type, or `"unknown"`.
pub fn event_type_name(t: u32) -> &'static str {
    match t {
        0x0000_0000 => "EV_PREBOOT_CERT",
        0x0000_0001 => "EV_POST_CODE",
        0x0000_0003 => "EV_NO_ACTION",
        0x0000_0004 => "EV_SEPARATOR",
        0x0000_0005 => "EV_ACTION",
        0x0000_0006 => "EV_EVENT_TAG",
        0x0000_0007 => "EV_S_CRTM_CONTENTS",
        0x0000_0008 => "EV_S_CRTM_VERSION",
        0x0000_0009 => "EV_CPU_MICROCODE",
        0x0000_000A => "EV_PLATFORM_CONFIG_FLAGS",
        0x0000_000B => "EV_TABLE_OF_DEVICES",
        0x0000_000C => "EV_COMPACT_HASH",
        0x0000_000D => "EV_IPL",
        0x0000_000E => "EV_IPL_PARTITION_DATA",
        0x0000_000F => "EV_NONHOST_CODE",
        0x0000_0010 => "EV_NONHOST_CONFIG",
        0x0000_0011 => "EV_NONHOST_INFO",
        0x0000_0012 => "EV_OMIT_BOOT_DEVICE_EVENTS",
        0x8000_0001 => "EV_EFI_VARIABLE_DRIVER_CONFIG",
        0x8000_0002 => "EV_EFI_VARIABLE_BOOT",
        0x8000_0003 => "EV_EFI_BOOT_SERVICES_APPLICATION",
        0x8000_0004 => "EV_EFI_BOOT_SERVICES_DRIVER",
        0x8000_0005 => "EV_EFI_RUNTIME_SERVICES_DRIVER",
        0x8000_0006 => "EV_EFI_GPT_EVENT",
        0x8000_0007 => "EV_EFI_ACTION",
        0x8000_0008 => "EV_EFI_PLATFORM_FIRMWARE_BLOB",
        0x8000_0009 => "EV_EFI_HANDOFF_TABLES",
        0x8000_000A => "EV_EFI_PLATFORM_FIRMWARE_BLOB2",
        0x8000_000B => "EV_EFI_HANDOFF_TABLES2",
        0x8000_000C => "EV_EFI_VARIABLE_BOOT2",
        0x8000_00E0 => "EV_EFI_VARIABLE_AUTHORITY",
        0x8000_00E1 => "EV_EFI_SPDM_FIRMWARE_BLOB",
        0x8000_00E2 => "EV_EFI_SPDM_FIRMWARE_CONFIG",
        _ => "unknown",
    }
}

struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], TcgLogError> {
        let available = self.buf.len() - self.pos;
        if n > available {
            return Err(TcgLogError::Truncated {
                offset: self.pos,
                what,
                needed: n,
                available,
            });
        }
        let s = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }

    fn u8(&mut self, what: &'static str) -> Result<u8, TcgLogError> {
        Ok(self.take(1, what)?[0])
    }

    fn u16(&mut self, what: &'static str) -> Result<u16, TcgLogError> {
        let b = self.take(2, what)?;
        Ok(u16::from_le_bytes([b[0], b[1]]))
    }

    fn u32(&mut self, what: &'static str) -> Result<u32, TcgLogError> {
        let b = self.take(4, what)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    /// The rest is padding: empty, or all 0xFF, or all 0x00.
    fn at_padding(&self) -> bool {
        let rest = &self.buf[self.pos..];
        rest.iter().all(|&b| b == 0xFF) || rest.iter().all(|&b| b == 0)
    }
}

/// Parse a CCEL / TCG2 crypto-agile event log.
pub fn parse(input: &[u8]) -> Result<TcgLog, TcgLogError> {
    if input.len() > MAX_INPUT_BYTES {
        return Err(TcgLogError::InputTooLarge {
            size: input.len(),
            max: MAX_INPUT_BYTES,
        });
    }
    let mut r = Reader { buf: input, pos: 0 };
    let algorithms = parse_header(&mut r)?;
    let mut records = Vec::new();
    while !r.at_padding() {
        let record = records.len() + 1;
        if records.len() >= MAX_EVENTS {
            return Err(TcgLogError::TooManyEvents { max: MAX_EVENTS });
        }
        records.push(parse_record(&mut r, record, &algorithms)?);
    }
    Ok(TcgLog {
        algorithms,
        records,
    })
}

fn parse_header(r: &mut Reader<'_>) -> Result<Vec<(u16, u16)>, TcgLogError> {
    let _pcr = r.u32("header pcrIndex")?;
    if r.u32("header eventType")? != EV_NO_ACTION {
        return Err(TcgLogError::BadHeader("event type is not EV_NO_ACTION"));
    }
    r.take(20, "header SHA-1 digest")?;
    let size = r.u32("header eventSize")?;
    let size = usize::try_from(size).unwrap_or(usize::MAX);
    if size > MAX_EVENT_BYTES {
        return Err(TcgLogError::BadHeader("event size too large"));
    }
    let body = r.take(size, "Spec ID event")?;
    let mut h = Reader { buf: body, pos: 0 };
    if h.take(16, "Spec ID signature")? != SPEC_ID_SIGNATURE {
        return Err(TcgLogError::BadHeader(
            "signature is not \"Spec ID Event03\"",
        ));
    }
    h.take(8, "Spec ID platform class and version")?;
    let count = h.u32("Spec ID numberOfAlgorithms")?;
    if count as usize > MAX_ALGORITHMS {
        return Err(TcgLogError::TooManyDigests {
            record: 0,
            count,
            max: MAX_ALGORITHMS,
        });
    }
    let mut algorithms = Vec::with_capacity(count as usize);
    for _ in 0..count {
        let alg = h.u16("Spec ID algorithm id")?;
        let size = h.u16("Spec ID digest size")?;
        algorithms.push((alg, size));
    }
    let vendor = h.u8("Spec ID vendorInfoSize")?;
    h.take(usize::from(vendor), "Spec ID vendorInfo")?;
    match algorithms.iter().find(|(a, _)| *a == TPM_ALG_SHA384) {
        Some((_, 48)) => Ok(algorithms),
        Some(_) => Err(TcgLogError::BadHeader("SHA-384 digest size is not 48")),
        None => Err(TcgLogError::BadHeader("no SHA-384 algorithm")),
    }
}

fn parse_record(
    r: &mut Reader<'_>,
    record: usize,
    algorithms: &[(u16, u16)],
) -> Result<TcgRecord, TcgLogError> {
    let mr_index = r.u32("pcrIndex")?;
    if mr_index > 4 {
        return Err(TcgLogError::BadMrIndex { record, mr_index });
    }
    let event_type = r.u32("eventType")?;
    let count = r.u32("digest count")?;
    if count as usize > MAX_ALGORITHMS {
        return Err(TcgLogError::TooManyDigests {
            record,
            count,
            max: MAX_ALGORITHMS,
        });
    }
    let mut digests = Vec::with_capacity(count as usize);
    for _ in 0..count {
        let alg = r.u16("digest algorithm id")?;
        let size = algorithms
            .iter()
            .find(|(a, _)| *a == alg)
            .map(|(_, s)| *s)
            .ok_or(TcgLogError::UnknownAlgorithm { record, alg })?;
        digests.push((alg, r.take(usize::from(size), "digest")?.to_vec()));
    }
    let size = r.u32("eventSize")?;
    if size as usize > MAX_EVENT_BYTES {
        return Err(TcgLogError::EventTooLarge {
            record,
            size,
            max: MAX_EVENT_BYTES,
        });
    }
    let event = r.take(size as usize, "event data")?.to_vec();
    let rec = TcgRecord {
        mr_index,
        event_type,
        digests,
        event,
    };
    if rec.extends_rtmr() && rec.sha384().is_none() {
        return Err(TcgLogError::MissingSha384 { record });
    }
    Ok(rec)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rtmr::sha384;

    fn header(algs: &[(u16, u16)]) -> Vec<u8> {
        let mut ev = SPEC_ID_SIGNATURE.to_vec();
        ev.extend_from_slice(&0u32.to_le_bytes()); // platform class
        ev.extend_from_slice(&[0, 2, 0, 2]); // minor, major, errata, uintn size
        ev.extend_from_slice(&(algs.len() as u32).to_le_bytes());
        for (a, s) in algs {
            ev.extend_from_slice(&a.to_le_bytes());
            ev.extend_from_slice(&s.to_le_bytes());
        }
        ev.push(0); // vendor info size
        let mut out = Vec::new();
        out.extend_from_slice(&0u32.to_le_bytes());
        out.extend_from_slice(&EV_NO_ACTION.to_le_bytes());
        out.extend_from_slice(&[0; 20]);
        out.extend_from_slice(&(ev.len() as u32).to_le_bytes());
        out.extend_from_slice(&ev);
        out
    }

    fn record(mr: u32, ty: u32, data: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        out.extend_from_slice(&mr.to_le_bytes());
        out.extend_from_slice(&ty.to_le_bytes());
        out.extend_from_slice(&2u32.to_le_bytes());
        out.extend_from_slice(&0x000Bu16.to_le_bytes()); // SHA-256, 32 bytes
        out.extend_from_slice(&[0xAA; 32]);
        out.extend_from_slice(&TPM_ALG_SHA384.to_le_bytes());
        out.extend_from_slice(&sha384(data).0);
        out.extend_from_slice(&(data.len() as u32).to_le_bytes());
        out.extend_from_slice(data);
        out
    }

    /// A log with a header, an MRTD record, an EV_NO_ACTION record, events in
    /// RTMR0..2 and 0xFF padding; and the RTMRs computed independently.
    fn sample() -> (Vec<u8>, [Digest48; 4]) {
        let mut log = header(&[(0x000B, 32), (TPM_ALG_SHA384, 48)]);
        log.extend(record(0, 0x8000_0008, b"mrtd-only"));
        log.extend(record(1, EV_NO_ACTION, b"StartupLocality"));
        log.extend(record(1, 0x8000_000B, b"td hob"));
        log.extend(record(2, 0x8000_0007, b"Calling EFI Application"));
        log.extend(record(1, 4, &[0, 0, 0, 0]));
        log.extend(record(3, 6, b"cmdline"));
        log.extend([0xFF; 64]);

        let ext = |r: &Digest48, d: &[u8]| {
            let mut v = r.0.to_vec();
            v.extend_from_slice(&sha384(d).0);
            sha384(&v)
        };
        let mut want = [Digest48::ZERO; 4];
        want[0] = ext(&want[0], b"td hob");
        want[0] = ext(&want[0], &[0, 0, 0, 0]);
        want[1] = ext(&want[1], b"Calling EFI Application");
        want[2] = ext(&want[2], b"cmdline");
        (log, want)
    }

    #[test]
    fn replays_synthetic_log() {
        let (log, want) = sample();
        let parsed = parse(&log).expect("valid log");
        assert_eq!(parsed.records.len(), 6);
        let ev = parsed.into_event_log();
        assert_eq!(ev.events().len(), 4);
        assert_eq!(ev.events()[1].name, "EV_EFI_ACTION");
        assert_eq!(ev.replay(), want);
        // Auto-detection picks TCG for binary input, and zero padding also ends the log.
        let mut zero_padded = log[..log.len() - 64].to_vec();
        zero_padded.extend([0; 16]);
        let auto = EventLog::parse(&zero_padded, None).expect("auto");
        assert_eq!(auto.format(), LogFormat::Tcg);
        assert_eq!(auto.replay(), want);
    }

    #[test]
    fn every_truncation_is_a_typed_error() {
        let (log, _) = sample();
        let end = log.len() - 64;
        let header_len = header(&[(0x000B, 32), (TPM_ALG_SHA384, 48)]).len();
        let boundaries: Vec<usize> = {
            let mut b = vec![header_len];
            let mut r = Reader {
                buf: &log,
                pos: header_len,
            };
            let algs = [(0x000B, 32), (TPM_ALG_SHA384, 48)];
            while r.pos < end {
                parse_record(&mut r, 1, &algs).expect("record");
                b.push(r.pos);
            }
            b
        };
        for cut in 0..end {
            let res = parse(&log[..cut]);
            let whole = boundaries.iter().filter(|&&b| b <= cut).count();
            match res {
                // A cut that leaves only zero bytes of a record (MrIndex 0) reads as
                // padding: the log ends at the last whole record.
                Ok(l) => {
                    assert_eq!(l.records.len(), whole.saturating_sub(1), "cut {cut}");
                    let last = boundaries[l.records.len()];
                    assert!(log[last..cut].iter().all(|&b| b == 0), "cut {cut}");
                }
                Err(e) => assert!(matches!(e, TcgLogError::Truncated { .. }), "cut {cut}: {e}"),
            }
            if !boundaries.contains(&cut) && cut > header_len + 4 {
                assert!(parse(&log[..cut]).is_err(), "cut {cut} inside a record");
            }
        }
        // Pseudo-random truncations and byte flips: errors or Ok, never a panic.
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        for _ in 0..2000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let mut m = log.clone();
            let i = (x as usize) % m.len();
            m[i] ^= (x >> 32) as u8 | 1;
            let cut = ((x >> 16) as usize) % (m.len() + 1);
            let _ = parse(&m[..cut]);
            let _ = parse(&m);
        }
    }

    #[test]
    fn refuses_bad_headers_and_records() {
        assert!(matches!(
            parse(&header(&[(0x000B, 32)])),
            Err(TcgLogError::BadHeader("no SHA-384 algorithm"))
        ));
        let mut bad_sig = header(&[(TPM_ALG_SHA384, 48)]);
        bad_sig[32] = b'X';
        assert!(matches!(parse(&bad_sig), Err(TcgLogError::BadHeader(_))));

        let mut log = header(&[(TPM_ALG_SHA384, 48)]);
        log.extend(record(1, 4, b"x")); // uses undeclared SHA-256
        assert_eq!(
            parse(&log),
            Err(TcgLogError::UnknownAlgorithm {
                record: 1,
                alg: 0x000B
            })
        );

        let mut log = header(&[(0x000B, 32), (TPM_ALG_SHA384, 48)]);
        log.extend(record(5, 4, b"x"));
        assert_eq!(
            parse(&log),
            Err(TcgLogError::BadMrIndex {
                record: 1,
                mr_index: 5
            })
        );

        let mut log = header(&[(0x000B, 32), (TPM_ALG_SHA384, 48)]);
        let mut rec = record(1, 4, b"x");
        let at = rec.len() - 5;
        rec[at..at + 4].copy_from_slice(&u32::MAX.to_le_bytes());
        log.extend(rec);
        assert!(matches!(
            parse(&log),
            Err(TcgLogError::EventTooLarge { record: 1, .. })
        ));
    }
}

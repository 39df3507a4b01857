//! RTMR0: the firmware's own measurements, computed where we can and taken
//! from a per-host allow-list where we cannot.
//!
//! # Which firmware this models
//!
//! The event sequence below is that of an OVMF built *with* TDX CC measurement
//! (edk2 >= 202302 `OvmfPkgX64` with `CC_MEASUREMENT_ENABLE`, or the
//! `IntelTdx` platform), in the layout before edk2-stable202505, which is the
//! layout dstack's `dstack-mr` calls "pre-202505":
//!
//! | # | event | type | digest input | source |
//! |---|-------|------|--------------|--------|
//! | 1 | TD HOB | `EV_EFI_HANDOFF_TABLES2` | HOB list bytes, END header excluded | computed |
//! | 2 | CFV | `EV_EFI_PLATFORM_FIRMWARE_BLOB2` | the CFV section's file bytes | computed |
//! | 3-7 | SecureBoot, PK, KEK, db, dbx | `EV_EFI_VARIABLE_DRIVER_CONFIG` | `UEFI_VARIABLE_DATA` | computed |
//! | 8 | separator | `EV_SEPARATOR` | `00 00 00 00` | computed |
//! | 9.. | ACPI loader, RSDP, tables, BootOrder, Boot#### | various | host dependent | input |
//!
//! Confidence:
//! - TD HOB: modelled on QEMU `hw/i386/tdvf-hob.c` / `tdx.c` (upstream): a PHIT
//!   HOB (version 9, all memory fields 0, `EfiEndOfHobList` = address just past
//!   the END HOB), one 48-byte resource descriptor per RAM range sorted by
//!   address, then the END HOB. RAM is `[0, low)` plus `[4 GiB, 4 GiB + high)`,
//!   where `low = RAM` below 2.75 GiB and 2 GiB otherwise (q35). TD_HOB and
//!   TempMem sections are accepted ranges (system memory), the rest unaccepted;
//!   pieces are not merged. edk2's `TdxHelperMeasureTdHob` hashes from the
//!   start up to, not including, the END HOB. This agrees with dstack-mr.
//!   Older Intel QEMU branches also put MMIO resource HOBs in the list: for
//!   those hosts the HOB digest here is wrong (unverified).
//! - CFV: `TdxHelperMeasureCfvImage` hashes `PcdCfvRawDataSize` bytes of the
//!   variable store, the same offset and size the TDVF CFV section declares.
//! - Secure Boot variables: measured with empty data, i.e. as absent, which is
//!   what a firmware without enrolled keys and without a `SecureBoot`
//!   variable produces (dstack-mr does the same). A build with
//!   `SECURE_BOOT_ENABLE` creates `SecureBoot` = 0 and would measure one byte
//!   of data: that case is not modelled. The pinned trixie `OVMF.fd` has no
//!   `SecureBootConfigDxe` in its firmware volumes (the module such builds
//!   carry), so it is taken to be built without it.
//! - Everything after the separator depends on the QEMU version, machine type,
//!   devices and boot options, and is taken from a capture ([`Rtmr0HostEvents`]).
//!
//! # Which Debian OVMF
//!
//! bookworm's `ovmf` 2022.11-6+deb12u2 `OVMF.fd` has TDVF metadata but does not
//! measure anything into RTMRs: its firmware volumes contain no `TdTcg2Dxe`
//! (the producer of `EFI_CC_MEASUREMENT_PROTOCOL`) and no SEC-side TD HOB
//! measurement, so a TD booted from it would have RTMR0-2 all zero and no
//! CCEL. trixie's `ovmf` 2025.02-8+deb13u1 carries `TdTcg2Dxe` and
//! `TdTcg2Pei` (found by listing the module names in its decompressed firmware
//! volumes), predates edk2-stable202505, and is what tessella's image pins.
//! Neither reading has been confirmed by booting on TDX hardware.

use serde::{Deserialize, Serialize};

use crate::eventlog::{tcg, Event};
use crate::rtmr::{sha384, Rtmrs};
use crate::tdvf::{efi_guid, SectionKind, Tdvf};
use crate::Digest48;

/// `EV_SEPARATOR`.
pub const EV_SEPARATOR: u32 = 0x0000_0004;
/// `EV_EFI_VARIABLE_DRIVER_CONFIG`.
pub const EV_EFI_VARIABLE_DRIVER_CONFIG: u32 = 0x8000_0001;
/// `EV_EFI_PLATFORM_FIRMWARE_BLOB2`.
pub const EV_EFI_PLATFORM_FIRMWARE_BLOB2: u32 = 0x8000_000A;
/// `EV_EFI_HANDOFF_TABLES2`.
pub const EV_EFI_HANDOFF_TABLES2: u32 = 0x8000_000B;

/// `EFI_GLOBAL_VARIABLE` (8be4df61-93ca-11d2-aa0d-00e098032b8c): SecureBoot, PK, KEK.
pub const EFI_GLOBAL_VARIABLE: [u8; 16] = efi_guid(
    0x8be4_df61,
    0x93ca,
    0x11d2,
    [0xaa, 0x0d, 0x00, 0xe0, 0x98, 0x03, 0x2b, 0x8c],
);
/// `EFI_IMAGE_SECURITY_DATABASE_GUID` (d719b2cb-3d3a-4596-a3bc-dad00e67656f): db, dbx.
pub const EFI_IMAGE_SECURITY_DATABASE: [u8; 16] = efi_guid(
    0xd719_b2cb,
    0x3d3a,
    0x4596,
    [0xa3, 0xbc, 0xda, 0xd0, 0x0e, 0x67, 0x65, 0x6f],
);

/// The `format` value of a host-events file.
pub const HOST_EVENTS_FORMAT: &str = "tessella-rtmr0-host-events";
/// The only `version` of the host-events file.
pub const HOST_EVENTS_VERSION: u32 = 1;
/// Most host events accepted in a file.
pub const MAX_HOST_EVENTS: usize = 256;

const GIB: u64 = 1 << 30;
/// q35: RAM at or above this size is split at 2 GiB.
const LOWMEM_SPLIT_THRESHOLD: u64 = 0xB000_0000;
const LOWMEM_SPLIT: u64 = 2 * GIB;
const HIGHMEM_START: u64 = 4 * GIB;
/// `EFI_RESOURCE_SYSTEM_MEMORY`.
const RESOURCE_SYSTEM_MEMORY: u32 = 0;
/// `EFI_RESOURCE_MEMORY_UNACCEPTED`.
const RESOURCE_MEMORY_UNACCEPTED: u32 = 7;
/// PRESENT | INITIALIZED | TESTED, used by QEMU for both private and unaccepted RAM.
const RESOURCE_ATTRIBUTES: u32 = 0x7;

/// Where an RTMR0 event's digest came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum EventSource {
    /// Computed here from the firmware and the VM shape.
    Computed,
    /// Taken from the host-events input (a capture from a real host).
    Input,
}

/// One RTMR0 event and where it came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Rtmr0Event {
    /// The event (RTMR index 0).
    pub event: Event,
    /// Computed or taken from input.
    pub source: EventSource,
}

/// The RTMR0 events of a boot and, when every part is known, the register value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Rtmr0 {
    /// Events in extend order.
    pub events: Vec<Rtmr0Event>,
    /// RTMR0 after all events; `None` when no host events were given, since
    /// the firmware-only prefix is not a value any quote will carry.
    pub value: Option<Digest48>,
}

/// One host-dependent event in the allow-list input.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HostEvent {
    /// A label (e.g. the TCG event type name or "acpi-tables").
    pub name: String,
    /// The SHA-384 digest that was extended.
    pub digest: Digest48,
    /// The TCG event type.
    pub event_type: u32,
}

/// The host-dependent RTMR0 events after the separator, captured once per
/// host shape (QEMU version, machine, devices, RAM) on real hardware.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rtmr0HostEvents {
    /// Always [`HOST_EVENTS_FORMAT`].
    pub format: String,
    /// Always [`HOST_EVENTS_VERSION`].
    pub version: u32,
    /// The events, in extend order.
    pub events: Vec<HostEvent>,
}

/// Why RTMR0 could not be computed or an input was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Rtmr0Error {
    /// The firmware has no section this computation needs.
    #[error("firmware has no {0} section")]
    MissingSection(SectionKind),
    /// The RAM size cannot hold the firmware's memory sections or is not page aligned.
    #[error("bad memory size: {0}")]
    Memory(String),
    /// The host-events file is malformed.
    #[error("host events: {0}")]
    HostEvents(String),
    /// The captured event log could not be used.
    #[error("capture: {0}")]
    Capture(String),
}

impl Rtmr0HostEvents {
    /// Parse and check a host-events JSON file.
    pub fn from_json(input: &[u8]) -> Result<Self, Rtmr0Error> {
        let v: Rtmr0HostEvents =
            serde_json::from_slice(input).map_err(|e| Rtmr0Error::HostEvents(e.to_string()))?;
        if v.format != HOST_EVENTS_FORMAT {
            return Err(Rtmr0Error::HostEvents(format!(
                "format is {:?}, expected {HOST_EVENTS_FORMAT:?}",
                v.format
            )));
        }
        if v.version != HOST_EVENTS_VERSION {
            return Err(Rtmr0Error::HostEvents(format!(
                "version {} is not supported (only {HOST_EVENTS_VERSION})",
                v.version
            )));
        }
        if v.events.len() > MAX_HOST_EVENTS {
            return Err(Rtmr0Error::HostEvents(format!(
                "{} events, more than {MAX_HOST_EVENTS}",
                v.events.len()
            )));
        }
        Ok(v)
    }

    /// Pretty JSON with a trailing newline.
    pub fn to_json(&self) -> String {
        // Serializing plain strings and numbers cannot fail.
        serde_json::to_string_pretty(self).unwrap_or_default() + "\n"
    }

    /// The RTMR0 events after the first `EV_SEPARATOR` of a captured CCEL
    /// (binary TCG2 log from `/sys/firmware/acpi/tables/data/CCEL`).
    pub fn from_ccel(input: &[u8]) -> Result<Self, Rtmr0Error> {
        let log = tcg::parse(input).map_err(|e| Rtmr0Error::Capture(e.to_string()))?;
        let mut rtmr0 = log
            .records
            .iter()
            .filter(|r| r.extends_rtmr() && r.mr_index == 1);
        if !rtmr0.any(|r| r.event_type == EV_SEPARATOR) {
            return Err(Rtmr0Error::Capture(
                "no EV_SEPARATOR in RTMR0: not a firmware log this model knows".into(),
            ));
        }
        let mut events = Vec::new();
        for r in rtmr0 {
            let digest = r
                .sha384()
                .ok_or_else(|| Rtmr0Error::Capture("RTMR0 event without SHA-384".into()))?;
            events.push(HostEvent {
                name: tcg::event_type_name(r.event_type).to_string(),
                digest,
                event_type: r.event_type,
            });
        }
        if events.len() > MAX_HOST_EVENTS {
            return Err(Rtmr0Error::Capture(format!(
                "{} RTMR0 events after the separator, more than {MAX_HOST_EVENTS}",
                events.len()
            )));
        }
        Ok(Rtmr0HostEvents {
            format: HOST_EVENTS_FORMAT.to_string(),
            version: HOST_EVENTS_VERSION,
            events,
        })
    }
}

/// The `UEFI_VARIABLE_DATA` structure that `EV_EFI_VARIABLE_*` events hash:
/// vendor GUID ‖ u64 name length in UTF-16 units ‖ u64 data length ‖
/// UTF-16LE name (no NUL) ‖ data.
pub fn uefi_variable_data(vendor: &[u8; 16], name: &str, data: &[u8]) -> Vec<u8> {
    let name16: Vec<u16> = name.encode_utf16().collect();
    let mut out = Vec::with_capacity(32 + 2 * name16.len() + data.len());
    out.extend_from_slice(vendor);
    out.extend_from_slice(&(name16.len() as u64).to_le_bytes());
    out.extend_from_slice(&(data.len() as u64).to_le_bytes());
    for u in name16 {
        out.extend_from_slice(&u.to_le_bytes());
    }
    out.extend_from_slice(data);
    out
}

/// A RAM range of the TD and whether the host accepted it before boot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct RamRange {
    start: u64,
    end: u64,
    accepted: bool,
}

fn ram_ranges(tdvf: &Tdvf, memory_bytes: u64) -> Result<Vec<RamRange>, Rtmr0Error> {
    if memory_bytes == 0 || !memory_bytes.is_multiple_of(crate::tdvf::PAGE_SIZE) {
        return Err(Rtmr0Error::Memory(format!(
            "{memory_bytes} is not a positive multiple of 4 KiB"
        )));
    }
    let low = if memory_bytes >= LOWMEM_SPLIT_THRESHOLD {
        LOWMEM_SPLIT
    } else {
        memory_bytes
    };
    let mut ranges = vec![RamRange {
        start: 0,
        end: low,
        accepted: false,
    }];
    if memory_bytes > low {
        let end = HIGHMEM_START
            .checked_add(memory_bytes - low)
            .ok_or_else(|| Rtmr0Error::Memory(format!("{memory_bytes} overflows")))?;
        ranges.push(RamRange {
            start: HIGHMEM_START,
            end,
            accepted: false,
        });
    }
    for s in tdvf.sections() {
        if !matches!(s.kind, SectionKind::TdHob | SectionKind::TempMem) {
            continue;
        }
        let (start, end) = (s.gpa, s.gpa + s.mem_size);
        let i = ranges
            .iter()
            .position(|r| !r.accepted && r.start <= start && end <= r.end)
            .ok_or_else(|| {
                Rtmr0Error::Memory(format!(
                    "{} section {start:#x}..{end:#x} is not inside guest RAM of {memory_bytes:#x} bytes",
                    s.kind
                ))
            })?;
        let r = ranges.remove(i);
        if r.start < start {
            ranges.push(RamRange {
                start: r.start,
                end: start,
                accepted: false,
            });
        }
        ranges.push(RamRange {
            start,
            end,
            accepted: true,
        });
        if end < r.end {
            ranges.push(RamRange {
                start: end,
                end: r.end,
                accepted: false,
            });
        }
    }
    ranges.sort_by_key(|r| r.start);
    Ok(ranges)
}

/// The TD HOB list bytes QEMU writes for this firmware and RAM size, as
/// measured: from the PHIT HOB up to, not including, the END HOB.
pub fn td_hob(tdvf: &Tdvf, memory_bytes: u64) -> Result<Vec<u8>, Rtmr0Error> {
    let hob = tdvf
        .section(SectionKind::TdHob)
        .ok_or(Rtmr0Error::MissingSection(SectionKind::TdHob))?;
    let ranges = ram_ranges(tdvf, memory_bytes)?;
    let mut out = Vec::with_capacity(56 + 48 * ranges.len());
    // PHIT: type 1, length 56, version 9, boot mode 0, four zero memory fields,
    // EfiEndOfHobList filled below.
    out.extend_from_slice(&1u16.to_le_bytes());
    out.extend_from_slice(&56u16.to_le_bytes());
    out.extend_from_slice(&0u32.to_le_bytes());
    out.extend_from_slice(&9u32.to_le_bytes());
    out.extend_from_slice(&0u32.to_le_bytes());
    out.extend_from_slice(&[0u8; 40]);
    for r in &ranges {
        out.extend_from_slice(&3u16.to_le_bytes());
        out.extend_from_slice(&48u16.to_le_bytes());
        out.extend_from_slice(&0u32.to_le_bytes());
        out.extend_from_slice(&[0u8; 16]); // owner GUID
        let kind = if r.accepted {
            RESOURCE_SYSTEM_MEMORY
        } else {
            RESOURCE_MEMORY_UNACCEPTED
        };
        out.extend_from_slice(&kind.to_le_bytes());
        out.extend_from_slice(&RESOURCE_ATTRIBUTES.to_le_bytes());
        out.extend_from_slice(&r.start.to_le_bytes());
        out.extend_from_slice(&(r.end - r.start).to_le_bytes());
    }
    let end_hob = 8u64;
    let total = out.len() as u64 + end_hob;
    if total > hob.mem_size {
        return Err(Rtmr0Error::Memory(format!(
            "the TD HOB needs {total} bytes, its section has {}",
            hob.mem_size
        )));
    }
    let end_of_list = hob.gpa + total;
    out[48..56].copy_from_slice(&end_of_list.to_le_bytes());
    Ok(out)
}

fn computed(event_type: u32, name: &str, digest: Digest48, payload: Vec<u8>) -> Rtmr0Event {
    Rtmr0Event {
        event: Event {
            rtmr: 0,
            event_type,
            digest,
            name: name.to_string(),
            payload,
        },
        source: EventSource::Computed,
    }
}

/// The computed RTMR0 events (up to and including the separator) for a
/// CC-measuring OVMF with `memory_bytes` of RAM, followed by `host` events if
/// given. See the module documentation for what is modelled and what is not.
pub fn rtmr0(
    tdvf: &Tdvf,
    memory_bytes: u64,
    host: Option<&Rtmr0HostEvents>,
) -> Result<Rtmr0, Rtmr0Error> {
    let hob = td_hob(tdvf, memory_bytes)?;
    let cfv = tdvf
        .section(SectionKind::Cfv)
        .ok_or(Rtmr0Error::MissingSection(SectionKind::Cfv))?;
    let mut events = vec![
        computed(EV_EFI_HANDOFF_TABLES2, "td-hob", sha384(&hob), hob),
        computed(
            EV_EFI_PLATFORM_FIRMWARE_BLOB2,
            "cfv",
            sha384(tdvf.section_data(cfv)),
            Vec::new(),
        ),
    ];
    for (vendor, name) in [
        (&EFI_GLOBAL_VARIABLE, "SecureBoot"),
        (&EFI_GLOBAL_VARIABLE, "PK"),
        (&EFI_GLOBAL_VARIABLE, "KEK"),
        (&EFI_IMAGE_SECURITY_DATABASE, "db"),
        (&EFI_IMAGE_SECURITY_DATABASE, "dbx"),
    ] {
        let data = uefi_variable_data(vendor, name, &[]);
        events.push(computed(
            EV_EFI_VARIABLE_DRIVER_CONFIG,
            name,
            sha384(&data),
            data,
        ));
    }
    events.push(computed(
        EV_SEPARATOR,
        "separator",
        sha384(&[0; 4]),
        vec![0; 4],
    ));
    let value = host.map(|h| {
        for e in &h.events {
            events.push(Rtmr0Event {
                event: Event {
                    rtmr: 0,
                    event_type: e.event_type,
                    digest: e.digest,
                    name: e.name.clone(),
                    payload: Vec::new(),
                },
                source: EventSource::Input,
            });
        }
        Rtmrs::replay_one(events.iter().map(|e| &e.event.digest))
    });
    Ok(Rtmr0 { events, value })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::eventlog::tcg::{EV_NO_ACTION, TPM_ALG_SHA384};

    #[test]
    fn variable_data_matches_hand_built_bytes() {
        let got = uefi_variable_data(&EFI_GLOBAL_VARIABLE, "PK", &[1, 2]);
        let want: Vec<u8> = [
            // 8be4df61-93ca-11d2-aa0d-00e098032b8c, first three fields byte-swapped
            &[0x61, 0xdf, 0xe4, 0x8b, 0xca, 0x93, 0xd2, 0x11][..],
            &[0xaa, 0x0d, 0x00, 0xe0, 0x98, 0x03, 0x2b, 0x8c],
            &[2, 0, 0, 0, 0, 0, 0, 0], // name length in UTF-16 units
            &[2, 0, 0, 0, 0, 0, 0, 0], // data length
            &[b'P', 0, b'K', 0],
            &[1, 2],
        ]
        .concat();
        assert_eq!(got, want);
        let db = uefi_variable_data(&EFI_IMAGE_SECURITY_DATABASE, "db", &[]);
        assert_eq!(
            &db[..16],
            &[
                0xcb, 0xb2, 0x19, 0xd7, 0x3a, 0x3d, 0x96, 0x45, 0xa3, 0xbc, 0xda, 0xd0, 0x0e, 0x67,
                0x65, 0x6f
            ]
        );
        assert_eq!(db.len(), 16 + 16 + 4);
    }

    fn digest_hex(b: u8) -> String {
        hex::encode([b; 48])
    }

    #[test]
    fn host_events_json_round_trip_and_errors() {
        let good = format!(
            r#"{{"format":"tessella-rtmr0-host-events","version":1,
                "events":[{{"name":"acpi","digest":"{}","event_type":2147483659}}]}}"#,
            digest_hex(0xab)
        );
        let h = Rtmr0HostEvents::from_json(good.as_bytes()).expect("valid");
        assert_eq!(h.events[0].digest, Digest48([0xab; 48]));
        assert_eq!(h.events[0].event_type, 0x8000_000B);
        assert_eq!(
            Rtmr0HostEvents::from_json(h.to_json().as_bytes()).expect("round trip"),
            h
        );

        let bad = |text: String, want: &str| {
            let e = Rtmr0HostEvents::from_json(text.as_bytes()).expect_err("refused");
            assert!(e.to_string().contains(want), "{e} !~ {want}");
        };
        bad(good.replace("\"version\":1", "\"version\":2"), "version 2");
        bad(good.replace("rtmr0-host-events", "other"), "format is");
        bad(
            good.replace("\"name\"", "\"extra\":1,\"name\""),
            "unknown field",
        );
        bad(
            good.replace("\"version\":1,", "\"version\":1,\"x\":0,"),
            "unknown field",
        );
        bad(good.replace(&digest_hex(0xab), "abcd"), "expected 48 bytes");
        bad(
            good.replace(",\"event_type\":2147483659", ""),
            "missing field",
        );
        bad("[]".into(), "host events");
    }

    /// A TCG2 log: Spec ID header (SHA-384 only) then `(mr_index, type, data)` records.
    fn tcg_log(records: &[(u32, u32, &[u8])]) -> Vec<u8> {
        let mut ev = b"Spec ID Event03\0".to_vec();
        ev.extend_from_slice(&0u32.to_le_bytes());
        ev.extend_from_slice(&[0, 2, 0, 2]);
        ev.extend_from_slice(&1u32.to_le_bytes());
        ev.extend_from_slice(&TPM_ALG_SHA384.to_le_bytes());
        ev.extend_from_slice(&48u16.to_le_bytes());
        ev.push(0);
        let mut out = Vec::new();
        out.extend_from_slice(&0u32.to_le_bytes());
        out.extend_from_slice(&EV_NO_ACTION.to_le_bytes());
        out.extend_from_slice(&[0; 20]);
        out.extend_from_slice(&(ev.len() as u32).to_le_bytes());
        out.extend_from_slice(&ev);
        for (mr, ty, data) in records {
            out.extend_from_slice(&mr.to_le_bytes());
            out.extend_from_slice(&ty.to_le_bytes());
            out.extend_from_slice(&1u32.to_le_bytes());
            out.extend_from_slice(&TPM_ALG_SHA384.to_le_bytes());
            out.extend_from_slice(&sha384(data).0);
            out.extend_from_slice(&(data.len() as u32).to_le_bytes());
            out.extend_from_slice(data);
        }
        out
    }

    #[test]
    fn capture_takes_rtmr0_events_after_the_separator() {
        let log = tcg_log(&[
            (1, EV_EFI_HANDOFF_TABLES2, b"hob"),
            (1, EV_EFI_PLATFORM_FIRMWARE_BLOB2, b"cfv"),
            (1, EV_SEPARATOR, &[0; 4]),
            (2, 0x8000_0003, b"kernel"), // RTMR1: not taken
            (1, 0x8000_000B, b"acpi loader"),
            (1, EV_NO_ACTION, b"not extended"),
            (1, 0x8000_0006, b"boot order"),
        ]);
        let h = Rtmr0HostEvents::from_ccel(&log).expect("capture");
        assert_eq!(h.format, HOST_EVENTS_FORMAT);
        let got: Vec<_> = h.events.iter().map(|e| (e.event_type, e.digest)).collect();
        assert_eq!(
            got,
            [
                (0x8000_000B, sha384(b"acpi loader")),
                (0x8000_0006, sha384(b"boot order")),
            ]
        );
        assert_eq!(h.events[0].name, "EV_EFI_HANDOFF_TABLES2");

        let no_sep = tcg_log(&[(1, EV_EFI_HANDOFF_TABLES2, b"hob")]);
        let e = Rtmr0HostEvents::from_ccel(&no_sep).expect_err("no separator");
        assert!(e.to_string().contains("no EV_SEPARATOR"), "{e}");
        let e = Rtmr0HostEvents::from_ccel(&[1, 2, 3]).expect_err("garbage");
        assert!(e.to_string().starts_with("capture: "), "{e}");
    }

    /// A synthetic image with a CFV, a TD HOB at 0x9000 and TempMem at 0x1000..0x3000.
    fn tdvf() -> Tdvf {
        let cfv = vec![0x5a; 0x1000];
        let mut fw = cfv.clone();
        let desc = fw.len();
        let sections: [(u32, u32, u64, u64, u32); 3] = [
            (0, 0x1000, 0xffff_f000, 0x1000, 1),
            (0, 0, 0x9000, 0x1000, 2),
            (0, 0, 0x1000, 0x2000, 3),
        ];
        fw.extend_from_slice(b"TDVF");
        fw.extend_from_slice(&(16u32 + 32 * 3).to_le_bytes());
        fw.extend_from_slice(&1u32.to_le_bytes());
        fw.extend_from_slice(&3u32.to_le_bytes());
        for (off, raw, gpa, mem, kind) in sections {
            fw.extend_from_slice(&off.to_le_bytes());
            fw.extend_from_slice(&raw.to_le_bytes());
            fw.extend_from_slice(&gpa.to_le_bytes());
            fw.extend_from_slice(&mem.to_le_bytes());
            fw.extend_from_slice(&kind.to_le_bytes());
            fw.extend_from_slice(&0u32.to_le_bytes());
        }
        let from_end = (fw.len() - desc + 22 + 18 + 32) as u32;
        fw.extend_from_slice(&from_end.to_le_bytes());
        fw.extend_from_slice(&22u16.to_le_bytes());
        fw.extend_from_slice(&crate::tdvf::TDX_METADATA_OFFSET_GUID);
        fw.extend_from_slice(&40u16.to_le_bytes());
        fw.extend_from_slice(&crate::tdvf::OVMF_TABLE_FOOTER_GUID);
        fw.extend_from_slice(&[0; 32]);
        Tdvf::parse(&fw).expect("synthetic image")
    }

    /// Resource descriptors of a HOB as (type, start, length).
    fn resources(hob: &[u8]) -> Vec<(u32, u64, u64)> {
        hob[56..]
            .chunks_exact(48)
            .map(|r| {
                assert_eq!(&r[..8], &[3, 0, 48, 0, 0, 0, 0, 0]);
                assert_eq!(&r[28..32], &[7, 0, 0, 0]);
                let u64at = |i: usize| {
                    let mut a = [0u8; 8];
                    a.copy_from_slice(&r[i..i + 8]);
                    u64::from_le_bytes(a)
                };
                (u32::from(r[24]), u64at(32), u64at(40))
            })
            .collect()
    }

    #[test]
    fn td_hob_layout_small_and_split_ram() {
        let t = tdvf();
        let hob = td_hob(&t, GIB).expect("1 GiB");
        assert_eq!(&hob[..12], &[1, 0, 56, 0, 0, 0, 0, 0, 9, 0, 0, 0]);
        assert_eq!(
            resources(&hob),
            [
                (7, 0, 0x1000),
                (0, 0x1000, 0x2000),
                (7, 0x3000, 0x6000),
                (0, 0x9000, 0x1000),
                (7, 0xa000, GIB - 0xa000),
            ]
        );
        // EfiEndOfHobList: just past the END HOB (8 bytes) that follows.
        let end = 0x9000 + hob.len() as u64 + 8;
        assert_eq!(&hob[48..56], &end.to_le_bytes());

        let big = td_hob(&t, 4 * GIB).expect("4 GiB");
        let r = resources(&big);
        assert_eq!(r[4], (7, 0xa000, 2 * GIB - 0xa000));
        assert_eq!(r[5], (7, 4 * GIB, 2 * GIB));
        // Just below the 2.75 GiB threshold there is no split.
        let r = resources(&td_hob(&t, 0xAFFF_F000).expect("just under"));
        assert_eq!(r.last(), Some(&(7, 0xa000, 0xAFFF_F000 - 0xa000)));

        assert!(matches!(td_hob(&t, 0x8000), Err(Rtmr0Error::Memory(_))));
        assert!(matches!(td_hob(&t, 12345), Err(Rtmr0Error::Memory(_))));
    }

    #[test]
    fn rtmr0_value_only_with_host_events() {
        let t = tdvf();
        let r = rtmr0(&t, GIB, None).expect("computed");
        assert_eq!(r.value, None);
        let names: Vec<_> = r.events.iter().map(|e| e.event.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "td-hob",
                "cfv",
                "SecureBoot",
                "PK",
                "KEK",
                "db",
                "dbx",
                "separator"
            ]
        );
        assert!(r.events.iter().all(|e| e.source == EventSource::Computed));
        assert_eq!(r.events[1].event.digest, sha384(&[0x5a; 0x1000]));
        assert_eq!(r.events[7].event.digest, sha384(&[0, 0, 0, 0]));
        assert_eq!(
            r.events[3].event.digest,
            sha384(&uefi_variable_data(&EFI_GLOBAL_VARIABLE, "PK", &[]))
        );

        let host = Rtmr0HostEvents {
            format: HOST_EVENTS_FORMAT.into(),
            version: 1,
            events: vec![HostEvent {
                name: "acpi".into(),
                digest: Digest48([7; 48]),
                event_type: 0x8000_000B,
            }],
        };
        let r = rtmr0(&t, GIB, Some(&host)).expect("with host");
        assert_eq!(r.events.len(), 9);
        assert_eq!(r.events[8].source, EventSource::Input);
        // Replayed by hand: extend from zero with each digest.
        let mut reg = [0u8; 48];
        for e in &r.events {
            let mut buf = reg.to_vec();
            buf.extend_from_slice(&e.event.digest.0);
            reg = sha384(&buf).0;
        }
        assert_eq!(r.value, Some(Digest48(reg)));
    }
}

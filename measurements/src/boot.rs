//! RTMR1 and RTMR2 of a QEMU direct boot (`-bios OVMF.fd -kernel -initrd
//! -append`) of a Linux EFI-stub kernel, computed from the inputs.
//!
//! RTMR1 (TCG PCR 4/5 events, which TDVF maps to RTMR1), in order:
//! 1. `EV_EFI_BOOT_SERVICES_APPLICATION`: the Authenticode SHA-384 of the
//!    kernel file OVMF loads, i.e. as QEMU patched its setup header
//!    ([`crate::bzimage`]). Measured by `DxeTpm2MeasureBootLib` through the CC
//!    measurement protocol (`PE_COFF_IMAGE` flag → `MeasurePeImageAndExtend`)
//!    when `QemuLoadKernelImage` calls `LoadImage`, before ReadyToBoot;
//! 2. `EV_EFI_ACTION` "Calling EFI Application from Boot Option" and
//! 3. `EV_SEPARATOR` of four zero bytes: TdTcg2Dxe's first ReadyToBoot, which
//!    OVMF's `TryRunningQemuKernel` signals after loading the kernel;
//! 4. `EV_EFI_ACTION` "Exit Boot Services Invocation" and
//! 5. "Exit Boot Services Returned with Success", when the stub exits boot
//!    services.
//!
//! RTMR2 (PCR 9 → RTMR2), measured by the Linux EFI stub (Linux 6.9+ measures
//! through the CC protocol when there is no TPM; `drivers/firmware/efi/
//! libstub/efi-stub-helper.c`), both `EV_EVENT_TAG`:
//! 1. the `LoadOptions` buffer, in `efi_convert_cmdline` (tag 0x8F3B22ED,
//!    "LOADED_IMAGE::LoadOptions"), when its size is non-zero;
//! 2. the initrd bytes, in `efi_load_initrd` when it was loaded through the
//!    `LINUX_EFI_INITRD_MEDIA_GUID` LoadFile2 device path (tag 0x8F3B22EC,
//!    "Linux initrd"), when non-empty. The command line is converted first,
//!    so the order is command line, then initrd.
//!
//! OVMF 2022.11's `X86QemuLoadImageLib` builds `LoadOptions` as the fw_cfg
//! command line (QEMU's `-append`, each byte widened to UTF-16, as
//! `UnicodeSPrintAsciiFormat` does) followed by `" initrd=initrd"` when the
//! initrd is non-empty, then a UTF-16 NUL; no options at all when both are
//! empty. (edk2 from 2025 on puts `"initrd=initrd "` in front instead, with a
//! `"kernel "` prefix when booting through shim: a different RTMR2.)
//!
//! Confidence: the RTMR1 list is the pre-edk2-stable202505 TdTcg2Dxe layout
//! (also what dstack's `dstack-mr` uses for that layout); the 2022.11 source
//! of TdTcg2Dxe's ReadyToBoot handler was not read directly, the current one
//! was (it measures boot variables into RTMR1 and the separator into RTMR0,
//! i.e. it gives a different RTMR1). No TDX hardware check was possible here.

use crate::authenticode::{authenticode_digest, HashAlgorithm, PeError};
use crate::bzimage::{qemu_patched_kernel, BzImageError, PatchedFields, QemuDirectBoot};
use crate::eventlog::tcg::event_type_name;
use crate::eventlog::Event;
use crate::rtmr::{sha384, Rtmrs};
use crate::Digest48;

/// `EV_SEPARATOR`.
pub const EV_SEPARATOR: u32 = 0x0000_0004;
/// `EV_EVENT_TAG`.
pub const EV_EVENT_TAG: u32 = 0x0000_0006;
/// `EV_EFI_BOOT_SERVICES_APPLICATION`.
pub const EV_EFI_BOOT_SERVICES_APPLICATION: u32 = 0x8000_0003;
/// `EV_EFI_ACTION`.
pub const EV_EFI_ACTION: u32 = 0x8000_0007;

/// The ReadyToBoot action string (edk2 `EFI_CALLING_EFI_APPLICATION`).
pub const CALLING_EFI_APPLICATION: &str = "Calling EFI Application from Boot Option";
/// edk2 `EFI_EXIT_BOOT_SERVICES_INVOCATION`.
pub const EXIT_BOOT_SERVICES_INVOCATION: &str = "Exit Boot Services Invocation";
/// edk2 `EFI_EXIT_BOOT_SERVICES_SUCCEEDED`.
pub const EXIT_BOOT_SERVICES_SUCCEEDED: &str = "Exit Boot Services Returned with Success";
/// What OVMF 2022.11 appends to the command line when an initrd is given.
pub const OVMF_INITRD_SUFFIX: &str = " initrd=initrd";
/// The Linux stub's tagged-event id for the load options.
pub const LOAD_OPTIONS_EVENT_TAG_ID: u32 = 0x8F3B_22ED;
/// The Linux stub's tagged-event id for the initrd.
pub const INITRD_EVENT_TAG_ID: u32 = 0x8F3B_22EC;

/// Why the boot registers could not be computed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BootError {
    /// The kernel's setup header cannot be patched as QEMU would.
    #[error("kernel setup header: {0}")]
    BzImage(BzImageError),
    /// The patched kernel is not a PE image edk2 would measure.
    #[error("kernel PE image: {0}")]
    Pe(PeError),
    /// A NUL byte: QEMU passes the command line as a C string.
    #[error("kernel command line contains a NUL byte")]
    CmdlineNul,
    /// `vga=` makes QEMU patch `vid_mode` too, which is not modelled.
    #[error("kernel command line contains \"vga=\", whose header patch is not modelled")]
    CmdlineVga,
}

impl From<BzImageError> for BootError {
    fn from(e: BzImageError) -> Self {
        BootError::BzImage(e)
    }
}

impl From<PeError> for BootError {
    fn from(e: PeError) -> Self {
        BootError::Pe(e)
    }
}

/// RTMR1 and RTMR2 of a direct boot, with the events that produce them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BootMeasurements {
    /// The setup-header values QEMU wrote into the measured kernel.
    pub patched_fields: PatchedFields,
    /// RTMR1's events in order.
    pub rtmr1_events: Vec<Event>,
    /// RTMR1 replayed from zero.
    pub rtmr1: Digest48,
    /// RTMR2's events in order.
    pub rtmr2_events: Vec<Event>,
    /// RTMR2 replayed from zero.
    pub rtmr2: Digest48,
}

fn event(rtmr: u8, event_type: u32, digest: Digest48, payload: Vec<u8>) -> Event {
    Event {
        rtmr,
        event_type,
        digest,
        name: event_type_name(event_type).to_string(),
        payload,
    }
}

fn action(text: &str) -> Event {
    event(
        1,
        EV_EFI_ACTION,
        sha384(text.as_bytes()),
        text.as_bytes().to_vec(),
    )
}

/// RTMR1's events for `measured_kernel`: the kernel file exactly as the
/// firmware loads it (patched by [`qemu_patched_kernel`] for QEMU up to 10.1;
/// unmodified for QEMUs that skip the patch for confidential guests). The
/// kernel event's payload is left empty: the real one is an
/// `EFI_IMAGE_LOAD_EVENT` holding run-time load addresses.
pub fn rtmr1_events(measured_kernel: &[u8]) -> Result<Vec<Event>, PeError> {
    let hash = authenticode_digest(measured_kernel, HashAlgorithm::Sha384)?;
    let mut digest = [0u8; 48];
    digest.copy_from_slice(&hash);
    Ok(vec![
        event(
            1,
            EV_EFI_BOOT_SERVICES_APPLICATION,
            Digest48(digest),
            Vec::new(),
        ),
        action(CALLING_EFI_APPLICATION),
        event(1, EV_SEPARATOR, sha384(&[0u8; 4]), vec![0u8; 4]),
        action(EXIT_BOOT_SERVICES_INVOCATION),
        action(EXIT_BOOT_SERVICES_SUCCEEDED),
    ])
}

/// The `LoadOptions` bytes OVMF 2022.11 hands the kernel for `cmdline`
/// (QEMU `-append`) with or without a non-empty initrd; `None` when it
/// passes no options (empty command line, no initrd).
pub fn load_options(cmdline: &str, initrd_present: bool) -> Option<Vec<u8>> {
    let suffix = if initrd_present {
        OVMF_INITRD_SUFFIX
    } else {
        ""
    };
    if cmdline.is_empty() && suffix.is_empty() {
        return None;
    }
    // Each byte widened to a UTF-16 code unit (edk2's %a), then a NUL.
    let mut out: Vec<u8> = cmdline
        .bytes()
        .chain(suffix.bytes())
        .flat_map(|b| [b, 0])
        .collect();
    out.extend_from_slice(&[0, 0]);
    Some(out)
}

fn tagged_event(id: u32, text: &[u8]) -> Vec<u8> {
    let mut p = Vec::with_capacity(8 + text.len());
    p.extend_from_slice(&id.to_le_bytes());
    p.extend_from_slice(&(text.len() as u32).to_le_bytes());
    p.extend_from_slice(text);
    p
}

/// RTMR2's events for `cmdline` (as given to `-append`) and the initrd bytes,
/// as the Linux EFI stub measures them. A `cmdline` containing NUL is measured
/// as if it were one string; [`direct_boot_rtmrs`] refuses it.
pub fn rtmr2_events(cmdline: &str, initrd: &[u8]) -> Vec<Event> {
    let mut events = Vec::with_capacity(2);
    if let Some(options) = load_options(cmdline, !initrd.is_empty()) {
        events.push(event(
            2,
            EV_EVENT_TAG,
            sha384(&options),
            tagged_event(LOAD_OPTIONS_EVENT_TAG_ID, b"LOADED_IMAGE::LoadOptions\0"),
        ));
    }
    if !initrd.is_empty() {
        events.push(event(
            2,
            EV_EVENT_TAG,
            sha384(initrd),
            tagged_event(INITRD_EVENT_TAG_ID, b"Linux initrd\0"),
        ));
    }
    events
}

/// RTMR1 and RTMR2 for `qemu -m memory_bytes -kernel kernel -initrd initrd
/// -append cmdline` with OVMF 2022.11 and a QEMU that patches the setup header
/// (7.2 to 10.1).
pub fn direct_boot_rtmrs(
    kernel: &[u8],
    cmdline: &str,
    initrd: &[u8],
    memory_bytes: u64,
) -> Result<BootMeasurements, BootError> {
    if cmdline.contains('\0') {
        return Err(BootError::CmdlineNul);
    }
    if cmdline.contains("vga=") {
        return Err(BootError::CmdlineVga);
    }
    let boot = QemuDirectBoot {
        memory_bytes,
        initrd_size: Some(initrd.len() as u64),
    };
    let patched_fields = crate::bzimage::qemu_patched_fields(kernel, &boot)?;
    let patched = qemu_patched_kernel(kernel, &boot)?;
    let rtmr1_events = rtmr1_events(&patched)?;
    let rtmr2_events = rtmr2_events(cmdline, initrd);
    Ok(BootMeasurements {
        patched_fields,
        rtmr1: Rtmrs::replay_one(rtmr1_events.iter().map(|e| &e.digest)),
        rtmr1_events,
        rtmr2: Rtmrs::replay_one(rtmr2_events.iter().map(|e| &e.digest)),
        rtmr2_events,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use ring::digest::{digest, SHA384};

    fn ring384(data: &[u8]) -> [u8; 48] {
        let mut out = [0u8; 48];
        out.copy_from_slice(digest(&SHA384, data).as_ref());
        out
    }

    #[test]
    fn load_options_bytes() {
        // "ro" + " initrd=initrd" as UTF-16LE, then a NUL code unit, by hand.
        let expected: Vec<u8> = vec![
            b'r', 0, b'o', 0, b' ', 0, b'i', 0, b'n', 0, b'i', 0, b't', 0, b'r', 0, b'd', 0, b'=',
            0, b'i', 0, b'n', 0, b'i', 0, b't', 0, b'r', 0, b'd', 0, 0, 0,
        ];
        assert_eq!(load_options("ro", true), Some(expected));
        assert_eq!(
            load_options("ro", false),
            Some(vec![b'r', 0, b'o', 0, 0, 0])
        );
        assert_eq!(load_options("", false), None);
        assert_eq!(load_options("", true).map(|v| v.len()), Some(2 * 14 + 2));
        // Non-ASCII bytes are widened one by one (é = C3 A9 in UTF-8).
        assert_eq!(load_options("é", false), Some(vec![0xc3, 0, 0xa9, 0, 0, 0]));
    }

    #[test]
    fn rtmr2_replay_matches_ring() {
        let initrd = b"070701 an initrd";
        let events = rtmr2_events("console=ttyS0", initrd);
        assert_eq!(events.len(), 2);
        let mut options = Vec::new();
        for c in "console=ttyS0 initrd=initrd".encode_utf16() {
            options.extend_from_slice(&c.to_le_bytes());
        }
        options.extend_from_slice(&[0, 0]);
        let d1 = ring384(&options);
        let d2 = ring384(initrd);
        assert_eq!(events[0].digest.0, d1);
        assert_eq!(events[1].digest.0, d2);
        assert!(events
            .iter()
            .all(|e| e.rtmr == 2 && e.event_type == 6 && e.name == "EV_EVENT_TAG"));
        // RTMR = SHA384(SHA384(0^48 || d1) || d2).
        let mut buf = [0u8; 48].to_vec();
        buf.extend_from_slice(&d1);
        let r1 = ring384(&buf);
        let mut buf = r1.to_vec();
        buf.extend_from_slice(&d2);
        assert_eq!(
            Rtmrs::replay_one(events.iter().map(|e| &e.digest)).0,
            ring384(&buf)
        );
        // Tagged-event payload: id, size, text.
        assert_eq!(
            &events[1].payload[..8],
            &[0xec, 0x22, 0x3b, 0x8f, 13, 0, 0, 0]
        );
        // No initrd: only the command line, without the suffix.
        let only = rtmr2_events("console=ttyS0", &[]);
        assert_eq!(only.len(), 1);
        assert_ne!(only[0].digest, events[0].digest);
        assert!(rtmr2_events("", &[]).is_empty());
    }

    #[test]
    fn rtmr1_fixed_events() {
        // A PE with no sections: the fixed events do not depend on it.
        let mut img = vec![0u8; 0x200];
        img[0x40..0x44].copy_from_slice(b"PE\0\0");
        img[0..2].copy_from_slice(b"MZ");
        img[0x3c] = 0x40;
        img[0x44 + 16] = 112 + 16 * 8;
        img[0x58..0x5a].copy_from_slice(&0x20bu16.to_le_bytes());
        img[0x58 + 60..0x58 + 64].copy_from_slice(&0x200u32.to_le_bytes());
        img[0x58 + 108] = 16;
        let events = rtmr1_events(&img).expect("pe");
        let texts: Vec<&[u8]> = events.iter().map(|e| e.payload.as_slice()).collect();
        assert_eq!(
            texts,
            [
                &b""[..],
                b"Calling EFI Application from Boot Option",
                &[0, 0, 0, 0],
                b"Exit Boot Services Invocation",
                b"Exit Boot Services Returned with Success"
            ]
        );
        for e in &events[1..] {
            assert_eq!(e.digest.0, ring384(&e.payload));
            assert_eq!(e.rtmr, 1);
        }
        assert_eq!(
            events.iter().map(|e| e.event_type).collect::<Vec<_>>(),
            [0x8000_0003, 0x8000_0007, 4, 0x8000_0007, 0x8000_0007]
        );
        // The kernel digest is the edk2 Authenticode SHA-384 of the image.
        let a = authenticode_digest(&img, HashAlgorithm::Sha384).expect("pe");
        assert_eq!(events[0].digest.0.as_slice(), a.as_slice());
    }

    #[test]
    fn direct_boot_refuses_unmodelled_cmdlines() {
        assert_eq!(
            direct_boot_rtmrs(&[], "a\0b", &[], 1 << 30),
            Err(BootError::CmdlineNul)
        );
        assert_eq!(
            direct_boot_rtmrs(&[], "vga=791", &[], 1 << 30),
            Err(BootError::CmdlineVga)
        );
        assert!(matches!(
            direct_boot_rtmrs(&[], "", &[], 1 << 30),
            Err(BootError::BzImage(_))
        ));
    }
}

//! RTMR1 and RTMR2 of a QEMU direct boot (`-bios OVMF.fd -kernel -initrd
//! -append`) of a Linux EFI-stub kernel, computed from the inputs.
//!
//! Sources read: edk2 from Debian's `edk2` source packages 2022.11-6+deb12u2
//! and 2025.02-8+deb13u1, the matching `OVMF.fd` binaries (FFS file names
//! and strings), Linux's `drivers/firmware/efi/libstub/efi-stub-helper.c`
//! (6.9+ CC measurement path), QEMU's `hw/i386/x86*.c`.
//!
//! **Which firmware measures at all.** The CC measurement protocol comes from
//! `TdTcg2Dxe`. Debian 13's `OVMF.fd` (edk2 2025.02, `OvmfPkgX64.dsc` with
//! `CC_MEASUREMENT_ENABLE = TRUE`) contains it. Debian 12's `OVMF.fd` (edk2
//! 2022.11) does not: in 2022.11 `TdTcg2Dxe` is only built into
//! `OvmfPkg/IntelTdx/IntelTdxX64.dsc`, so a TD booted with it gets no kernel,
//! command-line or initrd measurement in any RTMR (checked in the source and
//! in the binary's list of FFS files).
//!
//! RTMR1 with edk2 2025.02 ([`TdvfLayout::BootVariablesInRtmr0`]), in order:
//! 1. `EV_EFI_BOOT_SERVICES_APPLICATION`: the Authenticode SHA-384 of the
//!    kernel file OVMF loads, measured by `DxeTpm2MeasureBootLib` (PCR 4 →
//!    RTMR1) through the CC protocol (`PE_COFF_IMAGE` →
//!    `MeasurePeImageAndExtend`) when `QemuLoadKernelImage` calls `LoadImage`.
//!    Which file that is, see [`MeasuredKernel`];
//! 2. `EV_EFI_ACTION` "Calling EFI Application from Boot Option" (PCR 4) and
//! 3. `EV_SEPARATOR` of four zero bytes (`CC_MR_INDEX_2_RTMR1`): TdTcg2Dxe's
//!    first ReadyToBoot, which `TryRunningQemuKernel` signals after loading
//!    the kernel (`BootOrder`/`Boot####` are measured there too, as PCR 1 →
//!    RTMR0);
//! 4. `EV_EFI_ACTION` "Exit Boot Services Invocation" and
//! 5. "Exit Boot Services Returned with Success" (PCR 5), when the stub exits
//!    boot services.
//!
//! [`TdvfLayout::BootVariablesInRtmr1`] is the older TdTcg2Dxe (edk2 2022.11's
//! `IntelTdx` build), whose `ReadAndMeasureBootVariable` uses PCR 5 → RTMR1:
//! it inserts `EV_EFI_VARIABLE_BOOT` `BootOrder` = `[0]` and `Boot0000` (the
//! UiApp option BDS registers before the kernel runs; `TryRunningQemuKernel`
//! runs before `EfiBootManagerRefreshAllBootOption`) after the kernel event.
//!
//! RTMR2 (PCR 9 → RTMR2), measured by the Linux EFI stub (Linux 6.9+ measures
//! through the CC protocol when there is no TPM), both `EV_EVENT_TAG`:
//! 1. the `LoadOptions` buffer, in `efi_convert_cmdline` (tag 0x8F3B22ED,
//!    "LOADED_IMAGE::LoadOptions"), when its size is non-zero;
//! 2. the initrd bytes, in `efi_load_initrd` when it was loaded through the
//!    `LINUX_EFI_INITRD_MEDIA_GUID` LoadFile2 device path (tag 0x8F3B22EC,
//!    "Linux initrd"), when non-empty. The command line is converted first,
//!    so the order is command line, then initrd.
//!
//! `X86QemuLoadImageLib` (2022.11 and 2025.02 alike) builds `LoadOptions` as
//! the fw_cfg command line (QEMU's `-append`, each byte widened to UTF-16, as
//! `UnicodeSPrintAsciiFormat` does) followed by `" initrd=initrd"` when the
//! initrd is non-empty, then a UTF-16 NUL; no options at all when both are
//! empty (both Debian binaries carry the ASCII string " initrd=initrd"). The
//! 2025.02 code adds a `"kernel "` prefix only when QEMU boots through
//! `-shim`; later edk2 moves the initrd part in front (`"initrd=initrd "`).
//!
//! Caveats: PCI option ROMs with EFI drivers (QEMU's default `romfile` on
//! NICs) would be measured as `EV_EFI_BOOT_SERVICES_DRIVER` into RTMR1 too
//! (PCR 2); whether OVMF loads them in a TD was not checked, `romfile=` avoids
//! the question. Nothing here was checked on TDX hardware (none available): a
//! CCEL capture from a real TD is the final word, and [`crate::eventlog`]
//! replays one.

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
/// What OVMF (2022.11 to 2025.02) appends to the command line when an initrd
/// is given.
pub const OVMF_INITRD_SUFFIX: &str = " initrd=initrd";
/// The Linux stub's tagged-event id for the load options.
pub const LOAD_OPTIONS_EVENT_TAG_ID: u32 = 0x8F3B_22ED;
/// The Linux stub's tagged-event id for the initrd.
pub const INITRD_EVENT_TAG_ID: u32 = 0x8F3B_22EC;
/// `EV_EFI_VARIABLE_BOOT`.
pub const EV_EFI_VARIABLE_BOOT: u32 = 0x8000_0002;

/// `EFI_GLOBAL_VARIABLE` 8BE4DF61-93CA-11D2-AA0D-00E098032B8C, in its
/// little-endian (on-disk) byte order.
const EFI_GLOBAL_VARIABLE_LE: [u8; 16] = [
    0x61, 0xdf, 0xe4, 0x8b, 0xca, 0x93, 0xd2, 0x11, 0xaa, 0x0d, 0x00, 0xe0, 0x98, 0x03, 0x2b, 0x8c,
];
/// OVMF's DXE firmware volume name, 7CB8BDC9-F8EB-4F34-AAEA-3EE4AF6516A1
/// (`OvmfPkgX64.fdf` `[FV.DXEFV] FvNameGuid`), little-endian.
const OVMF_DXEFV_GUID_LE: [u8; 16] = [
    0xc9, 0xbd, 0xb8, 0x7c, 0xeb, 0xf8, 0x34, 0x4f, 0xaa, 0xea, 0x3e, 0xe4, 0xaf, 0x65, 0x16, 0xa1,
];
/// UiApp's FILE_GUID 462CAA21-7614-4503-836E-8AB6F4662331 (OVMF's
/// `PcdBootManagerMenuFile`), little-endian.
const UIAPP_FILE_GUID_LE: [u8; 16] = [
    0x21, 0xaa, 0x2c, 0x46, 0x14, 0x76, 0x03, 0x45, 0x83, 0x6e, 0x8a, 0xb6, 0xf4, 0x66, 0x23, 0x31,
];

/// Which TdTcg2Dxe generation measured the boot: it decides whether the boot
/// variables land in RTMR1.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TdvfLayout {
    /// edk2 with UEFI 2.10 `MrIndex` numbering (Debian 13's `ovmf` 2025.02):
    /// boot variables go to RTMR0, RTMR1 has five events.
    #[default]
    BootVariablesInRtmr0,
    /// edk2 2022.11's `IntelTdx` TdTcg2Dxe: `BootOrder` and `Boot0000` are
    /// measured into RTMR1 between the kernel and "Calling EFI Application".
    BootVariablesInRtmr1,
}

/// Which kernel bytes the firmware loads and measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum MeasuredKernel {
    /// QEMU's patched setup blob followed by the rest of the file: QEMU before
    /// 10.0 with any OVMF, or OVMF 2022.11 with QEMU before 10.2.
    #[default]
    QemuPatched,
    /// The file as given to `-kernel`: QEMU 10.0+ publishes it as fw_cfg
    /// `etc/boot/kernel`, which OVMF 2025.02's `QemuKernelLoaderFsDxe` reads
    /// in preference to the patched blobs; QEMU 10.2+ (after 10.1.0, "Don't
    /// update kernel header for CoCo VMs") no longer patches TDX guests at all.
    Unmodified,
}

/// The firmware and VMM behaviour a direct boot is computed for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct DirectBootOptions {
    /// Where the firmware measures boot variables.
    pub layout: TdvfLayout,
    /// Which kernel bytes get measured.
    pub kernel: MeasuredKernel,
}

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

/// The `EFI_LOAD_OPTION` OVMF registers as `Boot0000` before a direct boot:
/// UiApp, the boot manager menu (`BmRegisterBootManagerMenu`): attributes
/// `ACTIVE | HIDDEN | CATEGORY_APP`, description "UiApp" (the file's UI
/// section), device path `Fv(DXEFV)/FvFile(UiApp)/End`.
pub fn ovmf_uiapp_load_option() -> Vec<u8> {
    const ATTRIBUTES: u32 = 0x0000_0001 | 0x0000_0008 | 0x0000_0100;
    let mut path = Vec::with_capacity(44);
    path.extend_from_slice(&[0x04, 0x07, 20, 0]); // MEDIA_PIWG_FW_VOL_DP
    path.extend_from_slice(&OVMF_DXEFV_GUID_LE);
    path.extend_from_slice(&[0x04, 0x06, 20, 0]); // MEDIA_PIWG_FW_FILE_DP
    path.extend_from_slice(&UIAPP_FILE_GUID_LE);
    path.extend_from_slice(&[0x7f, 0xff, 4, 0]); // END_ENTIRE
    let mut option = Vec::new();
    option.extend_from_slice(&ATTRIBUTES.to_le_bytes());
    option.extend_from_slice(&(path.len() as u16).to_le_bytes());
    option.extend("UiApp\0".encode_utf16().flat_map(u16::to_le_bytes));
    option.extend_from_slice(&path);
    option
}

/// An `EV_EFI_VARIABLE_BOOT` event: digest over the data, payload the
/// `UEFI_VARIABLE_DATA` record (GUID, name length in characters, data length,
/// UTF-16 name without NUL, data).
fn boot_variable(name: &str, data: &[u8]) -> Event {
    let units: Vec<u16> = name.encode_utf16().collect();
    let mut payload = Vec::new();
    payload.extend_from_slice(&EFI_GLOBAL_VARIABLE_LE);
    payload.extend_from_slice(&(units.len() as u64).to_le_bytes());
    payload.extend_from_slice(&(data.len() as u64).to_le_bytes());
    payload.extend(units.iter().flat_map(|u| u.to_le_bytes()));
    payload.extend_from_slice(data);
    event(1, EV_EFI_VARIABLE_BOOT, sha384(data), payload)
}

/// RTMR1's events for `measured_kernel` with the default
/// [`TdvfLayout::BootVariablesInRtmr0`] (Debian 13's OVMF); see
/// [`rtmr1_events_for`].
pub fn rtmr1_events(measured_kernel: &[u8]) -> Result<Vec<Event>, PeError> {
    rtmr1_events_for(measured_kernel, TdvfLayout::default())
}

/// RTMR1's events for `measured_kernel`, the kernel file exactly as the
/// firmware loads it (see [`MeasuredKernel`]: [`qemu_patched_kernel`]'s output
/// or the original file). The
/// kernel event's payload is left empty: the real one is an
/// `EFI_IMAGE_LOAD_EVENT` holding run-time load addresses.
pub fn rtmr1_events_for(measured_kernel: &[u8], layout: TdvfLayout) -> Result<Vec<Event>, PeError> {
    let hash = authenticode_digest(measured_kernel, HashAlgorithm::Sha384)?;
    let mut digest = [0u8; 48];
    digest.copy_from_slice(&hash);
    let mut events = vec![event(
        1,
        EV_EFI_BOOT_SERVICES_APPLICATION,
        Digest48(digest),
        Vec::new(),
    )];
    if layout == TdvfLayout::BootVariablesInRtmr1 {
        events.push(boot_variable("BootOrder", &0u16.to_le_bytes()));
        events.push(boot_variable("Boot0000", &ovmf_uiapp_load_option()));
    }
    events.extend([
        action(CALLING_EFI_APPLICATION),
        event(1, EV_SEPARATOR, sha384(&[0u8; 4]), vec![0u8; 4]),
        action(EXIT_BOOT_SERVICES_INVOCATION),
        action(EXIT_BOOT_SERVICES_SUCCEEDED),
    ]);
    Ok(events)
}

/// The `LoadOptions` bytes OVMF (2022.11 to 2025.02) hands the kernel for `cmdline`
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
/// -append cmdline` with the default [`DirectBootOptions`]: Debian 13's OVMF
/// and a QEMU that patches the measured setup header (before 10.0).
pub fn direct_boot_rtmrs(
    kernel: &[u8],
    cmdline: &str,
    initrd: &[u8],
    memory_bytes: u64,
) -> Result<BootMeasurements, BootError> {
    direct_boot_rtmrs_with(
        kernel,
        cmdline,
        initrd,
        memory_bytes,
        &DirectBootOptions::default(),
    )
}

/// [`direct_boot_rtmrs`] for the given firmware and VMM behaviour.
pub fn direct_boot_rtmrs_with(
    kernel: &[u8],
    cmdline: &str,
    initrd: &[u8],
    memory_bytes: u64,
    options: &DirectBootOptions,
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
    // Even when the unmodified file is measured, QEMU must accept the boot.
    let patched_fields = crate::bzimage::qemu_patched_fields(kernel, &boot)?;
    let rtmr1_events = match options.kernel {
        MeasuredKernel::QemuPatched => {
            rtmr1_events_for(&qemu_patched_kernel(kernel, &boot)?, options.layout)?
        }
        MeasuredKernel::Unmodified => rtmr1_events_for(kernel, options.layout)?,
    };
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

        // edk2 2022.11's IntelTdx TdTcg2Dxe adds BootOrder and Boot0000.
        let old = rtmr1_events_for(&img, TdvfLayout::BootVariablesInRtmr1).expect("pe");
        assert_eq!(old.len(), 7);
        assert_eq!(old[0], events[0]);
        assert_eq!(&old[3..], &events[1..]);
        assert!(old[1..3]
            .iter()
            .all(|e| e.rtmr == 1 && e.event_type == 0x8000_0002));
        assert_eq!(old[1].digest.0, ring384(&[0, 0]));
        // UEFI_VARIABLE_DATA for BootOrder, written out by hand.
        let mut bootorder = vec![
            0x61, 0xdf, 0xe4, 0x8b, 0xca, 0x93, 0xd2, 0x11, 0xaa, 0x0d, 0x00, 0xe0, 0x98, 0x03,
            0x2b, 0x8c, 9, 0, 0, 0, 0, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0,
        ];
        for c in b"BootOrder" {
            bootorder.extend_from_slice(&[*c, 0]);
        }
        bootorder.extend_from_slice(&[0, 0]);
        assert_eq!(old[1].payload, bootorder);
        // Independent: the Boot0000 (UiApp) digest dstack's dstack-mr pins
        // from TD event logs of an OVMF with the same boot option.
        assert_eq!(
            old[2].digest.to_hex(),
            "23ada07f5261f12f34a0bd8e46760962d6b4d576a416f1fea1c64bc656b1d28e\
             acf7047ae6e967c58fd2a98bfa74c298"
        );
        assert!(old[2].payload.ends_with(&ovmf_uiapp_load_option()));
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

//! The expected measurements of a tessella appliance image booted by QEMU.
//!
//! An appliance directory (written by `tessella-image build`) holds the
//! firmware, the kernel, the initrd and the exact command line; the RAM size
//! comes from its `image.json`. From those this module computes every register
//! a quote of that TD will carry, with the events behind each one, and turns
//! them into the measurement policy the attestation code consumes.
//!
//! Where a register has more than one legitimate value for the same image, all
//! are listed (the policy is any-of per register) and the report says why:
//! - MRTD in single-pass order (current KVM/QEMU) and two-pass order (old Intel
//!   QEMU 8 branches);
//! - RTMR1 over the kernel as QEMU patches its setup header (QEMU before 10.0)
//!   and over the unmodified kernel (QEMU 10.0+ with OVMF 2025.02, which reads
//!   fw_cfg `etc/boot/kernel`).
//!
//! RTMR0 is only partly computable (see [`crate::rtmr0`]): without captured
//! host events it is left out of the policy and the report says so. RTMR3 is
//! pinned to zero: nothing in the appliance extends it (Linux 6.12 cannot from
//! user space). MRCONFIGID is SHA-384 of the deployment config when one is
//! given.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::boot::{direct_boot_rtmrs_with, BootError, DirectBootOptions, MeasuredKernel};
use crate::eventlog::Event;
use crate::policy::{MeasurementPolicy, PolicyEntry, PolicyFileError, TcbRules};
use crate::rtmr::sha384;
use crate::rtmr0::{rtmr0, EventSource, Rtmr0, Rtmr0Error, Rtmr0HostEvents};
use crate::tdvf::{MrtdOrder, Tdvf, TdvfError};
use crate::Digest48;

/// File names inside an appliance directory: one list, used by the image
/// builder that writes them and by the tools that read them.
pub mod files {
    /// The TDVF firmware (`-bios`).
    pub const FIRMWARE: &str = "OVMF.fd";
    /// The kernel (`-kernel`).
    pub const KERNEL: &str = "vmlinuz";
    /// The initrd (`-initrd`).
    pub const INITRD: &str = "initrd.cpio";
    /// The kernel command line (`-append`), byte-exact, no trailing newline.
    pub const CMDLINE: &str = "cmdline";
    /// The image manifest (artefacts, inputs, VM shape).
    pub const MANIFEST: &str = "image.json";
    /// The measurement policy this module produces.
    pub const POLICY: &str = "measurements.json";
    /// The per-register event lists this module produces.
    pub const EVENTS: &str = "measurement-events.json";
}

/// Largest file read from an appliance directory (the kernel and initrd are
/// well below this; it bounds memory on a wrong path).
const MAX_FILE: u64 = 256 << 20;

/// Everything the registers depend on.
#[derive(Debug, Clone)]
pub struct ApplianceInputs {
    /// The firmware image.
    pub firmware: Vec<u8>,
    /// The kernel as given to `-kernel`.
    pub kernel: Vec<u8>,
    /// The initrd as given to `-initrd`.
    pub initrd: Vec<u8>,
    /// The command line as given to `-append`.
    pub cmdline: String,
    /// Guest RAM (`-m`), which RTMR0's TD HOB and RTMR1's setup header depend on.
    pub memory_bytes: u64,
    /// The deployment config whose SHA-384 goes into MRCONFIGID, if pinned.
    pub config: Option<Vec<u8>>,
    /// Captured host-dependent RTMR0 events, if any.
    pub rtmr0_host: Option<Rtmr0HostEvents>,
}

/// Why an appliance could not be measured.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ApplianceError {
    /// A file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A file is larger than any appliance artefact can be.
    #[error("{path} is larger than {MAX_FILE} bytes")]
    TooLarge {
        /// The file.
        path: String,
    },
    /// The command line is not UTF-8.
    #[error("{path} is not UTF-8 text")]
    CmdlineNotUtf8 {
        /// The file.
        path: String,
    },
    /// `image.json` lacks a usable RAM size and none was given.
    #[error("image.json: {0}")]
    Manifest(String),
    /// The firmware is not a usable TDVF image.
    #[error("firmware: {0}")]
    Firmware(#[from] TdvfError),
    /// RTMR0 could not be computed.
    #[error("rtmr0: {0}")]
    Rtmr0(#[from] Rtmr0Error),
    /// The kernel could not be measured.
    #[error("kernel: {0}")]
    Boot(#[from] BootError),
    /// The resulting policy is invalid (should not happen).
    #[error("policy: {0}")]
    Policy(#[from] PolicyFileError),
}

/// One value a register may take and the condition under which it does.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Variant {
    /// The register value.
    pub value: Digest48,
    /// When this value applies.
    pub when: String,
    /// The events that produce it, in extend order.
    pub events: Vec<Event>,
}

/// The expected registers of one appliance, with their events.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ApplianceMeasurements {
    /// Guest RAM the registers were computed for.
    pub memory_bytes: u64,
    /// MRTD per page-add order (no events: MRTD is not an event log).
    pub mrtd: Vec<Variant>,
    /// RTMR0: computed events and, with host events, the value.
    pub rtmr0: Rtmr0,
    /// RTMR1 per measured-kernel variant.
    pub rtmr1: Vec<Variant>,
    /// RTMR2 (command line, then initrd).
    pub rtmr2: Variant,
    /// RTMR3: zero, nothing extends it.
    pub rtmr3: Digest48,
    /// SHA-384 of the deployment config, when one was given.
    pub mrconfigid: Option<Digest48>,
    /// Plain statements of what was computed and what was not.
    pub notes: Vec<String>,
}

/// The one field of `tessella-image`'s `image.json` this module needs:
/// `vm.ram_mib` (the format itself belongs to the image builder).
#[derive(Deserialize)]
struct ManifestShape {
    vm: Option<VmShape>,
}

#[derive(Deserialize)]
struct VmShape {
    ram_mib: Option<u64>,
}

fn read_limited(path: &Path) -> Result<Vec<u8>, ApplianceError> {
    let shown = path.display().to_string();
    let meta = std::fs::metadata(path).map_err(|source| ApplianceError::Read {
        path: shown.clone(),
        source,
    })?;
    if meta.len() > MAX_FILE {
        return Err(ApplianceError::TooLarge { path: shown });
    }
    std::fs::read(path).map_err(|source| ApplianceError::Read {
        path: shown,
        source,
    })
}

impl ApplianceInputs {
    /// Read an appliance directory. `memory_bytes` overrides the RAM size in
    /// its `image.json` (which must then be readable only if no override is
    /// given).
    pub fn from_dir(dir: &Path, memory_bytes: Option<u64>) -> Result<Self, ApplianceError> {
        let memory_bytes = match memory_bytes {
            Some(m) => m,
            None => {
                let bytes = read_limited(&dir.join(files::MANIFEST))?;
                let shape: ManifestShape = serde_json::from_slice(&bytes)
                    .map_err(|e| ApplianceError::Manifest(e.to_string()))?;
                let mib = shape
                    .vm
                    .and_then(|vm| vm.ram_mib)
                    .ok_or_else(|| ApplianceError::Manifest("no vm.ram_mib".into()))?;
                mib.checked_mul(1 << 20)
                    .ok_or_else(|| ApplianceError::Manifest("memory_mib too large".into()))?
            }
        };
        let cmdline_path = dir.join(files::CMDLINE);
        let cmdline = String::from_utf8(read_limited(&cmdline_path)?).map_err(|_| {
            ApplianceError::CmdlineNotUtf8 {
                path: cmdline_path.display().to_string(),
            }
        })?;
        Ok(ApplianceInputs {
            firmware: read_limited(&dir.join(files::FIRMWARE))?,
            kernel: read_limited(&dir.join(files::KERNEL))?,
            initrd: read_limited(&dir.join(files::INITRD))?,
            cmdline,
            memory_bytes,
            config: None,
            rtmr0_host: None,
        })
    }
}

/// Compute every register of the appliance.
pub fn measure(inputs: &ApplianceInputs) -> Result<ApplianceMeasurements, ApplianceError> {
    let tdvf = Tdvf::parse(&inputs.firmware)?;
    let mrtd = vec![
        Variant {
            value: tdvf.mrtd(MrtdOrder::SinglePass),
            when: "single-pass page order (upstream KVM/QEMU)".into(),
            events: Vec::new(),
        },
        Variant {
            value: tdvf.mrtd(MrtdOrder::TwoPass),
            when: "two-pass page order (older Intel QEMU 8 branches)".into(),
            events: Vec::new(),
        },
    ];
    let rtmr0 = rtmr0(&tdvf, inputs.memory_bytes, inputs.rtmr0_host.as_ref())?;

    let boot = |kernel| {
        let options = DirectBootOptions {
            kernel,
            ..DirectBootOptions::default()
        };
        direct_boot_rtmrs_with(
            &inputs.kernel,
            &inputs.cmdline,
            &inputs.initrd,
            inputs.memory_bytes,
            &options,
        )
    };
    let patched = boot(MeasuredKernel::QemuPatched)?;
    let unmodified = boot(MeasuredKernel::Unmodified)?;
    let rtmr2 = Variant {
        value: patched.rtmr2,
        when: "Linux EFI stub: command line + \" initrd=initrd\", then the initrd".into(),
        events: patched.rtmr2_events,
    };
    let rtmr1 = vec![
        Variant {
            value: patched.rtmr1,
            when: "kernel as QEMU patches its setup header (QEMU before 10.0)".into(),
            events: patched.rtmr1_events,
        },
        Variant {
            value: unmodified.rtmr1,
            when: "unmodified kernel (QEMU 10.0+ fw_cfg etc/boot/kernel, OVMF 2025.02)".into(),
            events: unmodified.rtmr1_events,
        },
    ];

    let computed = rtmr0
        .events
        .iter()
        .filter(|e| e.source == EventSource::Computed)
        .count();
    let input = rtmr0.events.len() - computed;
    let mut notes = vec![format!(
        "RTMR0: {computed} events computed from the firmware and {} MiB of RAM (TD HOB, CFV, \
         Secure Boot variables, separator); {input} host events taken from input",
        inputs.memory_bytes >> 20
    )];
    if rtmr0.value.is_none() {
        notes.push(
            "RTMR0 NOT PINNED: QEMU's ACPI tables and boot variables depend on the host; \
             capture them once per host shape (tessella-measure rtmr0-capture CCEL) and pass \
             --rtmr0-host-events"
                .into(),
        );
    }
    notes.push("RTMR3 pinned to zero: nothing in the appliance extends it".into());
    let mrconfigid = inputs.config.as_deref().map(sha384);
    if mrconfigid.is_none() {
        notes.push(
            "MRCONFIGID not pinned: no deployment config given (--config); the node still \
             refuses a config that does not match its MRCONFIGID"
                .into(),
        );
    }
    notes.push(
        "computed from the artefacts and models of QEMU and OVMF 2025.02; not yet confirmed \
         against a quote from TDX hardware"
            .into(),
    );
    Ok(ApplianceMeasurements {
        memory_bytes: inputs.memory_bytes,
        mrtd,
        rtmr0,
        rtmr1,
        rtmr2,
        rtmr3: Digest48([0u8; 48]),
        mrconfigid,
        notes,
    })
}

impl ApplianceMeasurements {
    /// The measurement policy pinning this appliance: one entry named `id`,
    /// with the strict default TCB rules (edit them for the target platforms).
    pub fn to_policy(&self, id: &str) -> Result<MeasurementPolicy, ApplianceError> {
        let mut entry = PolicyEntry::new(id, self.mrtd.iter().map(|v| v.value).collect());
        entry.description = Some(format!(
            "tessella appliance, {} MiB RAM; written by tessella-measure image",
            self.memory_bytes >> 20
        ));
        entry.rtmr0 = self.rtmr0.value.map(|v| vec![v]);
        entry.rtmr1 = Some(self.rtmr1.iter().map(|v| v.value).collect());
        entry.rtmr2 = Some(vec![self.rtmr2.value]);
        entry.rtmr3 = Some(vec![self.rtmr3]);
        entry.mrconfigid = self.mrconfigid.map(|v| vec![v]);
        Ok(MeasurementPolicy::new(vec![entry], TcbRules::default())?)
    }

    /// The per-register event lists as pretty JSON, for debugging a mismatch
    /// against a quote and its CCEL.
    pub fn events_json(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"))
    }
}

/// One event in a comparison: what extended the register.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EventSummary {
    /// The event's name (ours for expected events, the TCG type for captured ones).
    pub name: String,
    /// The TCG event type.
    pub event_type: u32,
    /// The digest extended.
    pub digest: Digest48,
}

impl From<&Event> for EventSummary {
    fn from(e: &Event) -> Self {
        EventSummary {
            name: e.name.clone(),
            event_type: e.event_type,
            digest: e.digest,
        }
    }
}

/// Expected and captured event at the same position of one register.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EventRow {
    /// Position in the register's event sequence.
    pub index: usize,
    /// What this module computed (or took from input), if anything.
    pub expected: Option<EventSummary>,
    /// What the captured log holds, if anything.
    pub actual: Option<EventSummary>,
    /// Digests equal.
    pub same: bool,
}

/// One register's expected events against a captured log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RegisterComparison {
    /// `rtmr0` .. `rtmr3`.
    pub register: String,
    /// Which expected variant was compared (the one agreeing longest), if several.
    pub variant: Option<String>,
    /// Whether every expected event is known; when not (RTMR0 without host
    /// events), captured events past the expected ones are not differences.
    pub complete: bool,
    /// Side by side, in extend order.
    pub rows: Vec<EventRow>,
    /// The first position where they disagree, if any.
    pub first_difference: Option<usize>,
}

/// The appliance's expected events against a captured CCEL (or other) event log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Comparison {
    /// RTMR0 to RTMR3.
    pub registers: Vec<RegisterComparison>,
    /// No register has a difference.
    pub matches: bool,
}

fn compare_register(
    register: &str,
    variant: Option<String>,
    expected: &[&Event],
    actual: &[&Event],
    complete: bool,
) -> RegisterComparison {
    let len = expected.len().max(actual.len());
    let mut rows = Vec::with_capacity(len);
    let mut first_difference = None;
    for index in 0..len {
        let e = expected.get(index).copied();
        let a = actual.get(index).copied();
        let same = match (e, a) {
            (Some(e), Some(a)) => e.digest == a.digest,
            // Without host events the captured tail is shown, not compared.
            (None, Some(_)) => !complete,
            _ => false,
        };
        if !same && first_difference.is_none() {
            first_difference = Some(index);
        }
        rows.push(EventRow {
            index,
            expected: e.map(EventSummary::from),
            actual: a.map(EventSummary::from),
            same,
        });
    }
    RegisterComparison {
        register: register.into(),
        variant,
        complete,
        rows,
        first_difference,
    }
}

/// Compare the expected events of `m` with a captured event log (the TD's
/// CCEL), register by register, to find the first event that differs.
pub fn compare(m: &ApplianceMeasurements, log: &crate::EventLog) -> Comparison {
    let actual =
        |rtmr: u8| -> Vec<&Event> { log.events().iter().filter(|e| e.rtmr == rtmr).collect() };
    let mut registers = Vec::with_capacity(4);

    let rtmr0: Vec<&Event> = m.rtmr0.events.iter().map(|e| &e.event).collect();
    registers.push(compare_register(
        "rtmr0",
        None,
        &rtmr0,
        &actual(0),
        m.rtmr0.value.is_some(),
    ));

    let actual1 = actual(1);
    let best = m
        .rtmr1
        .iter()
        .map(|v| {
            let expected: Vec<&Event> = v.events.iter().collect();
            compare_register("rtmr1", Some(v.when.clone()), &expected, &actual1, true)
        })
        .max_by_key(|c| {
            (
                c.first_difference.is_none(),
                c.first_difference.unwrap_or(usize::MAX),
            )
        });
    if let Some(best) = best {
        registers.push(best);
    }

    let rtmr2: Vec<&Event> = m.rtmr2.events.iter().collect();
    registers.push(compare_register("rtmr2", None, &rtmr2, &actual(2), true));
    registers.push(compare_register("rtmr3", None, &[], &actual(3), true));

    let matches = registers.iter().all(|r| r.first_difference.is_none());
    Comparison { registers, matches }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_files_are_named() {
        let dir = tempfile::tempdir().expect("tempdir");
        let err = ApplianceInputs::from_dir(dir.path(), Some(1 << 30)).expect_err("empty dir");
        assert!(err.to_string().contains("cmdline"), "{err}");
        let err = ApplianceInputs::from_dir(dir.path(), None).expect_err("no manifest");
        assert!(err.to_string().contains("image.json"), "{err}");
        std::fs::write(
            dir.path().join(files::MANIFEST),
            b"{\"vm\": {\"ram_mib\": \"x\"}}",
        )
        .expect("write");
        let err = ApplianceInputs::from_dir(dir.path(), None).expect_err("bad manifest");
        assert!(matches!(err, ApplianceError::Manifest(_)), "{err}");
    }

    #[test]
    fn garbage_firmware_is_a_typed_error() {
        let inputs = ApplianceInputs {
            firmware: vec![0u8; 4096],
            kernel: Vec::new(),
            initrd: Vec::new(),
            cmdline: String::new(),
            memory_bytes: 1 << 30,
            config: None,
            rtmr0_host: None,
        };
        assert!(matches!(measure(&inputs), Err(ApplianceError::Firmware(_))));
    }
}

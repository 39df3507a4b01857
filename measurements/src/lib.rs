//! Measurements of a TDX trust domain and the policy file that pins them.
//!
//! This crate owns the measurement file format: the JSON document that
//! `tessella-measure` and `tessella-image` will emit and that the attestation
//! policy consumes. Keeping the types here (and not in `attestation`) gives the
//! format one owner that has no cryptographic dependencies, so image tooling can
//! write it without pulling in quote verification.
//!
//! - [`Digest48`], [`Register`] and [`TdMeasurements`]: the values a TD report carries.
//! - [`MeasurementPolicy`]: the versioned allow-list format, its TCB rules and matching.
//! - [`rtmr`]: the RTMR extend operation; [`eventlog`]: dstack JSON and TCG2 / CCEL
//!   event-log parsing and RTMR replay.
//! - [`tdvf`]: TDVF metadata of an OVMF image and the MRTD it produces.
//! - [`rtmr0`]: RTMR0 computed from the firmware and RAM size plus captured host events.
//! - [`authenticode`]: PE/COFF parsing and the Authenticode digest OVMF measures;
//!   [`bzimage`]: the Linux setup header and QEMU's direct-boot patch of it;
//!   [`boot`]: the RTMR1 and RTMR2 events of QEMU direct boot with OVMF.
//! - [`appliance`]: every register of a tessella appliance image, and the policy pinning it.
//! - [`flashbots`]: import of the flashbots / cvm-reverse-proxy `measurements.json` array.

pub mod appliance;
pub mod authenticode;
pub mod boot;
pub mod bzimage;
mod digest;
pub mod eventlog;
pub mod flashbots;
mod policy;
mod register;
pub mod rtmr;
pub mod rtmr0;
pub mod tdvf;

pub use authenticode::{authenticode_digest, embedded_signature_digest, HashAlgorithm, PeError};
pub use boot::{
    direct_boot_rtmrs, direct_boot_rtmrs_with, rtmr1_events, rtmr1_events_for, rtmr2_events,
    BootError, BootMeasurements, DirectBootOptions, MeasuredKernel, TdvfLayout,
};
pub use bzimage::{
    qemu_patched_fields, qemu_patched_kernel, BzImageError, PatchedFields, QemuDirectBoot,
    SetupHeader,
};
pub use digest::{Digest48, HexError};
pub use eventlog::{Event, EventLog, EventLogError, LogFormat};
pub use policy::{
    EntryMismatch, MatchedEntry, MeasurementMismatch, MeasurementPolicy, PolicyEntry,
    PolicyFileError, RegisterMismatch, TcbRules, TcbStatusName, POLICY_FORMAT, POLICY_VERSION,
};
pub use register::{Register, TdMeasurements};
pub use rtmr::{extend, sha384, Rtmrs};
pub use rtmr0::{rtmr0, EventSource, Rtmr0, Rtmr0Error, Rtmr0Event, Rtmr0HostEvents};
pub use tdvf::{MrtdOrder, SectionKind, Tdvf, TdvfError, TdvfSection};

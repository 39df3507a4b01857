//! The measurement registers of a TD report.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::Digest48;

/// A field of the TD report that a measurement policy can pin.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Register {
    /// Build-time measurement of the initial TD memory (the firmware).
    Mrtd,
    /// Runtime register 0: firmware configuration (TD HOB, ACPI, Secure Boot variables).
    Rtmr0,
    /// Runtime register 1: the kernel and boot services events.
    Rtmr1,
    /// Runtime register 2: kernel command line and initrd.
    Rtmr2,
    /// Runtime register 3: application-defined.
    Rtmr3,
    /// Host-chosen configuration id (tessella: SHA-384 of the node config).
    Mrconfigid,
    /// Host-chosen owner id.
    Mrowner,
    /// Host-chosen owner configuration.
    Mrownerconfig,
    /// TD attributes (8 bytes, quote byte order).
    TdAttributes,
    /// Extended features available mask (8 bytes, quote byte order).
    Xfam,
}

impl Register {
    /// The name used in policy files and reports.
    pub fn name(self) -> &'static str {
        match self {
            Register::Mrtd => "mrtd",
            Register::Rtmr0 => "rtmr0",
            Register::Rtmr1 => "rtmr1",
            Register::Rtmr2 => "rtmr2",
            Register::Rtmr3 => "rtmr3",
            Register::Mrconfigid => "mrconfigid",
            Register::Mrowner => "mrowner",
            Register::Mrownerconfig => "mrownerconfig",
            Register::TdAttributes => "td_attributes",
            Register::Xfam => "xfam",
        }
    }
}

impl fmt::Display for Register {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The measured identity of a TD, as read from a verified TD report.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct TdMeasurements {
    /// MRTD.
    pub mrtd: Digest48,
    /// RTMR0 to RTMR3.
    pub rtmr: [Digest48; 4],
    /// MRCONFIGID.
    pub mrconfigid: Digest48,
    /// MROWNER.
    pub mrowner: Digest48,
    /// MROWNERCONFIG.
    pub mrownerconfig: Digest48,
    /// TD attributes, 8 bytes in quote byte order.
    #[serde(with = "hex8")]
    pub td_attributes: [u8; 8],
    /// XFAM, 8 bytes in quote byte order.
    #[serde(with = "hex8")]
    pub xfam: [u8; 8],
}

impl TdMeasurements {
    /// The 48-byte value of a digest register, or `None` for the 8-byte fields.
    pub fn digest(&self, register: Register) -> Option<&Digest48> {
        match register {
            Register::Mrtd => Some(&self.mrtd),
            Register::Rtmr0 => Some(&self.rtmr[0]),
            Register::Rtmr1 => Some(&self.rtmr[1]),
            Register::Rtmr2 => Some(&self.rtmr[2]),
            Register::Rtmr3 => Some(&self.rtmr[3]),
            Register::Mrconfigid => Some(&self.mrconfigid),
            Register::Mrowner => Some(&self.mrowner),
            Register::Mrownerconfig => Some(&self.mrownerconfig),
            Register::TdAttributes | Register::Xfam => None,
        }
    }

    /// Any register's value as lowercase hex.
    pub fn hex(&self, register: Register) -> String {
        match register {
            Register::TdAttributes => hex::encode(self.td_attributes),
            Register::Xfam => hex::encode(self.xfam),
            other => self.digest(other).map(Digest48::to_hex).unwrap_or_default(),
        }
    }
}

mod hex8 {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &[u8; 8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&hex::encode(v))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<[u8; 8], D::Error> {
        let s = String::deserialize(d)?;
        crate::digest::decode_fixed::<8>(&s).map_err(serde::de::Error::custom)
    }
}

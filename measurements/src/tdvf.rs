//! TDVF metadata of an OVMF firmware image, and the MRTD it produces.
//!
//! MRTD is fixed when the host builds the TD: for each firmware section the
//! TDX module hashes a `TDH.MEM.PAGE.ADD` record per 4 KiB page and, for
//! sections marked MR_EXTEND, a `TDH.MR.EXTEND` record plus 256 bytes of
//! content per 256-byte chunk. Which sections exist, where they go and which
//! are extended is described by the TDVF metadata the firmware carries, so
//! MRTD is a pure function of the firmware file and the host's page-add order.
//!
//! Layout (all integers little-endian, GUIDs in the EFI mixed-endian byte form):
//!
//! ```text
//! ... [OVMF GUIDed table] [32-byte reset vector area] <end of file>
//! table, read backwards from its end:
//!   footer:  [u16 table length (whole table, footer included)][GUID 96b582de-...]
//!   entries: [data][u16 entry length (whole entry)][GUID], repeated
//! entry GUID e47a6535-984a-4798-865e-4685a7bf8ec2: data ends with u32 = offset of
//! the TDVF descriptor counted from the END of the file
//! descriptor: "TDVF" | u32 length | u32 version (1) | u32 count
//!   | count x { u32 data_offset | u32 raw_size | u64 gpa | u64 mem_size
//!               | u32 type | u32 attributes }
//! ```
//!
//! What the reference code does (checked against QEMU's `hw/i386/tdvf.c`,
//! `hw/i386/tdx.c`, and dstack's `dstack-mr`):
//! - Upstream QEMU accepts only BFV, CFV, TD_HOB and TempMem sections; BFV and
//!   CFV must carry data (`raw_size > 0`), TD_HOB and TempMem must not. Every
//!   section is added with `KVM_TDX_INIT_MEM_REGION`, which adds each page and,
//!   when MR_EXTEND is set, extends that page's 16 chunks right after adding it:
//!   the [`MrtdOrder::SinglePass`] order. Older Intel QEMU/KVM branches added
//!   all pages of a section first and extended afterwards ([`MrtdOrder::TwoPass`]).
//! - Upstream QEMU defines PAGE_AUG but never consults it (it adds every
//!   section); dstack-mr and the TDVF design guide treat a PAGE_AUG section as
//!   not added at build time. We follow the latter (no `MEM.PAGE.ADD` record).
//!   Debian's OVMF builds (2022.11 and 2025.02) have no PAGE_AUG section, so
//!   this choice does not change their MRTD.
//! - The source of an extend is the section's memory as QEMU prepared it: for
//!   BFV/CFV the firmware bytes at `data_offset`, for TempMem a freshly mapped
//!   zeroed area, for TD_HOB the HOB that QEMU wrote (host dependent). So: an
//!   MR_EXTEND section with `raw_size == 0` is extended with zeros, except a
//!   TD_HOB, which is refused ([`TdvfError::Unsupported`]); an MR_EXTEND section
//!   whose data only partly covers its memory is refused too, because QEMU
//!   would then hash whatever follows the data in the flash image. dstack-mr
//!   reads firmware bytes at `data_offset` in both cases; for the Debian images
//!   (only the BFV is extended, and its data covers it) both agree.

use std::fmt;

use ring::digest::{Context, SHA384};
use serde::{Deserialize, Serialize};

use crate::rtmr::finish;
use crate::Digest48;

/// TDX page size: the unit of `MEM.PAGE.ADD`.
pub const PAGE_SIZE: u64 = 0x1000;
/// The unit of `MR.EXTEND`.
pub const EXTEND_CHUNK: u64 = 0x100;
/// Most sections accepted in a descriptor (real images have about six).
pub const MAX_SECTIONS: u32 = 64;
/// Size of the reset-vector area that follows the OVMF GUIDed table.
pub const RESET_VECTOR_AREA: usize = 32;

/// MR_EXTEND attribute: the section's content is hashed into MRTD.
pub const ATTR_MR_EXTEND: u32 = 1 << 0;
/// PAGE_AUG attribute: the section is added later by the guest, not at build time.
pub const ATTR_PAGE_AUG: u32 = 1 << 1;

/// `96b582de-1fb2-45f7-baea-a366c55a082d` in EFI byte order.
pub const OVMF_TABLE_FOOTER_GUID: [u8; 16] = efi_guid(
    0x96b5_82de,
    0x1fb2,
    0x45f7,
    [0xba, 0xea, 0xa3, 0x66, 0xc5, 0x5a, 0x08, 0x2d],
);
/// `e47a6535-984a-4798-865e-4685a7bf8ec2` in EFI byte order.
pub const TDX_METADATA_OFFSET_GUID: [u8; 16] = efi_guid(
    0xe47a_6535,
    0x984a,
    0x4798,
    [0x86, 0x5e, 0x46, 0x85, 0xa7, 0xbf, 0x8e, 0xc2],
);

/// An EFI GUID's stored bytes: the first three fields little-endian, the rest as written.
pub const fn efi_guid(a: u32, b: u16, c: u16, d: [u8; 8]) -> [u8; 16] {
    let a = a.to_le_bytes();
    let b = b.to_le_bytes();
    let c = c.to_le_bytes();
    [
        a[0], a[1], a[2], a[3], b[0], b[1], c[0], c[1], d[0], d[1], d[2], d[3], d[4], d[5], d[6],
        d[7],
    ]
}

/// The kind of a TDVF section, which decides how the host loads it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SectionKind {
    /// Boot firmware volume: the firmware code.
    Bfv,
    /// Configuration firmware volume: the UEFI variable store.
    Cfv,
    /// Where the host writes the TD hand-off block list.
    TdHob,
    /// Temporary memory the firmware uses before it has its own allocator.
    TempMem,
    /// Permanent memory.
    PermMem,
    /// A payload (kernel) image.
    Payload,
    /// The payload's parameters.
    PayloadParam,
}

impl SectionKind {
    fn from_u32(v: u32) -> Option<SectionKind> {
        Some(match v {
            0 => SectionKind::Bfv,
            1 => SectionKind::Cfv,
            2 => SectionKind::TdHob,
            3 => SectionKind::TempMem,
            4 => SectionKind::PermMem,
            5 => SectionKind::Payload,
            6 => SectionKind::PayloadParam,
            _ => return None,
        })
    }

    /// The TDVF design guide's name for the type.
    pub fn name(self) -> &'static str {
        match self {
            SectionKind::Bfv => "BFV",
            SectionKind::Cfv => "CFV",
            SectionKind::TdHob => "TD_HOB",
            SectionKind::TempMem => "TempMem",
            SectionKind::PermMem => "PermMem",
            SectionKind::Payload => "Payload",
            SectionKind::PayloadParam => "PayloadParam",
        }
    }
}

impl fmt::Display for SectionKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One validated section of the TDVF descriptor.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct TdvfSection {
    /// Section type.
    pub kind: SectionKind,
    /// Offset of the section's data in the firmware file.
    pub data_offset: u32,
    /// Bytes of data in the file (0 for memory-only sections).
    pub raw_size: u32,
    /// Guest physical address where the section is placed.
    pub gpa: u64,
    /// Bytes of guest memory the section occupies (page multiple).
    pub mem_size: u64,
    /// Attribute bits ([`ATTR_MR_EXTEND`], [`ATTR_PAGE_AUG`]).
    pub attributes: u32,
}

impl TdvfSection {
    /// Whether the content is hashed into MRTD.
    pub fn mr_extend(&self) -> bool {
        self.attributes & ATTR_MR_EXTEND != 0
    }

    /// Whether the pages are added by the guest later rather than at build time.
    pub fn page_aug(&self) -> bool {
        self.attributes & ATTR_PAGE_AUG != 0
    }

    /// Number of 4 KiB pages.
    pub fn pages(&self) -> u64 {
        self.mem_size / PAGE_SIZE
    }
}

/// The order in which the host adds and extends pages; it changes MRTD.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum MrtdOrder {
    /// Per page: add it, then extend its chunks (upstream KVM/QEMU).
    SinglePass,
    /// Per section: add every page, then extend every chunk (old Intel QEMU 8 branches).
    TwoPass,
}

impl MrtdOrder {
    /// Both orders, single-pass first.
    pub const ALL: [MrtdOrder; 2] = [MrtdOrder::SinglePass, MrtdOrder::TwoPass];

    /// The kebab-case name used on the command line and in JSON.
    pub fn name(self) -> &'static str {
        match self {
            MrtdOrder::SinglePass => "single-pass",
            MrtdOrder::TwoPass => "two-pass",
        }
    }
}

/// Why a firmware image was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TdvfError {
    /// The file does not carry the OVMF table or the TDX metadata entry.
    #[error("not a TDVF image: {0}")]
    NotTdvf(&'static str),
    /// A structure runs past the end of its container.
    #[error("truncated: {what} at byte {offset} needs {needed} bytes, the file has {len}")]
    Truncated {
        /// The structure being read.
        what: &'static str,
        /// Where it starts.
        offset: u64,
        /// Bytes it needs.
        needed: u64,
        /// File size.
        len: usize,
    },
    /// The OVMF GUIDed table or one of its entries has an impossible length.
    #[error("bad OVMF GUIDed table: {0}")]
    BadTable(String),
    /// The TDVF descriptor header is invalid.
    #[error("bad TDVF descriptor: {0}")]
    BadDescriptor(String),
    /// A section entry is invalid.
    #[error("TDVF section {index}: {reason}")]
    BadSection {
        /// Section index in the descriptor.
        index: usize,
        /// What is wrong.
        reason: String,
    },
    /// The image is well formed but uses a feature whose measurement we cannot predict.
    #[error("TDVF section {index}: unsupported: {reason}")]
    Unsupported {
        /// Section index in the descriptor.
        index: usize,
        /// What is unsupported.
        reason: String,
    },
}

/// A parsed, validated TDVF firmware image; it owns the file bytes so that
/// measurements can read section contents.
#[derive(Clone, PartialEq, Eq)]
pub struct Tdvf {
    firmware: Vec<u8>,
    descriptor_offset: usize,
    sections: Vec<TdvfSection>,
}

impl fmt::Debug for Tdvf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Tdvf")
            .field("firmware_len", &self.firmware.len())
            .field("descriptor_offset", &self.descriptor_offset)
            .field("sections", &self.sections)
            .finish()
    }
}

fn read_u16(b: &[u8], at: usize) -> Option<u16> {
    let s = b.get(at..at.checked_add(2)?)?;
    Some(u16::from_le_bytes([s[0], s[1]]))
}

fn read_u32(b: &[u8], at: usize) -> Option<u32> {
    let s = b.get(at..at.checked_add(4)?)?;
    Some(u32::from_le_bytes([s[0], s[1], s[2], s[3]]))
}

fn read_u64(b: &[u8], at: usize) -> Option<u64> {
    let s = b.get(at..at.checked_add(8)?)?;
    let mut a = [0u8; 8];
    a.copy_from_slice(s);
    Some(u64::from_le_bytes(a))
}

/// Size of a GUIDed table entry's trailer: u16 length + GUID.
const ENTRY_TRAILER: usize = 18;
/// TDVF descriptor header size.
const DESCRIPTOR_HEADER: usize = 16;
/// One section entry.
const SECTION_ENTRY: usize = 32;

impl Tdvf {
    /// Parse and validate the TDVF metadata of `firmware`.
    pub fn parse(firmware: &[u8]) -> Result<Tdvf, TdvfError> {
        let len = firmware.len();
        let table_end = len
            .checked_sub(RESET_VECTOR_AREA + ENTRY_TRAILER)
            .map(|v| v + ENTRY_TRAILER)
            .ok_or(TdvfError::Truncated {
                what: "OVMF table footer and reset vector area",
                offset: 0,
                needed: (RESET_VECTOR_AREA + ENTRY_TRAILER) as u64,
                len,
            })?;
        if firmware.get(table_end - 16..table_end) != Some(&OVMF_TABLE_FOOTER_GUID[..]) {
            return Err(TdvfError::NotTdvf("no OVMF GUIDed table footer"));
        }
        let table_len = usize::from(read_u16(firmware, table_end - ENTRY_TRAILER).unwrap_or(0));
        if table_len < ENTRY_TRAILER || table_len > table_end {
            return Err(TdvfError::BadTable(format!(
                "table length {table_len} is outside {ENTRY_TRAILER}..={table_end}"
            )));
        }
        let table_start = table_end - table_len;

        // Walk the entries backwards from just before the footer.
        let mut cursor = table_end - ENTRY_TRAILER;
        let mut entry_data = None;
        while cursor > table_start {
            if cursor - table_start < ENTRY_TRAILER {
                return Err(TdvfError::BadTable(format!(
                    "{} stray bytes at the start of the table",
                    cursor - table_start
                )));
            }
            let guid = &firmware[cursor - 16..cursor];
            let entry_len = usize::from(read_u16(firmware, cursor - ENTRY_TRAILER).unwrap_or(0));
            if entry_len < ENTRY_TRAILER || entry_len > cursor - table_start {
                return Err(TdvfError::BadTable(format!(
                    "entry ending at byte {cursor} has length {entry_len}, outside {ENTRY_TRAILER}..={}",
                    cursor - table_start
                )));
            }
            if guid == TDX_METADATA_OFFSET_GUID {
                entry_data = Some(&firmware[cursor - entry_len..cursor - ENTRY_TRAILER]);
                break;
            }
            cursor -= entry_len;
        }
        let entry_data = entry_data.ok_or(TdvfError::NotTdvf(
            "no TDX metadata entry in the OVMF table",
        ))?;
        let from_end = entry_data
            .len()
            .checked_sub(4)
            .and_then(|at| read_u32(entry_data, at))
            .ok_or_else(|| {
                TdvfError::BadTable(format!(
                    "TDX metadata entry has {} data bytes, needs 4",
                    entry_data.len()
                ))
            })?;
        let from_end = usize::try_from(from_end).unwrap_or(usize::MAX);
        let descriptor_offset = len.checked_sub(from_end).ok_or_else(|| {
            TdvfError::BadDescriptor(format!(
                "offset {from_end} from the end is larger than the {len}-byte file"
            ))
        })?;
        let header = firmware
            .get(descriptor_offset..descriptor_offset.saturating_add(DESCRIPTOR_HEADER))
            .ok_or(TdvfError::Truncated {
                what: "TDVF descriptor header",
                offset: descriptor_offset as u64,
                needed: DESCRIPTOR_HEADER as u64,
                len,
            })?;
        if &header[..4] != b"TDVF" {
            return Err(TdvfError::BadDescriptor(format!(
                "signature at byte {descriptor_offset} is {:02x?}, not \"TDVF\"",
                &header[..4]
            )));
        }
        let desc_len = read_u32(header, 4).unwrap_or(0);
        let version = read_u32(header, 8).unwrap_or(0);
        let count = read_u32(header, 12).unwrap_or(0);
        if version != 1 {
            return Err(TdvfError::BadDescriptor(format!(
                "version {version}, only 1 is defined"
            )));
        }
        if count == 0 || count > MAX_SECTIONS {
            return Err(TdvfError::BadDescriptor(format!(
                "{count} sections, expected 1..={MAX_SECTIONS}"
            )));
        }
        let expected_len = DESCRIPTOR_HEADER as u64 + SECTION_ENTRY as u64 * u64::from(count);
        if u64::from(desc_len) != expected_len {
            return Err(TdvfError::BadDescriptor(format!(
                "length {desc_len} does not match {count} sections ({expected_len} bytes)"
            )));
        }
        let body_start = descriptor_offset + DESCRIPTOR_HEADER;
        let count = count as usize; // <= MAX_SECTIONS
        let body = firmware
            .get(body_start..body_start + SECTION_ENTRY * count)
            .ok_or(TdvfError::Truncated {
                what: "TDVF section entries",
                offset: body_start as u64,
                needed: (SECTION_ENTRY * count) as u64,
                len,
            })?;

        let mut sections = Vec::with_capacity(count);
        for (index, e) in body.chunks_exact(SECTION_ENTRY).enumerate() {
            sections.push(parse_section(index, e, len)?);
        }
        check_overlaps(&sections)?;
        Ok(Tdvf {
            firmware: firmware.to_vec(),
            descriptor_offset,
            sections,
        })
    }

    /// The sections in descriptor order (the order the host adds them).
    pub fn sections(&self) -> &[TdvfSection] {
        &self.sections
    }

    /// The first section of `kind`, if any.
    pub fn section(&self, kind: SectionKind) -> Option<&TdvfSection> {
        self.sections.iter().find(|s| s.kind == kind)
    }

    /// The file bytes of a section (`raw_size` bytes at `data_offset`); empty
    /// for memory-only sections.
    pub fn section_data(&self, section: &TdvfSection) -> &[u8] {
        let start = section.data_offset as usize;
        self.firmware
            .get(start..start.saturating_add(section.raw_size as usize))
            .unwrap_or(&[])
    }

    /// The whole firmware file.
    pub fn firmware(&self) -> &[u8] {
        &self.firmware
    }

    /// Offset of the TDVF descriptor in the file.
    pub fn descriptor_offset(&self) -> usize {
        self.descriptor_offset
    }

    /// MRTD as the TDX module computes it when the host adds the sections in `order`.
    pub fn mrtd(&self, order: MrtdOrder) -> Digest48 {
        let mut ctx = Context::new(&SHA384);
        for s in &self.sections {
            match order {
                MrtdOrder::SinglePass => {
                    for page in 0..s.pages() {
                        self.page_add(&mut ctx, s, page);
                        self.page_extend(&mut ctx, s, page);
                    }
                }
                MrtdOrder::TwoPass => {
                    for page in 0..s.pages() {
                        self.page_add(&mut ctx, s, page);
                    }
                    for page in 0..s.pages() {
                        self.page_extend(&mut ctx, s, page);
                    }
                }
            }
        }
        finish(ctx)
    }

    fn page_add(&self, ctx: &mut Context, s: &TdvfSection, page: u64) {
        if !s.page_aug() {
            ctx.update(&record(b"MEM.PAGE.ADD", s.gpa + page * PAGE_SIZE));
        }
    }

    fn page_extend(&self, ctx: &mut Context, s: &TdvfSection, page: u64) {
        if !s.mr_extend() {
            return;
        }
        let data = self.section_data(s);
        let zeros = [0u8; EXTEND_CHUNK as usize];
        for chunk in 0..PAGE_SIZE / EXTEND_CHUNK {
            let rel = page * PAGE_SIZE + chunk * EXTEND_CHUNK;
            ctx.update(&record(b"MR.EXTEND", s.gpa + rel));
            // Validated at parse: data is empty or covers the whole section.
            let start = rel as usize;
            ctx.update(
                data.get(start..start + EXTEND_CHUNK as usize)
                    .unwrap_or(&zeros),
            );
        }
    }
}

/// A 128-byte TDX measurement record: the operation name, zero padding, the
/// GPA at bytes 16..24, zeros after.
fn record(op: &[u8], gpa: u64) -> [u8; 128] {
    let mut r = [0u8; 128];
    r[..op.len()].copy_from_slice(op);
    r[16..24].copy_from_slice(&gpa.to_le_bytes());
    r
}

fn parse_section(index: usize, e: &[u8], file_len: usize) -> Result<TdvfSection, TdvfError> {
    let bad = |reason: String| TdvfError::BadSection { index, reason };
    let field = |v: Option<u64>| v.ok_or_else(|| bad("entry is shorter than 32 bytes".into()));
    let data_offset = field(read_u32(e, 0).map(u64::from))? as u32;
    let raw_size = field(read_u32(e, 4).map(u64::from))? as u32;
    let gpa = field(read_u64(e, 8))?;
    let mem_size = field(read_u64(e, 16))?;
    let kind_raw = field(read_u32(e, 24).map(u64::from))? as u32;
    let attributes = field(read_u32(e, 28).map(u64::from))? as u32;

    let kind = SectionKind::from_u32(kind_raw)
        .ok_or_else(|| bad(format!("unknown section type {kind_raw}")))?;
    if attributes & !(ATTR_MR_EXTEND | ATTR_PAGE_AUG) != 0 {
        return Err(bad(format!("unknown attribute bits {attributes:#x}")));
    }
    if gpa % PAGE_SIZE != 0 {
        return Err(bad(format!("GPA {gpa:#x} is not 4 KiB aligned")));
    }
    if mem_size == 0 || mem_size % PAGE_SIZE != 0 {
        return Err(bad(format!(
            "memory size {mem_size:#x} is not a positive multiple of 4 KiB"
        )));
    }
    if gpa.checked_add(mem_size).is_none() {
        return Err(bad(format!(
            "GPA {gpa:#x} + size {mem_size:#x} overflows 64 bits"
        )));
    }
    if u64::from(raw_size) > mem_size {
        return Err(bad(format!(
            "raw data size {raw_size:#x} is larger than its memory size {mem_size:#x}"
        )));
    }
    let data_end = u64::from(data_offset) + u64::from(raw_size);
    if raw_size > 0 && data_end > file_len as u64 {
        return Err(bad(format!(
            "data {data_offset:#x}..{data_end:#x} runs past the end of the {file_len:#x}-byte file"
        )));
    }
    match kind {
        SectionKind::Bfv | SectionKind::Cfv if raw_size == 0 => {
            return Err(bad(format!("{kind} section has no data")));
        }
        SectionKind::TdHob | SectionKind::TempMem if raw_size != 0 => {
            return Err(bad(format!(
                "{kind} section carries {raw_size:#x} data bytes, expected none"
            )));
        }
        _ => {}
    }
    let attrs = attributes;
    if attrs & ATTR_MR_EXTEND != 0 {
        let unsupported = |reason: String| TdvfError::Unsupported { index, reason };
        if attrs & ATTR_PAGE_AUG != 0 {
            return Err(bad(
                "both MR_EXTEND and PAGE_AUG: an unadded page cannot be extended".into(),
            ));
        }
        if kind == SectionKind::TdHob {
            return Err(unsupported(
                "MR_EXTEND on the TD HOB would measure host-built content".into(),
            ));
        }
        if raw_size != 0 && u64::from(raw_size) != mem_size {
            return Err(unsupported(format!(
                "MR_EXTEND with raw data {raw_size:#x} covering only part of memory {mem_size:#x}"
            )));
        }
    }
    Ok(TdvfSection {
        kind,
        data_offset,
        raw_size,
        gpa,
        mem_size,
        attributes,
    })
}

fn check_overlaps(sections: &[TdvfSection]) -> Result<(), TdvfError> {
    let mut order: Vec<usize> = (0..sections.len()).collect();
    order.sort_by_key(|&i| sections[i].gpa);
    for pair in order.windows(2) {
        let (a, b) = (&sections[pair[0]], &sections[pair[1]]);
        // gpa + mem_size checked not to overflow at parse.
        if a.gpa + a.mem_size > b.gpa {
            return Err(TdvfError::BadSection {
                index: pair[1],
                reason: format!(
                    "memory {:#x}..{:#x} overlaps section {} at {:#x}..{:#x}",
                    b.gpa,
                    b.gpa + b.mem_size,
                    pair[0],
                    a.gpa,
                    a.gpa + a.mem_size
                ),
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One section entry as raw bytes.
    fn entry(off: u32, raw: u32, gpa: u64, mem: u64, kind: u32, attr: u32) -> Vec<u8> {
        let mut v = Vec::new();
        v.extend_from_slice(&off.to_le_bytes());
        v.extend_from_slice(&raw.to_le_bytes());
        v.extend_from_slice(&gpa.to_le_bytes());
        v.extend_from_slice(&mem.to_le_bytes());
        v.extend_from_slice(&kind.to_le_bytes());
        v.extend_from_slice(&attr.to_le_bytes());
        v
    }

    /// Footer GUID 96b582de-1fb2-45f7-baea-a366c55a082d, byte-swapped by hand.
    const FOOTER: [u8; 16] = [
        0xde, 0x82, 0xb5, 0x96, 0xb2, 0x1f, 0xf7, 0x45, 0xba, 0xea, 0xa3, 0x66, 0xc5, 0x5a, 0x08,
        0x2d,
    ];
    /// TDX metadata GUID e47a6535-984a-4798-865e-4685a7bf8ec2, byte-swapped by hand.
    const TDX: [u8; 16] = [
        0x35, 0x65, 0x7a, 0xe4, 0x4a, 0x98, 0x98, 0x47, 0x86, 0x5e, 0x46, 0x85, 0xa7, 0xbf, 0x8e,
        0xc2,
    ];

    /// A firmware image: `data` (section contents) at offset 0, then the
    /// descriptor with `sections`, then an OVMF table with an unrelated entry
    /// and the TDX entry, then 32 bytes of reset vector.
    fn image(data: &[u8], sections: &[Vec<u8>]) -> Vec<u8> {
        let mut fw = data.to_vec();
        let desc_at = fw.len();
        fw.extend_from_slice(b"TDVF");
        fw.extend_from_slice(&(16 + 32 * sections.len() as u32).to_le_bytes());
        fw.extend_from_slice(&1u32.to_le_bytes());
        fw.extend_from_slice(&(sections.len() as u32).to_le_bytes());
        for s in sections {
            fw.extend_from_slice(s);
        }
        // Table: [other entry][TDX entry][footer], then 32 bytes.
        let total_after_desc = 22 + 22 + 18 + 32;
        let from_end = (fw.len() - desc_at + total_after_desc) as u32;
        let table_start = fw.len();
        fw.extend_from_slice(&[0xaa; 4]);
        fw.extend_from_slice(&22u16.to_le_bytes());
        fw.extend_from_slice(&[0x11; 16]);
        fw.extend_from_slice(&from_end.to_le_bytes());
        fw.extend_from_slice(&22u16.to_le_bytes());
        fw.extend_from_slice(&TDX);
        let table_len = (fw.len() - table_start + 18) as u16;
        fw.extend_from_slice(&table_len.to_le_bytes());
        fw.extend_from_slice(&FOOTER);
        fw.extend_from_slice(&[0x90; 32]);
        fw
    }

    /// A valid image: BFV of 2 pages extended, TempMem 1 page, CFV 1 page not extended.
    fn good() -> (Vec<u8>, Vec<u8>) {
        let data: Vec<u8> = (0..3 * 4096u32).map(|i| (i * 7 % 251) as u8).collect();
        let fw = image(
            &data,
            &[
                entry(0, 0x2000, 0xffff_0000, 0x2000, 0, ATTR_MR_EXTEND),
                entry(0, 0, 0x80_0000, 0x1000, 3, 0),
                entry(0x2000, 0x1000, 0xfffe_0000, 0x1000, 1, 0),
            ],
        );
        (fw, data)
    }

    #[test]
    fn guid_constants_match_hand_swapped_bytes() {
        assert_eq!(OVMF_TABLE_FOOTER_GUID, FOOTER);
        assert_eq!(TDX_METADATA_OFFSET_GUID, TDX);
    }

    #[test]
    fn parses_synthetic_image() {
        let (fw, data) = good();
        let t = Tdvf::parse(&fw).expect("valid image");
        assert_eq!(t.descriptor_offset(), data.len());
        let kinds: Vec<_> = t.sections().iter().map(|s| s.kind).collect();
        assert_eq!(
            kinds,
            [SectionKind::Bfv, SectionKind::TempMem, SectionKind::Cfv]
        );
        let cfv = t.section(SectionKind::Cfv).expect("cfv");
        assert_eq!(t.section_data(cfv), &data[0x2000..0x3000]);
        assert!(t.section_data(&t.sections()[1]).is_empty());
    }

    /// MRTD of the synthetic image computed record by record here, straight
    /// from the definition, with ring (not through `Tdvf::mrtd`'s helpers).
    #[test]
    fn mrtd_matches_hand_computation() {
        let (fw, data) = good();
        let t = Tdvf::parse(&fw).expect("valid image");

        let add = |gpa: u64| {
            let mut r = vec![0u8; 128];
            r[..12].copy_from_slice(b"MEM.PAGE.ADD");
            r[16..24].copy_from_slice(&gpa.to_le_bytes());
            r
        };
        let ext = |gpa: u64, bytes: &[u8]| {
            let mut r = vec![0u8; 128];
            r[..9].copy_from_slice(b"MR.EXTEND");
            r[16..24].copy_from_slice(&gpa.to_le_bytes());
            r.extend_from_slice(bytes);
            r
        };
        let bfv_page_ext = |p: usize| {
            let mut v = Vec::new();
            for c in 0..16 {
                let off = p * 4096 + c * 256;
                v.extend(ext(0xffff_0000 + off as u64, &data[off..off + 256]));
            }
            v
        };

        let mut single = Vec::new();
        single.extend(add(0xffff_0000));
        single.extend(bfv_page_ext(0));
        single.extend(add(0xffff_1000));
        single.extend(bfv_page_ext(1));
        single.extend(add(0x80_0000));
        single.extend(add(0xfffe_0000));

        let mut two = Vec::new();
        two.extend(add(0xffff_0000));
        two.extend(add(0xffff_1000));
        two.extend(bfv_page_ext(0));
        two.extend(bfv_page_ext(1));
        two.extend(add(0x80_0000));
        two.extend(add(0xfffe_0000));

        let h = |b: &[u8]| {
            let d = ring::digest::digest(&ring::digest::SHA384, b);
            hex::encode(d.as_ref())
        };
        assert_eq!(single.len(), 4 * 128 + 32 * (128 + 256));
        assert_eq!(t.mrtd(MrtdOrder::SinglePass).to_hex(), h(&single));
        assert_eq!(t.mrtd(MrtdOrder::TwoPass).to_hex(), h(&two));
        assert_ne!(h(&single), h(&two));
    }

    #[test]
    fn extend_of_memory_only_section_reads_zeros() {
        let fw = image(
            &[],
            &[
                entry(0, 0, 0x1000, 0x1000, 3, ATTR_MR_EXTEND),
                entry(0, 0, 0x4000, 0x1000, 2, 0),
            ],
        );
        let t = Tdvf::parse(&fw).expect("valid");
        let mut all = Vec::new();
        let mut r = vec![0u8; 128];
        r[..12].copy_from_slice(b"MEM.PAGE.ADD");
        r[16..24].copy_from_slice(&0x1000u64.to_le_bytes());
        all.extend(r);
        for c in 0..16u64 {
            let mut r = vec![0u8; 128];
            r[..9].copy_from_slice(b"MR.EXTEND");
            r[16..24].copy_from_slice(&(0x1000 + c * 256).to_le_bytes());
            all.extend(r);
            all.extend([0u8; 256]);
        }
        let mut r = vec![0u8; 128];
        r[..12].copy_from_slice(b"MEM.PAGE.ADD");
        r[16..24].copy_from_slice(&0x4000u64.to_le_bytes());
        all.extend(r);
        let want = ring::digest::digest(&ring::digest::SHA384, &all);
        assert_eq!(&t.mrtd(MrtdOrder::SinglePass).0[..], want.as_ref());
    }

    #[test]
    fn page_aug_section_adds_nothing() {
        let base = image(&[], &[entry(0, 0, 0x1000, 0x1000, 3, 0)]);
        let with_aug = image(
            &[],
            &[
                entry(0, 0, 0x1000, 0x1000, 3, 0),
                entry(0, 0, 0x10_0000, 0x4000, 4, ATTR_PAGE_AUG),
            ],
        );
        let a = Tdvf::parse(&base)
            .expect("valid")
            .mrtd(MrtdOrder::SinglePass);
        let b = Tdvf::parse(&with_aug)
            .expect("valid")
            .mrtd(MrtdOrder::SinglePass);
        assert_eq!(a, b);
    }

    fn err(fw: &[u8]) -> TdvfError {
        match Tdvf::parse(fw) {
            Err(e) => e,
            Ok(t) => panic!("accepted: {t:?}"),
        }
    }

    #[test]
    fn refuses_truncated_and_foreign_files() {
        assert!(matches!(err(&[0u8; 10]), TdvfError::Truncated { .. }));
        let e = err(&[0u8; 4096]);
        assert_eq!(
            e.to_string(),
            "not a TDVF image: no OVMF GUIDed table footer"
        );
        // Footer present but no TDX entry.
        let mut fw = vec![0u8; 64];
        fw.extend_from_slice(&18u16.to_le_bytes());
        fw.extend_from_slice(&FOOTER);
        fw.extend_from_slice(&[0; 32]);
        assert_eq!(
            err(&fw),
            TdvfError::NotTdvf("no TDX metadata entry in the OVMF table")
        );
    }

    #[test]
    fn refuses_bad_table_lengths() {
        let (fw, _) = good();
        let foot = fw.len() - 32 - 18;
        // Table length larger than the file.
        let mut bad = fw.clone();
        bad[foot..foot + 2].copy_from_slice(&0xfff0u16.to_le_bytes());
        assert!(
            matches!(err(&bad), TdvfError::BadTable(_)),
            "{:?}",
            err(&bad)
        );
        // Table length smaller than the footer.
        bad[foot..foot + 2].copy_from_slice(&4u16.to_le_bytes());
        assert!(matches!(err(&bad), TdvfError::BadTable(_)));
        // TDX entry length 0.
        let mut bad = fw.clone();
        let tdx_len = foot - 18;
        bad[tdx_len..tdx_len + 2].copy_from_slice(&0u16.to_le_bytes());
        assert!(matches!(err(&bad), TdvfError::BadTable(_)));
        // TDX entry length running before the table start.
        bad[tdx_len..tdx_len + 2].copy_from_slice(&200u16.to_le_bytes());
        assert!(matches!(err(&bad), TdvfError::BadTable(_)));
    }

    #[test]
    fn refuses_bad_descriptor_offset_and_header() {
        let (fw, _) = good();
        let off_at = fw.len() - 32 - 18 - 18 - 4;
        // Offset past the start of the file.
        let mut bad = fw.clone();
        bad[off_at..off_at + 4].copy_from_slice(&(fw.len() as u32 + 1).to_le_bytes());
        assert!(matches!(err(&bad), TdvfError::BadDescriptor(_)));
        // Offset pointing at the last 4 bytes: header truncated.
        bad[off_at..off_at + 4].copy_from_slice(&4u32.to_le_bytes());
        assert!(matches!(err(&bad), TdvfError::Truncated { .. }));
        // Offset pointing at data: bad signature.
        bad[off_at..off_at + 4].copy_from_slice(&(fw.len() as u32).to_le_bytes());
        assert!(err(&bad).to_string().contains("not \"TDVF\""));

        let desc = 3 * 4096;
        let mut bad = fw.clone();
        bad[desc + 8..desc + 12].copy_from_slice(&2u32.to_le_bytes());
        assert!(err(&bad).to_string().contains("version 2"));
        let mut bad = fw.clone();
        bad[desc + 12..desc + 16].copy_from_slice(&1000u32.to_le_bytes());
        assert!(err(&bad).to_string().contains("1000 sections"));
        let mut bad = fw.clone();
        bad[desc + 12..desc + 16].copy_from_slice(&0u32.to_le_bytes());
        assert!(err(&bad).to_string().contains("0 sections"));
        let mut bad = fw;
        bad[desc + 4..desc + 8].copy_from_slice(&17u32.to_le_bytes());
        assert!(err(&bad).to_string().contains("length 17"));
    }

    #[test]
    fn refuses_bad_sections() {
        let one = |e: Vec<u8>| err(&image(&[0u8; 0x2000], &[e]));
        let reason = |e: TdvfError| match e {
            TdvfError::BadSection { reason, .. } | TdvfError::Unsupported { reason, .. } => reason,
            other => panic!("unexpected {other:?}"),
        };
        assert!(reason(one(entry(0, 0x1000, 0x1001, 0x1000, 0, 1))).contains("not 4 KiB aligned"));
        assert!(reason(one(entry(0, 0x1000, 0x1000, 0x1800, 0, 1))).contains("multiple of 4 KiB"));
        assert!(reason(one(entry(0, 0, 0x1000, 0, 3, 0))).contains("multiple of 4 KiB"));
        assert!(reason(one(entry(0, 0x2000, 0x1000, 0x1000, 0, 0))).contains("larger than"));
        assert!(reason(one(entry(0x1800, 0x1000, 0x1000, 0x1000, 0, 1))).contains("past the end"));
        assert!(reason(one(entry(u32::MAX, 0x1000, 0, 0x1000, 0, 1))).contains("past the end"));
        assert!(reason(one(entry(0, 0, !0xfffu64, 0x2000, 3, 0))).contains("overflows"));
        assert!(reason(one(entry(0, 0x1000, 0, 0x1000, 9, 0))).contains("unknown section type 9"));
        assert!(reason(one(entry(0, 0x1000, 0, 0x1000, 0, 4))).contains("unknown attribute"));
        assert!(reason(one(entry(0, 0, 0, 0x1000, 0, 0))).contains("BFV section has no data"));
        assert!(reason(one(entry(0, 0x1000, 0, 0x1000, 2, 0))).contains("expected none"));
        assert!(reason(one(entry(0, 0, 0, 0x1000, 2, 1))).contains("TD HOB"));
        assert!(reason(one(entry(0, 0x1000, 0, 0x2000, 0, 1))).contains("only part"));
        assert!(reason(one(entry(0, 0, 0, 0x1000, 3, 3))).contains("both MR_EXTEND"));

        // Overlapping sections.
        let e = err(&image(
            &[0u8; 0x2000],
            &[
                entry(0, 0x2000, 0x10000, 0x2000, 0, 1),
                entry(0, 0, 0x11000, 0x1000, 3, 0),
            ],
        ));
        assert!(e.to_string().contains("overlaps section 0"), "{e}");
        // Adjacent sections are fine.
        Tdvf::parse(&image(
            &[0u8; 0x2000],
            &[
                entry(0, 0x2000, 0x10000, 0x2000, 0, 1),
                entry(0, 0, 0x12000, 0x1000, 3, 0),
            ],
        ))
        .expect("adjacent sections");
    }

    #[test]
    fn order_names_serialize_kebab_case() {
        assert_eq!(
            serde_json::to_string(&MrtdOrder::ALL).expect("json"),
            r#"["single-pass","two-pass"]"#
        );
        for o in MrtdOrder::ALL {
            assert_eq!(serde_json::to_value(o).expect("json"), o.name());
        }
    }
}

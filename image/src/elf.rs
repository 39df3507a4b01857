//! Just enough ELF reading to tell a static executable from a dynamic one.
//!
//! ```text
//! ELF64 little-endian header (64 bytes):
//!   0..4   "\x7fELF"   4 class (2 = 64-bit)   5 data (1 = little-endian)
//!   16     e_type u16 (2 EXEC, 3 DYN)
//!   32     e_phoff u64     54 e_phentsize u16     56 e_phnum u16
//! program header (e_phentsize bytes each): p_type u32 at 0 (3 = PT_INTERP)
//! ```
//! A static-pie musl binary is `DYN` without `PT_INTERP`; a dynamically
//! linked one has `PT_INTERP` naming its loader.

/// Why a file is not a usable static executable.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum ElfError {
    /// Not a 64-bit little-endian ELF file.
    #[error("not a 64-bit little-endian ELF file")]
    NotElf64,
    /// The program header table lies outside the file.
    #[error("the ELF program headers lie outside the file")]
    Truncated,
    /// Not an executable (`ET_EXEC` or `ET_DYN`).
    #[error("ELF type {0} is not an executable")]
    NotExecutable(u16),
    /// It needs a dynamic loader.
    #[error("the binary is dynamically linked (it has a PT_INTERP program header)")]
    Dynamic,
}

const PT_INTERP: u32 = 3;

fn u16_at(b: &[u8], off: usize) -> Option<u16> {
    b.get(off..off.checked_add(2)?)?
        .try_into()
        .ok()
        .map(u16::from_le_bytes)
}
fn u32_at(b: &[u8], off: usize) -> Option<u32> {
    b.get(off..off.checked_add(4)?)?
        .try_into()
        .ok()
        .map(u32::from_le_bytes)
}
fn u64_at(b: &[u8], off: usize) -> Option<u64> {
    b.get(off..off.checked_add(8)?)?
        .try_into()
        .ok()
        .map(u64::from_le_bytes)
}

/// Succeeds when `bytes` is a 64-bit executable with no `PT_INTERP`.
pub fn check_static(bytes: &[u8]) -> Result<(), ElfError> {
    if bytes.get(0..4) != Some(b"\x7fELF".as_slice())
        || bytes.get(4) != Some(&2)
        || bytes.get(5) != Some(&1)
    {
        return Err(ElfError::NotElf64);
    }
    let e_type = u16_at(bytes, 16).ok_or(ElfError::NotElf64)?;
    if e_type != 2 && e_type != 3 {
        return Err(ElfError::NotExecutable(e_type));
    }
    let phoff = u64_at(bytes, 32).ok_or(ElfError::NotElf64)?;
    let phentsize = u16_at(bytes, 54).ok_or(ElfError::NotElf64)?;
    let phnum = u16_at(bytes, 56).ok_or(ElfError::NotElf64)?;
    if phentsize < 4 {
        return Err(ElfError::Truncated);
    }
    let phoff = usize::try_from(phoff).map_err(|_| ElfError::Truncated)?;
    for i in 0..usize::from(phnum) {
        let off = i
            .checked_mul(usize::from(phentsize))
            .and_then(|o| o.checked_add(phoff))
            .ok_or(ElfError::Truncated)?;
        let p_type = u32_at(bytes, off).ok_or(ElfError::Truncated)?;
        if p_type == PT_INTERP {
            return Err(ElfError::Dynamic);
        }
    }
    Ok(())
}

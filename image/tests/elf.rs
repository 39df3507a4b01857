//! The static-binary check.

use tessella_image::{check_static, ElfError};

/// A minimal ELF64 header with `phnum` program headers of the given types.
fn elf(e_type: u16, types: &[u32]) -> Vec<u8> {
    let mut b = vec![0u8; 64 + 56 * types.len()];
    b[..4].copy_from_slice(b"\x7fELF");
    b[4] = 2;
    b[5] = 1;
    b[16..18].copy_from_slice(&e_type.to_le_bytes());
    b[32..40].copy_from_slice(&64u64.to_le_bytes());
    b[54..56].copy_from_slice(&56u16.to_le_bytes());
    b[56..58].copy_from_slice(&(types.len() as u16).to_le_bytes());
    for (i, t) in types.iter().enumerate() {
        b[64 + 56 * i..68 + 56 * i].copy_from_slice(&t.to_le_bytes());
    }
    b
}

#[test]
fn static_and_dynamic_headers_are_told_apart() {
    // PT_LOAD = 1, PT_INTERP = 3 (elf(5)).
    assert_eq!(check_static(&elf(3, &[1, 1])), Ok(()));
    assert_eq!(check_static(&elf(2, &[1])), Ok(()));
    assert_eq!(check_static(&elf(3, &[1, 3, 1])), Err(ElfError::Dynamic));
    assert_eq!(check_static(&elf(1, &[1])), Err(ElfError::NotExecutable(1)));
    assert_eq!(check_static(b"#!/bin/sh\n"), Err(ElfError::NotElf64));
    let mut cut = elf(3, &[1, 1]);
    cut.truncate(100);
    assert_eq!(check_static(&cut), Err(ElfError::Truncated));
}

#[test]
fn the_hosts_own_shell_is_dynamic() {
    // Independent check: `file` says so too on a normal Debian host.
    let bytes = std::fs::read("/bin/sh").expect("/bin/sh");
    assert_eq!(check_static(&bytes), Err(ElfError::Dynamic));
}

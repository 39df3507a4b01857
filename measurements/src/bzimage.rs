//! The Linux x86 boot protocol setup header, and how QEMU patches it.
//!
//! In QEMU direct boot (`-kernel`), QEMU rewrites a few setup-header fields
//! before it hands the kernel to the firmware through fw_cfg; OVMF then loads
//! the patched file and measures its Authenticode digest into RTMR1. So RTMR1
//! depends on the bytes QEMU writes, which depend on the RAM size and the
//! initrd size. This module models `x86_load_linux` (QEMU `hw/i386/x86.c`,
//! `hw/i386/x86-common.c` from 9.2 on) for a "high and recent" kernel
//! (protocol >= 2.02 with `LOADED_HIGH`), which is every kernel with an EFI
//! stub:
//!
//! - `type_of_loader` (0x210) = 0xb0 (QEMU);
//! - `loadflags` (0x211) |= 0x80 (`CAN_USE_HEAP`);
//! - `heap_end_ptr` (0x224, u16) = `cmdline_addr - real_addr - 0x200` = 0xfe00;
//! - `cmd_line_ptr` (0x228, u32) = 0x20000;
//! - with an initrd: `initrd_max` = 0xffff_ffff when protocol >= 2.12 and
//!   `xloadflags` (0x236) has `XLF_CAN_BE_LOADED_ABOVE_4G` (bit 1, 0x2, as QEMU
//!   and Linux's `bootparam.h` define it), else `initrd_addr_max` (0x22c, used
//!   as is, even 0) for protocol >= 2.03; clamped to `below_4g_mem_size -
//!   acpi_data_size - 1` (acpi_data_size = 0x28000 on q35); `ramdisk_image`
//!   (0x218) = `(initrd_max - initrd_size) & !0xfff`, `ramdisk_size` (0x21c) =
//!   `initrd_size`; QEMU refuses `initrd_size >= initrd_max`.
//!
//! q35's `below_4g_mem_size` (`hw/i386/pc_q35.c`): RAM if RAM < 0xb000_0000,
//! else 2 GiB (the low/high split moves to 2 GiB once RAM reaches 2.75 GiB).
//!
//! Not modelled: a `vga=` word in the command line (QEMU then also writes
//! `vid_mode` at 0x1fa; [`crate::boot::direct_boot_rtmrs`] refuses such command
//! lines), `-dtb` (writes `setup_data` at 0x250), older protocols.
//!
//! Version notes (read in QEMU's sources, not run): the patch is the same from
//! QEMU 7.2 to 10.1 for this kernel class; QEMU 7.2's was checked byte for
//! byte against fw_cfg (tdx-facts.md). Two later changes can make the
//! firmware measure the unmodified file instead, so RTMR1 stops depending on
//! RAM and initrd size: QEMU 10.0 also publishes the unpatched file as fw_cfg
//! `etc/boot/kernel`, which OVMF 2025.02's `QemuKernelLoaderFsDxe` prefers;
//! and a change merged in August 2025, after 10.1.0 ("x86/loader: Don't
//! update kernel header for CoCo VMs"), stops patching confidential guests,
//! TDX included (SEV guests were never patched). See
//! [`crate::boot::MeasuredKernel`].
//!
//! The setup header starts at 0x1f1 both in the bzImage file and in `struct
//! boot_params`, so the offsets above are also the offsets of these fields in
//! a booted guest's `/sys/kernel/boot_params/data`. Caveat (unverified): when
//! Linux starts through its EFI stub, the stub builds its own `boot_params`
//! and sets `type_of_loader`, `cmd_line_ptr` and the ramdisk fields itself, so
//! only fields it copies unchanged can be compared there.

/// Setup-header offsets (bzImage file == `struct boot_params`).
pub mod offsets {
    /// `setup_sects`: 512-byte setup sectors after the boot sector (0 means 4).
    pub const SETUP_SECTS: usize = 0x1f1;
    /// `vid_mode` (u16), patched by QEMU for `vga=` command lines.
    pub const VID_MODE: usize = 0x1fa;
    /// `header`: the magic "HdrS".
    pub const HEADER: usize = 0x202;
    /// `version` (u16): boot protocol version.
    pub const VERSION: usize = 0x206;
    /// `type_of_loader` (u8).
    pub const TYPE_OF_LOADER: usize = 0x210;
    /// `loadflags` (u8).
    pub const LOADFLAGS: usize = 0x211;
    /// `ramdisk_image` (u32).
    pub const RAMDISK_IMAGE: usize = 0x218;
    /// `ramdisk_size` (u32).
    pub const RAMDISK_SIZE: usize = 0x21c;
    /// `heap_end_ptr` (u16).
    pub const HEAP_END_PTR: usize = 0x224;
    /// `cmd_line_ptr` (u32).
    pub const CMD_LINE_PTR: usize = 0x228;
    /// `initrd_addr_max` (u32).
    pub const INITRD_ADDR_MAX: usize = 0x22c;
    /// `xloadflags` (u16).
    pub const XLOADFLAGS: usize = 0x236;
    /// `cmdline_size` (u32).
    pub const CMDLINE_SIZE: usize = 0x238;
}

/// `loadflags` bit 0: the protected-mode kernel is loaded at 0x100000.
pub const LOADED_HIGH: u8 = 0x01;
/// `loadflags` bit 7: `heap_end_ptr` is valid.
pub const CAN_USE_HEAP: u8 = 0x80;
/// `xloadflags` bit 1: the kernel and initrd may live above 4 GiB.
pub const XLF_CAN_BE_LOADED_ABOVE_4G: u16 = 1 << 1;
/// QEMU's `type_of_loader` (high nibble 0xb = QEMU, revision 0).
pub const QEMU_LOADER_TYPE: u8 = 0xb0;
/// QEMU's `real_addr` for a high, recent kernel.
pub const QEMU_REAL_ADDR: u32 = 0x10000;
/// QEMU's `cmdline_addr` for a high, recent kernel.
pub const QEMU_CMDLINE_ADDR: u32 = 0x20000;
/// q35's `acpi_data_size` (0x20000 + 0x8000), reserved below the top of low RAM.
pub const QEMU_ACPI_DATA_SIZE: u64 = 0x28000;
/// The oldest boot protocol this model covers (2.02: 32-bit `cmd_line_ptr`).
pub const MIN_PROTOCOL: u16 = 0x202;

/// Why a kernel image cannot be patched as QEMU would.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BzImageError {
    /// The file is shorter than the setup code it declares.
    #[error("kernel image truncated: {need:#x} bytes of setup code, file is {len:#x} bytes")]
    Truncated {
        /// Bytes needed.
        need: u64,
        /// File length.
        len: u64,
    },
    /// No "HdrS" magic at 0x202: not a Linux bzImage.
    #[error("not a Linux bzImage (no HdrS magic at 0x202)")]
    NotBzImage,
    /// Boot protocol older than 2.02.
    #[error("boot protocol {major}.{minor:02} is older than 2.02")]
    ProtocolTooOld {
        /// Major version.
        major: u8,
        /// Minor version.
        minor: u8,
    },
    /// The kernel does not load high, so QEMU would use the legacy layout.
    #[error("kernel is not LOADED_HIGH (legacy zImage layout not modelled)")]
    NotLoadedHigh,
    /// The RAM size leaves nothing below the ACPI reservation.
    #[error("{memory_bytes} bytes of RAM is too small for direct boot")]
    MemoryTooSmall {
        /// The RAM size.
        memory_bytes: u64,
    },
    /// QEMU refuses an initrd at least as large as `initrd_max`.
    #[error("initrd of {size} bytes does not fit below {max:#x}")]
    InitrdTooLarge {
        /// The initrd size.
        size: u64,
        /// QEMU's `initrd_max` for this kernel and RAM.
        max: u32,
    },
}

/// The setup-header fields that decide QEMU's patch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SetupHeader {
    /// `setup_sects` as stored (0 means 4).
    pub setup_sects: u8,
    /// Boot protocol version (0x020f = 2.15).
    pub version: u16,
    /// `loadflags`.
    pub loadflags: u8,
    /// `initrd_addr_max` (protocol >= 2.03).
    pub initrd_addr_max: u32,
    /// `xloadflags` (protocol >= 2.12).
    pub xloadflags: u16,
    /// `cmdline_size` (protocol >= 2.06).
    pub cmdline_size: u32,
}

fn u16_at(k: &[u8], off: usize) -> u16 {
    u16::from_le_bytes([k[off], k[off + 1]])
}

fn u32_at(k: &[u8], off: usize) -> u32 {
    u32::from_le_bytes([k[off], k[off + 1], k[off + 2], k[off + 3]])
}

impl SetupHeader {
    /// Parse the setup header of `kernel`, refusing what is not a bzImage
    /// whose setup code fits in the file.
    pub fn parse(kernel: &[u8]) -> Result<Self, BzImageError> {
        let len = kernel.len() as u64;
        // The header fields we read end at 0x23c; QEMU reads an 8 KiB header.
        if kernel.len() < 0x23c {
            return Err(BzImageError::Truncated { need: 0x23c, len });
        }
        if &kernel[offsets::HEADER..offsets::HEADER + 4] != b"HdrS" {
            return Err(BzImageError::NotBzImage);
        }
        let h = SetupHeader {
            setup_sects: kernel[offsets::SETUP_SECTS],
            version: u16_at(kernel, offsets::VERSION),
            loadflags: kernel[offsets::LOADFLAGS],
            initrd_addr_max: u32_at(kernel, offsets::INITRD_ADDR_MAX),
            xloadflags: u16_at(kernel, offsets::XLOADFLAGS),
            cmdline_size: u32_at(kernel, offsets::CMDLINE_SIZE),
        };
        if h.setup_size() as u64 > len {
            return Err(BzImageError::Truncated {
                need: h.setup_size() as u64,
                len,
            });
        }
        Ok(h)
    }

    /// Bytes of setup code including the boot sector, `(setup_sects + 1) * 512`
    /// with 0 read as 4: what QEMU serves as fw_cfg setup data.
    pub fn setup_size(&self) -> usize {
        let sects = if self.setup_sects == 0 {
            4
        } else {
            usize::from(self.setup_sects)
        };
        (sects + 1) * 512
    }
}

/// The QEMU direct-boot parameters that change the patched header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QemuDirectBoot {
    /// Guest RAM (`-m`) in bytes.
    pub memory_bytes: u64,
    /// Size of the `-initrd` file, `None` without `-initrd`.
    pub initrd_size: Option<u64>,
}

/// The six header fields QEMU writes, as the guest-visible values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PatchedFields {
    /// `type_of_loader` (0x210).
    pub type_of_loader: u8,
    /// `loadflags` (0x211).
    pub loadflags: u8,
    /// `ramdisk_image` (0x218): the initrd's load address, or the file's value
    /// without an initrd.
    pub ramdisk_image: u32,
    /// `ramdisk_size` (0x21c).
    pub ramdisk_size: u32,
    /// `heap_end_ptr` (0x224).
    pub heap_end_ptr: u16,
    /// `cmd_line_ptr` (0x228).
    pub cmd_line_ptr: u32,
}

/// q35's RAM below 4 GiB for `memory_bytes` of guest RAM.
pub fn below_4g_mem_size(memory_bytes: u64) -> u64 {
    if memory_bytes >= 0xb000_0000 {
        0x8000_0000
    } else {
        memory_bytes
    }
}

/// The values QEMU writes into the setup header of `kernel` for `boot`.
pub fn qemu_patched_fields(
    kernel: &[u8],
    boot: &QemuDirectBoot,
) -> Result<PatchedFields, BzImageError> {
    let h = SetupHeader::parse(kernel)?;
    if h.version < MIN_PROTOCOL {
        return Err(BzImageError::ProtocolTooOld {
            major: (h.version >> 8) as u8,
            minor: h.version as u8,
        });
    }
    if h.loadflags & LOADED_HIGH == 0 {
        return Err(BzImageError::NotLoadedHigh);
    }
    let below_4g = below_4g_mem_size(boot.memory_bytes);
    if below_4g <= QEMU_ACPI_DATA_SIZE {
        return Err(BzImageError::MemoryTooSmall {
            memory_bytes: boot.memory_bytes,
        });
    }

    let mut fields = PatchedFields {
        type_of_loader: QEMU_LOADER_TYPE,
        loadflags: h.loadflags | CAN_USE_HEAP,
        ramdisk_image: u32_at(kernel, offsets::RAMDISK_IMAGE),
        ramdisk_size: u32_at(kernel, offsets::RAMDISK_SIZE),
        heap_end_ptr: (QEMU_CMDLINE_ADDR - QEMU_REAL_ADDR - 0x200) as u16,
        cmd_line_ptr: QEMU_CMDLINE_ADDR,
    };
    if let Some(size) = boot.initrd_size {
        let mut initrd_max: u32 =
            if h.version >= 0x20c && h.xloadflags & XLF_CAN_BE_LOADED_ABOVE_4G != 0 {
                u32::MAX
            } else {
                // version >= 0x203 here (>= 0x202 checked, 0x202 has no field).
                if h.version >= 0x203 {
                    h.initrd_addr_max
                } else {
                    0x37ff_ffff
                }
            };
        // below_4g <= 0xb000_0000, so the limit fits in u32.
        let limit = below_4g - QEMU_ACPI_DATA_SIZE;
        if u64::from(initrd_max) >= limit {
            initrd_max = (limit - 1) as u32;
        }
        if size >= u64::from(initrd_max) {
            return Err(BzImageError::InitrdTooLarge {
                size,
                max: initrd_max,
            });
        }
        // size < initrd_max <= u32::MAX.
        let size32 = size as u32;
        fields.ramdisk_image = (initrd_max - size32) & !0xfff;
        fields.ramdisk_size = size32;
    }
    Ok(fields)
}

/// `kernel` with its setup header patched as QEMU serves it to the firmware
/// (setup data followed by the rest of the file, which OVMF concatenates back
/// into one image).
pub fn qemu_patched_kernel(kernel: &[u8], boot: &QemuDirectBoot) -> Result<Vec<u8>, BzImageError> {
    let f = qemu_patched_fields(kernel, boot)?;
    let mut k = kernel.to_vec();
    k[offsets::TYPE_OF_LOADER] = f.type_of_loader;
    k[offsets::LOADFLAGS] = f.loadflags;
    k[offsets::RAMDISK_IMAGE..offsets::RAMDISK_IMAGE + 4]
        .copy_from_slice(&f.ramdisk_image.to_le_bytes());
    k[offsets::RAMDISK_SIZE..offsets::RAMDISK_SIZE + 4]
        .copy_from_slice(&f.ramdisk_size.to_le_bytes());
    k[offsets::HEAP_END_PTR..offsets::HEAP_END_PTR + 2]
        .copy_from_slice(&f.heap_end_ptr.to_le_bytes());
    k[offsets::CMD_LINE_PTR..offsets::CMD_LINE_PTR + 4]
        .copy_from_slice(&f.cmd_line_ptr.to_le_bytes());
    Ok(k)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fake bzImage header: protocol `version`, `xloadflags`, `initrd_addr_max`.
    /// QEMU's fields for `k` booted with `memory_bytes` of RAM and an initrd of `initrd_size`.
    fn fields(k: &[u8], memory_bytes: u64, initrd_size: Option<u64>) -> PatchedFields {
        qemu_patched_fields(
            k,
            &QemuDirectBoot {
                memory_bytes,
                initrd_size,
            },
        )
        .expect("patch")
    }

    fn kernel(version: u16, xlf: u16, addr_max: u32) -> Vec<u8> {
        let mut k = vec![0u8; 0x1400];
        k[offsets::SETUP_SECTS] = 4;
        k[offsets::HEADER..offsets::HEADER + 4].copy_from_slice(b"HdrS");
        k[offsets::VERSION..offsets::VERSION + 2].copy_from_slice(&version.to_le_bytes());
        k[offsets::LOADFLAGS] = LOADED_HIGH;
        k[offsets::INITRD_ADDR_MAX..offsets::INITRD_ADDR_MAX + 4]
            .copy_from_slice(&addr_max.to_le_bytes());
        k[offsets::XLOADFLAGS..offsets::XLOADFLAGS + 2].copy_from_slice(&xlf.to_le_bytes());
        k
    }

    const GIB: u64 = 1 << 30;

    #[test]
    fn one_gib_above_4g_kernel() {
        // 1 GiB: below_4g = 0x4000_0000; initrd_max = 0x4000_0000 - 0x28000 - 1
        // = 0x3ffd_7fff; image = (0x3ffd_7fff - 0x1234) & !0xfff = 0x3ffd_6000.
        let k = kernel(0x20f, XLF_CAN_BE_LOADED_ABOVE_4G, 0x7fff_ffff);
        let f = fields(&k, GIB, Some(0x1234));
        assert_eq!(
            f,
            PatchedFields {
                type_of_loader: 0xb0,
                loadflags: 0x81,
                ramdisk_image: 0x3ffd_6000,
                ramdisk_size: 0x1234,
                heap_end_ptr: 0xfe00,
                cmd_line_ptr: 0x20000,
            }
        );
        let p = qemu_patched_kernel(
            &k,
            &QemuDirectBoot {
                memory_bytes: GIB,
                initrd_size: Some(0x1234),
            },
        )
        .expect("patch");
        assert_eq!(&p[0x210..0x212], &[0xb0, 0x81]);
        assert_eq!(
            &p[0x218..0x220],
            &[0x00, 0x60, 0xfd, 0x3f, 0x34, 0x12, 0, 0]
        );
        assert_eq!(
            &p[0x224..0x22c],
            &[0x00, 0xfe, 0, 0, 0x00, 0x00, 0x02, 0x00]
        );
        // Nothing else changes.
        let changed: Vec<usize> = (0..k.len()).filter(|&i| k[i] != p[i]).collect();
        assert!(
            changed.iter().all(|&i| (0x210..0x22c).contains(&i)),
            "{changed:x?}"
        );
    }

    #[test]
    fn large_ram_splits_at_2_gib() {
        // >= 0xb000_0000: below_4g = 2 GiB: initrd_max = 0x7ffd_7fff.
        let k = kernel(0x20f, XLF_CAN_BE_LOADED_ABOVE_4G, 0x7fff_ffff);
        for mem in [0xb000_0000, 4 * GIB, 64 * GIB] {
            let f = fields(&k, mem, Some(0x10_0000));
            assert_eq!(f.ramdisk_image, (0x7ffd_7fff - 0x10_0000) & !0xfff);
        }
        // Just below 2.75 GiB, all RAM is low.
        let f = fields(&k, 0xafff_f000, Some(0x10_0000));
        assert_eq!(
            f.ramdisk_image,
            (0xafff_f000 - 0x28000 - 1 - 0x10_0000) & !0xfff
        );
    }

    #[test]
    fn initrd_addr_max_without_above_4g() {
        // Protocol 2.12 without XLF bit 1: initrd_addr_max (below the 1 GiB
        // RAM limit here) caps the address.
        let k = kernel(0x20c, 0x0001, 0x2fff_ffff);
        let f = fields(&k, GIB, Some(0x2000));
        assert_eq!(f.ramdisk_image, 0x2fff_d000);
        // Bit 6 (XLF_5LEVEL_ENABLED) is not the above-4G flag.
        let k = kernel(0x20c, 0x0040, 0x2fff_ffff);
        let f = fields(&k, GIB, Some(0x2000));
        assert_eq!(f.ramdisk_image, 0x2fff_d000);
        // Protocol 2.11 ignores xloadflags.
        let k = kernel(0x20b, XLF_CAN_BE_LOADED_ABOVE_4G, 0x2fff_ffff);
        let f = fields(&k, GIB, Some(0x2000));
        assert_eq!(f.ramdisk_image, 0x2fff_d000);
    }

    #[test]
    fn without_initrd_ramdisk_fields_are_kept() {
        let mut k = kernel(0x20f, XLF_CAN_BE_LOADED_ABOVE_4G, 0x7fff_ffff);
        k[0x218] = 0x11;
        let f = fields(&k, GIB, None);
        assert_eq!((f.ramdisk_image, f.ramdisk_size), (0x11, 0));
        // Independent of RAM without an initrd.
        let g = fields(&k, 8 * GIB, None);
        assert_eq!(f, g);
    }

    #[test]
    fn refusals() {
        let boot = QemuDirectBoot {
            memory_bytes: GIB,
            initrd_size: Some(16),
        };
        assert!(matches!(
            qemu_patched_kernel(&[0u8; 0x100], &boot),
            Err(BzImageError::Truncated { .. })
        ));
        let mut k = kernel(0x20f, 2, 0);
        k[0x202] = b'X';
        assert_eq!(
            qemu_patched_kernel(&k, &boot),
            Err(BzImageError::NotBzImage)
        );
        let k = kernel(0x201, 2, 0);
        assert_eq!(
            qemu_patched_kernel(&k, &boot),
            Err(BzImageError::ProtocolTooOld { major: 2, minor: 1 })
        );
        let mut k = kernel(0x20f, 2, 0);
        k[offsets::LOADFLAGS] = 0;
        assert_eq!(
            qemu_patched_kernel(&k, &boot),
            Err(BzImageError::NotLoadedHigh)
        );
        let mut k = kernel(0x20f, 2, 0);
        k[offsets::SETUP_SECTS] = 60;
        assert!(matches!(
            qemu_patched_kernel(&k, &boot),
            Err(BzImageError::Truncated { .. })
        ));
        let k = kernel(0x20f, 2, 0);
        let big = QemuDirectBoot {
            memory_bytes: GIB,
            initrd_size: Some(0x3ffd_7fff),
        };
        assert_eq!(
            qemu_patched_kernel(&k, &big),
            Err(BzImageError::InitrdTooLarge {
                size: 0x3ffd_7fff,
                max: 0x3ffd_7fff
            })
        );
        let huge = QemuDirectBoot {
            memory_bytes: GIB,
            initrd_size: Some(u64::MAX),
        };
        assert!(matches!(
            qemu_patched_kernel(&k, &huge),
            Err(BzImageError::InitrdTooLarge { .. })
        ));
        let tiny = QemuDirectBoot {
            memory_bytes: 0x28000,
            initrd_size: None,
        };
        assert_eq!(
            qemu_patched_kernel(&k, &tiny),
            Err(BzImageError::MemoryTooSmall {
                memory_bytes: 0x28000
            })
        );
        // initrd_addr_max = 0 is used as is: any initrd is too large.
        let k = kernel(0x20b, 0, 0);
        assert!(matches!(
            qemu_patched_kernel(&k, &boot),
            Err(BzImageError::InitrdTooLarge { max: 0, .. })
        ));
    }
}

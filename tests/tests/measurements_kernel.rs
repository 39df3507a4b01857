//! Kernel measurements on the pinned Debian kernel: Authenticode against the
//! kernel's own Secure Boot signature, QEMU's setup-header patch, RTMR1 and
//! RTMR2 of a direct boot, and robustness of the PE parser on mutated input.
//!
//! Needs the pinned image inputs (`cargo run -p tessella-image -- fetch`, or
//! `TESSELLA_IMAGE_INPUTS=DIR`).

use tessella_measurements::authenticode::parse_pe;
use tessella_measurements::boot::{load_options, rtmr1_events_for, TdvfLayout};
use tessella_measurements::bzimage::SetupHeader;
use tessella_measurements::{
    authenticode_digest, direct_boot_rtmrs, embedded_signature_digest, extend, qemu_patched_fields,
    qemu_patched_kernel, rtmr1_events, rtmr2_events, sha384, Digest48, HashAlgorithm, PeError,
    QemuDirectBoot, Rtmrs,
};
use tessella_measurements::{direct_boot_rtmrs_with, DirectBootOptions, MeasuredKernel};

const GIB: u64 = 1 << 30;

fn kernel() -> Vec<u8> {
    let path = tessella_tests::image_inputs().join("vmlinuz");
    std::fs::read(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

#[test]
fn sha256_authenticode_matches_the_kernels_own_signature() {
    let k = kernel();
    let (alg, signed) = embedded_signature_digest(&k)
        .expect("parse signature")
        .expect("kernel is signed");
    assert_eq!(alg, HashAlgorithm::Sha256);
    let ours = authenticode_digest(&k, HashAlgorithm::Sha256).expect("digest");
    assert_eq!(hex::encode(&ours), hex::encode(&signed));
    // Independent: `osslsigncode verify` reported this "Calculated message
    // digest" (and the same "Current message digest") for this file.
    assert_eq!(
        hex::encode(&ours),
        "76d6b8d71b6bbaeb757af1edf1174edeae0e4c95e82c3e1da827d4f447f3edef"
    );
}

#[test]
fn pinned_kernel_layout() {
    let k = kernel();
    let h = SetupHeader::parse(&k).expect("bzImage");
    assert!(h.version >= 0x20c, "protocol {:#x}", h.version);
    let pe = parse_pe(&k).expect("PE");
    assert!(pe.pe32_plus);
    // The signature is the file's tail, so edk2's and the specification's
    // trailing-data rules agree on this kernel.
    let (addr, size) = pe.cert_table.expect("certificate table");
    assert_eq!(u64::from(addr) + u64::from(size), k.len() as u64);
    // QEMU's patched fields all lie in the headers, not in a section.
    assert!(pe.size_of_headers > 0x22c);
}

/// (RAM, initrd size, RTMR1 when boot variables are measured into RTMR1 (edk2
/// 2022.11 IntelTdx TdTcg2Dxe), RTMR1 when they go to RTMR0 (Debian 13's OVMF
/// 2025.02, the default)). Regression pins from this
/// crate that a one-off independent Python computation (spec-style
/// Authenticode, QEMU patch, UiApp load option and RTMR extend written
/// separately) reproduced.
const RTMR1_CASES: [(u64, u64, &str, &str); 5] = [
    (
        GIB,
        4096,
        "e19cb1839ce18ad6e15589f0cf35cee03176721c13e4dc163cae1dc32535bb54cf5ae9def3c08265effe53019031f545",
        "c03211380a537af9e49d867862fd67a2de6579b52f4b6ddb9d4605b31e765a5d3b53470b692cce2ce8beac91fb784859",
    ),
    (
        GIB,
        5_000_000,
        "7394b7a38a3207995c39575964b0403e62bbaf1af0a42d4cd882f87fa4d410e76eba3acbd99ff4fa04ec992f1b1902b7",
        "d9ee67a89f52fdd200c034d82554d970f310e00007d260280a2acf93f43aa8b11e93f34e8292b521c18f8f53a6980150",
    ),
    (
        4 * GIB,
        4096,
        "62878041468d302a847cdaf58b5643b99d6be65bb5ed5e8c6d30af3493a4682655459bbed8f31814386260e8e0d87bb4",
        "9fd5837084bb81400e7d5c82da415d0b9b88dc4251cff37ee7d37bf4ede2b92285d78794d066f32df3ec84e8c1ab1a1b",
    ),
    (
        4 * GIB,
        5_000_000,
        "d49b4413ee4a3074cb88ef942ec07158d7bc2e14a4d33743acdfb040a6df768d236cfb7462cef3be87fac67a914e0732",
        "de7b3e6eabda67c98cd7a20be57bc941ac2d0a8026fde4b71df6a8e49828a790b87116ea8a3d43ed07d851035f50ad4c",
    ),
    // 2 GiB: all RAM below 4 GiB, the same 2 GiB split as 4 GiB.
    (
        2 * GIB,
        4096,
        "62878041468d302a847cdaf58b5643b99d6be65bb5ed5e8c6d30af3493a4682655459bbed8f31814386260e8e0d87bb4",
        "9fd5837084bb81400e7d5c82da415d0b9b88dc4251cff37ee7d37bf4ede2b92285d78794d066f32df3ec84e8c1ab1a1b",
    ),
];

#[test]
fn rtmr1_depends_exactly_on_the_patch() {
    let k = kernel();
    let mut seen = Vec::new();
    for (mem, initrd, pin_vars_in_rtmr1, pin_default) in RTMR1_CASES {
        let boot = QemuDirectBoot {
            memory_bytes: mem,
            initrd_size: Some(initrd),
        };
        let patched = qemu_patched_kernel(&k, &boot).expect("patch");
        let events = rtmr1_events(&patched).expect("events");
        let rtmr1 = Rtmrs::replay_one(events.iter().map(|e| &e.digest));
        assert_eq!(rtmr1.to_hex(), pin_default, "RAM {mem:#x}, initrd {initrd}");
        let old = rtmr1_events_for(&patched, TdvfLayout::BootVariablesInRtmr1).expect("events");
        let old = Rtmrs::replay_one(old.iter().map(|e| &e.digest));
        assert_eq!(
            old.to_hex(),
            pin_vars_in_rtmr1,
            "RAM {mem:#x}, initrd {initrd}"
        );
        seen.push((patched, rtmr1));
    }
    // Values differ exactly when the patched kernels differ.
    for (i, (ki, ri)) in seen.iter().enumerate() {
        for (kj, rj) in &seen[i + 1..] {
            assert_eq!(ki == kj, ri == rj);
        }
    }
    // The patched bytes are the model's, at the documented offsets: 1 GiB,
    // 4096-byte initrd: initrd_max = 0x4000_0000 - 0x28000 - 1.
    let f = qemu_patched_fields(
        &k,
        &QemuDirectBoot {
            memory_bytes: GIB,
            initrd_size: Some(4096),
        },
    )
    .expect("patch");
    assert_eq!(f.ramdisk_image, (0x3ffd_7fff - 4096) & !0xfff);
    assert_eq!(
        (
            f.type_of_loader,
            f.heap_end_ptr,
            f.cmd_line_ptr,
            f.ramdisk_size
        ),
        (0xb0, 0xfe00, 0x20000, 4096)
    );
    // The unpatched kernel (QEMU that skips the patch for CoCo guests) gives
    // yet another value; its kernel digest was also reproduced in Python.
    let plain = rtmr1_events(&k).expect("events");
    assert_eq!(
        plain[0].digest.to_hex(),
        "bec140f0af0a5a85918be1f40be729427cb12164cc01e8fb4b9f8df245ea721bae33e471c2c2d981d5601ad1274bf7ea"
    );
}

/// A tiny newc cpio archive holding only the trailer, built by hand.
fn tiny_initrd() -> Vec<u8> {
    let name = b"TRAILER!!!\0";
    let mut c = Vec::new();
    c.extend_from_slice(b"070701");
    for field in [0u32, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, name.len() as u32, 0] {
        c.extend_from_slice(format!("{field:08X}").as_bytes());
    }
    c.extend_from_slice(name);
    while c.len() % 512 != 0 {
        c.push(0);
    }
    c
}

#[test]
fn direct_boot_registers() {
    let k = kernel();
    let initrd = tiny_initrd();
    let cmdline = "console=ttyS0 panic=-1";
    let m = direct_boot_rtmrs(&k, cmdline, &initrd, 4 * GIB).expect("measure");

    // RTMR1 agrees with the step-by-step path.
    let patched = qemu_patched_kernel(
        &k,
        &QemuDirectBoot {
            memory_bytes: 4 * GIB,
            initrd_size: Some(512),
        },
    )
    .expect("patch");
    assert_eq!(m.rtmr1_events, rtmr1_events(&patched).expect("events"));

    // RTMR2 from an independent encoding: str::encode_utf16 plus the suffix.
    let mut options = Vec::new();
    for unit in "console=ttyS0 panic=-1 initrd=initrd".encode_utf16() {
        options.extend_from_slice(&unit.to_le_bytes());
    }
    options.extend_from_slice(&[0, 0]);
    assert_eq!(
        load_options(cmdline, true).as_deref(),
        Some(options.as_slice())
    );
    let mut rtmr2 = Digest48::ZERO;
    extend(&mut rtmr2, &sha384(&options));
    extend(&mut rtmr2, &sha384(&initrd));
    assert_eq!(m.rtmr2, rtmr2);
    assert_eq!(m.rtmr2_events, rtmr2_events(cmdline, &initrd));
    assert_eq!(
        m.rtmr1,
        Rtmrs::replay_one(m.rtmr1_events.iter().map(|e| &e.digest))
    );

    // Measuring the unmodified file (QEMU 10.0+ with OVMF 2025.02, or QEMU
    // that skips the patch for TDX): RTMR1 no longer depends on RAM or initrd.
    let unmodified = DirectBootOptions {
        kernel: MeasuredKernel::Unmodified,
        ..Default::default()
    };
    let a = direct_boot_rtmrs_with(&k, cmdline, &initrd, GIB, &unmodified).expect("measure");
    let b =
        direct_boot_rtmrs_with(&k, cmdline, &[7u8; 4096], 4 * GIB, &unmodified).expect("measure");
    assert_eq!(a.rtmr1, b.rtmr1);
    assert_ne!(a.rtmr1, m.rtmr1);
    assert_eq!(a.rtmr1_events, rtmr1_events(&k).expect("events"));
    assert_eq!(a.rtmr2, m.rtmr2);
}

/// Deterministic xorshift64 for the mutation test.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

fn exercise(image: &[u8]) -> bool {
    let a = authenticode_digest(image, HashAlgorithm::Sha384).is_ok();
    let _ = embedded_signature_digest(image);
    let _ = qemu_patched_kernel(
        image,
        &QemuDirectBoot {
            memory_bytes: GIB,
            initrd_size: Some(1 << 20),
        },
    );
    a
}

#[test]
fn truncated_mutated_and_random_images_never_panic() {
    let k = kernel();
    // Dropping exactly the certificate table leaves what edk2 hashes: the
    // same digest, as for an unsigned build of the same kernel.
    let unsigned = &k[..k.len() - 0x5c0];
    assert_eq!(
        authenticode_digest(unsigned, HashAlgorithm::Sha384).expect("unsigned"),
        authenticode_digest(&k, HashAlgorithm::Sha384).expect("signed")
    );
    // Every other strict prefix is refused: it cuts a header, a section or
    // the certificate table that edk2 subtracts from the file size.
    let mut cuts: Vec<usize> = (0..0x1100).step_by(7).collect();
    cuts.extend([k.len() - 1, k.len() - 0x5c1, k.len() / 2]);
    for cut in cuts {
        assert!(!exercise(&k[..cut]), "prefix of {cut:#x} bytes accepted");
        assert!(matches!(
            authenticode_digest(&k[..cut], HashAlgorithm::Sha256),
            Err(PeError::Truncated { .. }
                | PeError::TrailingDataUnderflow { .. }
                | PeError::NoPeSignature(_))
        ));
    }
    // Mutations of header bytes (where every offset and length lives) and of
    // the signature: must never panic; most headers still parse.
    let header_len = 0x1000;
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut ok = 0;
    for round in 0..150 {
        let mut m = k[..].to_vec();
        for _ in 0..1 + round % 4 {
            let pos = if rng.next().is_multiple_of(4) {
                k.len() - 0x5c0 + (rng.next() % 0x5c0) as usize
            } else {
                (rng.next() % header_len) as usize
            };
            m[pos] = rng.next() as u8;
        }
        ok += usize::from(exercise(&m));
    }
    assert!(
        ok > 0,
        "no mutated image parsed: the mutation test exercises nothing"
    );
    // Random bytes, with and without a forged MZ/PE prefix.
    for len in [0usize, 1, 63, 64, 300, 4096, 70_000] {
        let mut r: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
        assert!(!exercise(&r));
        if len >= 0x100 {
            r[0..2].copy_from_slice(b"MZ");
            r[0x3c..0x40].copy_from_slice(&0x80u32.to_le_bytes());
            r[0x80..0x84].copy_from_slice(b"PE\0\0");
            let _ = exercise(&r);
        }
    }
}

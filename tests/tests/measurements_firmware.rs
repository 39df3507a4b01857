//! MRTD and RTMR0's computed part for the pinned Debian OVMF (trixie's ovmf
//! 2025.02-8+deb13u1, `OVMF.fd`, 4 MiB: the first Debian build whose firmware
//! volume carries `TdTcg2Dxe`, i.e. measures the boot into RTMRs; bookworm's
//! 2022.11 build has TDVF metadata but no CC measurement driver).
//!
//! Needs the pinned image inputs (`cargo run -p tessella-image -- fetch`, or
//! `TESSELLA_IMAGE_INPUTS=DIR`).

use tessella_measurements::{MrtdOrder, SectionKind, Tdvf};

fn ovmf() -> Vec<u8> {
    let path = tessella_tests::image_inputs().join("OVMF.fd");
    std::fs::read(&path).expect("read OVMF.fd")
}

#[test]
fn debian_ovmf_tdvf_layout() {
    let fw = ovmf();
    assert_eq!(fw.len(), 4 << 20);
    let t = Tdvf::parse(&fw).expect("Debian OVMF.fd carries TDVF metadata");
    // Observed layout (also read with an independent Python script): the
    // descriptor sits 0x9c0 bytes before the end of the file.
    assert_eq!(t.descriptor_offset(), fw.len() - 0x9c0);
    let got: Vec<_> = t
        .sections()
        .iter()
        .map(|s| {
            (
                s.kind,
                s.data_offset,
                s.raw_size,
                s.gpa,
                s.mem_size,
                s.attributes,
            )
        })
        .collect();
    assert_eq!(
        got,
        [
            (
                SectionKind::Bfv,
                0x8_4000,
                0x37_c000,
                0xffc8_4000,
                0x37_c000,
                1
            ),
            (SectionKind::Cfv, 0, 0x8_4000, 0xffc0_0000, 0x8_4000, 0),
            (SectionKind::TempMem, 0, 0, 0x81_1000, 0xf000, 0),
            (SectionKind::TempMem, 0, 0, 0x80_b000, 0x2000, 0),
            (SectionKind::TdHob, 0, 0, 0x80_9000, 0x2000, 0),
            (SectionKind::TempMem, 0, 0, 0x80_0000, 0x6000, 0),
        ]
    );
    // The firmware ends at 4 GiB: BFV and CFV together map the whole file.
    let bfv = t.section(SectionKind::Bfv).expect("bfv");
    assert_eq!(bfv.gpa + bfv.mem_size, 1 << 32);
    assert_eq!(t.section_data(bfv), &fw[0x8_4000..]);
    let cfv = t.section(SectionKind::Cfv).expect("cfv");
    assert_eq!(t.section_data(cfv), &fw[..0x8_4000]);
}

#[test]
fn debian_ovmf_mrtd_pins() {
    let t = Tdvf::parse(&ovmf()).expect("parse");
    let single = t.mrtd(MrtdOrder::SinglePass).to_hex();
    let two = t.mrtd(MrtdOrder::TwoPass).to_hex();
    assert_ne!(single, two);
    // Regression pins computed by this code. Cross-checked with an independent
    // Python (hashlib) implementation written separately from the TDX module / QEMU
    // description, which gave the same two values; no MRTD for this firmware
    // build has been published that we could compare with, and no TDX hardware
    // boot of it has been observed.
    assert_eq!(
        single,
        "bdc6fb145880f06f30c8b346b8dce2a99d9351b56892df22f80fcf6574caa9f9\
         c31df8e8576d53b4d0cd1c3f28910e11"
    );
    assert_eq!(
        two,
        "456f07902150d008bb913c3e1e84e9297f735a6c83cd2a957a1f0a8bbedb06df\
         188e3837ae48d32c73d473d097dc0db2"
    );
}

/// RTMR0's computed part on the Debian OVMF for 1 GiB and 4 GiB of RAM: only
/// the TD HOB differs.
#[test]
fn rtmr0_computed_events_follow_the_hob() {
    use tessella_measurements::rtmr0::{td_hob, EV_SEPARATOR};
    use tessella_measurements::{rtmr0, EventSource};

    let t = Tdvf::parse(&ovmf()).expect("parse");
    let small = rtmr0(&t, 1 << 30, None).expect("1 GiB");
    let big = rtmr0(&t, 4 << 30, None).expect("4 GiB");
    assert_eq!(small.value, None);
    assert_eq!(small.events.len(), 8);
    assert_eq!(big.events.len(), 8);
    assert!(small
        .events
        .iter()
        .all(|e| e.source == EventSource::Computed && e.event.rtmr == 0));
    assert_eq!(small.events[7].event.event_type, EV_SEPARATOR);
    assert_ne!(small.events[0].event.digest, big.events[0].event.digest);
    for i in 1..8 {
        assert_eq!(
            small.events[i].event.digest, big.events[i].event.digest,
            "{i}"
        );
    }

    // HOB: PHIT + 8 ranges below 1 GiB (4 accepted TD_HOB/TempMem pieces and 4
    // unaccepted gaps); with 4 GiB, one more unaccepted range above 4 GiB.
    let hob1 = td_hob(&t, 1 << 30).expect("1 GiB");
    let hob4 = td_hob(&t, 4 << 30).expect("4 GiB");
    assert_eq!(hob1.len(), 56 + 8 * 48);
    assert_eq!(hob4.len(), 56 + 9 * 48);
    // EfiEndOfHobList points just past the END HOB in the TD_HOB section at 0x809000.
    assert_eq!(
        &hob1[48..56],
        &(0x80_9000u64 + 56 + 8 * 48 + 8).to_le_bytes()
    );
}

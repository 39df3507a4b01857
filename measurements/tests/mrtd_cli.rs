//! `tessella-measure mrtd` on a synthetic TDVF image prints its sections and
//! the MRTD the library computes; bad input exits 2 with one line.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use tessella_measurements::{MrtdOrder, Tdvf};

/// Footer GUID 96b582de-1fb2-45f7-baea-a366c55a082d in EFI byte order.
const FOOTER: [u8; 16] = [
    0xde, 0x82, 0xb5, 0x96, 0xb2, 0x1f, 0xf7, 0x45, 0xba, 0xea, 0xa3, 0x66, 0xc5, 0x5a, 0x08, 0x2d,
];
/// TDX metadata GUID e47a6535-984a-4798-865e-4685a7bf8ec2 in EFI byte order.
const TDX: [u8; 16] = [
    0x35, 0x65, 0x7a, 0xe4, 0x4a, 0x98, 0x98, 0x47, 0x86, 0x5e, 0x46, 0x85, 0xa7, 0xbf, 0x8e, 0xc2,
];

/// A two-page extended BFV at 0xffffe000 and a one-page TD HOB at 0x800000.
fn firmware() -> Vec<u8> {
    let mut fw: Vec<u8> = (0..0x2000u32).map(|i| (i % 253) as u8).collect();
    let desc_at = fw.len();
    fw.extend_from_slice(b"TDVF");
    fw.extend_from_slice(&(16u32 + 2 * 32).to_le_bytes());
    fw.extend_from_slice(&1u32.to_le_bytes());
    fw.extend_from_slice(&2u32.to_le_bytes());
    for (off, raw, gpa, mem, kind, attr) in [
        (0u32, 0x2000u32, 0xffff_e000u64, 0x2000u64, 0u32, 1u32),
        (0, 0, 0x80_0000, 0x1000, 2, 0),
    ] {
        fw.extend_from_slice(&off.to_le_bytes());
        fw.extend_from_slice(&raw.to_le_bytes());
        fw.extend_from_slice(&gpa.to_le_bytes());
        fw.extend_from_slice(&mem.to_le_bytes());
        fw.extend_from_slice(&kind.to_le_bytes());
        fw.extend_from_slice(&attr.to_le_bytes());
    }
    let from_end = (fw.len() - desc_at + 22 + 18 + 32) as u32;
    fw.extend_from_slice(&from_end.to_le_bytes());
    fw.extend_from_slice(&22u16.to_le_bytes());
    fw.extend_from_slice(&TDX);
    fw.extend_from_slice(&(22u16 + 18).to_le_bytes());
    fw.extend_from_slice(&FOOTER);
    fw.extend_from_slice(&[0xf4; 32]);
    fw
}

struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> TempDir {
        let dir =
            std::env::temp_dir().join(format!("tessella-mrtd-cli-{tag}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("tmp dir");
        TempDir(dir)
    }
    fn write(&self, name: &str, bytes: &[u8]) -> PathBuf {
        let p = self.0.join(name);
        std::fs::write(&p, bytes).expect("write");
        p
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn run(args: &[&str], file: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_tessella-measure"))
        .args(args)
        .arg(file)
        .output()
        .expect("run tessella-measure")
}

#[test]
fn mrtd_prints_sections_and_both_orders() {
    let fw = firmware();
    let tdvf = Tdvf::parse(&fw).expect("synthetic image parses");
    let single = tdvf.mrtd(MrtdOrder::SinglePass).to_hex();
    let two = tdvf.mrtd(MrtdOrder::TwoPass).to_hex();
    assert_ne!(single, two);
    let dir = TempDir::new("ok");
    let path = dir.write("fw.fd", &fw);

    let out = run(&["mrtd", "--json"], &path);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json output");
    assert_eq!(v["mrtd"]["single-pass"], single.as_str());
    assert_eq!(v["mrtd"]["two-pass"], two.as_str());
    assert_eq!(v["sections"][0]["kind"], "bfv");
    assert_eq!(v["sections"][0]["gpa"], "0xffffe000");
    assert_eq!(v["sections"][0]["mr_extend"], true);
    assert_eq!(v["sections"][1]["kind"], "td_hob");
    assert_eq!(v["sections"][1]["raw_size"], 0);

    let out = run(&["mrtd", "--order", "two-pass", "--json"], &path);
    assert!(out.status.success());
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json output");
    assert_eq!(v["mrtd"].as_object().map(|m| m.len()), Some(1));
    assert_eq!(v["mrtd"]["two-pass"], two.as_str());

    let out = run(&["mrtd"], &path);
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains(&format!("mrtd single-pass {single}")),
        "{text}"
    );
    assert!(text.contains(&format!("mrtd two-pass    {two}")), "{text}");
    assert!(text.contains("TD_HOB"), "{text}");
    assert!(text.contains("MR_EXTEND"), "{text}");
}

#[test]
fn bad_firmware_exits_2_with_one_line() {
    let dir = TempDir::new("bad");
    let cases: [(&str, Vec<u8>, &str); 3] = [
        ("short.fd", vec![0; 8], "truncated"),
        ("zeros.fd", vec![0; 4096], "no OVMF GUIDed table footer"),
        (
            "badsig.fd",
            {
                let mut fw = firmware();
                fw[0x2000] = b'X';
                fw
            },
            "not \"TDVF\"",
        ),
    ];
    for (name, bytes, want) in cases {
        let path = dir.write(name, &bytes);
        let out = run(&["mrtd"], &path);
        assert_eq!(out.status.code(), Some(2), "{name}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(err.trim_end().lines().count(), 1, "{err}");
        assert!(err.contains(want), "{name}: {err}");
    }
}

#[test]
fn rtmr0_capture_writes_host_events() {
    use tessella_measurements::{sha384, Rtmr0HostEvents};
    // Spec ID header (SHA-384 only), then RTMR0 events: HOB, separator, ACPI.
    let mut log = Vec::new();
    let mut ev = b"Spec ID Event03\0".to_vec();
    ev.extend_from_slice(&[0, 0, 0, 0, 0, 2, 0, 2, 1, 0, 0, 0, 0x0c, 0, 48, 0, 0]);
    log.extend_from_slice(&0u32.to_le_bytes());
    log.extend_from_slice(&3u32.to_le_bytes());
    log.extend_from_slice(&[0; 20]);
    log.extend_from_slice(&(ev.len() as u32).to_le_bytes());
    log.extend_from_slice(&ev);
    for (ty, data) in [
        (0x8000_000Bu32, &b"hob"[..]),
        (4, &[0, 0, 0, 0][..]),
        (0x8000_000B, &b"acpi"[..]),
    ] {
        log.extend_from_slice(&1u32.to_le_bytes());
        log.extend_from_slice(&ty.to_le_bytes());
        log.extend_from_slice(&1u32.to_le_bytes());
        log.extend_from_slice(&0x000Cu16.to_le_bytes());
        log.extend_from_slice(&sha384(data).0);
        log.extend_from_slice(&(data.len() as u32).to_le_bytes());
        log.extend_from_slice(data);
    }
    let dir = TempDir::new("capture");
    let path = dir.write("ccel.bin", &log);
    let out = run(&["rtmr0-capture"], &path);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let host = Rtmr0HostEvents::from_json(&out.stdout).expect("valid host events");
    assert_eq!(host.events.len(), 1);
    assert_eq!(host.events[0].digest, sha384(b"acpi"));

    let bad = dir.write("bad.bin", &[1, 2, 3]);
    let out = run(&["rtmr0-capture"], &bad);
    assert_eq!(out.status.code(), Some(2));
}

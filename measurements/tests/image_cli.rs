//! `tessella-measure image DIR` on an appliance directory made of the pinned
//! Debian OVMF and kernel plus a test initrd: the policy it writes accepts the
//! registers it reports and refuses a different initrd, config or RAM size;
//! bad directories exit 2.

use std::path::Path;
use std::process::{Command, Output};

use ring::digest::{digest, SHA384};
use tessella_measurements::{Digest48, MeasurementPolicy, TdMeasurements};

fn measure(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_tessella-measure"))
        .args(args)
        .output()
        .expect("run tessella-measure")
}

fn appliance(dir: &Path, initrd: &[u8]) {
    let inputs = tessella_tests::image_inputs();
    for name in ["OVMF.fd", "vmlinuz"] {
        std::fs::copy(inputs.join(name), dir.join(name)).expect("copy input");
    }
    std::fs::write(dir.join("initrd.cpio"), initrd).expect("initrd");
    std::fs::write(dir.join("cmdline"), "console=ttyS0 panic=-1").expect("cmdline");
    std::fs::write(dir.join("image.json"), r#"{"vm": {"ram_mib": 1024}}"#).expect("manifest");
}

fn registers(dir: &Path, extra: &[&str]) -> (serde_json::Value, MeasurementPolicy) {
    let policy_path = dir.join("policy.json");
    let mut args = vec![
        "image",
        dir.to_str().expect("utf-8 path"),
        "--json",
        "--policy-out",
        policy_path.to_str().expect("utf-8 path"),
    ];
    args.extend_from_slice(extra);
    let out = measure(&args);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json report");
    let policy =
        MeasurementPolicy::from_json(&std::fs::read(policy_path).expect("policy")).expect("policy");
    (report, policy)
}

fn digest48(v: &serde_json::Value) -> Digest48 {
    v.as_str().expect("hex").parse().expect("digest")
}

/// The TD a quote of this appliance would describe (first variant of each register).
fn td(report: &serde_json::Value, mrconfigid: Digest48) -> TdMeasurements {
    TdMeasurements {
        mrtd: digest48(&report["mrtd"][0]["value"]),
        rtmr: [
            Digest48([7u8; 48]), // RTMR0 is not pinned without host events
            digest48(&report["rtmr1"][0]["value"]),
            digest48(&report["rtmr2"]["value"]),
            digest48(&report["rtmr3"]),
        ],
        mrconfigid,
        mrowner: Digest48([0; 48]),
        mrownerconfig: Digest48([0; 48]),
        td_attributes: [0, 0, 0, 0x10, 0, 0, 0, 0],
        xfam: [0xe7, 0x18, 0x06, 0, 0, 0, 0, 0],
    }
}

#[test]
fn policy_pins_the_appliance() {
    let dir = tempfile::tempdir().expect("tempdir");
    appliance(dir.path(), &[0x5a; 8192]);
    let config = dir.path().join("node.toml");
    std::fs::write(&config, "[network]\nname = \"prod\"\n").expect("config");
    let (report, policy) = registers(
        dir.path(),
        &["--config", config.to_str().expect("utf-8 path")],
    );

    // MRCONFIGID is SHA-384 of the config file's bytes, computed here independently.
    let expected = digest(&SHA384, b"[network]\nname = \"prod\"\n");
    let mrconfigid = digest48(&report["mrconfigid"]);
    assert_eq!(mrconfigid.0.as_slice(), expected.as_ref());

    // Each register in the report replays from its events.
    for v in report["rtmr1"]
        .as_array()
        .expect("variants")
        .iter()
        .chain([&report["rtmr2"]])
    {
        let mut reg = [0u8; 48];
        for e in v["events"].as_array().expect("events") {
            let d = digest48(&e["digest"]);
            let mut buf = reg.to_vec();
            buf.extend_from_slice(&d.0);
            reg.copy_from_slice(digest(&SHA384, &buf).as_ref());
        }
        assert_eq!(Digest48(reg), digest48(&v["value"]));
    }
    assert!(report["notes"].to_string().contains("RTMR0 NOT PINNED"));

    // The policy accepts the TD it describes (either RTMR1 variant, either MRTD order)...
    let mut good = td(&report, mrconfigid);
    policy.evaluate(&good).expect("accepted");
    good.rtmr[1] = digest48(&report["rtmr1"][1]["value"]);
    good.mrtd = digest48(&report["mrtd"][1]["value"]);
    policy.evaluate(&good).expect("accepted");
    // ...and refuses another config or a non-zero RTMR3.
    let mut other = td(&report, Digest48([1; 48]));
    assert!(policy.evaluate(&other).is_err());
    other.mrconfigid = mrconfigid;
    other.rtmr[3] = Digest48([1; 48]);
    assert!(policy.evaluate(&other).is_err());
}

#[test]
fn initrd_and_ram_change_the_registers() {
    let a = tempfile::tempdir().expect("tempdir");
    let b = tempfile::tempdir().expect("tempdir");
    appliance(a.path(), &[0x5a; 8192]);
    appliance(b.path(), &[0xa5; 8192]);
    let (ra, pa) = registers(a.path(), &[]);
    let (rb, _) = registers(b.path(), &[]);
    // Same size: RTMR1 (setup header) equal, RTMR2 (initrd bytes) differs.
    assert_eq!(ra["rtmr1"], rb["rtmr1"]);
    assert_ne!(ra["rtmr2"]["value"], rb["rtmr2"]["value"]);
    assert!(pa.evaluate(&td(&rb, Digest48([0; 48]))).is_err());
    // Without --config MRCONFIGID is not pinned.
    assert!(ra["mrconfigid"].is_null());
    pa.evaluate(&td(&ra, Digest48([9; 48])))
        .expect("any MRCONFIGID");

    // 4 GiB instead of 1 GiB: the patched RTMR1 and RTMR0's TD HOB change, the
    // unmodified-kernel RTMR1 does not.
    let (r4, _) = registers(a.path(), &["--memory-mib", "4096"]);
    assert_ne!(ra["rtmr1"][0]["value"], r4["rtmr1"][0]["value"]);
    assert_eq!(ra["rtmr1"][1]["value"], r4["rtmr1"][1]["value"]);
    assert_ne!(
        ra["rtmr0"]["events"][0]["event"]["digest"],
        r4["rtmr0"]["events"][0]["event"]["digest"]
    );
}

#[test]
fn bad_directories_exit_2() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = measure(&["image", dir.path().to_str().expect("utf-8 path")]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("image.json"), "{err}");

    appliance(dir.path(), b"initrd");
    std::fs::write(dir.path().join("OVMF.fd"), [0u8; 4096]).expect("garbage firmware");
    let out = measure(&["image", dir.path().to_str().expect("utf-8 path")]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("firmware"), "{err}");
}

/// A TCG2 crypto-agile log (SHA-384 only) whose records carry the given
/// `(MrIndex, event type, digest)`; the event data is a placeholder, since the
/// replay trusts the digest field as firmware logs are read.
fn tcg_log(records: &[(u32, u32, Digest48)]) -> Vec<u8> {
    let mut spec = b"Spec ID Event03\0".to_vec();
    spec.extend_from_slice(&0u32.to_le_bytes()); // platform class
    spec.extend_from_slice(&[0, 2, 0, 2]); // minor, major, errata, uintn size
    spec.extend_from_slice(&1u32.to_le_bytes());
    spec.extend_from_slice(&0x000cu16.to_le_bytes()); // SHA-384
    spec.extend_from_slice(&48u16.to_le_bytes());
    spec.push(0); // vendor info size
    let mut log = Vec::new();
    log.extend_from_slice(&0u32.to_le_bytes());
    log.extend_from_slice(&3u32.to_le_bytes()); // EV_NO_ACTION
    log.extend_from_slice(&[0; 20]);
    log.extend_from_slice(&(spec.len() as u32).to_le_bytes());
    log.extend_from_slice(&spec);
    for (mr, ty, digest) in records {
        log.extend_from_slice(&mr.to_le_bytes());
        log.extend_from_slice(&ty.to_le_bytes());
        log.extend_from_slice(&1u32.to_le_bytes());
        log.extend_from_slice(&0x000cu16.to_le_bytes());
        log.extend_from_slice(&digest.0);
        log.extend_from_slice(&4u32.to_le_bytes());
        log.extend_from_slice(b"data");
    }
    log
}

/// The events `report` expects, as `(MrIndex, type, digest)`, RTMR1 from `variant`.
fn expected_records(report: &serde_json::Value, variant: usize) -> Vec<(u32, u32, Digest48)> {
    let mut records = Vec::new();
    let events = [
        (1, &report["rtmr0"]["events"]),
        (2, &report["rtmr1"][variant]["events"]),
        (3, &report["rtmr2"]["events"]),
    ];
    for (mr, list) in events {
        for e in list.as_array().expect("events") {
            let e = if mr == 1 { &e["event"] } else { e };
            records.push((
                mr,
                e["event_type"].as_u64().expect("type") as u32,
                digest48(&e["digest"]),
            ));
        }
    }
    records
}

#[test]
fn a_captured_log_is_compared_event_by_event() {
    let dir = tempfile::tempdir().expect("tempdir");
    appliance(dir.path(), &[0x5a; 8192]);
    let (report, _) = registers(dir.path(), &[]);
    let ccel = dir.path().join("ccel.bin");
    let arg = |p: &Path| p.to_str().expect("utf-8 path").to_string();

    // The log a TD of this image would produce on QEMU 10+ (unmodified kernel),
    // plus two host-dependent RTMR0 events the model does not know: matches.
    let mut records = expected_records(&report, 1);
    let tail = records
        .iter()
        .position(|r| r.0 != 1)
        .expect("rtmr1 events follow rtmr0");
    records.insert(tail, (1, 0x8000_000a, Digest48([0xac; 48])));
    records.insert(tail + 1, (1, 0x8000_000a, Digest48([0xad; 48])));
    std::fs::write(&ccel, tcg_log(&records)).expect("ccel");
    let out = measure(&["image", &arg(dir.path()), "--ccel", &arg(&ccel), "--json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(json["comparison"]["matches"], true);
    assert_eq!(json["comparison"]["registers"][0]["complete"], false);
    assert!(json["comparison"]["registers"][1]["variant"]
        .as_str()
        .expect("variant")
        .contains("unmodified"));

    // Another initrd digest: RTMR2's second event differs; exit 1, text says where.
    let mut records = expected_records(&report, 0);
    let last = records.len() - 1;
    records[last].2 = Digest48([0x11; 48]);
    std::fs::write(&ccel, tcg_log(&records)).expect("ccel");
    let out = measure(&["image", &arg(dir.path()), "--ccel", &arg(&ccel)]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("comparison with the captured log: DIFFERS"),
        "{text}"
    );
    assert!(
        text.contains("rtmr2: first difference at event #1"),
        "{text}"
    );
    assert!(text.contains("rtmr1 (kernel as QEMU patches"), "{text}");
    assert!(text.contains("rtmr3: matches"), "{text}");
}

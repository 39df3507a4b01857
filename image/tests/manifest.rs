//! image.json round trip and refusal of other formats.

use tessella_image::{
    Artefact, ImageManifest, PackageRecord, SourceRecord, VmShape, IMAGE_FORMAT, IMAGE_VERSION,
};

fn sample() -> ImageManifest {
    let a = |name: &str, size: u64| Artefact {
        name: name.into(),
        size,
        sha256: format!("{:064x}", size),
    };
    ImageManifest {
        format: IMAGE_FORMAT.into(),
        version: IMAGE_VERSION,
        artefacts: vec![a("OVMF.fd", 2_097_152), a("initrd.cpio", 9_000_000)],
        packages: vec![PackageRecord {
            name: "ovmf".into(),
            version: "2022.11-6+deb12u2".into(),
            arch: "all".into(),
            sha256: "e73d3d1a8799f7f6fc16b73501d913edcdd86237556fbff30693e747e6dc262e".into(),
        }],
        input_files: vec![a("modules/tsm.ko.xz", 6944)],
        kernel_release: "6.12.95+deb12-amd64".into(),
        source: SourceRecord {
            git_revision: Some("9cc06b5".into()),
            git_dirty: false,
        },
        rustc: "rustc 1.95.0".into(),
        source_date_epoch: 1_700_000_000,
        init: a("init", 8_000_000),
        vm: VmShape {
            ram_mib: 1024,
            vcpus: 2,
        },
        cmdline: "console=ttyS0 panic=-1".into(),
        steps: vec!["fetch".into(), "manifest".into()],
        measurements: None,
    }
}

#[test]
fn image_json_round_trips_through_a_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let m = sample();
    m.write(dir.path()).expect("write");
    assert_eq!(ImageManifest::read(dir.path()).expect("read dir"), m);
    assert_eq!(
        ImageManifest::read(&dir.path().join("image.json")).expect("read file"),
        m
    );
    // measurements is written as null until a measure step fills it.
    let text = m.to_json();
    let v: serde_json::Value = serde_json::from_str(&text).expect("json");
    assert!(v["measurements"].is_null());
    assert_eq!(v["vm"]["ram_mib"], 1024);
    assert_eq!(v["artefacts"][1]["name"], "initrd.cpio");
    // A filled measurements field survives too.
    let mut filled = m.clone();
    filled.measurements = Some(serde_json::json!({"mrtd": "00", "rtmr": ["11"]}));
    assert_eq!(
        ImageManifest::from_json(filled.to_json().as_bytes()).expect("filled"),
        filled
    );
    assert_eq!(m.artefact("OVMF.fd").map(|a| a.size), Some(2_097_152));
}

#[test]
fn other_formats_versions_and_unknown_fields_are_refused() {
    let m = sample();
    let mut v: serde_json::Value = serde_json::from_str(&m.to_json()).expect("json");
    v["version"] = 2.into();
    assert!(ImageManifest::from_json(v.to_string().as_bytes()).is_err());
    let mut v: serde_json::Value = serde_json::from_str(&m.to_json()).expect("json");
    v["format"] = "other".into();
    assert!(ImageManifest::from_json(v.to_string().as_bytes()).is_err());
    let mut v: serde_json::Value = serde_json::from_str(&m.to_json()).expect("json");
    v["surprise"] = 1.into();
    assert!(ImageManifest::from_json(v.to_string().as_bytes()).is_err());
    assert!(ImageManifest::from_json(b"not json").is_err());
}

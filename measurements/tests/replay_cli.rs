//! `tessella-measure replay` on the dstack sample prints the quote's RTMR3.

use std::process::Command;

fn sample() -> std::path::PathBuf {
    tessella_tests::tdx_samples().join("dstack/quote-report.json")
}

/// RTMR3 read from the sample quote at its fixed offset (v4 quote: 48-byte
/// header, RTMR3 at body offset 472, absolute 520).
fn quote_rtmr3() -> String {
    let text = std::fs::read_to_string(sample()).expect("read sample");
    let v: serde_json::Value = serde_json::from_str(&text).expect("json");
    let q = hex::decode(v["quote"].as_str().expect("quote").trim_start_matches("0x"))
        .expect("quote hex");
    assert_eq!(&q[..2], &[4, 0], "v4 quote");
    hex::encode(&q[520..568])
}

#[test]
fn replay_prints_quote_rtmr3() {
    let want = quote_rtmr3();
    let out = Command::new(env!("CARGO_BIN_EXE_tessella-measure"))
        .args(["replay", "--json"])
        .arg(sample())
        .output()
        .expect("run tessella-measure");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json output");
    assert_eq!(v["format"], "dstack");
    assert_eq!(v["rtmr3"], want.as_str());
    assert_eq!(v["registers"][3]["value"], want.as_str());
    assert!(v["registers"][3]["events"]
        .as_array()
        .is_some_and(|e| e.iter().any(|e| e["name"] == "compose-hash")));

    let text = Command::new(env!("CARGO_BIN_EXE_tessella-measure"))
        .arg("replay")
        .arg(sample())
        .output()
        .expect("run tessella-measure");
    assert!(text.status.success());
    let stdout = String::from_utf8_lossy(&text.stdout);
    assert!(stdout.contains(&format!("rtmr3 {want}")), "{stdout}");
}

#[test]
fn bad_input_exits_2_with_one_line() {
    let dir = std::env::temp_dir().join(format!("tessella-measure-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("tmp dir");
    let bad = dir.join("bad.bin");
    std::fs::write(&bad, [1, 2, 3]).expect("write");
    let out = Command::new(env!("CARGO_BIN_EXE_tessella-measure"))
        .arg("replay")
        .arg(&bad)
        .output()
        .expect("run");
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
    assert!(err.contains("truncated"), "{err}");
}

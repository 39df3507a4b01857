//! End-to-end tests of the `tessella-verify` binary against real TDX evidence.
//!
//! Every test runs the built binary as a user or script would and checks the
//! contract it documents:
//!
//! * exit status 0 = accepted, 1 = rejected, 2 = bad input or usage;
//! * with `--json`, a report whose `accepted` agrees with the exit status and
//!   whose `reasons[].code` says why a quote was rejected;
//! * on bad input, nothing on stdout and a single `tessella-verify: ...` line
//!   on stderr (clap's own usage errors also exit 2);
//! * never a panic.
//!
//! The evidence is read from `../shared/tdx-samples` (see its README) through
//! [`tessella_tests::tdx_samples`]; anything a test writes goes to a temporary
//! directory.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use serde_json::{json, Value};

/// A time inside the validity window of `intel/tdx_quote_collateral.json`.
const INTEL_NOW: &str = "1750500000";
/// First and last second of that window (both inclusive).
const INTEL_VALID_FROM: u64 = 1_750_329_147;
const INTEL_VALID_UNTIL: u64 = 1_752_919_234;
/// A time at which `intel/tdx_quote_outdated_collateral.json` is valid.
const OUTDATED_NOW: &str = "1772000000";
/// A time inside the validity window of `flashbots/dcap-quote-collateral-00.json`.
const FLASHBOTS_NOW: &str = "1769509141";
/// The report_data of the flashbots quote.
const FLASHBOTS_REPORT_DATA: &str = "74276a648f1fd491f474a2d52c72d850e3768157b43ec297a9917482bd77278ba1882588391d1956b6f6466ad8b8dccd55f57221ad81b420f746fa8db0f8637d";
/// MRTD of `intel/tdx_quote`, from the samples README.
const INTEL_MRTD: &str = "91eb2b44d141d4ece09f0c75c2c53d247a3c68edd7fafe8a3520c942a604a407de03ae6dc5f87f27428b2538873118b7";

// ---------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------

/// What one run of the binary produced.
#[derive(Debug)]
struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

fn finish(out: Output, args: &[&str]) -> Run {
    let run = Run {
        code: out
            .status
            .code()
            .expect("tessella-verify killed by a signal"),
        stdout: String::from_utf8(out.stdout).expect("stdout is UTF-8"),
        stderr: String::from_utf8(out.stderr).expect("stderr is UTF-8"),
    };
    assert!(
        !run.stderr.contains("panicked"),
        "tessella-verify panicked on {args:?}:\n{}",
        run.stderr
    );
    run
}

/// Run `tessella-verify` with `args` and no standard input.
fn run(args: &[&str]) -> Run {
    let out = Command::new(env!("CARGO_BIN_EXE_tessella-verify"))
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("cannot start tessella-verify");
    finish(out, args)
}

/// Run `tessella-verify` with `args`, feeding `input` on standard input.
fn run_stdin(args: &[&str], input: &[u8]) -> Run {
    let mut child = Command::new(env!("CARGO_BIN_EXE_tessella-verify"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("cannot start tessella-verify");
    {
        let mut stdin = child.stdin.take().expect("stdin is piped");
        // The binary may stop reading early on bad input; a broken pipe is fine.
        let _ = stdin.write_all(input);
    }
    let out = child
        .wait_with_output()
        .expect("tessella-verify did not finish");
    finish(out, args)
}

/// Parse a `--json` report.
fn json(stdout: &str) -> Value {
    serde_json::from_str(stdout)
        .unwrap_or_else(|e| panic!("stdout is not a JSON report ({e}):\n{stdout}"))
}

/// The reason codes of a report, in order.
fn codes(report: &Value) -> Vec<String> {
    report["reasons"]
        .as_array()
        .expect("reasons is an array")
        .iter()
        .map(|r| {
            r["code"]
                .as_str()
                .expect("reason code is a string")
                .to_owned()
        })
        .collect()
}

/// A run that reached a verdict: exit 0 or 1, a JSON report that agrees.
fn verdict(r: &Run) -> Value {
    assert!(
        r.code == 0 || r.code == 1,
        "expected a verdict (exit 0 or 1), got exit {}\nstderr: {}",
        r.code,
        r.stderr
    );
    let report = json(&r.stdout);
    assert_eq!(report["report_version"], 1);
    assert_eq!(
        report["accepted"],
        Value::Bool(r.code == 0),
        "`accepted` disagrees with exit {}:\n{}",
        r.code,
        r.stdout
    );
    assert_eq!(
        codes(&report).is_empty(),
        r.code == 0,
        "reasons must be listed exactly when rejected:\n{}",
        r.stdout
    );
    report
}

/// Accepted (exit 0) with a JSON report; returns the report.
#[track_caller]
fn accepted(r: &Run) -> Value {
    assert_eq!(
        r.code, 0,
        "expected ACCEPTED\nstdout: {}\nstderr: {}",
        r.stdout, r.stderr
    );
    verdict(r)
}

/// Rejected (exit 1) with `code` among the reasons; returns the report.
#[track_caller]
fn rejected(r: &Run, code: &str) -> Value {
    assert_eq!(
        r.code, 1,
        "expected REJECTED ({code})\nstdout: {}\nstderr: {}",
        r.stdout, r.stderr
    );
    let report = verdict(r);
    assert!(
        codes(&report).iter().any(|c| c == code),
        "expected reason code {code:?}, got {:?}:\n{}",
        codes(&report),
        r.stdout
    );
    report
}

/// Bad input: exit 2, nothing on stdout, one `tessella-verify:` line on stderr.
#[track_caller]
fn bad_input(r: &Run) {
    assert_eq!(
        r.code, 2,
        "expected exit 2 (bad input)\nstdout: {}\nstderr: {}",
        r.stdout, r.stderr
    );
    assert!(r.stdout.is_empty(), "stdout not empty: {}", r.stdout);
    assert!(
        r.stderr.starts_with("tessella-verify: "),
        "stderr does not start with `tessella-verify: `: {:?}",
        r.stderr
    );
    assert_eq!(
        r.stderr.trim_end().lines().count(),
        1,
        "stderr is not one line: {:?}",
        r.stderr
    );
}

/// Usage error from clap: exit 2, nothing on stdout, a message on stderr.
#[track_caller]
fn usage_error(r: &Run) {
    assert_eq!(r.code, 2, "expected exit 2 (usage)\nstderr: {}", r.stderr);
    assert!(r.stdout.is_empty(), "stdout not empty: {}", r.stdout);
    assert!(!r.stderr.trim().is_empty(), "no message on stderr");
}

fn sample(rel: &str) -> PathBuf {
    tessella_tests::tdx_samples().join(rel)
}

fn s(path: &Path) -> &str {
    path.to_str().expect("path is UTF-8")
}

fn read(path: &Path) -> Vec<u8> {
    std::fs::read(path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

fn write(path: &Path, bytes: impl AsRef<[u8]>) {
    std::fs::write(path, bytes).unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
}

fn tempdir() -> tempfile::TempDir {
    tempfile::tempdir().expect("cannot create a temporary directory")
}

fn intel_quote() -> PathBuf {
    sample("intel/tdx_quote")
}
fn intel_collateral() -> PathBuf {
    sample("intel/tdx_quote_collateral.json")
}
fn outdated_quote() -> PathBuf {
    sample("intel/tdx_quote_outdated")
}
fn outdated_collateral() -> PathBuf {
    sample("intel/tdx_quote_outdated_collateral.json")
}
fn flashbots_quote() -> PathBuf {
    sample("flashbots/dcap-tdx-1766059550570652607")
}
fn flashbots_collateral() -> PathBuf {
    sample("flashbots/dcap-quote-collateral-00.json")
}

/// `quote Q -c C --now NOW --json` followed by `extra`.
fn verify(quote: &Path, collateral: &Path, now: &str, extra: &[&str]) -> Run {
    let mut args = vec![
        "quote",
        s(quote),
        "--collateral",
        s(collateral),
        "--now",
        now,
        "--json",
    ];
    args.extend_from_slice(extra);
    run(&args)
}

/// The intel sample at a time inside its window, cloud platform flags allowed.
fn verify_intel(extra: &[&str]) -> Run {
    let mut args = vec!["--allow-platform-flag", "all"];
    args.extend_from_slice(extra);
    verify(&intel_quote(), &intel_collateral(), INTEL_NOW, &args)
}

/// The flashbots sample at a time inside its window, cloud platform flags allowed.
fn verify_flashbots(extra: &[&str]) -> Run {
    let mut args = vec!["--allow-platform-flag", "all"];
    args.extend_from_slice(extra);
    verify(
        &flashbots_quote(),
        &flashbots_collateral(),
        FLASHBOTS_NOW,
        &args,
    )
}

/// Run with `--json` and a bad argument; the run must be refused as bad input.
fn intel_bad_input(extra: &[&str]) -> Run {
    let r = verify_intel(extra);
    bad_input(&r);
    r
}

/// The intel quote with one bit of byte `offset` flipped, written into `dir`.
fn flipped_intel_quote(dir: &Path, offset: usize) -> PathBuf {
    let mut bytes = read(&intel_quote());
    bytes[offset] ^= 0x01;
    let path = dir.join(format!("flipped-{offset}"));
    write(&path, bytes);
    path
}

/// Flip one hex digit of a register value so it no longer matches.
fn altered(hex: &str) -> String {
    let first = if hex.starts_with('0') { '1' } else { '0' };
    format!("{first}{}", &hex[1..])
}

// ---------------------------------------------------------------------------
// Accepted evidence
// ---------------------------------------------------------------------------

#[test]
fn intel_sample_is_accepted_with_platform_flags_allowed() {
    let report = accepted(&verify_intel(&[]));
    assert_eq!(report["quote_verified"], true);
    assert_eq!(report["tcb"]["status"], "UpToDate");
    assert_eq!(report["tcb"]["advisory_ids"], json!([]));
    assert_eq!(report["quote"]["version"], 4);
    assert_eq!(report["quote"]["body"], "TD1.0");
    assert_eq!(report["quote"]["fmspc"], "B0C06F000000");
    assert_eq!(report["collateral"]["fmspc"], "B0C06F000000");
    assert_eq!(report["now"], 1_750_500_000u64);
    let m = &report["measurements"];
    assert_eq!(m["verified"], true);
    assert_eq!(m["mrtd"], INTEL_MRTD);
    assert_eq!(m["rtmr3"], "0".repeat(96));
    assert_eq!(m["td_attributes"]["hex"], "0000001000000000");
    assert_eq!(m["xfam"], "e702060000000000");
    // Without --policy measurements are shown, not checked.
    assert_eq!(report["policy"]["source"], Value::Null);
    assert_eq!(report["policy"]["measurements_checked"], false);
    assert_eq!(report["policy"]["matched_entry"], Value::Null);
}

#[test]
fn text_report_says_accepted() {
    let r = run(&[
        "quote",
        s(&intel_quote()),
        "-c",
        s(&intel_collateral()),
        "--now",
        INTEL_NOW,
        "--allow-platform-flag",
        "all",
    ]);
    assert_eq!(r.code, 0, "stderr: {}", r.stderr);
    assert_eq!(r.stdout.lines().next(), Some("ACCEPTED"));
    assert!(r.stdout.contains(INTEL_MRTD), "{}", r.stdout);
    assert!(
        r.stdout.contains("measurements NOT checked"),
        "{}",
        r.stdout
    );
}

#[test]
fn validity_window_is_inclusive_at_both_ends() {
    for now in [INTEL_VALID_FROM, INTEL_VALID_UNTIL] {
        let now = now.to_string();
        let r = verify(
            &intel_quote(),
            &intel_collateral(),
            &now,
            &["--allow-platform-flag", "all"],
        );
        accepted(&r);
    }
    let report = accepted(&verify_intel(&[]));
    assert_eq!(report["collateral"]["valid_from"], "2025-06-19T10:32:27Z");
    assert_eq!(report["collateral"]["valid_until"], "2025-07-19T10:00:34Z");
}

#[test]
fn rfc3339_now_is_the_same_instant_as_unix_seconds() {
    let r = verify(
        &intel_quote(),
        &intel_collateral(),
        "2025-06-21T10:00:00Z",
        &["--allow-platform-flag", "all"],
    );
    let report = accepted(&r);
    assert_eq!(report["now"], 1_750_500_000u64);
    assert_eq!(report["now_rfc3339"], "2025-06-21T10:00:00Z");
}

#[test]
fn platform_flags_can_be_allowed_one_by_one() {
    let r = verify(
        &intel_quote(),
        &intel_collateral(),
        INTEL_NOW,
        &[
            "--allow-platform-flag",
            "dynamic-platform",
            "--allow-platform-flag",
            "cached-keys",
            "--allow-platform-flag",
            "smt",
        ],
    );
    let report = accepted(&r);
    assert_eq!(
        report["tcb"]["platform_flags"],
        json!({"dynamic_platform": true, "cached_keys": true, "smt": true})
    );
}

#[test]
fn harmless_tcb_flags_keep_the_verdict() {
    // The sample is UpToDate with no advisories and evaluation data number 17.
    let report = accepted(&verify_intel(&[
        "--allow-status",
        "OutOfDate",
        "--reject-advisory",
        "INTEL-SA-00837",
        "--min-tcb-eval",
        "17",
    ]));
    assert_eq!(report["tcb"]["eval_data_number"], 17);
}

#[test]
fn flashbots_sample_is_accepted_despite_zero_padding() {
    assert_eq!(read(&flashbots_quote()).len(), 8000);
    let report = accepted(&verify_flashbots(&[]));
    assert_eq!(report["tcb"]["status"], "UpToDate");
    let size = report["quote"]["size"].as_u64().expect("size is a number");
    assert!(size < 8000, "padding must not count as quote: {size}");
    assert_eq!(report["quote"]["fmspc"], report["collateral"]["fmspc"]);
}

#[test]
fn report_data_is_checked_when_given() {
    let report = accepted(&verify_flashbots(&["--report-data", FLASHBOTS_REPORT_DATA]));
    assert_eq!(report["measurements"]["report_data"], FLASHBOTS_REPORT_DATA);

    let with_prefix = format!("0x{FLASHBOTS_REPORT_DATA}");
    accepted(&verify_flashbots(&["--report-data", &with_prefix]));

    let other = altered(FLASHBOTS_REPORT_DATA);
    let report = rejected(
        &verify_flashbots(&["--report-data", &other]),
        "report_data_mismatch",
    );
    assert_eq!(report["quote_verified"], true);
}

// ---------------------------------------------------------------------------
// Rejected evidence
// ---------------------------------------------------------------------------

#[test]
fn cloud_platform_flags_are_refused_by_default() {
    let r = verify(&intel_quote(), &intel_collateral(), INTEL_NOW, &[]);
    let report = rejected(&r, "platform_flag");
    assert_eq!(report["quote_verified"], true);
    assert_eq!(report["reasons"][0]["stage"], "policy");
}

#[test]
fn a_platform_flag_left_out_is_refused() {
    let r = verify(
        &intel_quote(),
        &intel_collateral(),
        INTEL_NOW,
        &[
            "--allow-platform-flag",
            "dynamic-platform",
            "--allow-platform-flag",
            "cached-keys",
        ],
    );
    let report = rejected(&r, "platform_flag");
    let message = report["reasons"][0]["message"].as_str().expect("message");
    assert!(message.contains("smt"), "{message}");
}

#[test]
fn text_rejection_explains_platform_flags() {
    let r = run(&[
        "quote",
        s(&intel_quote()),
        "-c",
        s(&intel_collateral()),
        "--now",
        INTEL_NOW,
    ]);
    assert_eq!(r.code, 1, "stderr: {}", r.stderr);
    let first = r.stdout.lines().next().unwrap_or_default();
    assert!(first.starts_with("REJECTED: "), "{}", r.stdout);
    assert!(r.stdout.contains("[platform_flag]"), "{}", r.stdout);
    assert!(r.stdout.contains("--allow-platform-flag"), "{}", r.stdout);
}

#[test]
fn collateral_outside_its_window_is_refused() {
    let after = (INTEL_VALID_UNTIL + 1).to_string();
    let before = (INTEL_VALID_FROM - 1).to_string();
    let all = ["--allow-platform-flag", "all"];

    let report = rejected(
        &verify(&intel_quote(), &intel_collateral(), &after, &all),
        "collateral_expired",
    );
    assert_eq!(report["quote_verified"], false);
    assert_eq!(report["reasons"][0]["stage"], "verification");
    assert_eq!(report["tcb"], Value::Null);

    let report = rejected(
        &verify(&intel_quote(), &intel_collateral(), &before, &all),
        "collateral_not_yet_valid",
    );
    assert_eq!(report["quote_verified"], false);
}

#[test]
fn flipped_bytes_in_the_signed_part_break_the_signature() {
    let dir = tempdir();
    for offset in [10, 184, 430, 600, 631] {
        let quote = flipped_intel_quote(dir.path(), offset);
        let r = verify(
            &quote,
            &intel_collateral(),
            INTEL_NOW,
            &["--allow-platform-flag", "all"],
        );
        let report = rejected(&r, "bad_signature");
        assert_eq!(report["quote_verified"], false, "offset {offset}");
        assert_eq!(report["measurements"]["verified"], false, "offset {offset}");
    }
}

#[test]
fn flipped_byte_in_the_certificate_chain_breaks_the_chain() {
    let dir = tempdir();
    let quote = flipped_intel_quote(dir.path(), 4000);
    let r = verify(
        &quote,
        &intel_collateral(),
        INTEL_NOW,
        &["--allow-platform-flag", "all"],
    );
    rejected(&r, "certificate_chain");
}

#[test]
fn outdated_platform_has_no_matching_tcb_level() {
    for extra in [&[][..], &["--allow-platform-flag", "all"][..]] {
        let r = verify(
            &outdated_quote(),
            &outdated_collateral(),
            OUTDATED_NOW,
            extra,
        );
        let report = rejected(&r, "no_matching_tcb_level");
        assert_eq!(report["quote"]["version"], 5);
        assert_eq!(report["quote"]["body"], "TD1.5");
        assert_eq!(report["quote"]["fmspc"], "90C06F000000");
    }
}

#[test]
fn collateral_of_another_platform_is_an_fmspc_mismatch() {
    let r = verify(
        &intel_quote(),
        &outdated_collateral(),
        INTEL_NOW,
        &["--allow-platform-flag", "all"],
    );
    let report = rejected(&r, "fmspc_mismatch");
    assert_eq!(report["quote_verified"], false);
}

#[test]
fn min_tcb_eval_above_the_collateral_is_refused() {
    rejected(&verify_intel(&["--min-tcb-eval", "18"]), "tcb_evaluation");
}

// ---------------------------------------------------------------------------
// Policies
// ---------------------------------------------------------------------------

#[test]
fn shared_flashbots_measurements_do_not_hold_this_quote() {
    // Known discrepancy with the samples README: the shared `dcap-tdx-example`
    // record does not hold this quote's MRTD / RTMR0-2.
    let policy = sample("flashbots/measurements.json");
    let r = verify_flashbots(&["--policy", s(&policy)]);
    let report = rejected(&r, "measurement_mismatch");
    assert_eq!(report["quote_verified"], true);
    assert_eq!(report["policy"]["measurements_checked"], true);
    assert_eq!(report["policy"]["matched_entry"], Value::Null);
    let mismatch = report["reasons"]
        .as_array()
        .expect("reasons")
        .iter()
        .find(|r| r["code"] == "measurement_mismatch")
        .expect("a measurement_mismatch reason");
    assert_eq!(mismatch["stage"], "policy");
    let entries = mismatch["detail"]["entries"]
        .as_array()
        .expect("detail.entries");
    assert!(
        entries.iter().any(|e| e["entry"] == "dcap-tdx-example"),
        "{mismatch}"
    );
    // Entries of other attestation types are skipped with a note.
    assert!(r.stderr.contains("azure-tdx"), "{}", r.stderr);
}

#[test]
fn flashbots_policy_with_the_quotes_own_values_is_accepted() {
    let first = accepted(&verify_flashbots(&[]));
    let m = &first["measurements"];
    let mut measurements = serde_json::Map::new();
    for (key, register) in ["mrtd", "rtmr0", "rtmr1", "rtmr2", "rtmr3"]
        .iter()
        .enumerate()
    {
        measurements.insert(key.to_string(), json!({"expected": m[*register]}));
    }
    let policy = json!([{
        "measurement_id": "x",
        "attestation_type": "dcap-tdx",
        "measurements": measurements,
    }]);
    let dir = tempdir();
    let path = dir.path().join("measurements.json");
    write(&path, policy.to_string());

    let report = accepted(&verify_flashbots(&["--policy", s(&path)]));
    assert_eq!(report["policy"]["matched_entry"], "x");
    assert_eq!(report["policy"]["measurements_checked"], true);
    assert_eq!(report["policy"]["source"], s(&path));

    // The same policy, with report_data pinned too.
    let report = accepted(&verify_flashbots(&[
        "--policy",
        s(&path),
        "--report-data",
        FLASHBOTS_REPORT_DATA,
    ]));
    assert_eq!(report["policy"]["matched_entry"], "x");
}

/// A tessella policy for the intel sample with cloud platform flags allowed.
fn tessella_policy(rtmr2: &str) -> Value {
    json!({
        "format": "tessella-measurement-policy",
        "version": 1,
        "entries": [{
            "id": "intel-sample",
            "mrtd": [INTEL_MRTD],
            "rtmr2": [rtmr2],
        }],
        "tcb": {
            "allowed_statuses": ["UpToDate"],
            "allow_dynamic_platform": true,
            "allow_cached_keys": true,
            "allow_smt": true,
        },
    })
}

fn intel_rtmr2() -> String {
    let report = accepted(&verify_intel(&[]));
    report["measurements"]["rtmr2"]
        .as_str()
        .expect("rtmr2 is a string")
        .to_owned()
}

#[test]
fn tessella_policy_pinning_the_quote_is_accepted() {
    let dir = tempdir();
    let path = dir.path().join("policy.json");
    write(&path, tessella_policy(&intel_rtmr2()).to_string());

    // No --allow-platform-flag: the policy's tcb section allows them.
    let r = verify(
        &intel_quote(),
        &intel_collateral(),
        INTEL_NOW,
        &["--policy", s(&path)],
    );
    let report = accepted(&r);
    assert_eq!(report["policy"]["matched_entry"], "intel-sample");
    assert_eq!(report["policy"]["measurements_checked"], true);
    assert_eq!(report["policy"]["tcb"]["allow_smt"], true);
}

#[test]
fn tessella_policy_with_another_rtmr_is_a_measurement_mismatch() {
    let dir = tempdir();
    let path = dir.path().join("policy.json");
    write(&path, tessella_policy(&altered(&intel_rtmr2())).to_string());

    let r = verify(
        &intel_quote(),
        &intel_collateral(),
        INTEL_NOW,
        &["--policy", s(&path)],
    );
    let report = rejected(&r, "measurement_mismatch");
    assert_eq!(report["policy"]["matched_entry"], Value::Null);

    // The text report names the register that differs.
    let text = run(&[
        "quote",
        s(&intel_quote()),
        "-c",
        s(&intel_collateral()),
        "--now",
        INTEL_NOW,
        "--policy",
        s(&path),
    ]);
    assert_eq!(text.code, 1, "stderr: {}", text.stderr);
    let first = text.stdout.lines().next().unwrap_or_default();
    assert!(first.starts_with("REJECTED: "), "{}", text.stdout);
    assert!(first.contains("rtmr2"), "{first}");
    assert!(first.contains("intel-sample"), "{first}");
    assert!(!first.contains("mrtd,"), "only rtmr2 differs: {first}");
    assert!(text.stdout.contains("no entry matched"), "{}", text.stdout);
}

#[test]
fn tessella_policy_without_tcb_section_is_strict() {
    let mut policy = tessella_policy(&intel_rtmr2());
    policy
        .as_object_mut()
        .expect("policy is an object")
        .remove("tcb");
    let dir = tempdir();
    let path = dir.path().join("policy.json");
    write(&path, policy.to_string());

    let strict = verify(
        &intel_quote(),
        &intel_collateral(),
        INTEL_NOW,
        &["--policy", s(&path)],
    );
    rejected(&strict, "platform_flag");

    // Command-line flags loosen the policy's TCB rules.
    let report = accepted(&verify_intel(&["--policy", s(&path)]));
    assert_eq!(report["policy"]["matched_entry"], "intel-sample");
}

// ---------------------------------------------------------------------------
// Collateral directories
// ---------------------------------------------------------------------------

#[test]
fn collateral_directory_is_searched_by_fmspc() {
    let dir = tempdir();
    for c in [
        intel_collateral(),
        outdated_collateral(),
        flashbots_collateral(),
    ] {
        let name = c.file_name().expect("file name");
        std::fs::copy(&c, dir.path().join(name)).expect("copy collateral");
    }
    let all = ["--allow-platform-flag", "all"];

    let report = accepted(&verify(&intel_quote(), dir.path(), INTEL_NOW, &all));
    assert_eq!(report["collateral"]["fmspc"], "B0C06F000000");

    let report = accepted(&verify(&flashbots_quote(), dir.path(), FLASHBOTS_NOW, &all));
    assert_eq!(report["collateral"]["fmspc"], report["quote"]["fmspc"]);

    let report = rejected(
        &verify(&outdated_quote(), dir.path(), OUTDATED_NOW, &all),
        "no_matching_tcb_level",
    );
    assert_eq!(report["collateral"]["fmspc"], "90C06F000000");
}

#[test]
fn collateral_directory_without_this_platform_is_no_collateral() {
    let dir = tempdir();
    std::fs::copy(
        outdated_collateral(),
        dir.path().join("tdx_quote_outdated_collateral.json"),
    )
    .expect("copy collateral");
    let r = verify(
        &intel_quote(),
        dir.path(),
        INTEL_NOW,
        &["--allow-platform-flag", "all"],
    );
    let report = rejected(&r, "no_collateral");
    assert_eq!(report["collateral"], Value::Null);
    assert_eq!(report["quote_verified"], false);
}

#[test]
fn unreadable_bundles_in_a_directory_are_skipped_with_a_note() {
    let dir = tempdir();
    std::fs::copy(intel_collateral(), dir.path().join("intel.json")).expect("copy collateral");
    write(&dir.path().join("junk.json"), "{not json");
    let r = verify(
        &intel_quote(),
        dir.path(),
        INTEL_NOW,
        &["--allow-platform-flag", "all"],
    );
    accepted(&r);
    assert!(r.stderr.contains("skipped"), "{}", r.stderr);
    assert!(r.stderr.contains("junk.json"), "{}", r.stderr);
}

#[test]
fn collateral_directory_without_bundles_is_bad_input() {
    let dir = tempdir();
    let all = ["--allow-platform-flag", "all"];
    bad_input(&verify(&intel_quote(), dir.path(), INTEL_NOW, &all));

    write(&dir.path().join("notes.txt"), "not collateral");
    bad_input(&verify(&intel_quote(), dir.path(), INTEL_NOW, &all));
}

// ---------------------------------------------------------------------------
// Input formats: standard input, hex text
// ---------------------------------------------------------------------------

#[test]
fn quote_can_be_piped_on_stdin() {
    let collateral = intel_collateral();
    let args = [
        "quote",
        "-",
        "-c",
        s(&collateral),
        "--now",
        INTEL_NOW,
        "--json",
        "--allow-platform-flag",
        "all",
    ];
    let report = accepted(&run_stdin(&args, &read(&intel_quote())));
    assert_eq!(report["quote"]["file"], "-");
    assert_eq!(report["measurements"]["mrtd"], INTEL_MRTD);

    bad_input(&run_stdin(&args, b""));
}

#[test]
fn hex_text_of_a_quote_is_verified_like_the_binary() {
    let dir = tempdir();
    let path = dir.path().join("tdx_quote.hex");
    write(&path, format!("0x{}\n", hex::encode(read(&intel_quote()))));
    let report = accepted(&verify(
        &path,
        &intel_collateral(),
        INTEL_NOW,
        &["--allow-platform-flag", "all"],
    ));
    assert_eq!(report["measurements"]["mrtd"], INTEL_MRTD);

    // Hex on standard input too.
    let collateral = intel_collateral();
    let args = [
        "quote",
        "-",
        "-c",
        s(&collateral),
        "--now",
        INTEL_NOW,
        "--json",
        "--allow-platform-flag",
        "all",
    ];
    accepted(&run_stdin(&args, &read(&path)));
}

#[test]
fn hex_sample_parses_but_has_no_collateral_of_its_own() {
    // README: "no collateral, parse only". It shares the intel sample's FMSPC
    // but is another quote, so the intel collateral does not verify it.
    let r = verify(
        &sample("intel/tdx-quote.hex"),
        &intel_collateral(),
        INTEL_NOW,
        &["--allow-platform-flag", "all"],
    );
    assert_eq!(r.code, 1, "stderr: {}", r.stderr);
    let report = verdict(&r);
    assert_eq!(report["quote"]["version"], 4);
    assert_eq!(report["quote"]["body"], "TD1.0");
    assert_eq!(report["quote"]["fmspc"], "B0C06F000000");
    assert_eq!(report["quote_verified"], false);
    assert_eq!(report["measurements"]["verified"], false);
}

// ---------------------------------------------------------------------------
// Bad input: exit 2, one line on stderr, nothing on stdout
// ---------------------------------------------------------------------------

#[test]
fn truncated_quotes_are_bad_input() {
    let bytes = read(&intel_quote());
    let dir = tempdir();
    for len in [0, 10, 47, 700, 3000, 4935] {
        let path = dir.path().join(format!("truncated-{len}"));
        write(&path, &bytes[..len]);
        let r = verify_intel_with_quote(&path);
        bad_input(&r);
        assert!(r.stderr.contains("quote"), "{len}: {}", r.stderr);
    }
}

/// Truncation inside the TD report (header complete, body cut short) must
/// give a one-line message like any other truncation. Every failing length is
/// listed at once.
#[test]
fn quotes_truncated_inside_the_body_give_a_one_line_message() {
    let dir = tempdir();
    let mut multi_line = Vec::new();
    for (quote, lens) in [
        (intel_quote(), &[48, 200, 631][..]),
        (outdated_quote(), &[48, 700][..]),
    ] {
        let bytes = read(&quote);
        for &len in lens {
            let name = quote.file_name().and_then(|n| n.to_str()).expect("name");
            let path = dir.path().join(format!("{name}-{len}"));
            write(&path, &bytes[..len]);
            let r = verify_intel_with_quote(&path);
            assert_eq!(r.code, 2, "{len} bytes: {}", r.stderr);
            assert!(r.stdout.is_empty(), "{len} bytes: {}", r.stdout);
            if r.stderr.trim_end().lines().count() != 1 {
                multi_line.push(r.stderr);
            }
        }
    }
    assert!(
        multi_line.is_empty(),
        "stderr is not one line:\n{}",
        multi_line.join("---\n")
    );
}

fn verify_intel_with_quote(quote: &Path) -> Run {
    verify(
        quote,
        &intel_collateral(),
        INTEL_NOW,
        &["--allow-platform-flag", "all"],
    )
}

#[test]
fn non_quotes_are_bad_input() {
    let dir = tempdir();
    let real = read(&intel_quote());

    let hello = dir.path().join("hello.txt");
    write(&hello, "hello\n");

    let mut png = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR".to_vec();
    png.resize(2048, 0);
    let png_path = dir.path().join("image.png");
    write(&png_path, &png);

    // An SGX quote header: version 3, TEE type 0.
    let mut sgx = real.clone();
    sgx[0..2].copy_from_slice(&3u16.to_le_bytes());
    sgx[4..8].copy_from_slice(&0u32.to_le_bytes());
    let sgx_path = dir.path().join("sgx_quote");
    write(&sgx_path, &sgx);

    // A version-4 header that claims to be SGX (TEE type 0).
    let mut v4_sgx = real.clone();
    v4_sgx[4..8].copy_from_slice(&0u32.to_le_bytes());
    let v4_sgx_path = dir.path().join("v4_sgx_quote");
    write(&v4_sgx_path, &v4_sgx);

    // Bad hex text.
    let bad_hex = dir.path().join("bad.hex");
    write(&bad_hex, "0xabc");

    // Non-zero bytes after the quote.
    let mut trailing = real;
    trailing.push(b'x');
    let trailing_path = dir.path().join("trailing");
    write(&trailing_path, &trailing);

    // More than the 1 MiB the binary is willing to read.
    let big = dir.path().join("big");
    write(&big, vec![0u8; (1 << 20) + 1]);

    for path in [
        &hello,
        &png_path,
        &sgx_path,
        &v4_sgx_path,
        &bad_hex,
        &trailing_path,
        &big,
    ] {
        bad_input(&verify_intel_with_quote(path));
    }
    // A directory is not a quote either.
    bad_input(&verify_intel_with_quote(dir.path()));
}

#[test]
fn missing_files_are_bad_input() {
    let dir = tempdir();
    let missing = dir.path().join("missing");
    let r = verify_intel_with_quote(&missing);
    bad_input(&r);
    assert!(r.stderr.contains("missing"), "{}", r.stderr);

    let r = verify(
        &intel_quote(),
        &missing,
        INTEL_NOW,
        &["--allow-platform-flag", "all"],
    );
    bad_input(&r);
    assert!(r.stderr.contains("missing"), "{}", r.stderr);

    intel_bad_input(&["--policy", s(&missing)]);
}

#[test]
fn bad_collateral_is_bad_input() {
    let dir = tempdir();
    let garbage = dir.path().join("garbage.json");
    write(&garbage, "{not json");
    let other_json = dir.path().join("other.json");
    write(&other_json, r#"{"a":1}"#);
    let all = ["--allow-platform-flag", "all"];

    for collateral in [&garbage, &other_json, &intel_quote()] {
        let r = verify(&intel_quote(), collateral, INTEL_NOW, &all);
        bad_input(&r);
        let name = collateral
            .file_name()
            .and_then(|n| n.to_str())
            .expect("name");
        assert!(r.stderr.contains(name), "{}", r.stderr);
    }
}

#[test]
fn bad_policies_are_bad_input() {
    let dir = tempdir();
    let policy_with = |name: &str, value: &str| {
        let path = dir.path().join(name);
        write(&path, value);
        path
    };
    let garbage = policy_with("garbage.json", "{not json");
    let unrelated = policy_with("unrelated.json", r#"{"a":1}"#);

    let mut misspelt_tcb = tessella_policy(&intel_rtmr2());
    misspelt_tcb["tcb"]["alow_smt"] = json!(true);
    let misspelt_tcb = policy_with("misspelt-tcb.json", &misspelt_tcb.to_string());

    let mut unknown_entry_field = tessella_policy(&intel_rtmr2());
    unknown_entry_field["entries"][0]["colour"] = json!("red");
    let unknown_entry_field =
        policy_with("unknown-entry-field.json", &unknown_entry_field.to_string());

    let mut no_entries = tessella_policy(&intel_rtmr2());
    no_entries["entries"] = json!([]);
    let no_entries = policy_with("no-entries.json", &no_entries.to_string());

    let mut no_mrtd = tessella_policy(&intel_rtmr2());
    no_mrtd["entries"][0]
        .as_object_mut()
        .expect("entry is an object")
        .remove("mrtd");
    let no_mrtd = policy_with("no-mrtd.json", &no_mrtd.to_string());

    let empty_flashbots = policy_with("empty-flashbots.json", "[]");

    let cases = [
        (&garbage, None),
        (&unrelated, Some("`a`")),
        (&misspelt_tcb, Some("alow_smt")),
        (&unknown_entry_field, Some("colour")),
        (&no_entries, None),
        (&no_mrtd, Some("mrtd")),
        (&empty_flashbots, None),
    ];
    for (path, mentions) in cases {
        let r = intel_bad_input(&["--policy", s(path)]);
        if let Some(word) = mentions {
            assert!(r.stderr.contains(word), "{}: {}", path.display(), r.stderr);
        }
    }
    // A directory is not a policy.
    intel_bad_input(&["--policy", s(dir.path())]);
}

#[test]
fn bad_option_values_are_bad_input() {
    for now in ["yesterday", "2025-06-21", ""] {
        let r = verify(
            &intel_quote(),
            &intel_collateral(),
            now,
            &["--allow-platform-flag", "all"],
        );
        bad_input(&r);
        assert!(r.stderr.contains("--now"), "{}", r.stderr);
    }

    let wrong_length = &FLASHBOTS_REPORT_DATA[..126];
    let not_hex = format!("zz{}", &FLASHBOTS_REPORT_DATA[2..]);
    for report_data in ["abc", wrong_length, &not_hex] {
        let r = intel_bad_input(&["--report-data", report_data]);
        assert!(r.stderr.contains("--report-data"), "{}", r.stderr);
    }

    let r = intel_bad_input(&["--allow-status", "Bogus"]);
    assert!(r.stderr.contains("Bogus"), "{}", r.stderr);
    assert!(
        r.stderr.contains("UpToDate"),
        "lists the valid names: {}",
        r.stderr
    );
}

#[test]
fn usage_errors_exit_2() {
    let q = intel_quote();
    let c = intel_collateral();
    let cases: Vec<Vec<&str>> = vec![
        vec![],
        vec!["frobnicate"],
        vec!["quote"],
        vec!["quote", s(&q)],
        vec!["quote", "-c", s(&c)],
        vec!["quote", s(&q), "-c", s(&c), "--no-such-option"],
        vec![
            "quote",
            s(&q),
            "-c",
            s(&c),
            "--allow-platform-flag",
            "bogus",
        ],
        vec!["quote", s(&q), "-c", s(&c), "--min-tcb-eval", "lots"],
        vec!["quote", s(&q), "-c", s(&c), "--now", "1", "--now", "2"],
    ];
    for args in cases {
        usage_error(&run(&args));
    }
}

#[test]
fn help_and_version_exit_0() {
    let r = run(&["--version"]);
    assert_eq!(r.code, 0);
    assert!(r.stdout.starts_with("tessella-verify "), "{}", r.stdout);

    let r = run(&["quote", "--help"]);
    assert_eq!(r.code, 0);
    for option in [
        "--collateral",
        "--policy",
        "--now",
        "--json",
        "--report-data",
    ] {
        assert!(
            r.stdout.contains(option),
            "help lacks {option}: {}",
            r.stdout
        );
    }
}

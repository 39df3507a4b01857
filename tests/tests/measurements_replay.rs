//! Event-log replay against real TDX evidence: replaying the dstack sample's
//! event log gives exactly the four RTMRs in its quote, and tampering with a
//! payload or a digest is detected.

use tessella_attestation::Quote;
use tessella_measurements::eventlog::{dstack, DstackLogError};
use tessella_measurements::{Digest48, EventLog, EventLogError, LogFormat};

fn report() -> serde_json::Value {
    let path = tessella_tests::tdx_samples().join("dstack/quote-report.json");
    let text = std::fs::read_to_string(&path).expect("read dstack quote-report.json");
    serde_json::from_str(&text).expect("quote-report.json is JSON")
}

fn quote_rtmrs(report: &serde_json::Value) -> [Digest48; 4] {
    let hex_quote = report["quote"].as_str().expect("quote field");
    let bytes = hex::decode(hex_quote.trim_start_matches("0x")).expect("quote hex");
    Quote::decode(&bytes)
        .expect("quote decodes")
        .measurements()
        .rtmr
}

fn event_log(report: &serde_json::Value) -> Vec<serde_json::Value> {
    let text = report["event_log"].as_str().expect("event_log string");
    serde_json::from_str(text).expect("event_log JSON")
}

#[test]
fn dstack_sample_replays_to_quote_rtmrs() {
    let report = report();
    let want = quote_rtmrs(&report);
    let whole = serde_json::to_vec(&report).expect("serialize");
    let log = EventLog::parse(&whole, None).expect("sample log parses");
    assert_eq!(log.format(), LogFormat::Dstack);
    assert_eq!(log.events().len(), 28);
    assert_eq!(log.replay(), want);
    assert!(want.iter().all(|r| *r != Digest48::ZERO));
    // The bare array gives the same result.
    let bare = serde_json::to_vec(&event_log(&report)).expect("serialize");
    assert_eq!(
        EventLog::parse(&bare, Some(LogFormat::Dstack))
            .expect("bare array")
            .replay(),
        want
    );
    let names: Vec<_> = log
        .events()
        .iter()
        .filter(|e| e.rtmr == 3)
        .map(|e| e.name.as_str())
        .collect();
    assert!(names.contains(&"compose-hash"), "{names:?}");
}

#[test]
fn tampered_payload_or_digest_is_detected() {
    let report = report();
    let want = quote_rtmrs(&report);
    let events = event_log(&report);
    let app = events
        .iter()
        .position(|e| {
            e["event_type"] == dstack::DSTACK_APP_EVENT
                && e["imr"] == 3
                && e["event_payload"].as_str().is_some_and(|p| !p.is_empty())
        })
        .expect("an RTMR3 application event with a payload");

    // A changed payload no longer matches its stated digest.
    let mut t = events.clone();
    let payload = t[app]["event_payload"]
        .as_str()
        .expect("payload")
        .to_string();
    let flipped = if payload.starts_with('0') { "1" } else { "0" };
    t[app]["event_payload"] = format!("{flipped}{}", &payload[1..]).into();
    let err = dstack::parse(&serde_json::to_vec(&t).expect("ser")).expect_err("tampered payload");
    assert!(
        matches!(err, DstackLogError::DigestMismatch { index, .. } if index == app),
        "{err}"
    );

    // A changed digest on an application event is refused the same way.
    let mut t = events.clone();
    t[app]["digest"] = "00".repeat(48).into();
    let err = EventLog::parse(&serde_json::to_vec(&t).expect("ser"), None).expect_err("digest");
    assert!(
        matches!(err, EventLogError::Dstack(DstackLogError::DigestMismatch { index, .. }) if index == app),
        "{err}"
    );

    // A changed digest on a firmware event (not recomputable) parses but no
    // longer replays to the quote's RTMR0.
    let fw = events
        .iter()
        .position(|e| e["imr"] == 0)
        .expect("an RTMR0 event");
    let mut t = events;
    t[fw]["digest"] = "11".repeat(48).into();
    let log = EventLog::parse(&serde_json::to_vec(&t).expect("ser"), None).expect("parses");
    let got = log.replay();
    assert_ne!(got[0], want[0]);
    assert_eq!(got[1..], want[1..]);
}

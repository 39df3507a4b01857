//! The dstack JSON event log.
//!
//! A dstack TD reports its event log as JSON: an array of
//! `{imr, event_type, digest, event, event_payload}` where `digest` is the
//! 48-byte SHA-384 extended into RTMR `imr` (hex), `event` a name and
//! `event_payload` hex bytes. dstack's `quote-report.json` carries this array as
//! a JSON *string* in its `event_log` field; [`parse`] accepts both shapes.
//!
//! For application events (`event_type` [`DSTACK_APP_EVENT`], extended into
//! RTMR3 by the dstack guest agent) the digest is recomputed as
//! `SHA384(u32le(0x08000001) ‖ ":" ‖ name ‖ ":" ‖ payload)` and a log whose stated
//! digest differs is refused, so names and payloads shown to an operator are
//! the ones that were measured.

use ring::digest::{Context, SHA384};
use serde::Deserialize;

use super::{Event, EventLog, LogFormat};
use crate::{Digest48, HexError};

/// Event type of dstack application (RTMR3) events.
pub const DSTACK_APP_EVENT: u32 = 0x0800_0001;
/// Largest accepted input, in bytes.
pub const MAX_INPUT_BYTES: usize = 16 << 20;
/// Most events accepted in one log.
pub const MAX_EVENTS: usize = 4096;
/// Largest accepted event payload, in bytes.
pub const MAX_PAYLOAD_BYTES: usize = 1 << 20;
/// Longest accepted event name, in bytes.
pub const MAX_NAME_BYTES: usize = 1024;

/// Why a dstack event log was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DstackLogError {
    /// The input is larger than [`MAX_INPUT_BYTES`].
    #[error("input is {size} bytes, more than the {max}-byte limit")]
    InputTooLarge {
        /// Input size.
        size: usize,
        /// The limit.
        max: usize,
    },
    /// The input is not the expected JSON shape.
    #[error("not a dstack event log: {0}")]
    Json(String),
    /// More than [`MAX_EVENTS`] events.
    #[error("{count} events, more than the limit of {max}")]
    TooManyEvents {
        /// Events in the log.
        count: usize,
        /// The limit.
        max: usize,
    },
    /// An `imr` outside 0..=3.
    #[error("event {index}: imr {imr} is not an RTMR index (0..=3)")]
    BadImr {
        /// Event index in the log.
        index: usize,
        /// The stated imr.
        imr: u64,
    },
    /// A digest that is not 48 bytes of hex.
    #[error("event {index}: digest: {source}")]
    BadDigest {
        /// Event index in the log.
        index: usize,
        /// The hex problem.
        source: HexError,
    },
    /// A payload that is not hex.
    #[error("event {index}: event_payload is not valid hex")]
    BadPayload {
        /// Event index in the log.
        index: usize,
    },
    /// A payload or name larger than its limit.
    #[error("event {index}: {field} is {size} bytes, more than the {max}-byte limit")]
    FieldTooLarge {
        /// Event index in the log.
        index: usize,
        /// `event` or `event_payload`.
        field: &'static str,
        /// Its size in bytes.
        size: usize,
        /// The limit.
        max: usize,
    },
    /// An application event whose stated digest is not the digest of its name
    /// and payload.
    #[error("event {index} ({name:?}): stated digest {stated} differs from computed {computed}")]
    DigestMismatch {
        /// Event index in the log.
        index: usize,
        /// Event name.
        name: String,
        /// The digest in the log.
        stated: Box<Digest48>,
        /// SHA384(u32le(type) ‖ ":" ‖ name ‖ ":" ‖ payload).
        computed: Box<Digest48>,
    },
}

#[derive(Deserialize)]
struct RawEvent {
    imr: u64,
    event_type: u32,
    digest: String,
    #[serde(default)]
    event: String,
    #[serde(default)]
    event_payload: String,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum Wrapped {
    Events(Vec<RawEvent>),
    Text(String),
}

#[derive(Deserialize)]
struct Report {
    event_log: Wrapped,
}

/// The digest dstack extends for an application event:
/// `SHA384(u32le(event_type) ‖ ":" ‖ name ‖ ":" ‖ payload)`.
pub fn app_event_digest(event_type: u32, name: &str, payload: &[u8]) -> Digest48 {
    let mut ctx = Context::new(&SHA384);
    ctx.update(&event_type.to_le_bytes());
    ctx.update(b":");
    ctx.update(name.as_bytes());
    ctx.update(b":");
    ctx.update(payload);
    crate::rtmr::finish(ctx)
}

/// Parse a dstack event log: a JSON array of events, or an object (such as
/// `quote-report.json`) whose `event_log` field holds that array or a JSON
/// string containing it.
pub fn parse(input: &[u8]) -> Result<EventLog, DstackLogError> {
    if input.len() > MAX_INPUT_BYTES {
        return Err(DstackLogError::InputTooLarge {
            size: input.len(),
            max: MAX_INPUT_BYTES,
        });
    }
    let json = |e: serde_json::Error| DstackLogError::Json(e.to_string());
    let first = input.iter().find(|b| !b.is_ascii_whitespace());
    let raw: Vec<RawEvent> = if first == Some(&b'{') {
        let report: Report = serde_json::from_slice(input).map_err(json)?;
        match report.event_log {
            Wrapped::Events(v) => v,
            Wrapped::Text(t) => serde_json::from_str(&t).map_err(json)?,
        }
    } else {
        serde_json::from_slice(input).map_err(json)?
    };
    if raw.len() > MAX_EVENTS {
        return Err(DstackLogError::TooManyEvents {
            count: raw.len(),
            max: MAX_EVENTS,
        });
    }
    let mut events = Vec::with_capacity(raw.len());
    for (index, r) in raw.into_iter().enumerate() {
        events.push(convert(index, r)?);
    }
    Ok(EventLog {
        format: LogFormat::Dstack,
        events,
    })
}

fn convert(index: usize, r: RawEvent) -> Result<Event, DstackLogError> {
    let rtmr = match u8::try_from(r.imr) {
        Ok(i) if i <= 3 => i,
        _ => return Err(DstackLogError::BadImr { index, imr: r.imr }),
    };
    let digest: Digest48 = r
        .digest
        .parse()
        .map_err(|source| DstackLogError::BadDigest { index, source })?;
    if r.event.len() > MAX_NAME_BYTES {
        return Err(DstackLogError::FieldTooLarge {
            index,
            field: "event",
            size: r.event.len(),
            max: MAX_NAME_BYTES,
        });
    }
    if r.event_payload.len() / 2 > MAX_PAYLOAD_BYTES {
        return Err(DstackLogError::FieldTooLarge {
            index,
            field: "event_payload",
            size: r.event_payload.len() / 2,
            max: MAX_PAYLOAD_BYTES,
        });
    }
    let payload =
        hex::decode(r.event_payload.trim()).map_err(|_| DstackLogError::BadPayload { index })?;
    if r.event_type == DSTACK_APP_EVENT {
        let computed = app_event_digest(r.event_type, &r.event, &payload);
        if computed != digest {
            return Err(DstackLogError::DigestMismatch {
                index,
                name: r.event,
                stated: Box::new(digest),
                computed: Box::new(computed),
            });
        }
    }
    Ok(Event {
        rtmr,
        event_type: r.event_type,
        digest,
        name: r.event,
        payload,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn app(name: &str, payload: &[u8]) -> serde_json::Value {
        serde_json::json!({
            "imr": 3,
            "event_type": DSTACK_APP_EVENT,
            "digest": app_event_digest(DSTACK_APP_EVENT, name, payload).to_hex(),
            "event": name,
            "event_payload": hex::encode(payload),
        })
    }

    #[test]
    fn array_and_wrapped_forms_agree() {
        let arr = serde_json::json!([app("a", b"1"), app("b", b"")]);
        let bare = parse(arr.to_string().as_bytes()).expect("bare array");
        let text = serde_json::json!({"event_log": arr.to_string()});
        let wrapped = parse(text.to_string().as_bytes()).expect("wrapped string");
        assert_eq!(bare, wrapped);
        assert_eq!(bare.events().len(), 2);
        assert_eq!(bare.replay()[0], Digest48::ZERO);
        assert_ne!(bare.replay()[3], Digest48::ZERO);
    }

    #[test]
    fn refuses_bad_fields() {
        let mut e = app("a", b"1");
        e["imr"] = 4.into();
        let err = parse(serde_json::json!([e]).to_string().as_bytes());
        assert_eq!(err, Err(DstackLogError::BadImr { index: 0, imr: 4 }));

        let mut e = app("a", b"1");
        e["digest"] = "abcd".into();
        let err = parse(serde_json::json!([app("x", b""), e]).to_string().as_bytes());
        assert!(matches!(
            err,
            Err(DstackLogError::BadDigest { index: 1, .. })
        ));

        let mut e = app("a", b"1");
        e["event_payload"] = "zz".into();
        let err = parse(serde_json::json!([e]).to_string().as_bytes());
        assert_eq!(err, Err(DstackLogError::BadPayload { index: 0 }));

        let mut e = app("a", b"1");
        e["event"] = "b".into();
        let err = parse(serde_json::json!([e]).to_string().as_bytes());
        assert!(matches!(
            err,
            Err(DstackLogError::DigestMismatch { index: 0, .. })
        ));

        let many: Vec<_> = (0..=MAX_EVENTS).map(|_| app("a", b"")).collect();
        let err = parse(serde_json::Value::from(many).to_string().as_bytes());
        assert!(matches!(err, Err(DstackLogError::TooManyEvents { .. })));

        assert!(matches!(parse(b"{\"x\":1}"), Err(DstackLogError::Json(_))));
        assert!(matches!(parse(b"[1,2]"), Err(DstackLogError::Json(_))));
    }
}

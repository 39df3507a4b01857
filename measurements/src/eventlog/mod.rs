//! Event-log parsing and RTMR replay.
//!
//! Two formats produce the same [`EventLog`]:
//! - [`dstack`]: the JSON event log of a dstack TD (an array of `{imr,
//!   event_type, digest, event, event_payload}`), alone or inside a
//!   `quote-report.json` object's `event_log` field;
//! - [`tcg`]: the TCG2 crypto-agile CC event log the firmware publishes in the
//!   ACPI CCEL table (`/sys/firmware/acpi/tables/data/CCEL`).
//!
//! [`EventLog::replay`] extends RTMR0..3 from zero with each event's SHA-384
//! digest, in log order, so the result can be compared with a quote's RTMRs.

pub mod dstack;
pub mod tcg;

use serde::Serialize;

use crate::rtmr::Rtmrs;
use crate::Digest48;

pub use dstack::DstackLogError;
pub use tcg::TcgLogError;

/// One event that extends an RTMR.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Event {
    /// The RTMR (0..=3) this event extends.
    pub rtmr: u8,
    /// The event type (TCG `EV_*`, or dstack's 0x08000001 for application events).
    pub event_type: u32,
    /// The SHA-384 digest extended into the RTMR.
    pub digest: Digest48,
    /// A human-readable name: the dstack event name, or the TCG event type name.
    pub name: String,
    /// The raw event data (dstack payload, or TCG event bytes).
    #[serde(serialize_with = "hex_bytes")]
    pub payload: Vec<u8>,
}

fn hex_bytes<S: serde::Serializer>(v: &[u8], s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&hex::encode(v))
}

/// The format of an event log.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// dstack JSON event log.
    Dstack,
    /// TCG2 crypto-agile CC event log (CCEL).
    Tcg,
}

impl LogFormat {
    /// The lowercase name, as used on the command line.
    pub fn name(self) -> &'static str {
        match self {
            LogFormat::Dstack => "dstack",
            LogFormat::Tcg => "tcg",
        }
    }

    /// Guess the format of `input`: JSON (first non-blank byte `{` or `[`) is
    /// dstack, anything else TCG.
    pub fn detect(input: &[u8]) -> LogFormat {
        match input.iter().find(|b| !b.is_ascii_whitespace()) {
            Some(b'{') | Some(b'[') => LogFormat::Dstack,
            _ => LogFormat::Tcg,
        }
    }
}

/// A parsed event log of either format: the events that extend RTMRs, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventLog {
    format: LogFormat,
    events: Vec<Event>,
}

/// Why an event log could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EventLogError {
    /// The dstack JSON log is malformed or inconsistent.
    #[error("dstack event log: {0}")]
    Dstack(DstackLogError),
    /// The TCG2 / CCEL log is malformed.
    #[error("TCG event log: {0}")]
    Tcg(TcgLogError),
}

// Manual `From` impls (not `#[from]`): the message already includes the inner
// error, so it must not be reported again as a `source`.
impl From<DstackLogError> for EventLogError {
    fn from(e: DstackLogError) -> Self {
        EventLogError::Dstack(e)
    }
}

impl From<TcgLogError> for EventLogError {
    fn from(e: TcgLogError) -> Self {
        EventLogError::Tcg(e)
    }
}

impl EventLog {
    /// Build a log from already-validated events. Events whose `rtmr` is not
    /// 0..=3 are refused.
    pub fn new(format: LogFormat, events: Vec<Event>) -> Result<Self, crate::rtmr::RtmrIndexError> {
        if let Some(e) = events.iter().find(|e| e.rtmr > 3) {
            return Err(crate::rtmr::RtmrIndexError(usize::from(e.rtmr)));
        }
        Ok(EventLog { format, events })
    }

    /// Parse `input` in `format`, or detect the format when `None`.
    pub fn parse(input: &[u8], format: Option<LogFormat>) -> Result<Self, EventLogError> {
        match format.unwrap_or_else(|| LogFormat::detect(input)) {
            LogFormat::Dstack => Ok(dstack::parse(input)?),
            LogFormat::Tcg => Ok(tcg::parse(input)?.into_event_log()),
        }
    }

    /// Which format the log was parsed from.
    pub fn format(&self) -> LogFormat {
        self.format
    }

    /// The events that extend RTMRs, in log order.
    pub fn events(&self) -> &[Event] {
        &self.events
    }

    /// RTMR0..RTMR3 after replaying every event from zero.
    pub fn replay(&self) -> [Digest48; 4] {
        let mut r = Rtmrs::new();
        for e in &self.events {
            // `rtmr` is checked to be 0..=3 on construction.
            let _ = r.extend(usize::from(e.rtmr), &e.digest);
        }
        r.values()
    }
}

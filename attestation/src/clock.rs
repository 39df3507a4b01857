//! Time: every verification takes an explicit `now` in Unix seconds, so callers
//! (and tests) decide what time it is; long-lived components read it from one
//! injectable [`Clock`].

use std::sync::atomic::{AtomicU64, Ordering};

use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

/// Where a component gets the time from. Tests use [`ManualClock`] to freeze
/// or advance time instead of sleeping.
pub trait Clock: Send + Sync + std::fmt::Debug {
    /// Seconds since the Unix epoch.
    fn now_unix(&self) -> u64;
}

/// The operating system's clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_unix(&self) -> u64 {
        now_unix()
    }
}

/// A clock that only moves when told to.
#[derive(Debug, Default)]
pub struct ManualClock(AtomicU64);

impl ManualClock {
    /// A clock reading `unix`.
    pub fn new(unix: u64) -> Self {
        ManualClock(AtomicU64::new(unix))
    }

    /// Set the time.
    pub fn set(&self, unix: u64) {
        self.0.store(unix, Ordering::SeqCst);
    }

    /// Move the time forward.
    pub fn advance(&self, secs: u64) {
        self.0.fetch_add(secs, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now_unix(&self) -> u64 {
        self.0.load(Ordering::SeqCst)
    }
}

/// The system clock, in Unix seconds.
pub fn now_unix() -> u64 {
    OffsetDateTime::now_utc().unix_timestamp().max(0) as u64
}

/// Parse `2025-06-19T10:32:27Z` (RFC 3339) into Unix seconds.
pub fn parse_rfc3339(text: &str) -> Option<u64> {
    let t = OffsetDateTime::parse(text.trim(), &Rfc3339).ok()?;
    u64::try_from(t.unix_timestamp()).ok()
}

/// Parse either Unix seconds or an RFC 3339 timestamp.
pub fn parse_time(text: &str) -> Option<u64> {
    let t = text.trim();
    if !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit()) {
        return t.parse().ok();
    }
    parse_rfc3339(t)
}

/// Format Unix seconds as RFC 3339 (UTC); out-of-range values print as numbers.
pub fn format_rfc3339(unix: u64) -> String {
    i64::try_from(unix)
        .ok()
        .and_then(|s| OffsetDateTime::from_unix_timestamp(s).ok())
        .and_then(|t| t.format(&Rfc3339).ok())
        .unwrap_or_else(|| unix.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_both_forms() {
        assert_eq!(parse_time("1750329147"), Some(1750329147));
        assert_eq!(parse_time("2025-06-19T10:32:27Z"), Some(1750329147));
        assert_eq!(format_rfc3339(1750329147), "2025-06-19T10:32:27Z");
        assert_eq!(parse_time("yesterday"), None);
        assert_eq!(parse_time(""), None);
    }
}

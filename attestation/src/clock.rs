//! Timestamps: every verification takes an explicit `now` in Unix seconds, so
//! callers (and tests) decide what time it is.

use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

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

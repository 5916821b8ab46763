//! The run's clock, in UTC: what `io.mab.built`, `rebuild-after` and `${date}` read.
//! `MAB_NOW` (RFC 3339) replaces it, so a run can be replayed as of a given time (and a
//! test can publish an image "ten days ago").

use chrono::{DateTime, Utc};

/// The variable that sets the clock.
pub const NOW_VAR: &str = "MAB_NOW";

/// Now, or the time `MAB_NOW` says; an unreadable `MAB_NOW` is an error, never ignored.
pub fn now() -> Result<DateTime<Utc>, String> {
    match std::env::var(NOW_VAR) {
        Ok(text) if !text.is_empty() => parse(&text).ok_or_else(|| {
            format!("{NOW_VAR}={text:?} is not an RFC 3339 time (2026-11-25T10:00:00Z)")
        }),
        _ => Ok(Utc::now()),
    }
}

/// An RFC 3339 time, in UTC.
pub fn parse(text: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(text.trim())
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

/// RFC 3339 in UTC, to the second: `2026-11-25T10:00:00Z`.
pub fn format(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// An age in words: `9 days`, `1 day`, `30 hours`, `1 hour`, `less than an hour`.
pub fn age(seconds: i64) -> String {
    let (n, unit) = match seconds {
        s if s >= 2 * 86_400 => (s / 86_400, "day"),
        s if s >= 3_600 => (s / 3_600, "hour"),
        _ => return "less than an hour".to_owned(),
    };
    format!("{n} {unit}{}", if n == 1 { "" } else { "s" })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ages_read_as_words_and_times_round_trip() {
        assert_eq!(age(9 * 86_400 + 5), "9 days");
        assert_eq!(age(36 * 3_600), "36 hours");
        assert_eq!(age(3_600), "1 hour");
        assert_eq!(age(59), "less than an hour");
        let t = parse("2026-11-25T11:00:00+01:00").unwrap();
        assert_eq!(format(t), "2026-11-25T10:00:00Z");
        assert!(parse("yesterday").is_none());
    }
}

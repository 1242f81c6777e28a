//! The dates git accepts in `GIT_AUTHOR_DATE` / `GIT_COMMITTER_DATE`.
//!
//! Contract: [`parse`] reads what git's own strict date parser reads in those variables and
//! returns seconds since the epoch with the UTC offset in minutes:
//! - git's internal format, `@<seconds> [<+hhmm>]` or `<seconds> <+hhmm>`;
//! - RFC 2822, `Thu, 07 Apr 2005 22:13:13 +0200` (weekday optional);
//! - ISO 8601 / RFC 3339, `2005-04-07T22:13:13+02:00`, `2005-04-07 22:13:13 +0200`, `...Z`,
//!   fractional seconds allowed;
//! - git's own log format, `Thu Apr 7 22:13:13 2005 +0200`;
//! - the ISO and log forms without a zone, read in the local time zone, as git does.
//!
//! Anything else is `None`: the caller falls back to "now" as git-hybrid did before, but a date
//! git would accept never silently becomes "now".

use chrono::{DateTime, FixedOffset, Local, NaiveDateTime, TimeZone};

/// Formats with a zone (`%z` also reads `+hh:mm`).
const ZONED: &[&str] = &[
    "%Y-%m-%dT%H:%M:%S%.f%z",
    "%Y-%m-%d %H:%M:%S%.f%z",
    "%Y-%m-%dT%H:%M:%S%.f %z",
    "%Y-%m-%d %H:%M:%S%.f %z",
    "%a %b %e %H:%M:%S %Y %z",
    "%b %e %H:%M:%S %Y %z",
];

/// Formats without a zone: local time.
const LOCAL: &[&str] = &["%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%d %H:%M:%S%.f", "%a %b %e %H:%M:%S %Y", "%b %e %H:%M:%S %Y"];

/// Parses a date as git does for `GIT_*_DATE` (see the module contract).
pub fn parse(s: &str) -> Option<(i64, i32)> {
    let s = s.trim();
    if s.is_empty() {
        return None;
    }
    if let Some(internal) = internal(s) {
        return Some(internal);
    }
    if let Ok(d) = DateTime::parse_from_rfc2822(s) {
        return Some(of(d));
    }
    // `Z` (UTC) as the numeric zone chrono's `%z` reads.
    let zulu;
    let s = match s.strip_suffix(['Z', 'z']) {
        Some(rest) if rest.ends_with(|c: char| c.is_ascii_digit()) => {
            zulu = format!("{rest}+0000");
            zulu.as_str()
        }
        _ => s,
    };
    for f in ZONED {
        if let Ok(d) = DateTime::parse_from_str(s, f) {
            return Some(of(d));
        }
    }
    for f in LOCAL {
        if let Ok(naive) = NaiveDateTime::parse_from_str(s, f) {
            let local = Local.from_local_datetime(&naive).earliest()?;
            return Some((local.timestamp(), local.offset().local_minus_utc() / 60));
        }
    }
    None
}

fn of(d: DateTime<FixedOffset>) -> (i64, i32) {
    (d.timestamp(), d.offset().local_minus_utc() / 60)
}

/// `[@]<seconds> [<+hhmm>]`: the zone may be left out only after `@`.
fn internal(s: &str) -> Option<(i64, i32)> {
    let mut parts = s.split_whitespace();
    let first = parts.next()?;
    let (at, digits) = match first.strip_prefix('@') {
        Some(d) => (true, d),
        None => (false, first),
    };
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let secs: i64 = digits.parse().ok()?;
    let offset = match parts.next() {
        Some(tz) => zone(tz)?,
        None if at => 0,
        None => return None,
    };
    if parts.next().is_some() {
        return None;
    }
    Some((secs, offset))
}

/// `+hhmm` / `-hhmm` in minutes.
fn zone(tz: &str) -> Option<i32> {
    let sign = match tz.as_bytes().first()? {
        b'+' => 1,
        b'-' => -1,
        _ => return None,
    };
    let digits = &tz[1..];
    if digits.len() != 4 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let h: i32 = digits[..2].parse().ok()?;
    let m: i32 = digits[2..].parse().ok()?;
    Some(sign * (h * 60 + m))
}

#[cfg(test)]
mod tests {
    use super::parse;

    #[test]
    fn internal_format() {
        assert_eq!(parse("@1700000000 +0100"), Some((1700000000, 60)));
        assert_eq!(parse("1700000000 -0230"), Some((1700000000, -150)));
        assert_eq!(parse("@1700000000"), Some((1700000000, 0)));
        assert_eq!(parse("yesterday"), None);
        assert_eq!(parse(""), None);
    }

    #[test]
    fn rfc2822_and_iso8601() {
        // 2005-04-07 22:13:13 +0200 = 1112904793.
        let want = Some((1112904793, 120));
        for s in [
            "Thu, 07 Apr 2005 22:13:13 +0200",
            "07 Apr 2005 22:13:13 +0200",
            "2005-04-07T22:13:13+02:00",
            "2005-04-07T22:13:13+0200",
            "2005-04-07 22:13:13 +0200",
            "2005-04-07T22:13:13.000+02:00",
            "Thu Apr 7 22:13:13 2005 +0200",
        ] {
            assert_eq!(parse(s), want, "{s}");
        }
        assert_eq!(parse("2005-04-07T20:13:13Z"), Some((1112904793, 0)));
    }

    #[test]
    fn no_zone_is_local_time() {
        let (secs, offset) = parse("2005-04-07T22:13:13").unwrap();
        assert_eq!(secs + i64::from(offset) * 60, 1112911993, "22:13:13 in the local zone");
    }
}

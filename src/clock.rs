//! Wall-clock time, told one way: now as unix seconds (what JWT `exp` counts
//! in), calendar days in UTC as files write them (`2027-01-31`), and the
//! timestamps reports carry. The calendar is the `time` crate's, which the
//! AWS SDK already compiles (aws-config, aws-sigv4 and aws-smithy-types
//! depend on it): no hand-written date arithmetic here.
//!
//! Durations and deadlines use `std::time::Instant`, not this: the wall
//! clock can jump.

use std::fmt;
use std::str::FromStr;
use std::time::SystemTime;

use serde::Serialize;
use time::{Month, OffsetDateTime};

/// Seconds since 1970-01-01T00:00:00Z, now.
pub fn unix_now() -> i64 {
    unix(SystemTime::now())
}

/// Seconds since the epoch of `t` (negative before it).
fn unix(t: SystemTime) -> i64 {
    match t.duration_since(SystemTime::UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
        Err(e) => i64::try_from(e.duration().as_secs()).map_or(i64::MIN, |s| -s),
    }
}

/// `t` in UTC; a time beyond what the calendar holds (±9999 years) is
/// clamped to the epoch rather than panicking.
fn utc(t: SystemTime) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp(unix(t)).unwrap_or(OffsetDateTime::UNIX_EPOCH)
}

/// `yyyy-mm-ddThh:mm:ss` in UTC: no offset and no fraction, the one form
/// GitLab's security report schema accepts for `scan.start_time`.
pub fn timestamp(t: SystemTime) -> String {
    let t = utc(t);
    format!(
        "{}T{:02}:{:02}:{:02}",
        Date(t.date()),
        t.hour(),
        t.minute(),
        t.second()
    )
}

/// A calendar day in UTC, written `YYYY-MM-DD` (an allow-list's expiry).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Date(time::Date);

impl Date {
    /// Today in UTC.
    pub fn today() -> Date {
        Date::of(SystemTime::now())
    }

    /// The UTC day `t` falls on.
    pub fn of(t: SystemTime) -> Date {
        Date(utc(t).date())
    }

    /// The day, when there is one (`2023-02-29` is not).
    pub fn from_ymd(year: i32, month: u8, day: u8) -> Option<Date> {
        let month = Month::try_from(month).ok()?;
        time::Date::from_calendar_date(year, month, day)
            .ok()
            .map(Date)
    }
}

impl FromStr for Date {
    type Err = String;

    /// Exactly `YYYY-MM-DD`: four, two and two ASCII digits.
    fn from_str(s: &str) -> Result<Date, String> {
        let bad = || format!("'{s}' is not a date: write YYYY-MM-DD, e.g. 2027-01-31");
        fn digits(part: &str, len: usize) -> Option<&str> {
            (part.len() == len && part.bytes().all(|b| b.is_ascii_digit())).then_some(part)
        }
        let mut parts = s.trim().split('-');
        let (Some(y), Some(m), Some(d), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(bad());
        };
        let (Some(y), Some(m), Some(d)) = (digits(y, 4), digits(m, 2), digits(d, 2)) else {
            return Err(bad());
        };
        let (Ok(y), Ok(m), Ok(d)) = (y.parse(), m.parse(), d.parse()) else {
            return Err(bad());
        };
        Date::from_ymd(y, m, d).ok_or_else(bad)
    }
}

impl fmt::Display for Date {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let d = self.0;
        write!(
            f,
            "{:04}-{:02}-{:02}",
            d.year(),
            u8::from(d.month()),
            d.day()
        )
    }
}

impl Serialize for Date {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn at(secs: i64) -> SystemTime {
        if secs >= 0 {
            SystemTime::UNIX_EPOCH + Duration::from_secs(secs as u64)
        } else {
            SystemTime::UNIX_EPOCH - Duration::from_secs(secs.unsigned_abs())
        }
    }

    #[test]
    fn days_and_timestamps_of_instants() {
        let cases = [
            // (unix seconds, day, timestamp)
            (0, "1970-01-01", "1970-01-01T00:00:00"),
            (-1, "1969-12-31", "1969-12-31T23:59:59"),
            (86_399, "1970-01-01", "1970-01-01T23:59:59"),
            (86_400, "1970-01-02", "1970-01-02T00:00:00"),
            (951_782_400, "2000-02-29", "2000-02-29T00:00:00"),
            (1_763_845_030, "2025-11-22", "2025-11-22T20:57:10"),
            (1_709_251_199, "2024-02-29", "2024-02-29T23:59:59"),
            (4_102_444_800, "2100-01-01", "2100-01-01T00:00:00"),
        ];
        for (secs, day, stamp) in cases {
            let t = at(secs);
            assert_eq!(unix(t), secs, "{secs}");
            assert_eq!(Date::of(t).to_string(), day, "{secs}");
            assert_eq!(timestamp(t), stamp, "{secs}");
        }
        let now = unix_now();
        assert!(now > 1_763_845_030, "{now}");
        assert_eq!(Date::today(), Date::of(at(now)));
    }

    #[test]
    fn dates_as_written() {
        let cases = [
            ("2027-01-31", Some("2027-01-31")),
            ("2024-02-29", Some("2024-02-29")),
            ("2000-02-29", Some("2000-02-29")),
            (" 2026-12-01 ", Some("2026-12-01")),
            ("2023-02-29", None),
            ("1900-02-29", None),
            ("2026-04-31", None),
            ("2026-13-01", None),
            ("2026-00-10", None),
            ("2026-01-00", None),
            ("2026-1-1", None),
            ("+2026-01-01", None),
            ("2026-01-01-01", None),
            ("2026-01", None),
            ("２０２６-01-01", None),
            ("tomorrow", None),
            ("", None),
        ];
        for (text, want) in cases {
            let got = text.parse::<Date>();
            assert_eq!(
                got.as_ref().ok().map(Date::to_string).as_deref(),
                want,
                "{text:?}"
            );
            if let Err(e) = got {
                assert!(e.contains("YYYY-MM-DD"), "{e}");
            }
        }
        let d = |s: &str| s.parse::<Date>().unwrap();
        assert!(d("2026-11-22") < d("2026-12-01"));
        assert!(d("2026-12-31") < d("2027-01-01"));
        assert_eq!(Date::from_ymd(2026, 11, 22), Some(d("2026-11-22")));
        assert_eq!(Date::from_ymd(2026, 2, 30), None);
        assert_eq!(
            serde_json::to_string(&d("2027-01-31")).unwrap(),
            "\"2027-01-31\""
        );
    }
}

//! The allow-list file (`--allowlist FILE`, TOML): findings a team has
//! looked at and accepted, each with a reason and, best, an expiry date —
//! ignore rules without one rot (anchore/grype#452).
//!
//! ```toml
//! [[allow]]
//! id = "CVE-2023-4911"          # the finding's id (CVE, GHSA, or ECR's name for it)
//! package = "glibc"             # optional: only in this package
//! reason = "no setuid binaries in the image"
//! expires = 2027-01-31          # optional: allows through that day (UTC)
//! ```

use std::fmt;
use std::path::Path;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use super::verdict::Finding;
use crate::error::ConfigError;

/// A calendar date (UTC), as allow-list expiries are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Date {
    pub year: i32,
    pub month: u8,
    pub day: u8,
}

impl Date {
    /// Today in UTC.
    pub fn today() -> Date {
        let secs = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or_default();
        Date::from_days(secs.div_euclid(86_400))
    }

    /// Days since 1970-01-01 → date (Howard Hinnant's civil_from_days).
    pub fn from_days(days: i64) -> Date {
        let z = days + 719_468;
        let era = z.div_euclid(146_097);
        let doe = z - era * 146_097;
        let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        let mp = (5 * doy + 2) / 153;
        let day = (doy - (153 * mp + 2) / 5 + 1) as u8;
        let month = if mp < 10 { mp + 3 } else { mp - 9 } as u8;
        let year = (yoe + era * 400 + i64::from(month <= 2)) as i32;
        Date { year, month, day }
    }
}

fn days_in_month(year: i32, month: u8) -> u8 {
    match month {
        4 | 6 | 9 | 11 => 30,
        2 if (year % 4 == 0 && year % 100 != 0) || year % 400 == 0 => 29,
        2 => 28,
        _ => 31,
    }
}

impl FromStr for Date {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || format!("'{s}' is not a date: write YYYY-MM-DD, e.g. 2027-01-31");
        let parts: Vec<&str> = s.trim().split('-').collect();
        let [y, m, d] = parts.as_slice() else {
            return Err(bad());
        };
        if y.len() != 4 || m.len() != 2 || d.len() != 2 {
            return Err(bad());
        }
        let year: i32 = y.parse().map_err(|_| bad())?;
        let month: u8 = m.parse().map_err(|_| bad())?;
        let day: u8 = d.parse().map_err(|_| bad())?;
        if !(1..=12).contains(&month) || day < 1 || day > days_in_month(year, month) {
            return Err(bad());
        }
        Ok(Date { year, month, day })
    }
}

impl fmt::Display for Date {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:04}-{:02}-{:02}", self.year, self.month, self.day)
    }
}

impl Serialize for Date {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, schemars::JsonSchema)]
pub struct Entry {
    pub id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub package: Option<String>,
    pub reason: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<String>")]
    pub expires: Option<Date>,
}

impl Entry {
    /// Same id (any case); same package when the entry names one.
    pub fn matches(&self, f: &Finding) -> bool {
        self.id.eq_ignore_ascii_case(&f.id)
            && match &self.package {
                None => true,
                Some(p) => f.package.as_deref() == Some(p.as_str()),
            }
    }

    /// An entry allows through its expiry day; the day after, it does not.
    pub fn expired(&self, today: Date) -> bool {
        self.expires.is_some_and(|e| today > e)
    }

    pub fn label(&self) -> String {
        match &self.package {
            Some(p) => format!("{} ({p})", self.id),
            None => self.id.clone(),
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct AllowList {
    /// The file it came from, for messages.
    pub file: Option<String>,
    pub entries: Vec<Entry>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    #[serde(default)]
    allow: Vec<RawEntry>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEntry {
    id: Option<String>,
    package: Option<String>,
    reason: Option<String>,
    expires: Option<toml::Value>,
}

const EXAMPLE: &str = "[[allow]] entries with id = \"CVE-…\", reason = \"why it is acceptable\", optional package = \"name\" and expires = 2027-01-31";

impl AllowList {
    pub fn load(path: &Path) -> Result<AllowList, ConfigError> {
        let text = crate::files::read_to_string(path, "--allowlist", crate::files::ALLOWLIST)?;
        AllowList::parse(&text, &path.display().to_string())
    }

    /// Parse the TOML text; every problem names the file, the entry and
    /// the fix.
    pub fn parse(text: &str, name: &str) -> Result<AllowList, ConfigError> {
        let raw: RawFile = toml::from_str(text).map_err(|e| {
            ConfigError::new(format!(
                "the allow-list {name} is not valid: {}",
                e.message()
            ))
            .hint(format!(
                "{}; it holds {EXAMPLE}",
                e.span()
                    .map(|s| format!(
                        "at line {}",
                        text[..s.start.min(text.len())].lines().count().max(1)
                    ))
                    .unwrap_or_else(|| "see the README".into())
            ))
        })?;
        let mut entries = Vec::new();
        for (i, r) in raw.allow.into_iter().enumerate() {
            let n = i + 1;
            let id = r.id.map(|s| s.trim().to_string()).unwrap_or_default();
            if id.is_empty() {
                return Err(ConfigError::new(format!(
                    "the allow-list {name}: entry {n} has no id"
                ))
                .hint(format!(
                    "give the finding's id, e.g. id = \"CVE-2023-4911\"; {EXAMPLE}"
                )));
            }
            let reason = r.reason.map(|s| s.trim().to_string()).unwrap_or_default();
            if reason.is_empty() {
                return Err(ConfigError::new(format!(
                    "the allow-list {name}: entry {n} ({id}) has no reason"
                ))
                .hint("every entry says why the finding is acceptable: reason = \"…\" (it is shown in the report)"));
            }
            let expires = match r.expires {
                None => None,
                Some(toml::Value::Datetime(d)) => match (d.date, d.time) {
                    (Some(date), None) => Some(Date {
                        year: i32::from(date.year),
                        month: date.month,
                        day: date.day,
                    }),
                    _ => {
                        return Err(ConfigError::new(format!(
                            "the allow-list {name}: entry {n} ({id}) expires at '{d}', not on a date"
                        ))
                        .hint("write a date: expires = 2027-01-31"));
                    }
                },
                Some(toml::Value::String(s)) => Some(s.parse().map_err(|e: String| {
                    ConfigError::new(format!("the allow-list {name}: entry {n} ({id}): {e}"))
                })?),
                Some(other) => {
                    return Err(ConfigError::new(format!(
                        "the allow-list {name}: entry {n} ({id}) expires = {other} is not a date"
                    ))
                    .hint("write a date: expires = 2027-01-31"));
                }
            };
            let package = r
                .package
                .map(|p| p.trim().to_string())
                .filter(|p| !p.is_empty());
            entries.push(Entry {
                id,
                package,
                reason,
                expires,
            });
        }
        Ok(AllowList {
            file: Some(name.to_string()),
            entries,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates() {
        assert_eq!(Date::from_days(0).to_string(), "1970-01-01");
        assert_eq!(Date::from_days(20_414).to_string(), "2025-11-22");
        assert_eq!(Date::from_days(11_016).to_string(), "2000-02-29");
        assert_eq!(Date::from_days(-1).to_string(), "1969-12-31");
        assert_eq!("2024-02-29".parse::<Date>().unwrap().day, 29);
        for bad in [
            "2023-02-29",
            "2026-13-01",
            "2026-1-1",
            "tomorrow",
            "2026-04-31",
        ] {
            assert!(bad.parse::<Date>().is_err(), "{bad}");
        }
        assert!("2026-11-22".parse::<Date>().unwrap() < "2026-12-01".parse().unwrap());
    }

    #[test]
    fn parses_entries() {
        let a = AllowList::parse(
            r#"
[[allow]]
id = "CVE-9999-9999"
reason = "a fake finding"
expires = 2027-01-31

[[allow]]
id = "CVE-2023-1"
package = "openssl"
reason = "not reachable"
expires = "2026-12-01"

[[allow]]
id = "GHSA-xxxx"
reason = "forever"
"#,
            "allow.toml",
        )
        .unwrap();
        assert_eq!(a.entries.len(), 3);
        assert_eq!(a.entries[0].expires.unwrap().to_string(), "2027-01-31");
        assert_eq!(a.entries[1].package.as_deref(), Some("openssl"));
        assert_eq!(a.entries[1].expires.unwrap().to_string(), "2026-12-01");
        assert_eq!(a.entries[2].expires, None);
        assert!(
            AllowList::parse("", "empty.toml")
                .unwrap()
                .entries
                .is_empty()
        );
    }

    #[test]
    fn refuses_what_is_wrong_and_says_so() {
        let cases = [
            (
                "[[allow]]\nid = \"CVE-1\"\n",
                "entry 1 (CVE-1) has no reason",
            ),
            ("[[allow]]\nreason = \"x\"\n", "entry 1 has no id"),
            (
                "[[allow]]\nid = \"CVE-1\"\nreason = \"x\"\nexpiry = 2026-01-01\n",
                "unknown field `expiry`",
            ),
            (
                "[[allow]]\nid = \"CVE-1\"\nreason = \"x\"\nexpires = \"next year\"\n",
                "is not a date",
            ),
            (
                "[[allow]]\nid = \"CVE-1\"\nreason = \"x\"\nexpires = 2026-01-01T10:00:00Z\n",
                "not on a date",
            ),
            ("allow = 3", "is not valid"),
            ("[[allow]\n", "is not valid"),
        ];
        for (text, want) in cases {
            let e = AllowList::parse(text, "a.toml").unwrap_err();
            assert!(e.message.contains(want), "{text:?}: {}", e.message);
            assert!(e.message.contains("a.toml"), "{}", e.message);
        }
    }

    #[test]
    fn expiry_is_inclusive() {
        let e = Entry {
            id: "CVE-1".into(),
            package: None,
            reason: "r".into(),
            expires: Some("2026-11-22".parse().unwrap()),
        };
        assert!(!e.expired("2026-11-22".parse().unwrap()));
        assert!(e.expired("2026-11-23".parse().unwrap()));
    }
}

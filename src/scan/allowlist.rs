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

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::clock::Date;
use crate::error::{ConfigError, Location};

#[derive(Debug, Clone, PartialEq, Serialize, schemars::JsonSchema)]
pub struct Entry {
    pub id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub package: Option<String>,
    pub reason: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<String>")]
    pub expires: Option<Date>,
    /// Where it is in the file (1-based), for the CI system's annotation.
    #[serde(skip)]
    pub line: Option<usize>,
}

impl Entry {
    /// A finding of `id` in `package`: same id (any case); same package
    /// when the entry names one.
    pub fn matches(&self, id: &str, package: Option<&str>) -> bool {
        self.id.eq_ignore_ascii_case(id)
            && match &self.package {
                None => true,
                Some(p) => package == Some(p.as_str()),
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
    allow: Vec<toml::Spanned<RawEntry>>,
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
            let at = e.span().map(|s| Location::of_offset(name, text, s.start));
            let error = ConfigError::new(format!(
                "the allow-list {name} is not valid: {}",
                e.message()
            ))
            .hint(format!(
                "{}; it holds {EXAMPLE}",
                at.as_ref()
                    .map(|l| format!("at line {}", l.line))
                    .unwrap_or_else(|| "see the README".into())
            ));
            match at {
                Some(l) => error.at(l),
                None => error,
            }
        })?;
        let mut entries = Vec::new();
        for (i, spanned) in raw.allow.into_iter().enumerate() {
            let n = i + 1;
            let at = Location::of_offset(name, text, spanned.span().start);
            let entry = check_entry(name, n, spanned.into_inner(), at.line);
            entries.push(entry.map_err(|e| e.at(at))?);
        }
        Ok(AllowList {
            file: Some(name.to_string()),
            entries,
        })
    }
}

/// Entry `n` of the file `name` (at `line`), checked: every problem names
/// the file, the entry and the fix.
fn check_entry(name: &str, n: usize, r: RawEntry, line: usize) -> Result<Entry, ConfigError> {
    let id = r.id.map(|s| s.trim().to_string()).unwrap_or_default();
    if id.is_empty() {
        return Err(ConfigError::new(format!(
            "the allow-list {name}: entry {n} at line {line} has no id"
        ))
        .hint(format!(
            "give the finding's id, e.g. id = \"CVE-2023-4911\"; {EXAMPLE}"
        )));
    }
    let reason = r.reason.map(|s| s.trim().to_string()).unwrap_or_default();
    if reason.is_empty() {
        return Err(ConfigError::new(format!(
                    "the allow-list {name}: entry {n} at line {line} ({id}) has no reason"
                ))
                .hint("every entry says why the finding is acceptable: reason = \"…\" (it is shown in the report)"));
    }
    let expires = match r.expires {
        None => None,
        Some(toml::Value::Datetime(d)) => match (d.date, d.time) {
            (Some(date), None) => {
                let day = Date::from_ymd(i32::from(date.year), date.month, date.day);
                Some(day.ok_or_else(|| {
                            ConfigError::new(format!(
                                "the allow-list {name}: entry {n} at line {line} ({id}) expires on {d}, a day no calendar has"
                            ))
                            .hint("write a date that exists: expires = 2027-01-31")
                        })?)
            }
            _ => {
                return Err(ConfigError::new(format!(
                    "the allow-list {name}: entry {n} at line {line} ({id}) expires at '{d}', not on a date"
                ))
                .hint("write a date: expires = 2027-01-31"));
            }
        },
        Some(toml::Value::String(s)) => Some(s.parse().map_err(|e: String| {
            ConfigError::new(format!(
                "the allow-list {name}: entry {n} at line {line} ({id}): {e}"
            ))
        })?),
        Some(other) => {
            return Err(ConfigError::new(format!(
                "the allow-list {name}: entry {n} at line {line} ({id}) expires = {other} is not a date"
            ))
            .hint("write a date: expires = 2027-01-31"));
        }
    };
    let package = r
        .package
        .map(|p| p.trim().to_string())
        .filter(|p| !p.is_empty());
    Ok(Entry {
        id,
        package,
        reason,
        expires,
        line: Some(line),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

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
                "entry 1 at line 1 (CVE-1) has no reason",
            ),
            ("[[allow]]\nreason = \"x\"\n", "entry 1 at line 1 has no id"),
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
            (
                "[[allow]]\nid = \"CVE-1\"\nreason = \"x\"\nexpires = 2023-02-29\n",
                "is not valid",
            ),
            (
                "[[allow]]\nid = \"CVE-1\"\nreason = \"x\"\nexpires = \"2023-02-29\"\n",
                "is not a date",
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
    fn entries_and_refusals_know_their_line() {
        let text = "# accepted findings\n\n[[allow]]\nid = \"CVE-1\"\nreason = \"r\"\n\n[[allow]]\nid = \"CVE-2\"\nreason = \"r\"\n";
        let a = AllowList::parse(text, "a.toml").unwrap();
        let lines: Vec<_> = a.entries.iter().map(|e| e.line).collect();
        assert_eq!(lines, [Some(3), Some(7)]);

        let e = AllowList::parse(&text.replace("reason = \"r\"\n\n", ""), "a.toml").unwrap_err();
        assert!(
            e.message
                .contains("entry 1 at line 3 (CVE-1) has no reason"),
            "{}",
            e.message
        );
        assert_eq!(
            e.location,
            Some(Location {
                file: "a.toml".into(),
                line: 3
            })
        );
        let e = AllowList::parse(
            "[[allow]]\nid = \"CVE-1\"\nreason = 'r'\nexpires = soon\n",
            "a.toml",
        )
        .unwrap_err();
        assert_eq!(e.location.map(|l| l.line), Some(4), "{}", e.message);
    }

    #[test]
    fn expiry_is_inclusive() {
        let e = Entry {
            id: "CVE-1".into(),
            package: None,
            reason: "r".into(),
            expires: Some("2026-11-22".parse().unwrap()),
            line: None,
        };
        assert!(!e.expired("2026-11-22".parse().unwrap()));
        assert!(e.expired("2026-11-23".parse().unwrap()));
    }
}

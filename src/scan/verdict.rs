//! The gate's decision, as a pure function: findings + policy + allow-list +
//! today's date → which findings block, which are allowed, which allow-list
//! entries expired or went unused. No I/O here; every case is in the tables
//! below.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::str::FromStr;

use serde::Serialize;

use super::allowlist::AllowList;
use crate::clock::Date;

/// ECR's severities, lowest first. UNDEFINED (Inspector's UNTRIAGED: not
/// rated yet) sorts lowest, so `--severity-threshold UNDEFINED` blocks on
/// every finding.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, schemars::JsonSchema,
)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Severity {
    Undefined,
    Informational,
    Low,
    Medium,
    High,
    Critical,
}

impl Severity {
    /// Highest first: the order every report shows them in.
    pub const ALL: [Severity; 6] = [
        Severity::Critical,
        Severity::High,
        Severity::Medium,
        Severity::Low,
        Severity::Informational,
        Severity::Undefined,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Severity::Critical => "CRITICAL",
            Severity::High => "HIGH",
            Severity::Medium => "MEDIUM",
            Severity::Low => "LOW",
            Severity::Informational => "INFORMATIONAL",
            Severity::Undefined => "UNDEFINED",
        }
    }

    /// What ECR and Inspector write, leniently: Inspector says UNTRIAGED
    /// where basic scanning says UNDEFINED; anything unknown is UNDEFINED
    /// rather than dropped.
    pub fn from_ecr(s: &str) -> Severity {
        s.parse().unwrap_or(Severity::Undefined)
    }
}

impl FromStr for Severity {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(match s.trim().to_ascii_uppercase().as_str() {
            "CRITICAL" => Severity::Critical,
            "HIGH" => Severity::High,
            "MEDIUM" => Severity::Medium,
            "LOW" => Severity::Low,
            "INFORMATIONAL" | "INFO" => Severity::Informational,
            "UNDEFINED" | "UNTRIAGED" => Severity::Undefined,
            other => {
                return Err(format!(
                    "'{other}' is not a severity: use CRITICAL, HIGH, MEDIUM, LOW, INFORMATIONAL or UNDEFINED (any case)"
                ));
            }
        })
    }
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// `--max HIGH=0`: one count limit.
pub fn parse_limit(s: &str) -> Result<(Severity, u32), String> {
    let (sev, n) = s
        .split_once('=')
        .ok_or_else(|| format!("'{s}' is not SEVERITY=COUNT (e.g. HIGH=0,MEDIUM=10)"))?;
    let sev: Severity = sev.parse()?;
    let n: u32 = n
        .trim()
        .parse()
        .map_err(|_| format!("'{s}': the count '{n}' is not a whole number ≥ 0"))?;
    Ok((sev, n))
}

/// One finding, whichever kind of scan produced it.
#[derive(Debug, Clone, PartialEq, Serialize, schemars::JsonSchema)]
pub struct Finding {
    /// CVE-… (basic: the finding's name; enhanced: the vulnerability id).
    pub id: String,
    pub severity: Severity,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub package: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fixed_version: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub link: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub score: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cvss_vector: Option<String>,
    /// Inspector marked it SUPPRESSED or CLOSED: shown, never gated.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub suppressed: bool,
}

impl Finding {
    pub fn new(id: &str, severity: Severity) -> Finding {
        Finding {
            id: id.to_string(),
            severity,
            title: None,
            description: None,
            package: None,
            version: None,
            fixed_version: None,
            link: None,
            score: None,
            cvss_vector: None,
            suppressed: false,
        }
    }
}

/// What blocks: findings at or above the threshold, and — for severities
/// given a count limit with `--max` — more findings than the limit.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Policy {
    pub threshold: Severity,
    /// A severity named here is governed by its limit instead of the
    /// threshold (`--severity-threshold HIGH --max HIGH=2`: two HIGH pass).
    pub max: BTreeMap<Severity, u32>,
}

#[derive(Debug, Clone, PartialEq, Serialize, schemars::JsonSchema)]
pub struct Blocking {
    pub finding: Finding,
    pub reason: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, schemars::JsonSchema)]
pub struct Allowed {
    pub id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub package: Option<String>,
    pub severity: Severity,
    pub reason: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<String>")]
    pub expires: Option<Date>,
    #[serde(skip)]
    pub entry: usize,
}

/// The decision for one scanned image.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Verdict {
    /// Every finding that counts (not suppressed), allowed ones included.
    pub counts: BTreeMap<Severity, u32>,
    pub blocking: Vec<Blocking>,
    pub allowed: Vec<Allowed>,
    /// Findings Inspector suppressed or closed.
    pub suppressed: u32,
    /// Allow-list entries (by index) that allowed something.
    #[serde(skip)]
    pub used: BTreeSet<usize>,
    /// Expired allow-list entries (by index) and the findings they would
    /// have allowed.
    #[serde(skip)]
    pub expired: BTreeMap<usize, Vec<String>>,
}

impl Verdict {
    pub fn blocked(&self) -> bool {
        !self.blocking.is_empty()
    }
}

pub fn decide(findings: &[Finding], policy: &Policy, allow: &AllowList, today: Date) -> Verdict {
    let mut v = Verdict::default();
    let mut open: Vec<&Finding> = Vec::new();
    for f in findings {
        if f.suppressed {
            v.suppressed += 1;
            continue;
        }
        *v.counts.entry(f.severity).or_default() += 1;
        let matching: Vec<usize> = allow
            .entries
            .iter()
            .enumerate()
            .filter(|(_, e)| e.matches(&f.id, f.package.as_deref()))
            .map(|(i, _)| i)
            .collect();
        match matching.iter().find(|&&i| !allow.entries[i].expired(today)) {
            Some(&i) => {
                let e = &allow.entries[i];
                v.used.insert(i);
                v.allowed.push(Allowed {
                    id: f.id.clone(),
                    package: f.package.clone(),
                    severity: f.severity,
                    reason: e.reason.clone(),
                    expires: e.expires,
                    entry: i,
                });
            }
            None => {
                for i in matching {
                    let label = match &f.package {
                        Some(p) => format!("{} ({p})", f.id),
                        None => f.id.clone(),
                    };
                    v.expired.entry(i).or_default().push(label);
                }
                open.push(f);
            }
        }
    }
    // Count limits, per severity, over what the allow-list left open.
    let mut over: BTreeMap<Severity, u32> = BTreeMap::new();
    for (&sev, &limit) in &policy.max {
        let n = open.iter().filter(|f| f.severity == sev).count() as u32;
        if n > limit {
            over.insert(sev, n);
        }
    }
    for f in open {
        let reason = match policy.max.get(&f.severity) {
            Some(limit) => over.get(&f.severity).map(|n| {
                format!(
                    "{n} {} findings, more than --max {}={limit}",
                    f.severity, f.severity
                )
            }),
            None if f.severity >= policy.threshold => Some(format!(
                "{} is at or above the threshold {}",
                f.severity, policy.threshold
            )),
            None => None,
        };
        if let Some(reason) = reason {
            v.blocking.push(Blocking {
                finding: f.clone(),
                reason,
            });
        }
    }
    // Worst first, then by id: the order a reader fixes them in.
    v.blocking.sort_by(|a, b| {
        b.finding
            .severity
            .cmp(&a.finding.severity)
            .then_with(|| a.finding.id.cmp(&b.finding.id))
    });
    v
}

#[cfg(test)]
mod tests {
    use super::super::allowlist::Entry;
    use super::*;

    fn f(id: &str, sev: Severity, pkg: Option<&str>) -> Finding {
        let mut f = Finding::new(id, sev);
        f.package = pkg.map(str::to_string);
        f
    }

    fn entry(id: &str, pkg: Option<&str>, expires: Option<&str>) -> Entry {
        Entry {
            id: id.into(),
            package: pkg.map(str::to_string),
            reason: format!("reason for {id}"),
            expires: expires.map(|d| d.parse().unwrap()),
            line: None,
        }
    }

    fn policy(threshold: Severity, max: &[(Severity, u32)]) -> Policy {
        Policy {
            threshold,
            max: max.iter().copied().collect(),
        }
    }

    use Severity::*;

    #[test]
    fn severities_parse_in_any_case_and_order_lowest_first() {
        for (s, want) in [
            ("critical", Critical),
            ("High", High),
            ("MEDIUM", Medium),
            ("low", Low),
            ("informational", Informational),
            ("undefined", Undefined),
            ("UNTRIAGED", Undefined),
        ] {
            assert_eq!(s.parse::<Severity>().unwrap(), want, "{s}");
        }
        assert!(
            "severe"
                .parse::<Severity>()
                .unwrap_err()
                .contains("CRITICAL, HIGH")
        );
        assert!(Undefined < Informational && Informational < Low && Low < Medium);
        assert!(Medium < High && High < Critical);
        assert_eq!(Severity::from_ecr("SOMETHING_NEW"), Undefined);
    }

    #[test]
    fn limits_parse() {
        assert_eq!(parse_limit("high=0").unwrap(), (High, 0));
        assert_eq!(parse_limit("MEDIUM=10").unwrap(), (Medium, 10));
        for bad in ["HIGH", "HIGH=-1", "HIGH=x", "SEVERE=1"] {
            assert!(parse_limit(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn verdict_table() {
        let today: Date = "2026-11-22".parse().unwrap();
        let moto = || vec![f("CVE-9999-9999", High, Some("moto_fake"))];
        struct Case {
            name: &'static str,
            findings: Vec<Finding>,
            policy: Policy,
            allow: Vec<Entry>,
            blocking: &'static [&'static str],
            allowed: &'static [&'static str],
            expired: &'static [usize],
            used: &'static [usize],
        }
        let cases = vec![
            Case {
                name: "no findings pass",
                findings: vec![],
                policy: policy(Undefined, &[]),
                allow: vec![],
                blocking: &[],
                allowed: &[],
                expired: &[],
                used: &[],
            },
            Case {
                name: "HIGH passes a CRITICAL threshold",
                findings: moto(),
                policy: policy(Critical, &[]),
                allow: vec![],
                blocking: &[],
                allowed: &[],
                expired: &[],
                used: &[],
            },
            Case {
                name: "HIGH blocks at threshold HIGH",
                findings: moto(),
                policy: policy(High, &[]),
                allow: vec![],
                blocking: &["CVE-9999-9999"],
                allowed: &[],
                expired: &[],
                used: &[],
            },
            Case {
                name: "an allow-listed finding passes",
                findings: moto(),
                policy: policy(High, &[]),
                allow: vec![entry("cve-9999-9999", None, Some("2026-11-22"))],
                blocking: &[],
                allowed: &["CVE-9999-9999"],
                expired: &[],
                used: &[0],
            },
            Case {
                name: "an expired entry no longer allows, and is reported",
                findings: moto(),
                policy: policy(High, &[]),
                allow: vec![entry("CVE-9999-9999", None, Some("2026-11-21"))],
                blocking: &["CVE-9999-9999"],
                allowed: &[],
                expired: &[0],
                used: &[],
            },
            Case {
                name: "an entry for another package does not allow",
                findings: moto(),
                policy: policy(High, &[]),
                allow: vec![entry("CVE-9999-9999", Some("openssl"), None)],
                blocking: &["CVE-9999-9999"],
                allowed: &[],
                expired: &[],
                used: &[],
            },
            Case {
                name: "an entry for the same package allows",
                findings: moto(),
                policy: policy(High, &[]),
                allow: vec![entry("CVE-9999-9999", Some("moto_fake"), None)],
                blocking: &[],
                allowed: &["CVE-9999-9999"],
                expired: &[],
                used: &[0],
            },
            Case {
                name: "a valid entry wins over an expired one for the same finding",
                findings: moto(),
                policy: policy(High, &[]),
                allow: vec![
                    entry("CVE-9999-9999", None, Some("2020-01-01")),
                    entry("CVE-9999-9999", None, None),
                ],
                blocking: &[],
                allowed: &["CVE-9999-9999"],
                expired: &[],
                used: &[1],
            },
            Case {
                name: "below the threshold nothing blocks",
                findings: vec![f("A", Medium, None), f("B", Low, None)],
                policy: policy(High, &[]),
                allow: vec![],
                blocking: &[],
                allowed: &[],
                expired: &[],
                used: &[],
            },
            Case {
                name: "threshold UNDEFINED blocks everything",
                findings: vec![f("A", Undefined, None), f("B", Informational, None)],
                policy: policy(Undefined, &[]),
                allow: vec![],
                blocking: &["B", "A"],
                allowed: &[],
                expired: &[],
                used: &[],
            },
            Case {
                name: "--max governs its severity instead of the threshold",
                findings: vec![
                    f("A", High, None),
                    f("B", High, None),
                    f("C", Critical, None),
                ],
                policy: policy(High, &[(High, 2)]),
                allow: vec![],
                blocking: &["C"],
                allowed: &[],
                expired: &[],
                used: &[],
            },
            Case {
                name: "over a --max limit every finding of that severity blocks",
                findings: vec![
                    f("A", Medium, None),
                    f("B", Medium, None),
                    f("C", Low, None),
                ],
                policy: policy(Critical, &[(Medium, 1)]),
                allow: vec![],
                blocking: &["A", "B"],
                allowed: &[],
                expired: &[],
                used: &[],
            },
            Case {
                name: "allowed findings do not count toward --max",
                findings: vec![f("A", Medium, None), f("B", Medium, None)],
                policy: policy(Critical, &[(Medium, 1)]),
                allow: vec![entry("A", None, None), entry("Z", None, None)],
                blocking: &[],
                allowed: &["A"],
                expired: &[],
                used: &[0],
            },
            Case {
                name: "--max HIGH=0 blocks one HIGH even with a CRITICAL threshold",
                findings: moto(),
                policy: policy(Critical, &[(High, 0)]),
                allow: vec![],
                blocking: &["CVE-9999-9999"],
                allowed: &[],
                expired: &[],
                used: &[],
            },
            Case {
                name: "suppressed findings neither count nor block",
                findings: vec![{
                    let mut x = f("S", Critical, None);
                    x.suppressed = true;
                    x
                }],
                policy: policy(Low, &[]),
                allow: vec![],
                blocking: &[],
                allowed: &[],
                expired: &[],
                used: &[],
            },
        ];
        for c in cases {
            let allow = AllowList {
                entries: c.allow,
                ..Default::default()
            };
            let v = decide(&c.findings, &c.policy, &allow, today);
            let blocking: Vec<&str> = v.blocking.iter().map(|b| b.finding.id.as_str()).collect();
            assert_eq!(blocking, c.blocking, "{}: blocking", c.name);
            let allowed: Vec<&str> = v.allowed.iter().map(|a| a.id.as_str()).collect();
            assert_eq!(allowed, c.allowed, "{}: allowed", c.name);
            assert_eq!(
                v.expired.keys().copied().collect::<Vec<_>>(),
                c.expired,
                "{}: expired",
                c.name
            );
            assert_eq!(
                v.used.iter().copied().collect::<Vec<_>>(),
                c.used,
                "{}: used",
                c.name
            );
            assert_eq!(v.blocked(), !c.blocking.is_empty(), "{}", c.name);
        }
    }

    #[test]
    fn counts_include_allowed_findings_and_reasons_say_why() {
        let today: Date = "2026-11-22".parse().unwrap();
        let allow = AllowList {
            entries: vec![entry("A", None, None)],
            ..Default::default()
        };
        let v = decide(
            &[f("A", High, None), f("B", High, None), f("C", Low, None)],
            &policy(High, &[]),
            &allow,
            today,
        );
        assert_eq!(v.counts.get(&High), Some(&2));
        assert_eq!(v.counts.get(&Low), Some(&1));
        assert_eq!(
            v.blocking[0].reason,
            "HIGH is at or above the threshold HIGH"
        );
        let v = decide(
            &[f("A", Medium, None), f("B", Medium, None)],
            &policy(Critical, &[(Medium, 1)]),
            &AllowList::default(),
            today,
        );
        assert_eq!(
            v.blocking[0].reason,
            "2 MEDIUM findings, more than --max MEDIUM=1"
        );
    }
}

//! The gate's report: one value (per platform: the status, the verdict,
//! the findings as judged; overall: the verdict and the allow-list's
//! expired and unused entries) that every output renders — JSON and CI
//! outputs (`src/report.rs`), SARIF and GitLab's report (`sarif.rs`,
//! `gitlab.rs`), and here the log (stderr) and the step summary (markdown:
//! counts per severity, the blocking findings with links).

use std::collections::BTreeMap;

use serde::Serialize;

use super::Target;
use super::allowlist::{AllowList, Entry};
use super::settings::Settings;
use super::status::ScanType;
use super::verdict::{Allowed, Blocking, Finding, Severity, Verdict};
use crate::error::Location;
use crate::image::Digest;
use crate::registry::reference::ImageRef;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum PlatformVerdict {
    Passed,
    Blocked,
    ScanError,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum GateVerdict {
    /// Every image scanned, nothing blocks.
    Passed,
    /// A finding blocks (exit code 1).
    Blocked,
    /// A scan could not be obtained and --fail-on-scan-error holds (exit 3).
    ScanFailed,
    /// A scan could not be obtained, but the policy says warn (exit 0).
    Warned,
}

impl GateVerdict {
    pub fn name(self) -> &'static str {
        match self {
            GateVerdict::Passed => "passed",
            GateVerdict::Blocked => "blocked",
            GateVerdict::ScanFailed => "scan-failed",
            GateVerdict::Warned => "warned",
        }
    }

    /// The overall verdict. A finding that blocks outranks a scan that
    /// failed elsewhere: re-running cannot fix it.
    pub fn of(platforms: &[PlatformVerdict], fail_on_scan_error: bool) -> GateVerdict {
        if platforms.contains(&PlatformVerdict::Blocked) {
            GateVerdict::Blocked
        } else if platforms.contains(&PlatformVerdict::ScanError) {
            if fail_on_scan_error {
                GateVerdict::ScanFailed
            } else {
                GateVerdict::Warned
            }
        } else {
            GateVerdict::Passed
        }
    }
}

#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct ScanError {
    pub message: String,
    pub hint: String,
}

#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct PlatformReport {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub platform: Option<String>,
    pub digest: Digest,
    /// ECR's scan status (COMPLETE, ACTIVE, FAILED…), when there was one.
    pub status: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status_description: Option<String>,
    pub verdict: PlatformVerdict,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<ScanError>,
    pub counts: BTreeMap<Severity, u32>,
    pub suppressed: u32,
    pub blocking: Vec<Blocking>,
    pub allowed: Vec<Allowed>,
    pub findings: Vec<Finding>,
    #[serde(skip)]
    pub used: Vec<usize>,
    #[serde(skip)]
    pub expired: BTreeMap<usize, Vec<String>>,
}

#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct ExpiredEntry {
    #[serde(flatten)]
    pub entry: Entry,
    /// The findings it would have allowed.
    pub matched: Vec<String>,
}

#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct AllowlistReport {
    pub file: String,
    pub entries: usize,
    pub expired: Vec<ExpiredEntry>,
    pub unused: Vec<Entry>,
}

impl AllowlistReport {
    /// Each expired or unused entry as a warning pointing at its line of
    /// the file: (title, message, where).
    pub fn warnings(&self) -> Vec<(String, String, Option<Location>)> {
        let at = |e: &Entry| {
            e.line.map(|line| Location {
                file: self.file.clone(),
                line,
            })
        };
        let mut out = Vec::new();
        for e in &self.expired {
            out.push((
                "hoist gate: allow-list entry expired".to_string(),
                format!(
                    "the entry for {} expired on {} and no longer allows {}; renew it with a new expiry date and a reason, or fix the finding",
                    e.entry.label(),
                    e.entry.expires.map(|d| d.to_string()).unwrap_or_default(),
                    crate::text::external(&e.matched.join(", "), 2000)
                ),
                at(&e.entry),
            ));
        }
        for e in &self.unused {
            out.push((
                "hoist gate: allow-list entry unused".to_string(),
                format!(
                    "the entry for {} matched no finding; remove it if the finding is gone",
                    e.label()
                ),
                at(e),
            ));
        }
        out
    }

    /// The allow-list's entries over every platform: those that expired
    /// (with what they would have allowed) and those that matched nothing.
    /// None without an allow-list.
    fn of(allow: &AllowList, platforms: &[PlatformReport]) -> Option<AllowlistReport> {
        let file = allow.file.as_ref()?;
        let mut expired: BTreeMap<usize, Vec<String>> = BTreeMap::new();
        for p in platforms {
            for (i, m) in &p.expired {
                let e = expired.entry(*i).or_default();
                for x in m {
                    if !e.contains(x) {
                        e.push(x.clone());
                    }
                }
            }
        }
        // An entry is unused when it matched nothing anywhere — valid or
        // expired. Scans that failed saw nothing, so say nothing.
        let scanned = platforms
            .iter()
            .all(|p| p.verdict != PlatformVerdict::ScanError);
        let unused = allow
            .entries
            .iter()
            .enumerate()
            .filter(|(i, _)| {
                scanned && !expired.contains_key(i) && !platforms.iter().any(|p| p.used.contains(i))
            })
            .map(|(_, e)| e.clone())
            .collect();
        Some(AllowlistReport {
            file: file.clone(),
            entries: allow.entries.len(),
            expired: expired
                .into_iter()
                .filter_map(|(i, matched)| {
                    Some(ExpiredEntry {
                        entry: allow.entries.get(i)?.clone(),
                        matched,
                    })
                })
                .collect(),
            unused,
        })
    }
}

#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct PolicyReport {
    pub severity_threshold: Severity,
    pub max: BTreeMap<Severity, u32>,
    pub fail_on_scan_error: bool,
}

#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct Report {
    pub image: String,
    pub repository: String,
    pub digest: Digest,
    pub verdict: GateVerdict,
    pub scan_type: ScanType,
    pub policy: PolicyReport,
    /// Over every platform (allowed findings included, suppressed not).
    pub counts: BTreeMap<Severity, u32>,
    pub blocking: usize,
    pub platforms: Vec<PlatformReport>,
    /// Index entries that are not images (attestations, nested indexes).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub skipped: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub allowlist: Option<AllowlistReport>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sarif: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gitlab_report: Option<String>,
    pub seconds: f64,
}

/// What the gate found, before the policy's overall verdict.
#[derive(Debug, Clone)]
pub struct Found {
    pub scan_type: ScanType,
    pub platforms: Vec<PlatformReport>,
    /// Index entries that are not images (attestations, nested indexes).
    pub skipped: Vec<String>,
    pub seconds: f64,
}

impl PlatformReport {
    /// A scan that was obtained, judged (`verdict::decide`).
    pub fn judged(
        target: &Target,
        status: String,
        description: Option<String>,
        findings: Vec<Finding>,
        v: Verdict,
    ) -> PlatformReport {
        PlatformReport {
            platform: target.platform.clone(),
            digest: target.digest.clone(),
            status: Some(status),
            status_description: description,
            verdict: if v.blocked() {
                PlatformVerdict::Blocked
            } else {
                PlatformVerdict::Passed
            },
            error: None,
            counts: v.counts,
            suppressed: v.suppressed,
            blocking: v.blocking,
            allowed: v.allowed,
            findings,
            used: v.used.into_iter().collect(),
            expired: v.expired,
        }
    }

    /// No scan result for this image.
    pub fn unavailable(
        target: &Target,
        status: Option<String>,
        error: ScanError,
    ) -> PlatformReport {
        PlatformReport {
            platform: target.platform.clone(),
            digest: target.digest.clone(),
            status,
            status_description: None,
            verdict: PlatformVerdict::ScanError,
            error: Some(error),
            counts: BTreeMap::new(),
            suppressed: 0,
            blocking: vec![],
            allowed: vec![],
            findings: vec![],
            used: vec![],
            expired: BTreeMap::new(),
        }
    }
}

impl Report {
    /// The report of what the gate `found` about `image`, judged overall:
    /// a missing scan result fails it when `fail_on_scan_error`.
    pub fn assemble(
        image: &ImageRef,
        settings: &Settings,
        fail_on_scan_error: bool,
        found: Found,
    ) -> Report {
        let Found {
            scan_type,
            platforms,
            skipped,
            seconds,
        } = found;
        let mut counts = BTreeMap::new();
        for p in &platforms {
            for (s, n) in &p.counts {
                *counts.entry(*s).or_default() += n;
            }
        }
        let verdict = GateVerdict::of(
            &platforms.iter().map(|p| p.verdict).collect::<Vec<_>>(),
            fail_on_scan_error,
        );
        let policy = &settings.policy;
        Report {
            image: image.to_string(),
            repository: image.repository.clone(),
            digest: image.digest.clone(),
            verdict,
            scan_type,
            blocking: platforms.iter().map(|p| p.blocking.len()).sum(),
            policy: PolicyReport {
                severity_threshold: policy.threshold,
                max: policy.max.clone(),
                fail_on_scan_error,
            },
            counts,
            allowlist: AllowlistReport::of(&settings.allow, &platforms),
            platforms,
            skipped,
            sarif: None,
            gitlab_report: None,
            seconds,
        }
    }

    /// 1 blocked by policy; 3 the scan could not be obtained; else 0.
    pub fn exit_code(&self) -> u8 {
        match self.verdict {
            GateVerdict::Blocked => 1,
            GateVerdict::ScanFailed => 3,
            GateVerdict::Passed | GateVerdict::Warned => 0,
        }
    }
}

fn platform_name(p: &PlatformReport) -> String {
    p.platform.clone().unwrap_or_else(|| "image".into())
}

fn counts_line(p: &PlatformReport) -> String {
    let parts: Vec<String> = Severity::ALL
        .iter()
        .filter_map(|s| p.counts.get(s).map(|n| format!("{n} {s}")))
        .collect();
    if parts.is_empty() {
        "no findings".into()
    } else {
        parts.join(", ")
    }
}

fn finding_line(f: &Finding) -> String {
    let mut s = format!("{} {}", f.id, f.severity);
    if let Some(p) = &f.package {
        s.push_str(&format!(" in {p}"));
        if let Some(v) = &f.version {
            s.push_str(&format!(" {v}"));
        }
    }
    match &f.fixed_version {
        Some(v) => s.push_str(&format!(", fixed in {v}")),
        None => s.push_str(", no fixed version known"),
    }
    if let Some(l) = &f.link {
        s.push_str(&format!(" <{l}>"));
    }
    s
}

impl Report {
    fn policy_text(&self) -> String {
        let mut s = format!("threshold {}", self.policy.severity_threshold);
        if !self.policy.max.is_empty() {
            let max: Vec<String> = self
                .policy
                .max
                .iter()
                .rev()
                .map(|(s, n)| format!("{s}={n}"))
                .collect();
            s.push_str(&format!(", --max {}", max.join(",")));
        }
        s
    }

    /// The log: the verdict, then per platform the status, the counts and
    /// every blocking finding with its reason.
    pub fn log(&self) -> String {
        let mut out = format!(
            "gate {}: {} ({}, {})",
            self.verdict.name(),
            self.image,
            self.scan_type.described(),
            self.policy_text()
        );
        for p in &self.platforms {
            let status = p.status.as_deref().unwrap_or("no scan");
            out.push_str(&format!(
                "\n  {} {}: {status}, {} → {}",
                platform_name(p),
                p.digest,
                counts_line(p),
                match p.verdict {
                    PlatformVerdict::Passed => "passed",
                    PlatformVerdict::Blocked => "blocked",
                    PlatformVerdict::ScanError => "no scan result",
                }
            ));
            if let Some(e) = &p.error {
                out.push_str(&format!("\n    {}\n    hint: {}", e.message, e.hint));
            }
            for b in &p.blocking {
                out.push_str(&format!(
                    "\n    blocks: {} — {}",
                    finding_line(&b.finding),
                    b.reason
                ));
            }
            for a in &p.allowed {
                out.push_str(&format!(
                    "\n    allowed: {} {}{} — {}",
                    a.id,
                    a.severity,
                    a.expires
                        .map(|e| format!(" (until {e})"))
                        .unwrap_or_default(),
                    a.reason
                ));
            }
            if p.suppressed > 0 {
                out.push_str(&format!(
                    "\n    {} finding(s) suppressed in Amazon Inspector, not gated",
                    p.suppressed
                ));
            }
        }
        for s in &self.skipped {
            out.push_str(&format!("\n  skipped {s}"));
        }
        if let Some(a) = &self.allowlist {
            for e in &a.expired {
                out.push_str(&format!(
                    "\n  allow-list {}: the entry for {} expired on {} and no longer allows {}",
                    a.file,
                    e.entry.label(),
                    e.entry.expires.map(|d| d.to_string()).unwrap_or_default(),
                    e.matched.join(", ")
                ));
            }
            for e in &a.unused {
                out.push_str(&format!(
                    "\n  allow-list {}: the entry for {} matched no finding (unused; remove it?)",
                    a.file,
                    e.label()
                ));
            }
        }
        match self.verdict {
            GateVerdict::Blocked => out.push_str(&format!(
                "\nblocked by policy: {} finding(s); fix them (upgrade the packages, rebuild, push), or allow-list them with a reason (--allowlist)",
                self.blocking
            )),
            GateVerdict::ScanFailed => out.push_str(
                "\nno scan result: the gate cannot vouch for this image (--fail-on-scan-error=false only warns)",
            ),
            GateVerdict::Warned => out.push_str(
                "\nwarning: no scan result for every image, and --fail-on-scan-error=false lets it pass",
            ),
            GateVerdict::Passed => {}
        }
        out
    }

    /// The step summary (GitHub's $GITHUB_STEP_SUMMARY).
    pub fn markdown(&self) -> String {
        let mut md = format!(
            "### hoist gate: {}\n\n`{}` — {}, {}\n\n",
            match self.verdict {
                GateVerdict::Passed => "passed ✅",
                GateVerdict::Blocked => "blocked ❌",
                GateVerdict::ScanFailed => "no scan result ⚠️",
                GateVerdict::Warned => "passed with warnings ⚠️",
            },
            self.image,
            self.scan_type.name(),
            cell(&self.policy_text())
        );
        self.md_platforms(&mut md);
        self.md_blocking(&mut md);
        self.md_allowed(&mut md);
        self.md_allowlist(&mut md);
        md
    }

    /// Per platform: status, verdict, counts; then each one's scan error.
    fn md_platforms(&self, md: &mut String) {
        md.push_str("| platform | status | verdict |");
        for s in Severity::ALL {
            md.push_str(&format!(" {s} |"));
        }
        md.push_str("\n|---|---|---|");
        md.push_str(&"---:|".repeat(Severity::ALL.len()));
        md.push('\n');
        for p in &self.platforms {
            md.push_str(&format!(
                "| {} | {} | {} |",
                cell(&platform_name(p)),
                cell(p.status.as_deref().unwrap_or("no scan")),
                match p.verdict {
                    PlatformVerdict::Passed => "passed",
                    PlatformVerdict::Blocked => "**blocked**",
                    PlatformVerdict::ScanError => "no scan result",
                }
            ));
            for s in Severity::ALL {
                md.push_str(&format!(" {} |", p.counts.get(&s).copied().unwrap_or(0)));
            }
            md.push('\n');
        }
        for p in &self.platforms {
            if let Some(e) = &p.error {
                md.push_str(&format!(
                    "\n**{}**: {}  \nhint: {}\n",
                    cell(&platform_name(p)),
                    cell(&e.message),
                    cell(&e.hint)
                ));
            }
        }
    }

    fn md_blocking(&self, md: &mut String) {
        let blocking: Vec<_> = self
            .platforms
            .iter()
            .flat_map(|p| p.blocking.iter().map(move |b| (p, b)))
            .collect();
        if !blocking.is_empty() {
            md.push_str("\n#### Blocking findings\n\n| platform | finding | severity | package | installed | fixed in | why |\n|---|---|---|---|---|---|---|\n");
            for (p, b) in blocking {
                let f = &b.finding;
                let id = match &f.link {
                    Some(l) => format!("[{}]({})", cell(&f.id), l.replace(')', "%29")),
                    None => cell(&f.id),
                };
                md.push_str(&format!(
                    "| {} | {id} | {} | {} | {} | {} | {} |\n",
                    cell(&platform_name(p)),
                    f.severity,
                    cell(f.package.as_deref().unwrap_or("–")),
                    cell(f.version.as_deref().unwrap_or("–")),
                    cell(f.fixed_version.as_deref().unwrap_or("–")),
                    cell(&b.reason)
                ));
            }
        }
    }

    fn md_allowed(&self, md: &mut String) {
        let allowed: Vec<_> = self.platforms.iter().flat_map(|p| &p.allowed).collect();
        if !allowed.is_empty() {
            md.push_str("\n#### Allowed by the allow-list\n\n| finding | severity | until | reason |\n|---|---|---|---|\n");
            for a in allowed {
                md.push_str(&format!(
                    "| {} | {} | {} | {} |\n",
                    cell(&a.id),
                    a.severity,
                    a.expires
                        .map(|d| d.to_string())
                        .unwrap_or_else(|| "–".into()),
                    cell(&a.reason)
                ));
            }
        }
    }

    /// The allow-list's expired and unused entries.
    fn md_allowlist(&self, md: &mut String) {
        if let Some(a) = &self.allowlist
            && (!a.expired.is_empty() || !a.unused.is_empty())
        {
            md.push_str(&format!("\n#### Allow-list `{}`\n\n", cell(&a.file)));
            for e in &a.expired {
                md.push_str(&format!(
                    "- expired on {}: {} — no longer allows {}\n",
                    e.entry.expires.map(|d| d.to_string()).unwrap_or_default(),
                    cell(&e.entry.label()),
                    cell(&e.matched.join(", "))
                ));
            }
            for e in &a.unused {
                md.push_str(&format!(
                    "- unused (matched no finding): {}\n",
                    cell(&e.label())
                ));
            }
        }
    }
}

/// Text safe inside a markdown table cell.
fn cell(s: &str) -> String {
    s.replace('|', "\\|").replace(['\n', '\r'], " ")
}

impl Report {
    /// `scan-verdict`, `scan-blocking` and `scan-critical` …
    /// `scan-undefined` (counts over every platform, allowed findings
    /// included), and the step summary.
    pub fn outputs_into(&self, o: &mut crate::ci::Outputs) {
        o.set("scan-verdict", self.verdict.name());
        o.set("scan-blocking", self.blocking.to_string());
        for s in super::verdict::Severity::ALL {
            o.set(
                &format!("scan-{}", s.name().to_ascii_lowercase()),
                self.counts.get(&s).copied().unwrap_or(0).to_string(),
            );
        }
        o.summary = self.markdown();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overall_verdict_table() {
        use GateVerdict as G;
        use PlatformVerdict::*;
        let cases: &[(&[PlatformVerdict], bool, GateVerdict, u8)] = &[
            (&[Passed], true, G::Passed, 0),
            (&[Passed, Passed], true, G::Passed, 0),
            (&[Passed, Blocked], true, G::Blocked, 1),
            (&[ScanError], true, G::ScanFailed, 3),
            (&[ScanError], false, G::Warned, 0),
            (&[ScanError, Blocked], false, G::Blocked, 1),
            (&[ScanError, Blocked], true, G::Blocked, 1),
            (&[Passed, ScanError], true, G::ScanFailed, 3),
        ];
        for (platforms, fail, want, _code) in cases {
            assert_eq!(
                GateVerdict::of(platforms, *fail),
                *want,
                "{platforms:?} {fail}"
            );
        }
    }
}

//! The gate's report for people: the log (stderr) and the CI step summary
//! (markdown: counts per severity, the blocking findings with links, the
//! allow-list's expired and unused entries).

use super::verdict::{Finding, Severity};
use super::{GateVerdict, PlatformReport, PlatformVerdict, Report};

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
        md
    }
}

/// Text safe inside a markdown table cell.
fn cell(s: &str) -> String {
    s.replace('|', "\\|").replace(['\n', '\r'], " ")
}

//! What the gate is asked to do, checked before any AWS call: the policy
//! (threshold and limits), the allow-list loaded and validated, the report
//! paths writable. `cli.rs` builds these from the flags; the gate knows
//! nothing of clap.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::allowlist::AllowList;
use super::verdict::{Policy, Severity};
use crate::error::ConfigError;

#[derive(Debug, Clone)]
pub struct Settings {
    pub policy: Policy,
    pub allow: AllowList,
    /// No scan result: exit 3 (true) or a warning.
    pub fail_on_scan_error: bool,
    pub sarif: Option<PathBuf>,
    pub gitlab_report: Option<PathBuf>,
    /// The first pause between looks (they grow from it).
    pub poll_interval: Duration,
    /// How long an empty or unmatched result must hold still.
    pub findings_settle: Duration,
    /// How long to wait for the scan overall.
    pub timeout: Duration,
}

/// The gate's flags as given.
#[derive(Debug, Clone)]
pub struct Flags {
    pub severity_threshold: Severity,
    pub max: Vec<(Severity, u32)>,
    pub allowlist: Option<PathBuf>,
    pub fail_on_scan_error: bool,
    pub sarif: Option<PathBuf>,
    pub gitlab_report: Option<PathBuf>,
    pub poll_interval: Duration,
    pub findings_settle: Duration,
    pub timeout: Duration,
}

impl TryFrom<Flags> for Settings {
    type Error = ConfigError;

    fn try_from(f: Flags) -> Result<Settings, ConfigError> {
        let mut max = BTreeMap::new();
        for (sev, n) in &f.max {
            if let Some(old) = max.insert(*sev, *n)
                && old != *n
            {
                return Err(ConfigError::new(format!(
                    "--max gives {sev} two limits ({old} and {n})"
                ))
                .hint("name each severity once, e.g. --max HIGH=0,MEDIUM=10"));
            }
        }
        let allow = match &f.allowlist {
            Some(p) => AllowList::load(p)?,
            None => AllowList::default(),
        };
        check_writable(f.sarif.as_deref(), "--sarif")?;
        check_writable(f.gitlab_report.as_deref(), "--gitlab-report")?;
        Ok(Settings {
            policy: Policy {
                threshold: f.severity_threshold,
                max,
            },
            allow,
            fail_on_scan_error: f.fail_on_scan_error,
            sarif: f.sarif,
            gitlab_report: f.gitlab_report,
            poll_interval: f.poll_interval,
            findings_settle: f.findings_settle,
            timeout: f.timeout,
        })
    }
}

/// A report path whose directory exists (it is written after the wait: a
/// typo found then would cost the whole wait).
fn check_writable(path: Option<&Path>, flag: &str) -> Result<(), ConfigError> {
    let Some(path) = path else { return Ok(()) };
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    if !dir.is_dir() {
        return Err(ConfigError::new(format!(
            "{flag} {}: the directory {} does not exist",
            path.display(),
            dir.display()
        ))
        .hint("create it first, or write the report elsewhere"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flags() -> Flags {
        Flags {
            severity_threshold: Severity::High,
            max: vec![],
            allowlist: None,
            fail_on_scan_error: true,
            sarif: None,
            gitlab_report: None,
            poll_interval: Duration::from_secs(5),
            findings_settle: Duration::from_secs(30),
            timeout: Duration::from_secs(600),
        }
    }

    #[test]
    fn what_is_refused_before_any_call() {
        let table: Vec<(Flags, &str)> = vec![
            (
                Flags {
                    max: vec![(Severity::High, 0), (Severity::High, 2)],
                    ..flags()
                },
                "two limits",
            ),
            (
                Flags {
                    allowlist: Some("/nonexistent/allow.toml".into()),
                    ..flags()
                },
                "cannot be read",
            ),
            (
                Flags {
                    sarif: Some("/nonexistent/dir/x.sarif".into()),
                    ..flags()
                },
                "does not exist",
            ),
            (
                Flags {
                    gitlab_report: Some("/nonexistent/dir/x.json".into()),
                    ..flags()
                },
                "does not exist",
            ),
        ];
        for (f, want) in table {
            let e = Settings::try_from(f).unwrap_err().to_string();
            assert!(e.contains(want), "{want}: {e}");
        }
        let s = Settings::try_from(Flags {
            max: vec![(Severity::High, 2), (Severity::High, 2)],
            ..flags()
        })
        .unwrap();
        assert_eq!(s.policy.max.get(&Severity::High), Some(&2));
    }
}

//! `--gitlab-report FILE`: GitLab's container-scanning report
//! (`artifacts: reports: container_scanning:`), shown in merge requests and
//! the vulnerability report. Schema: gitlab-org/security-products/
//! security-report-schemas, `dist/container-scanning-report-format.json`
//! (version below); the tests check every field it requires.

use std::time::SystemTime;

use serde_json::{Value, json};
use sha2::Digest as _;

use super::report::{GateVerdict, Report};
use super::verdict::{Finding, Severity};

/// The schema version this report follows.
pub const SCHEMA_VERSION: &str = "15.2.4";

fn severity(s: Severity) -> &'static str {
    match s {
        Severity::Critical => "Critical",
        Severity::High => "High",
        Severity::Medium => "Medium",
        Severity::Low => "Low",
        Severity::Informational => "Info",
        Severity::Undefined => "Unknown",
    }
}

/// A stable id per image, platform, finding and package, UUID-shaped as the
/// schema recommends: re-running the gate on the same image gives the same
/// ids, so GitLab tracks rather than duplicates.
fn uuid(parts: &[&str]) -> String {
    let h = hex::encode(sha2::Sha256::digest(parts.join("\n").as_bytes()));
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

fn identifier(f: &Finding) -> Value {
    let id = f.id.as_str();
    let (kind, url) = if id.starts_with("CVE-") {
        (
            "cve",
            Some(format!("https://nvd.nist.gov/vuln/detail/{id}")),
        )
    } else if id.starts_with("GHSA-") {
        ("ghsa", Some(format!("https://github.com/advisories/{id}")))
    } else {
        ("ecr", f.link.clone())
    };
    let mut v = json!({ "type": kind, "name": id, "value": id });
    if let Some(u) = url.filter(|u| u.starts_with("http://") || u.starts_with("https://")) {
        v["url"] = json!(u);
    }
    v
}

pub fn render(r: &Report, started: SystemTime, finished: SystemTime) -> Value {
    let mut vulnerabilities = Vec::new();
    let mut messages = Vec::new();
    for p in &r.platforms {
        let platform = p.platform.clone().unwrap_or_else(|| "linux".into());
        let image = format!(
            "{}@{}",
            r.image.split('@').next().unwrap_or(&r.repository),
            p.digest
        );
        if let Some(e) = &p.error {
            messages
                .push(json!({ "level": "fatal", "value": format!("{platform}: {}", e.message) }));
        }
        for f in &p.findings {
            if f.suppressed {
                continue;
            }
            let mut v = json!({
                "id": uuid(&[&r.repository, &p.digest.to_string(), &f.id, f.package.as_deref().unwrap_or("")]),
                "name": f.title.clone().unwrap_or_else(|| f.id.clone()).chars().take(255).collect::<String>(),
                "description": f.description.clone().unwrap_or_else(|| f.id.clone()),
                "severity": severity(f.severity),
                "identifiers": [identifier(f)],
                "location": {
                    "dependency": {
                        "package": { "name": f.package.clone().unwrap_or_else(|| "unknown".into()) },
                        "version": f.version.clone().unwrap_or_else(|| "unknown".into()),
                    },
                    // ECR does not name the distribution; the platform is
                    // what hoist knows for certain.
                    "operating_system": platform,
                    "image": image,
                },
            });
            if let Some(fixed) = &f.fixed_version {
                v["solution"] = json!(format!(
                    "Upgrade {} to {fixed}",
                    f.package.as_deref().unwrap_or("the package")
                ));
            }
            if let Some(l) = f.link.as_ref().filter(|l| l.starts_with("http")) {
                v["links"] = json!([{ "url": l }]);
            }
            vulnerabilities.push(v);
        }
    }
    let scanner_name = match r.scan_type {
        super::status::ScanType::Enhanced => "Amazon Inspector (ECR enhanced scanning)",
        super::status::ScanType::Basic => "Amazon ECR basic scanning",
        super::status::ScanType::Unknown => "Amazon ECR image scanning",
    };
    let mut scan = json!({
        "analyzer": {
            "id": "hoist",
            "name": "hoist gate",
            "version": env!("CARGO_PKG_VERSION"),
            "vendor": { "name": "hoist" },
        },
        "scanner": {
            "id": format!("amazon-ecr-{}", r.scan_type.name()),
            "name": scanner_name,
            "version": r.scan_type.name(),
            "url": "https://docs.aws.amazon.com/AmazonECR/latest/userguide/image-scanning.html",
            "vendor": { "name": "Amazon Web Services" },
        },
        "type": "container_scanning",
        "start_time": crate::clock::timestamp(started),
        "end_time": crate::clock::timestamp(finished),
        "status": if matches!(r.verdict, GateVerdict::ScanFailed | GateVerdict::Warned) { "failure" } else { "success" },
    });
    if !messages.is_empty() {
        scan["messages"] = json!(messages);
    }
    json!({
        "version": SCHEMA_VERSION,
        "schema": format!("https://gitlab.com/gitlab-org/security-products/security-report-schemas/-/raw/v{SCHEMA_VERSION}/dist/container-scanning-report-format.json"),
        "scan": scan,
        "vulnerabilities": vulnerabilities,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stable_ids() {
        let a = uuid(&["r", "sha256:1", "CVE-1", "p"]);
        assert_eq!(a.len(), 36);
        assert_eq!(a, uuid(&["r", "sha256:1", "CVE-1", "p"]));
        assert_ne!(a, uuid(&["r", "sha256:2", "CVE-1", "p"]));
    }
}

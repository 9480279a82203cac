//! `--sarif FILE`: the findings as SARIF 2.1.0, for GitHub code scanning
//! (`github/codeql-action/upload-sarif`). One rule per vulnerability id,
//! one result per finding and platform; blocking findings are errors,
//! allow-listed ones carry a suppression with the allow-list's reason.

use std::collections::BTreeMap;

use serde_json::{Value, json};

use super::report::{PlatformReport, Report};
use super::verdict::{Finding, Severity};

/// GitHub ranks code-scanning alerts by `security-severity` (a CVSS-like
/// number): the finding's score when ECR gives one, else a value inside
/// the severity's CVSS band.
fn security_severity(f: &Finding) -> f64 {
    f.score.unwrap_or(match f.severity {
        Severity::Critical => 9.5,
        Severity::High => 8.0,
        Severity::Medium => 5.5,
        Severity::Low => 2.0,
        Severity::Informational | Severity::Undefined => 0.0,
    })
}

fn level(f: &Finding) -> &'static str {
    match f.severity {
        Severity::Critical | Severity::High => "error",
        Severity::Medium => "warning",
        _ => "note",
    }
}

/// The rule for a vulnerability id (its first finding describes it).
fn rule(f: &Finding) -> Value {
    let short = f.title.clone().unwrap_or_else(|| match &f.package {
        Some(pkg) => format!("{} in {pkg}", f.id),
        None => f.id.clone(),
    });
    let mut rule = json!({
        "id": f.id,
        "name": "ContainerImageVulnerability",
        "shortDescription": { "text": short },
        "fullDescription": { "text": f.description.clone().unwrap_or_else(|| short.clone()) },
        "defaultConfiguration": { "level": level(f) },
        "properties": {
            "security-severity": format!("{:.1}", security_severity(f)),
            "tags": ["security", "vulnerability", f.severity.name()],
        },
    });
    if let Some(l) = &f.link {
        rule["helpUri"] = json!(l);
        rule["help"] =
            json!({ "text": format!("{}: {l}", f.id), "markdown": format!("[{}]({l})", f.id) });
    }
    rule
}

/// One finding on one platform: an error when it blocks, suppressed with
/// the reason when the allow-list allows it.
fn result(r: &Report, p: &PlatformReport, f: &Finding) -> Value {
    let platform = p.platform.clone().unwrap_or_else(|| "image".into());
    let blocking = p.blocking.iter().find(|b| b.finding == *f);
    let allowed = p
        .allowed
        .iter()
        .find(|a| a.id == f.id && a.package == f.package);
    let mut text = format!(
        "{} ({}) in {} {} on {platform}",
        f.id,
        f.severity,
        f.package.as_deref().unwrap_or("an unnamed package"),
        f.version.as_deref().unwrap_or("")
    );
    text = text.replace("  ", " ");
    match &f.fixed_version {
        Some(v) => text.push_str(&format!("; fixed in {v}")),
        None => text.push_str("; no fixed version known"),
    }
    if let Some(b) = blocking {
        text.push_str(&format!("; blocks the deploy: {}", b.reason));
    }
    text.push('.');
    let mut result = json!({
        "ruleId": f.id,
        "level": if blocking.is_some() { "error" } else { level(f) },
        "message": { "text": text },
        "locations": [{
            "physicalLocation": {
                "artifactLocation": { "uri": r.repository },
                "region": { "startLine": 1 },
            },
            "message": { "text": format!("{}@{} ({platform})", r.repository, p.digest) },
        }],
        "partialFingerprints": {
            "hoistFinding/v1": format!("{}/{}/{}/{}", r.repository, platform, f.id, f.package.as_deref().unwrap_or("")),
        },
        "properties": {
            "platform": platform,
            "imageDigest": p.digest.to_string(),
            "severity": f.severity.name(),
            "package": f.package,
            "installedVersion": f.version,
            "fixedVersion": f.fixed_version,
        },
    });
    if let Some(a) = allowed {
        result["suppressions"] = json!([{
            "kind": "external",
            "status": "accepted",
            "justification": a.reason,
        }]);
    }
    result
}

pub fn render(r: &Report) -> Value {
    let mut rules: BTreeMap<String, Value> = BTreeMap::new();
    let mut results = Vec::new();
    for p in &r.platforms {
        for f in &p.findings {
            rules.entry(f.id.clone()).or_insert_with(|| rule(f));
            results.push(result(r, p, f));
        }
    }
    json!({
        "$schema": "https://json.schemastore.org/sarif-2.1.0.json",
        "version": "2.1.0",
        "runs": [{
            "tool": {
                "driver": {
                    "name": "hoist",
                    "version": env!("CARGO_PKG_VERSION"),
                    "semanticVersion": env!("CARGO_PKG_VERSION"),
                    "informationUri": "https://docs.aws.amazon.com/AmazonECR/latest/userguide/image-scanning.html",
                    "rules": rules.into_values().collect::<Vec<_>>(),
                }
            },
            "automationDetails": { "id": format!("hoist-gate/{}/", r.repository) },
            "properties": {
                "verdict": r.verdict.name(),
                "scanType": r.scan_type.name(),
                "image": r.image,
            },
            "results": results,
        }]
    })
}

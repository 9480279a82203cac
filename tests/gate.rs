//! `hoist gate`: against moto (real ECR API emulation: StartImageScan, then
//! one HIGH finding CVE-9999-9999) for images pushed with hoist itself, and —
//! for what moto does not emulate (statuses, enhanced findings, pages) —
//! against a local fake ECR endpoint answering recorded
//! DescribeImageScanFindings responses (field names from botocore's
//! ecr/2015-09-21 service model).

mod common;
mod fake_ecr;

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::fixtures::{Layout, fresh_seed};
use common::{Run, hoist, local, unique};
use fake_ecr::{Answer, CALLER, DIGEST, ELSEWHERE, Fake};
use serde_json::{Value, json};

const FAST: &[&str] = &["--poll-interval", "50ms", "--timeout", "60s"];

/// A fresh repository in moto with one pushed image; returns REPO@DIGEST.
fn pushed_image(dir: &Path) -> String {
    let repo = unique("gate");
    common::create_repository(&repo, false);
    let (layout, _) = Layout::simple(dir, 1, 1000);
    let r = common::push(&layout.dir, &repo, &[]);
    r.ok();
    format!("{repo}@{}", r.json()["digest"].as_str().unwrap())
}

fn gate(image: &str, extra: &[&str]) -> Run {
    gate_env(image, extra, &[])
}

fn gate_env(image: &str, extra: &[&str], env: &[(&str, &str)]) -> Run {
    let mut args = vec!["gate", image, "--output", "json"];
    args.extend_from_slice(FAST);
    args.extend_from_slice(extra);
    hoist(&args, env)
}

fn write(dir: &Path, name: &str, text: &str) -> String {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p.display().to_string()
}

#[test]
fn moto_scan_threshold_allowlist_and_expiry() {
    let dir = tempfile::tempdir().unwrap();
    let image = pushed_image(&dir.path().join("img"));

    // No scan exists yet: gate starts one (moto: ScanNotFound until then).
    let r = gate(&image, &["--severity-threshold", "critical"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(
        r.stderr.contains("asked ECR to scan the image"),
        "{}",
        r.stderr
    );
    let j = r.json();
    assert_eq!(j["verdict"], "passed");
    assert_eq!(j["scan_type"], "basic");
    assert_eq!(j["counts"]["HIGH"], 1);
    let f = &j["platforms"][0]["findings"][0];
    assert_eq!(f["id"], "CVE-9999-9999");
    assert_eq!(f["package"], "moto_fake");
    assert_eq!(f["version"], "9.9.9");

    // The same scan, a stricter threshold: blocked, exit 1, the report still printed.
    let r = gate(&image, &["--severity-threshold", "HIGH"]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    let j = r.json();
    assert_eq!(j["verdict"], "blocked");
    assert_eq!(j["blocking"], 1);
    assert_eq!(
        j["platforms"][0]["blocking"][0]["finding"]["id"],
        "CVE-9999-9999"
    );
    assert!(
        r.stderr
            .contains("blocks: CVE-9999-9999 HIGH in moto_fake 9.9.9"),
        "{}",
        r.stderr
    );
    assert!(r.stderr.contains("blocked by policy"), "{}", r.stderr);
    // It did not start a second scan (moto would refuse it: once a day).
    assert!(!r.stderr.contains("asked ECR to scan"), "{}", r.stderr);

    // --max HIGH=0 blocks too; HIGH=1 passes.
    assert_eq!(
        gate(
            &image,
            &["--max", "HIGH=0", "--severity-threshold", "CRITICAL"]
        )
        .code,
        1
    );
    assert_eq!(gate(&image, &["--max", "high=1"]).code, 0);

    // Allow-listed with a reason: passes, and the reason is reported.
    let allow = write(
        dir.path(),
        "allow.toml",
        "[[allow]]\nid = \"CVE-9999-9999\"\npackage = \"moto_fake\"\nreason = \"moto's fixed finding\"\nexpires = 2999-12-31\n\n[[allow]]\nid = \"CVE-0000-0001\"\nreason = \"matches nothing\"\n",
    );
    let r = gate(&image, &["--allowlist", &allow]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let j = r.json();
    assert_eq!(j["verdict"], "passed");
    assert_eq!(
        j["platforms"][0]["allowed"][0]["reason"],
        "moto's fixed finding"
    );
    assert_eq!(j["allowlist"]["unused"][0]["id"], "CVE-0000-0001");
    assert!(
        r.stderr
            .contains("allowed: CVE-9999-9999 HIGH (until 2999-12-31) — moto's fixed finding"),
        "{}",
        r.stderr
    );
    assert!(
        r.stderr
            .contains("CVE-0000-0001 matched no finding (unused"),
        "{}",
        r.stderr
    );

    // On GitHub each allow-list warning is an annotation on the entry's
    // line, and a refused allow-list an error annotation on the line at fault.
    let github = [
        ("GITHUB_ACTIONS", "true"),
        ("GITHUB_OUTPUT", &*write(dir.path(), "github_output", "")),
        ("GITHUB_STEP_SUMMARY", &*write(dir.path(), "summary.md", "")),
    ];
    let r = gate_env(&image, &["--allowlist", &allow], &github);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let want = format!(
        "::warning file={},line=7,title=hoist gate%3A allow-list entry unused::the entry for CVE-0000-0001 matched no finding",
        allow.replace(':', "%3A").replace(',', "%2C")
    );
    assert!(
        r.stderr.lines().any(|l| l.starts_with(&want)),
        "{want}\n{}",
        r.stderr
    );
    let bad = write(
        dir.path(),
        "bad.toml",
        "[[allow]]\nid = \"CVE-1\"\nreason = \"r\"\n\n[[allow]]\nid = \"CVE-2\"\n",
    );
    let r = gate_env(&image, &["--allowlist", &bad], &github);
    assert_eq!(r.code, 2, "{}", r.stderr);
    let want = format!(
        "::error file={},line=5,title=hoist gate failed::the allow-list {}: entry 2 at line 5 (CVE-2) has no reason",
        bad.replace(':', "%3A").replace(',', "%2C"),
        bad
    );
    assert!(
        r.stderr.lines().any(|l| l.starts_with(&want)),
        "{want}\n{}",
        r.stderr
    );

    // Expired: no longer allows, and says so.
    let expired = write(
        dir.path(),
        "expired.toml",
        "[[allow]]\nid = \"CVE-9999-9999\"\nreason = \"was fine last year\"\nexpires = 2020-01-31\n",
    );
    let r = gate(&image, &["--allowlist", &expired]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    let j = r.json();
    assert_eq!(j["allowlist"]["expired"][0]["id"], "CVE-9999-9999");
    assert_eq!(j["allowlist"]["expired"][0]["expires"], "2020-01-31");
    assert_eq!(j["allowlist"]["unused"], json!([]));
    assert!(
        r.stderr
            .contains("expired on 2020-01-31 and no longer allows CVE-9999-9999 (moto_fake)"),
        "{}",
        r.stderr
    );
}

#[test]
fn outputs_step_summary_sarif_and_gitlab_report() {
    let dir = tempfile::tempdir().unwrap();
    let image = pushed_image(&dir.path().join("img"));
    let out = dir.path().join("github_output");
    let summary = dir.path().join("summary.md");
    let sarif = dir.path().join("gate.sarif");
    let gl = dir.path().join("gl-container-scanning-report.json");
    let r = gate_env(
        &image,
        &[
            "--sarif",
            sarif.to_str().unwrap(),
            "--gitlab-report",
            gl.to_str().unwrap(),
        ],
        &[
            ("GITHUB_ACTIONS", "true"),
            ("GITHUB_OUTPUT", out.to_str().unwrap()),
            ("GITHUB_STEP_SUMMARY", summary.to_str().unwrap()),
        ],
    );
    assert_eq!(r.code, 1, "{}", r.stderr);
    let outputs = std::fs::read_to_string(&out).unwrap();
    for line in [
        "scan-verdict=blocked",
        "scan-high=1",
        "scan-critical=0",
        "scan-blocking=1",
    ] {
        assert!(outputs.lines().any(|l| l == line), "{line} in {outputs}");
    }
    let md = std::fs::read_to_string(&summary).unwrap();
    assert!(md.contains("### hoist gate: blocked"), "{md}");
    assert!(
        md.contains("| image | COMPLETE | **blocked** | 0 | 1 | 0 | 0 | 0 | 0 |"),
        "{md}"
    );
    assert!(
        md.contains("[CVE-9999-9999](https://cve.mitre.org/cgi-bin/cvename.cgi?name=CVE-9999-9999) | HIGH | moto_fake | 9.9.9 |"),
        "{md}"
    );

    validate_sarif(&sarif);
    let s: Value = serde_json::from_str(&std::fs::read_to_string(&sarif).unwrap()).unwrap();
    assert_eq!(s["version"], "2.1.0");
    assert_eq!(s["runs"][0]["results"][0]["ruleId"], "CVE-9999-9999");
    assert_eq!(s["runs"][0]["results"][0]["level"], "error");

    let g: Value = serde_json::from_str(&std::fs::read_to_string(&gl).unwrap()).unwrap();
    check_gitlab_report(&g);
    assert_eq!(
        g["vulnerabilities"][0]["identifiers"][0]["value"],
        "CVE-9999-9999"
    );
    assert_eq!(g["vulnerabilities"][0]["severity"], "High");
    assert_eq!(
        g["vulnerabilities"][0]["location"]["dependency"]["package"]["name"],
        "moto_fake"
    );
}

/// `sarif-multitool validate` (installed by `localenv up`) exits 0 even when
/// it finds errors; its own SARIF log says what it found.
fn validate_sarif(path: &Path) {
    let tool = local()
        .vars
        .get("HOIST_LOCALENV_SARIF_MULTITOOL")
        .expect("env.sh names sarif-multitool (localenv up installs it)");
    let log = path.with_extension("validation.sarif");
    let out = std::process::Command::new(tool)
        .args([
            "validate",
            path.to_str().unwrap(),
            "-o",
            log.to_str().unwrap(),
            "-q",
        ])
        .stdin(std::process::Stdio::null())
        .output()
        .expect("sarif-multitool runs");
    assert!(
        out.status.success(),
        "sarif-multitool: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_str(&std::fs::read_to_string(&log).unwrap()).unwrap();
    let problems: Vec<&Value> = v["runs"][0]["results"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| matches!(r["level"].as_str(), Some("error") | Some("warning") | None))
        .collect();
    assert!(problems.is_empty(), "SARIF validation: {problems:#?}");
}

/// Every field GitLab's container-scanning report schema (v15.2.4,
/// security-report-schemas dist/container-scanning-report-format.json)
/// requires, with its type and pattern. No copy of the schema installs
/// from npm or PyPI, so the required fields are checked here.
fn check_gitlab_report(g: &Value) {
    let s = |v: &Value, what: &str| -> String {
        let t = v
            .as_str()
            .unwrap_or_else(|| panic!("{what} is not a string: {v}"));
        assert!(!t.is_empty(), "{what} is empty");
        t.to_string()
    };
    let version = s(&g["version"], "version");
    assert!(
        version.split('.').count() == 3 && version.split('.').all(|p| p.parse::<u32>().is_ok()),
        "{version}"
    );
    let scan = &g["scan"];
    for who in ["analyzer", "scanner"] {
        for k in ["id", "name", "version"] {
            s(&scan[who][k], &format!("scan.{who}.{k}"));
        }
        s(
            &scan[who]["vendor"]["name"],
            &format!("scan.{who}.vendor.name"),
        );
    }
    for k in ["start_time", "end_time"] {
        let t = s(&scan[k], k);
        let b = t.as_bytes();
        assert!(
            t.len() == 19
                && b[4] == b'-'
                && b[7] == b'-'
                && b[10] == b'T'
                && b[13] == b':'
                && b[16] == b':',
            "{k} {t}"
        );
    }
    assert!(["success", "failure"].contains(&s(&scan["status"], "status").as_str()));
    assert!(
        ["container_scanning", "container_scanning_for_registry"]
            .contains(&s(&scan["type"], "type").as_str())
    );
    for v in g["vulnerabilities"]
        .as_array()
        .expect("vulnerabilities is an array")
    {
        s(&v["id"], "vulnerability id");
        let ids = v["identifiers"].as_array().expect("identifiers");
        assert!(!ids.is_empty());
        for i in ids {
            for k in ["type", "name", "value"] {
                s(&i[k], &format!("identifier {k}"));
            }
            if let Some(u) = i.get("url") {
                assert!(s(u, "identifier url").starts_with("http"));
            }
        }
        let loc = &v["location"];
        assert!(loc["dependency"]["package"]["name"].is_string(), "{loc}");
        assert!(loc["dependency"]["version"].is_string(), "{loc}");
        s(&loc["operating_system"], "operating_system");
        s(&loc["image"], "image");
        if let Some(sev) = v.get("severity") {
            assert!(
                ["Info", "Unknown", "Low", "Medium", "High", "Critical"]
                    .contains(&sev.as_str().unwrap())
            );
        }
        for l in v["links"].as_array().into_iter().flatten() {
            assert!(s(&l["url"], "link url").starts_with("http"));
        }
    }
}

#[test]
fn an_index_is_gated_per_platform() {
    let dir = tempfile::tempdir().unwrap();
    let repo = unique("gate-index");
    common::create_repository(&repo, false);
    let l = Layout::new(&dir.path().join("oci"));
    let seed = fresh_seed();
    let amd = l.image(&[l.layer(1000, seed)], "amd64");
    let arm = l.image(&[l.layer(1000, seed + 1)], "arm64");
    // buildx's provenance: an attestation manifest after the images,
    // platform unknown/unknown and marked by annotation (moby/buildkit
    // docs/attestations/attestation-storage.md). It is no image to scan.
    let att = l.image_with_config(json!({"architecture": "unknown", "os": "unknown"}), &[]);
    let mut att_entry = att.json();
    att_entry["platform"] = json!({"os": "unknown", "architecture": "unknown"});
    att_entry["annotations"] = json!({
        "vnd.docker.reference.type": "attestation-manifest",
        "vnd.docker.reference.digest": amd.digest,
    });
    let mut entries: Vec<Value> = [(&amd, "amd64"), (&arm, "arm64")]
        .iter()
        .map(|(d, arch)| {
            let mut j = d.json();
            j["platform"] = json!({"os": "linux", "architecture": arch});
            j
        })
        .collect();
    entries.push(att_entry);
    let index = l.blob(
        "application/vnd.oci.image.index.v1+json",
        &serde_json::to_vec(&json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.index.v1+json",
            "manifests": entries,
        }))
        .unwrap(),
    );
    l.write_index(&[(Some("latest"), &index)]);
    let p = common::push(&l.dir, &repo, &[]);
    p.ok();
    assert_eq!(p.json()["digest"], index.digest.as_str());
    // The push lists the platforms, not the attestation (which it pushes).
    assert_eq!(
        p.json()["platforms"],
        json!(["linux/amd64", "linux/arm64"]),
        "{}",
        p.stderr
    );
    let sarif = dir.path().join("gate.sarif");
    let r = gate(
        &format!("{repo}@{}", index.digest),
        &["--sarif", sarif.to_str().unwrap()],
    );
    assert_eq!(r.code, 1, "{}", r.stderr);
    let j = r.json();
    let platforms = j["platforms"].as_array().unwrap();
    assert_eq!(platforms.len(), 2, "{j:#}");
    for (p, (want, arch)) in platforms
        .iter()
        .zip([(&amd, "linux/amd64"), (&arm, "linux/arm64")])
    {
        assert_eq!(p["platform"], arch);
        assert_eq!(p["digest"], want.digest.as_str());
        assert_eq!(p["verdict"], "blocked");
        assert_eq!(p["counts"]["HIGH"], 1);
    }
    assert_eq!(j["counts"]["HIGH"], 2);
    assert_eq!(
        j["skipped"],
        json!([format!("{} (attestation manifest)", att.digest)])
    );
    assert!(
        r.stderr
            .contains(&format!("skipped {} (attestation manifest)", att.digest)),
        "{}",
        r.stderr
    );
    assert!(
        r.stderr.contains("2 platforms (linux/amd64, linux/arm64)"),
        "{}",
        r.stderr
    );
    assert!(
        r.stderr.contains(&format!(
            "linux/arm64 {}: COMPLETE, 1 HIGH → blocked",
            arm.digest
        )),
        "{}",
        r.stderr
    );
    validate_sarif(&sarif);
    let s: Value = serde_json::from_str(&std::fs::read_to_string(&sarif).unwrap()).unwrap();
    assert_eq!(s["runs"][0]["results"].as_array().unwrap().len(), 2);
}

#[test]
fn bad_input_is_refused_before_any_call() {
    let dir = tempfile::tempdir().unwrap();
    let d = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
    let bad = write(dir.path(), "bad.toml", "[[allow]]\nid = \"CVE-1\"\n");
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (
            vec!["gate", "team/app:latest"],
            "does not name an image by digest",
        ),
        (vec!["gate", d], "bare digest"),
        (
            vec![
                "gate",
                "team/app@sha256:1",
                "--severity-threshold",
                "severe",
            ],
            "not a severity",
        ),
        (
            vec!["gate", "x@sha256:1", "--max", "HIGH"],
            "not SEVERITY=COUNT",
        ),
        (
            vec!["gate", "x@sha256:1", "--timeout", "soon"],
            "not a duration",
        ),
    ];
    for (args, want) in cases {
        let r = hoist(&args, &[("AWS_ENDPOINT_URL", "http://127.0.0.1:9")]);
        assert_eq!(r.code, 2, "{args:?}: {}", r.stderr);
        assert!(r.stderr.contains(want), "{args:?}: {}", r.stderr);
    }
    let r = hoist(
        &["gate", &format!("team/app@{d}"), "--allowlist", &bad],
        &[("AWS_ENDPOINT_URL", "http://127.0.0.1:9")],
    );
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(
        r.stderr.contains("entry 1 at line 1 (CVE-1) has no reason"),
        "{}",
        r.stderr
    );
    let r = hoist(
        &["gate", &format!("team/app@{d}"), "--max", "HIGH=1,high=2"],
        &[("AWS_ENDPOINT_URL", "http://127.0.0.1:9")],
    );
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("two limits"), "{}", r.stderr);
}

// --- recorded responses from a local fake ECR endpoint ------------------------

/// Run `hoist gate IMAGE` against `fake` (ECR's JSON API and STS), with
/// quick defaults for the flags `extra` does not give.
fn gate_fake_image(image: &str, fake: Fake, extra: &[&str]) -> (Run, Arc<Mutex<Fake>>) {
    let fake = Arc::new(Mutex::new(fake));
    let (server, endpoint) = fake_ecr::serve(fake.clone());
    let mut args = vec!["gate", image, "--output", "json"];
    for (flag, value) in [
        ("--poll-interval", "20ms"),
        ("--findings-settle", "200ms"),
        ("--timeout", "30s"),
    ] {
        if !extra.contains(&flag) {
            args.extend_from_slice(&[flag, value]);
        }
    }
    args.extend_from_slice(extra);
    let r = hoist(
        &args,
        &[
            ("AWS_ENDPOINT_URL_ECR", &endpoint),
            ("AWS_ENDPOINT_URL_STS", &endpoint),
        ],
    );
    drop(server);
    let invalid = fake.lock().unwrap().invalid.clone();
    assert!(
        invalid.is_empty(),
        "hoist sent requests ECR refuses: {invalid:#?}\n{}",
        r.stderr
    );
    (r, fake)
}

/// `hoist gate team/app@DIGEST` against `fake`.
fn gate_fake(fake: Fake, extra: &[&str]) -> (Run, Arc<Mutex<Fake>>) {
    gate_fake_image(&format!("team/app@{DIGEST}"), fake, extra)
}

/// The image by URI, in `account`'s registry.
fn uri(account: &str) -> String {
    format!("{account}.dkr.ecr.us-east-1.amazonaws.com/team/app@{DIGEST}")
}

fn status(s: &str) -> Answer {
    Answer::Result(
        json!({ "imageScanStatus": { "status": s, "description": format!("recorded {s}") } }),
    )
}

/// COMPLETE as aws/aws-sdk#289 saw it before Inspector filled it in: no
/// findingSeverityCounts, no enhancedFindings, `findings: []`.
fn complete_unfilled() -> Answer {
    Answer::Result(json!({
        "imageScanStatus": { "status": "COMPLETE", "description": "The scan was completed successfully." },
        "imageScanFindings": { "findings": [] }
    }))
}

fn basic(name: &str, sev: &str) -> Value {
    json!({
        "name": name, "severity": sev,
        "uri": format!("https://security-tracker.debian.org/tracker/{name}"),
        "attributes": [
            { "key": "package_name", "value": format!("pkg-{name}") },
            { "key": "package_version", "value": "1.0" }
        ]
    })
}

fn enhanced(id: &str, sev: &str, fixed: &str) -> Value {
    json!({
        "awsAccountId": "123456789012",
        "findingArn": format!("arn:aws:inspector2:us-east-1:123456789012:finding/{id}"),
        "title": format!("{id} - openssl"),
        "description": "recorded enhanced finding",
        "severity": sev,
        "score": 7.5,
        "status": "ACTIVE",
        "type": "PACKAGE_VULNERABILITY",
        "fixAvailable": "YES",
        "exploitAvailable": "NO",
        "firstObservedAt": 1_763_800_000.0,
        "packageVulnerabilityDetails": {
            "vulnerabilityId": id,
            "source": "NVD",
            "sourceUrl": format!("https://nvd.nist.gov/vuln/detail/{id}"),
            "vulnerablePackages": [{ "name": "openssl", "version": "3.0.2", "release": "0ubuntu1", "fixedInVersion": fixed, "packageManager": "OS" }]
        },
        "remediation": { "recommendation": { "text": "upgrade", "url": "https://example.com/fix" } }
    })
}

fn complete(findings_key: &str, findings: Vec<Value>, counts: Value) -> Value {
    json!({
        "imageScanStatus": { "status": "COMPLETE", "description": "The scan was completed successfully." },
        "imageScanFindings": {
            "imageScanCompletedAt": 1_763_800_000.0,
            "vulnerabilitySourceUpdatedAt": 1_763_800_000.0,
            "findingSeverityCounts": counts,
            findings_key: findings
        }
    })
}

#[test]
fn basic_scan_not_found_starts_once_then_reads_the_findings() {
    let fake = Fake::new(
        "BASIC",
        "MANUAL",
        vec![
            Answer::Error("ScanNotFoundException"),
            Answer::Error("ScanNotFoundException"),
            status("IN_PROGRESS"),
            Answer::Result(complete(
                "findings",
                vec![
                    basic("CVE-1", "HIGH"),
                    basic("CVE-2", "LOW"),
                    basic("CVE-3", "CRITICAL"),
                ],
                json!({ "HIGH": 1, "LOW": 1, "CRITICAL": 1 }),
            )),
        ],
    );
    let (r, fake) = gate_fake(fake, &[]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    let f = fake.lock().unwrap();
    assert_eq!(f.starts, 1, "StartImageScan exactly once: {:?}", f.ops());
    let j = r.json();
    assert_eq!(j["scan_type"], "basic");
    assert_eq!(
        j["platforms"][0]["findings"].as_array().unwrap().len(),
        3,
        "{j:#}"
    );
    let blocking: Vec<&str> = j["platforms"][0]["blocking"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["finding"]["id"].as_str().unwrap())
        .collect();
    assert_eq!(blocking, ["CVE-3", "CVE-1"]);
    assert!(
        r.stderr.contains("ECR is scanning the image"),
        "{}",
        r.stderr
    );
}

#[test]
fn start_image_scan_limit_exceeded_is_not_retried() {
    let mut fake = Fake::new(
        "BASIC",
        "MANUAL",
        vec![
            Answer::Error("ScanNotFoundException"),
            Answer::Result(complete(
                "findings",
                vec![basic("CVE-1", "MEDIUM")],
                json!({ "MEDIUM": 1 }),
            )),
        ],
    );
    fake.start = Answer::Error("LimitExceededException");
    let (r, fake) = gate_fake(fake, &[]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(fake.lock().unwrap().starts, 1);
    assert!(
        r.stderr.contains("scanned in the last 24 hours"),
        "{}",
        r.stderr
    );
}

#[test]
fn enhanced_complete_before_findings_are_filled_waits_for_them() {
    let counts = json!({ "HIGH": 1 });
    let fake = Fake::new(
        "ENHANCED",
        "SCAN_ON_PUSH",
        vec![
            Answer::Error("ScanNotFoundException"),
            status("PENDING"),
            // aws/aws-sdk#289: COMPLETE, counts filled, findings not yet.
            Answer::Result(complete("enhancedFindings", vec![], counts.clone())),
            Answer::Result(complete("enhancedFindings", vec![], counts.clone())),
            Answer::Result(complete(
                "enhancedFindings",
                vec![enhanced("CVE-2024-7", "HIGH", "3.0.2-0ubuntu1.18")],
                counts.clone(),
            )),
        ],
    );
    let gl = tempfile::tempdir().unwrap();
    let report = gl.path().join("gl.json");
    let (r, fake) = gate_fake(fake, &["--gitlab-report", report.to_str().unwrap()]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    let f = fake.lock().unwrap();
    assert_eq!(f.starts, 0, "enhanced scanning never calls StartImageScan");
    assert!(f.polls >= 6, "read until two polls agreed: {}", f.polls);
    let j = r.json();
    assert_eq!(j["scan_type"], "enhanced");
    let b = &j["platforms"][0]["blocking"][0]["finding"];
    assert_eq!(b["id"], "CVE-2024-7");
    assert_eq!(b["fixed_version"], "3.0.2-0ubuntu1.18");
    assert_eq!(b["version"], "3.0.2-0ubuntu1");
    assert!(
        r.stderr
            .contains("Amazon Inspector has not registered the image yet"),
        "{}",
        r.stderr
    );
    assert!(
        r.stderr
            .contains("waiting for Amazon Inspector's findings to settle"),
        "{}",
        r.stderr
    );
    assert!(
        r.stderr
            .contains("fixed in 3.0.2-0ubuntu1.18 <https://nvd.nist.gov/vuln/detail/CVE-2024-7>"),
        "{}",
        r.stderr
    );
    let g: Value = serde_json::from_str(&std::fs::read_to_string(&report).unwrap()).unwrap();
    check_gitlab_report(&g);
    assert_eq!(
        g["vulnerabilities"][0]["solution"],
        "Upgrade openssl to 3.0.2-0ubuntu1.18"
    );
}

#[test]
fn enhanced_active_with_no_findings_settles_and_passes() {
    let active = json!({
        "imageScanStatus": { "status": "ACTIVE", "description": "Continuous scan is selected for image." },
        "imageScanFindings": { "findingSeverityCounts": {}, "enhancedFindings": [] }
    });
    let fake = Fake::new("ENHANCED", "CONTINUOUS_SCAN", vec![Answer::Result(active)]);
    let (r, fake) = gate_fake(fake, &[]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(r.json()["verdict"], "passed");
    assert_eq!(r.json()["platforms"][0]["status"], "ACTIVE");
    // The empty result had to hold still for --findings-settle (200 ms).
    let looks = fake.lock().unwrap().times("DescribeImageScanFindings");
    assert!(looks.len() >= 3, "{}", looks.len());
    assert!(looks[looks.len() - 1] - looks[0] >= Duration::from_millis(200));
}

#[test]
fn enhanced_without_a_rule_for_the_repository_explains_how_to_turn_it_on() {
    let fake = Fake::new(
        "ENHANCED",
        "MANUAL",
        vec![Answer::Error("ScanNotFoundException")],
    );
    let (r, fake) = gate_fake(fake, &[]);
    assert_eq!(r.code, 3, "{}", r.stderr);
    assert!(
        r.stderr
            .contains("no scanning rule covers repository 'team/app'"),
        "{}",
        r.stderr
    );
    assert!(
        r.stderr
            .contains("put-registry-scanning-configuration --scan-type ENHANCED"),
        "{}",
        r.stderr
    );
    assert_eq!(fake.lock().unwrap().starts, 0);
}

#[test]
fn every_status_without_findings_is_a_scan_error_with_its_own_message() {
    let cases = [
        ("FAILED", "ECR could not scan the image: recorded FAILED"),
        (
            "UNSUPPORTED_IMAGE",
            "ECR does not support scanning this image",
        ),
        ("SCAN_ELIGIBILITY_EXPIRED", "its scan duration has run out"),
        ("FINDINGS_UNAVAILABLE", "ECR has no findings for this image"),
        ("LIMIT_EXCEEDED", "ECR's scan limit was exceeded"),
        ("IMAGE_ARCHIVED", "the image is archived"),
    ];
    for (st, says) in cases {
        let (r, _) = gate_fake(Fake::new("BASIC", "SCAN_ON_PUSH", vec![status(st)]), &[]);
        assert_eq!(r.code, 3, "{st}: {}", r.stderr);
        assert!(r.stderr.contains(says), "{st}: {}", r.stderr);
        assert!(r.stderr.contains("hint: "), "{st}: {}", r.stderr);
        let j = r.json();
        assert_eq!(j["verdict"], "scan-failed", "{st}");
        assert_eq!(j["platforms"][0]["status"], st);
        // The policy can say warn instead.
        let (r, _) = gate_fake(
            Fake::new("BASIC", "SCAN_ON_PUSH", vec![status(st)]),
            &["--fail-on-scan-error=false"],
        );
        assert_eq!(r.code, 0, "{st}: {}", r.stderr);
        assert_eq!(r.json()["verdict"], "warned");
        assert!(
            r.stderr.contains("warning: no scan result"),
            "{st}: {}",
            r.stderr
        );
    }
}

#[test]
fn a_scan_that_never_finishes_times_out_with_exit_3() {
    let fake = Fake::new("BASIC", "SCAN_ON_PUSH", vec![status("IN_PROGRESS")]);
    let started = std::time::Instant::now();
    let (r, fake) = gate_fake(fake, &["--timeout", "1s"]);
    assert!(started.elapsed() < std::time::Duration::from_secs(10));
    assert_eq!(r.code, 3, "{}", r.stderr);
    assert!(
        r.stderr.contains("no final scan result within --timeout"),
        "{}",
        r.stderr
    );
    assert!(
        r.stderr.contains("ECR is scanning the image"),
        "{}",
        r.stderr
    );
    // Polled with backoff, not in a tight loop.
    let polls = fake.lock().unwrap().polls;
    assert!((3..40).contains(&polls), "{polls} polls in 1 s");
}

#[test]
fn without_permission_to_read_the_configuration_enhanced_is_told_by_the_findings() {
    let counts = json!({ "MEDIUM": 1 });
    let done = complete(
        "enhancedFindings",
        vec![enhanced("CVE-2024-8", "MEDIUM", "NotAvailable")],
        counts,
    );
    let fake = Fake::new("ENHANCED", "CONTINUOUS_SCAN", vec![Answer::Result(done)]).denied();
    let (r, fake) = gate_fake(fake, &[]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(
        r.stderr.contains(
            "the scan type is unknown: no permission to read the registry's scanning configuration (ecr:GetRegistryScanningConfiguration)"
        ),
        "{}",
        r.stderr
    );
    let j = r.json();
    assert_eq!(j["scan_type"], "enhanced");
    assert_eq!(j["platforms"][0]["findings"][0]["id"], "CVE-2024-8");
    assert!(
        j["platforms"][0]["findings"][0]
            .get("fixed_version")
            .is_none()
    );
    // Enhanced findings are settled before they count: two agreeing polls.
    let f = fake.lock().unwrap();
    assert!(f.polls >= 2);
    // The image named without an account is in the caller's registry: no
    // need to ask STS who the caller is.
    assert!(!f.ops().contains(&"sts:GetCallerIdentity"), "{:?}", f.ops());
}

/// aws/aws-sdk#289: COMPLETE with no findingSeverityCounts and no
/// enhancedFindings. When hoist cannot tell basic from enhanced scanning
/// (the configuration may not be read), that is not a clean scan until it
/// held still for --findings-settle.
#[test]
fn an_unfilled_complete_of_unknown_scan_type_passes_only_once_it_held_still() {
    let fake = Fake::new("ENHANCED", "CONTINUOUS_SCAN", vec![complete_unfilled()]).denied();
    let (r, fake) = gate_fake(fake, &["--findings-settle", "1s"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let j = r.json();
    assert_eq!(j["verdict"], "passed");
    assert_eq!(j["scan_type"], "unknown");
    assert!(
        r.stderr
            .contains("waiting for an empty result (the scan type is unknown"),
        "{}",
        r.stderr
    );
    // Not before the same empty answer had held for the whole second.
    let looks = fake.lock().unwrap().times("DescribeImageScanFindings");
    assert!(looks.len() >= 3, "{}", looks.len());
    assert!(
        looks[looks.len() - 1] - looks[0] >= Duration::from_secs(1),
        "passed {:?} after the first look",
        looks[looks.len() - 1] - looks[0]
    );
}

/// The same unfilled answers for an image in another account's registry,
/// until Inspector's findings arrive: they block. The caller's own registry
/// is BASIC — what a gate that trusted GetRegistryScanningConfiguration
/// would have taken as the image's scan type, passing the empty COMPLETE
/// at once (and starting a basic scan on the way).
#[test]
fn another_accounts_image_gets_no_scan_start_and_its_findings_are_waited_for() {
    let counts = json!({ "HIGH": 1 });
    let fake = Fake::new(
        "ENHANCED",
        "CONTINUOUS_SCAN",
        vec![
            Answer::Error("ScanNotFoundException"),
            complete_unfilled(),
            complete_unfilled(),
            Answer::Result(complete(
                "enhancedFindings",
                vec![enhanced("CVE-2024-9", "HIGH", "3.0.2-0ubuntu1.19")],
                counts,
            )),
        ],
    )
    .elsewhere("BASIC");
    let (r, fake) = gate_fake_image(&uri(ELSEWHERE), fake, &["--findings-settle", "5s"]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    let j = r.json();
    assert_eq!(j["verdict"], "blocked");
    assert_eq!(
        j["platforms"][0]["blocking"][0]["finding"]["id"],
        "CVE-2024-9"
    );
    assert!(
        r.stderr.contains(&format!(
            "the scan type is unknown: the image is in account {ELSEWHERE}'s registry, and the scanning configuration hoist can read is its own account's ({CALLER})"
        )),
        "{}",
        r.stderr
    );
    assert!(
        r.stderr.contains(
            "hoist starts none in a registry whose scanning configuration it cannot read"
        ),
        "{}",
        r.stderr
    );
    let f = fake.lock().unwrap();
    assert_eq!(f.starts, 0, "{:?}", f.ops());
    assert!(!f.ops().contains(&"StartImageScan"));
    // Every image call named the image's registry (the fake answers
    // RepositoryNotFoundException otherwise).
    for c in f
        .calls
        .iter()
        .filter(|c| ["BatchGetImage", "DescribeImageScanFindings"].contains(&c.op.as_str()))
    {
        assert_eq!(c.body["registryId"], ELSEWHERE, "{}", c.op);
    }
}

#[test]
fn another_accounts_image_that_is_never_scanned_times_out_saying_who_can_scan_it() {
    let fake = Fake::new(
        "BASIC",
        "MANUAL",
        vec![Answer::Error("ScanNotFoundException")],
    )
    .elsewhere("BASIC");
    let (r, fake) = gate_fake_image(&uri(ELSEWHERE), fake, &["--timeout", "1s"]);
    assert_eq!(r.code, 3, "{}", r.stderr);
    assert!(
        r.stderr
            .contains("no final scan result within --timeout 1s"),
        "{}",
        r.stderr
    );
    assert!(
        r.stderr
            .contains("hoist starts none in another account's registry")
            && r.stderr
                .contains("aws ecr start-image-scan --registry-id ACCOUNT"),
        "{}",
        r.stderr
    );
    assert_eq!(fake.lock().unwrap().starts, 0);
}

/// Without permission to read the configuration, an image URI naming an
/// account is compared with the caller's own account (STS
/// GetCallerIdentity, which needs no permission): in the caller's registry
/// a basic scan may be started, in another's it may not.
#[test]
fn without_the_configuration_sts_tells_whose_registry_the_image_is_in() {
    let script = || {
        vec![
            Answer::Error("ScanNotFoundException"),
            Answer::Result(complete(
                "findings",
                vec![basic("CVE-5", "LOW")],
                json!({ "LOW": 1 }),
            )),
        ]
    };
    let own = Fake::new("BASIC", "MANUAL", script()).denied();
    let (r, fake) = gate_fake_image(&uri(CALLER), own, &[]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let f = fake.lock().unwrap();
    assert!(f.ops().contains(&"sts:GetCallerIdentity"), "{:?}", f.ops());
    assert_eq!(f.starts, 1, "{:?}", f.ops());
    drop(f);

    let other = Fake::new("BASIC", "MANUAL", script())
        .denied()
        .elsewhere("BASIC");
    let (r, fake) = gate_fake_image(&uri(ELSEWHERE), other, &[]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let f = fake.lock().unwrap();
    assert!(f.ops().contains(&"sts:GetCallerIdentity"), "{:?}", f.ops());
    assert_eq!(f.starts, 0, "{:?}", f.ops());
    assert!(
        r.stderr
            .contains(&format!("the image is in account {ELSEWHERE}'s registry")),
        "{}",
        r.stderr
    );
}

/// ECR refuses StartImageScan on a registry with enhanced scanning
/// (ValidationException "This feature is disabled"). hoist never asks when
/// it knows the registry is enhanced; when it could not know, the refusal
/// tells it, and it waits for Inspector's scan — within --timeout.
#[test]
fn start_image_scan_refused_on_an_enhanced_registry() {
    // Known enhanced: no StartImageScan at all.
    let fake = Fake::new(
        "ENHANCED",
        "SCAN_ON_PUSH",
        vec![
            Answer::Error("ScanNotFoundException"),
            Answer::Result(complete(
                "enhancedFindings",
                vec![enhanced("CVE-2024-10", "LOW", "1.1")],
                json!({ "LOW": 1 }),
            )),
        ],
    );
    let (r, fake) = gate_fake(fake, &[]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(fake.lock().unwrap().starts, 0);

    // Neither configuration readable: hoist asks, ECR refuses, hoist waits
    // for Inspector and gates on its findings.
    let script = vec![
        Answer::Error("ScanNotFoundException"),
        Answer::Error("ScanNotFoundException"),
        Answer::Result(complete(
            "enhancedFindings",
            vec![enhanced("CVE-2024-11", "CRITICAL", "2.0")],
            json!({ "CRITICAL": 1 }),
        )),
    ];
    let fake = Fake::new("ENHANCED", "DENIED", script).denied();
    let (r, fake) = gate_fake(fake, &[]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(
        r.stderr.contains(
            "ECR refused StartImageScan (ValidationException: This feature is disabled) as it does on registries with enhanced scanning"
        ),
        "{}",
        r.stderr
    );
    let j = r.json();
    assert_eq!(j["scan_type"], "enhanced");
    assert_eq!(
        j["platforms"][0]["blocking"][0]["finding"]["id"],
        "CVE-2024-11"
    );
    let f = fake.lock().unwrap();
    assert_eq!(f.starts, 1, "asked once, never again: {:?}", f.ops());
    drop(f);

    // And when Inspector never comes: a bounded, clear failure.
    let fake = Fake::new(
        "ENHANCED",
        "DENIED",
        vec![Answer::Error("ScanNotFoundException")],
    )
    .denied();
    let (r, fake) = gate_fake(fake, &["--timeout", "1s"]);
    assert_eq!(r.code, 3, "{}", r.stderr);
    assert!(
        r.stderr.contains("no final scan result within --timeout 1s: Amazon Inspector has not registered the image yet"),
        "{}",
        r.stderr
    );
    assert_eq!(fake.lock().unwrap().starts, 1);
    assert_eq!(r.json()["verdict"], "scan-failed");
}

/// boto3#3449: enhanced findings come 100 to a page whatever maxResults
/// says; basic findings honour it (hoist asks for 1000).
#[test]
fn every_page_is_read_enhanced_by_100_basic_by_max_results() {
    let mut findings: Vec<Value> = (0..3)
        .map(|i| enhanced(&format!("CVE-2025-{i}"), "CRITICAL", "9"))
        .collect();
    findings.extend((3..250).map(|i| enhanced(&format!("CVE-2025-{i}"), "LOW", "9")));
    let active = json!({
        "imageScanStatus": { "status": "ACTIVE", "description": "Continuous scan is selected for image." },
        "imageScanFindings": {
            "findingSeverityCounts": { "CRITICAL": 3, "LOW": 247 },
            "enhancedFindings": findings
        }
    });
    let fake = Fake::new("ENHANCED", "CONTINUOUS_SCAN", vec![Answer::Result(active)]);
    let (r, fake) = gate_fake(fake, &[]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    let j = r.json();
    assert_eq!(j["platforms"][0]["findings"].as_array().unwrap().len(), 250);
    assert_eq!(j["counts"]["CRITICAL"], 3);
    assert_eq!(j["counts"]["LOW"], 247);
    assert_eq!(j["blocking"], 3);
    let f = fake.lock().unwrap();
    let describes: Vec<&fake_ecr::Call> = f
        .calls
        .iter()
        .filter(|c| c.op == "DescribeImageScanFindings")
        .collect();
    // Each poll read three pages (two agreeing polls settle it).
    assert_eq!(describes.len(), 3 * f.polls, "{} polls", f.polls);
    assert!(describes.iter().all(|c| c.body["maxResults"] == 1000));
    drop(f);

    let many: Vec<Value> = (0..1050)
        .map(|i| basic(&format!("CVE-2026-{i}"), "LOW"))
        .collect();
    let fake = Fake::new(
        "BASIC",
        "SCAN_ON_PUSH",
        vec![Answer::Result(complete(
            "findings",
            many,
            json!({ "LOW": 1050 }),
        ))],
    );
    let (r, fake) = gate_fake(fake, &[]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(r.json()["counts"]["LOW"], 1050);
    assert_eq!(
        fake.lock()
            .unwrap()
            .times("DescribeImageScanFindings")
            .len(),
        2
    );
}

/// issue 13: no idle waits. The first look is at once, and so is the first
/// look after StartImageScan (a whole --poll-interval of 5 s before it would
/// show as a gap of 5 s between the two requests); later looks back off.
#[test]
fn the_gate_looks_at_once_and_again_right_after_start_image_scan() {
    let fake = Fake::new(
        "BASIC",
        "MANUAL",
        vec![
            Answer::Error("ScanNotFoundException"),
            Answer::Result(complete(
                "findings",
                vec![basic("CVE-6", "LOW")],
                json!({ "LOW": 1 }),
            )),
        ],
    );
    let (r, fake) = gate_fake(fake, &["--poll-interval", "5s"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let f = fake.lock().unwrap();
    let scan_calls: Vec<&str> = f
        .ops()
        .into_iter()
        .filter(|o| ["DescribeImageScanFindings", "StartImageScan"].contains(o))
        .collect();
    assert_eq!(
        scan_calls,
        [
            "DescribeImageScanFindings",
            "StartImageScan",
            "DescribeImageScanFindings"
        ]
    );
    let half = Duration::from_millis(2500);
    let first = f.calls[0].at;
    let looks = f.times("DescribeImageScanFindings");
    let start = f.times("StartImageScan")[0];
    assert!(
        looks[0] - first < half,
        "first look {:?} after the first call",
        looks[0] - first
    );
    assert!(
        looks[1] - start < half,
        "the look after StartImageScan came {:?} after it",
        looks[1] - start
    );
    drop(f);

    // Scan on push: the push's own scan is looked at first, then waited
    // for with growing pauses (each at least the one before it).
    let fake = Fake::new(
        "BASIC",
        "SCAN_ON_PUSH",
        vec![
            status("IN_PROGRESS"),
            status("IN_PROGRESS"),
            status("IN_PROGRESS"),
            Answer::Result(complete("findings", vec![], json!({}))),
        ],
    );
    let (r, fake) = gate_fake(fake, &["--poll-interval", "200ms"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let f = fake.lock().unwrap();
    assert_eq!(f.starts, 0);
    let looks = f.times("DescribeImageScanFindings");
    assert_eq!(looks.len(), 4);
    for (n, want_ms) in [(1, 200), (2, 300), (3, 450)] {
        let gap = looks[n] - looks[n - 1];
        assert!(gap >= Duration::from_millis(want_ms), "pause {n}: {gap:?}");
    }
}

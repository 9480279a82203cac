//! `hoist gate`: against moto (real ECR API emulation: StartImageScan, then
//! one HIGH finding CVE-9999-9999) for images pushed with hoist itself, and —
//! for what moto does not emulate (statuses, enhanced findings, pages) —
//! against a local fake ECR endpoint answering recorded
//! DescribeImageScanFindings responses (field names from botocore's
//! ecr/2015-09-21 service model).

mod common;

use std::path::Path;
use std::sync::{Arc, Mutex};

use common::fixtures::{Layout, fresh_seed};
use common::{Run, hoist, local, unique};
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
    let index = l.index(&[(amd.clone(), "amd64"), (arm.clone(), "arm64")]);
    l.write_index(&[(Some("latest"), &index)]);
    let p = common::push(&l.dir, &repo, &[]);
    p.ok();
    assert_eq!(p.json()["digest"], index.digest.as_str());
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
        r.stderr.contains("entry 1 (CVE-1) has no reason"),
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

const DIGEST: &str = "sha256:5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a";

/// What the fake ECR answers. `describe` is a script: each poll without a
/// nextToken moves to the next entry (the last repeats); an entry is the
/// list of pages of one DescribeImageScanFindings answer, or an error.
struct Fake {
    scan_type: &'static str,
    frequency: &'static str,
    describe: Vec<Answer>,
    start: Answer,
    // What happened.
    polls: usize,
    starts: usize,
    calls: Vec<String>,
}

#[derive(Clone)]
enum Answer {
    Pages(Vec<Value>),
    Error(&'static str),
}

fn error(kind: &str) -> (u16, String) {
    (
        400,
        json!({ "__type": kind, "message": format!("recorded {kind}") }).to_string(),
    )
}

impl Fake {
    fn new(scan_type: &'static str, frequency: &'static str, describe: Vec<Answer>) -> Fake {
        Fake {
            scan_type,
            frequency,
            describe,
            start: Answer::Pages(vec![
                json!({ "imageScanStatus": { "status": "IN_PROGRESS" } }),
            ]),
            polls: 0,
            starts: 0,
            calls: vec![],
        }
    }

    fn answer(&mut self, target: &str, body: &Value) -> (u16, String) {
        self.calls.push(target.to_string());
        match target {
            "GetRegistryScanningConfiguration" if self.scan_type == "DENIED" => {
                (400, json!({ "__type": "AccessDeniedException", "message": "recorded denial" }).to_string())
            }
            "GetRegistryScanningConfiguration" => (200, json!({
                "registryId": "123456789012",
                "scanningConfiguration": { "scanType": self.scan_type, "rules": [] }
            }).to_string()),
            "BatchGetRepositoryScanningConfiguration" => (200, json!({
                "scanningConfigurations": [{
                    "repositoryName": "team/app",
                    "scanOnPush": self.frequency == "SCAN_ON_PUSH",
                    "scanFrequency": self.frequency,
                    "appliedScanFilters": []
                }],
                "failures": []
            }).to_string()),
            "BatchGetImage" => (200, json!({
                "images": [{
                    "registryId": "123456789012",
                    "repositoryName": "team/app",
                    "imageId": { "imageDigest": DIGEST },
                    "imageManifest": json!({ "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json" }).to_string(),
                    "imageManifestMediaType": "application/vnd.oci.image.manifest.v1+json"
                }],
                "failures": []
            }).to_string()),
            "StartImageScan" => {
                self.starts += 1;
                match &self.start {
                    Answer::Error(e) => error(e),
                    Answer::Pages(p) => (200, p[0].to_string()),
                }
            }
            "DescribeImageScanFindings" => {
                assert_eq!(body["imageId"]["imageDigest"], DIGEST);
                let page = body["nextToken"]
                    .as_str()
                    .map(|t| t.trim_start_matches("page-").parse::<usize>().unwrap())
                    .unwrap_or(0);
                if page == 0 {
                    self.polls += 1;
                }
                let i = (self.polls - 1).min(self.describe.len() - 1);
                match &self.describe[i] {
                    Answer::Error(e) => error(e),
                    Answer::Pages(pages) => {
                        let mut v = pages[page].clone();
                        v["registryId"] = json!("123456789012");
                        v["repositoryName"] = json!("team/app");
                        v["imageId"] = json!({ "imageDigest": DIGEST });
                        if page + 1 < pages.len() {
                            v["nextToken"] = json!(format!("page-{}", page + 1));
                        }
                        (200, v.to_string())
                    }
                }
            }
            other => (400, json!({ "__type": "UnknownOperationException", "message": other }).to_string()),
        }
    }
}

/// Serve `fake` as ECR's JSON API and run `hoist gate team/app@DIGEST`
/// against it.
fn gate_fake(fake: Fake, extra: &[&str]) -> (Run, Arc<Mutex<Fake>>) {
    use http_body_util::BodyExt;
    let fake = Arc::new(Mutex::new(fake));
    let state = fake.clone();
    let server = common::server::serve(move |req: hyper::Request<hyper::body::Incoming>| {
        let state = state.clone();
        async move {
            let target = req
                .headers()
                .get("x-amz-target")
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .rsplit('.')
                .next()
                .unwrap_or_default()
                .to_string();
            let body = req
                .into_body()
                .collect()
                .await
                .map_err(std::io::Error::other)?
                .to_bytes();
            let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
            let (status, text) = state.lock().unwrap().answer(&target, &body);
            let mut res = common::server::full(status, &text);
            res.headers_mut().insert(
                "content-type",
                "application/x-amz-json-1.1".parse().unwrap(),
            );
            Ok(res)
        }
    });
    let endpoint = format!("http://{}", server.addr);
    let mut args = vec![
        "gate",
        "team/app@sha256:5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a",
        "--output",
        "json",
        "--poll-interval",
        "20ms",
        "--findings-settle",
        "200ms",
    ];
    if !extra.contains(&"--timeout") {
        args.extend_from_slice(&["--timeout", "30s"]);
    }
    args.extend_from_slice(extra);
    let r = hoist(&args, &[("AWS_ENDPOINT_URL_ECR", &endpoint)]);
    drop(server);
    (r, fake)
}

fn status(s: &str) -> Answer {
    Answer::Pages(vec![
        json!({ "imageScanStatus": { "status": s, "description": format!("recorded {s}") } }),
    ])
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
fn basic_scan_not_found_starts_once_then_reads_every_page() {
    let page1 = complete(
        "findings",
        vec![basic("CVE-1", "HIGH"), basic("CVE-2", "LOW")],
        json!({ "HIGH": 1, "LOW": 1, "CRITICAL": 1 }),
    );
    let mut page2 = complete(
        "findings",
        vec![basic("CVE-3", "CRITICAL")],
        json!({ "HIGH": 1, "LOW": 1, "CRITICAL": 1 }),
    );
    page2.as_object_mut().unwrap().remove("imageScanStatus");
    let fake = Fake::new(
        "BASIC",
        "MANUAL",
        vec![
            Answer::Error("ScanNotFoundException"),
            Answer::Error("ScanNotFoundException"),
            status("IN_PROGRESS"),
            Answer::Pages(vec![page1, page2]),
        ],
    );
    let (r, fake) = gate_fake(fake, &[]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    let f = fake.lock().unwrap();
    assert_eq!(f.starts, 1, "StartImageScan exactly once: {:?}", f.calls);
    let j = r.json();
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
            Answer::Pages(vec![complete(
                "findings",
                vec![basic("CVE-1", "MEDIUM")],
                json!({ "MEDIUM": 1 }),
            )]),
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
            Answer::Pages(vec![complete("enhancedFindings", vec![], counts.clone())]),
            Answer::Pages(vec![complete("enhancedFindings", vec![], counts.clone())]),
            Answer::Pages(vec![complete(
                "enhancedFindings",
                vec![enhanced("CVE-2024-7", "HIGH", "3.0.2-0ubuntu1.18")],
                counts.clone(),
            )]),
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
    let fake = Fake::new(
        "ENHANCED",
        "CONTINUOUS_SCAN",
        vec![Answer::Pages(vec![active])],
    );
    let (r, fake) = gate_fake(fake, &[]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(r.json()["verdict"], "passed");
    assert_eq!(r.json()["platforms"][0]["status"], "ACTIVE");
    // Empty results had to hold still for --findings-settle (200 ms).
    assert!(fake.lock().unwrap().polls >= 3);
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
    let fake = Fake::new("DENIED", "CONTINUOUS_SCAN", vec![Answer::Pages(vec![done])]);
    let (r, fake) = gate_fake(fake, &[]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(
        r.stderr.contains(
            "could not read the registry's scanning configuration (AccessDeniedException)"
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
    assert!(fake.lock().unwrap().polls >= 2);
}

//! The gate stage: wait for ECR's scan of a pushed image and decide whether
//! it may go on. An image index cannot be scanned by ECR
//! (containers-roadmap#1683), so each platform manifest in it is gated on
//! its own and reported per platform.
//!
//! `status.rs` decides what each scan status means, `verdict.rs` what the
//! findings mean (both pure); `ecr.rs` is the edge; `sarif.rs`,
//! `gitlab.rs` and `summary.rs` render the one [`Report`].

pub mod allowlist;
pub mod ecr;
pub mod gitlab;
pub mod sarif;
pub mod settings;
pub mod status;
pub mod summary;
pub mod verdict;

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant, SystemTime};

use serde::Serialize;

use crate::Context;
use crate::error::{ConfigError, Error};
use crate::image::{DOCKER_LIST, Digest, OCI_INDEX};
use crate::registry::reference::ImageRef;
use allowlist::{AllowList, Date, Entry};
use ecr::{ScanApi, Started};
use status::{Frequency, Next, Observation, Refusal, Registry, ScanType, Situation};
use verdict::{Allowed, Blocking, Finding, Policy, Severity};

pub use settings::Settings;

/// Gate `image`: wait (up to the settings' timeout overall) for ECR's scan
/// of it — of each platform, for an index — and judge the findings by the
/// policy.
pub async fn run(ctx: &Context, image: &ImageRef, settings: &Settings) -> Result<Report, Error> {
    gate(ctx, image, settings, Mode::Wait).await
}

/// Whether the gate may act on ECR, or only look.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Start a scan when there is none, wait for it.
    Wait,
    /// `ship --dry-run`: one look at each scan, no StartImageScan, no wait;
    /// no result is a warning, not a failure.
    Look,
}

/// What `ship --dry-run` shows: the scan as it stands, judged by the policy.
pub async fn look(ctx: &Context, image: &ImageRef, settings: &Settings) -> Result<Report, Error> {
    gate(ctx, image, settings, Mode::Look).await
}

async fn gate(
    ctx: &Context,
    image: &ImageRef,
    opts: &Settings,
    mode: Mode,
) -> Result<Report, Error> {
    let started_at = SystemTime::now();
    let clock = Instant::now();
    // A look does not wait, and what it cannot see is a warning.
    let (timeout, fail_on_scan_error) = match mode {
        Mode::Wait => (opts.timeout, opts.fail_on_scan_error),
        Mode::Look => (Duration::ZERO, false),
    };
    let policy = opts.policy.clone();
    let allow = &opts.allow;
    let sdk = ctx.aws().await?;
    let api = ScanApi::new(sdk, image.region(), image.account().map(str::to_string));
    // Independent calls, made at once.
    let digest = image.digest.to_string();
    let (config, frequency, manifest) = tokio::join!(
        api.scan_config(),
        api.frequency(&image.repository),
        api.manifest(&image.repository, &digest)
    );
    let caller = if status::needs_caller(&config, image.account()) {
        ScanApi::caller_account(sdk).await
    } else {
        None
    };
    let known = status::known(&config, image.account(), caller.as_deref());
    // BatchGetRepositoryScanningConfiguration, too, reads only the caller's
    // registry: about another one's repository it says nothing.
    let frequency = if known.registry == Registry::Own {
        frequency
    } else {
        Frequency::Unknown
    };
    if let Some(why) = &known.why {
        tracing::warn!(
            "the scan type is unknown: {why}; an empty scan result must hold still for --findings-settle before it passes{}",
            if known.registry == Registry::Own {
                ""
            } else {
                ", and hoist starts no scan in a registry whose scanning it cannot see"
            }
        );
    }
    let scan_type = known.scan_type;
    let (media_type, body) = match manifest? {
        Ok(m) => m,
        Err(missing) => visible_soon(&api, image, missing).await?,
    };
    let (targets, skipped) = targets(&media_type, &body, &image.digest)?;
    let say = |line: String| {
        if !ctx.quiet {
            eprintln!("{line}");
        }
    };
    say(format!(
        "gate: {image}: {}{}, waiting up to {}",
        scan_type.described(),
        if targets.len() > 1 || targets[0].platform.is_some() {
            format!(
                ", {} platforms ({})",
                targets.len(),
                targets
                    .iter()
                    .filter_map(|t| t.platform.clone())
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        } else {
            String::new()
        },
        crate::duration::show(timeout)
    ));
    let deadline = clock + timeout;
    let waits = targets.iter().map(|t| {
        wait_for_scan(
            &api,
            &image.repository,
            t,
            scan_type,
            frequency,
            known.registry,
            (deadline, timeout),
            opts,
            mode,
            &say,
        )
    });
    let obtained: Vec<Obtained> = futures_util::future::try_join_all(waits).await?;
    let today = Date::today();
    let mut platforms = Vec::new();
    let mut enhanced_seen = false;
    for (t, o) in targets.iter().zip(obtained) {
        platforms.push(match o {
            Obtained::Findings {
                status,
                description,
                findings,
                enhanced,
            } => {
                enhanced_seen |= enhanced;
                let v = verdict::decide(&findings, &policy, &allow, today);
                PlatformReport {
                    platform: t.platform.clone(),
                    digest: t.digest.clone(),
                    status: Some(status),
                    status_description: description,
                    verdict: if v.blocked() {
                        PlatformVerdict::Blocked
                    } else {
                        PlatformVerdict::Passed
                    },
                    error: None,
                    counts: v.counts.clone(),
                    suppressed: v.suppressed,
                    blocking: v.blocking.clone(),
                    allowed: v.allowed.clone(),
                    findings,
                    used: v.used.iter().copied().collect(),
                    expired: v.expired.clone(),
                }
            }
            Obtained::Unavailable {
                status,
                message,
                hint,
            } => PlatformReport {
                platform: t.platform.clone(),
                digest: t.digest.clone(),
                status,
                status_description: None,
                verdict: PlatformVerdict::ScanError,
                error: Some(ScanError { message, hint }),
                counts: BTreeMap::new(),
                suppressed: 0,
                blocking: vec![],
                allowed: vec![],
                findings: vec![],
                used: vec![],
                expired: BTreeMap::new(),
            },
        });
    }
    let scan_type = match scan_type {
        ScanType::Unknown if enhanced_seen => ScanType::Enhanced,
        t => t,
    };
    let mut report = Report::assemble(
        image,
        scan_type,
        policy,
        fail_on_scan_error,
        allow,
        platforms,
        skipped,
        clock.elapsed().as_secs_f64(),
    );
    let finished_at = SystemTime::now();
    if let Some(path) = &opts.sarif {
        write_json(path, "--sarif", &sarif::render(&report))?;
        report.sarif = Some(path.display().to_string());
    }
    if let Some(path) = &opts.gitlab_report {
        write_json(
            path,
            "--gitlab-report",
            &gitlab::render(&report, started_at, finished_at),
        )?;
        report.gitlab_report = Some(path.display().to_string());
    }
    Ok(report)
}

/// An image not (yet) in the ECR API: look again for a few seconds before
/// failing. The registry endpoint and the ECR API are separate front ends,
/// and right after a push the image can take a moment to show up in the API
/// (in the local environment it always does: its glue mirrors pushes into
/// the API emulator asynchronously). A wrong digest costs these seconds.
async fn visible_soon(
    api: &ScanApi,
    image: &ImageRef,
    missing: ConfigError,
) -> Result<(String, String), Error> {
    let give_up = Instant::now() + Duration::from_secs(10);
    let mut pause = Duration::from_millis(100);
    loop {
        if Instant::now() + pause > give_up {
            return Err(missing.into());
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_secs(2));
        if let Ok(m) = api
            .manifest(&image.repository, &image.digest.to_string())
            .await?
        {
            return Ok(m);
        }
    }
}

/// One image ECR can scan: the image itself, or one platform of an index.
#[derive(Debug, Clone, PartialEq)]
pub struct Target {
    pub digest: Digest,
    pub platform: Option<String>,
}

/// What to gate: a single image, or every platform manifest of an index
/// (attestation manifests — platform unknown/unknown — are not images and
/// are skipped, as are nested indexes, which ECR cannot scan either).
pub fn targets(
    media_type: &str,
    body: &str,
    digest: &Digest,
) -> Result<(Vec<Target>, Vec<String>), Error> {
    let is_index = media_type == OCI_INDEX || media_type == DOCKER_LIST;
    if !is_index {
        return Ok((
            vec![Target {
                digest: digest.clone(),
                platform: None,
            }],
            vec![],
        ));
    }
    let v: serde_json::Value = serde_json::from_str(body).map_err(|e| {
        ConfigError::new(format!("the index {digest} in ECR is not JSON")).source(e)
    })?;
    let mut out = Vec::new();
    let mut skipped = Vec::new();
    for m in v["manifests"].as_array().into_iter().flatten() {
        let Some(d) = m["digest"].as_str().and_then(|d| d.parse::<Digest>().ok()) else {
            continue;
        };
        let p = &m["platform"];
        let os = p["os"].as_str().unwrap_or("unknown");
        let arch = p["architecture"].as_str().unwrap_or("unknown");
        let platform = match p["variant"].as_str() {
            Some(var) => format!("{os}/{arch}/{var}"),
            None => format!("{os}/{arch}"),
        };
        let mt = m["mediaType"].as_str().unwrap_or_default();
        let attestation = m["annotations"]["vnd.docker.reference.type"].as_str()
            == Some("attestation-manifest")
            || (os == "unknown" && arch == "unknown");
        if attestation {
            skipped.push(format!("{d} (attestation manifest)"));
        } else if mt == OCI_INDEX || mt == DOCKER_LIST {
            skipped.push(format!("{d} (nested index)"));
        } else {
            out.push(Target {
                digest: d,
                platform: Some(platform),
            });
        }
    }
    if out.is_empty() {
        return Err(ConfigError::new(format!(
            "the index {digest} holds no platform image to gate"
        ))
        .hint("gate the image manifest itself (its digest), or push an index with at least one platform image")
        .into());
    }
    Ok((out, skipped))
}

enum Obtained {
    Findings {
        status: String,
        description: Option<String>,
        findings: Vec<Finding>,
        enhanced: bool,
    },
    Unavailable {
        status: Option<String>,
        message: String,
        hint: String,
    },
}

/// Poll one image's scan until it is final, unavailable, or the deadline.
/// The first look is at once (after the push, the scan may be done
/// already), and so is the first look after StartImageScan; the pauses
/// between later looks grow (status::pause).
#[allow(clippy::too_many_arguments)]
async fn wait_for_scan(
    api: &ScanApi,
    repository: &str,
    t: &Target,
    mut scan_type: ScanType,
    frequency: Frequency,
    registry: Registry,
    (deadline, timeout): (Instant, Duration),
    opts: &Settings,
    mode: Mode,
    say: &(dyn Fn(String) + Sync),
) -> Result<Obtained, Error> {
    let digest = t.digest.to_string();
    let who = t.platform.clone().unwrap_or_else(|| "image".into());
    let began = Instant::now();
    let mut started = false;
    // The result as last seen (status, findings, counts) and since when,
    // while it is COMPLETE/ACTIVE: "held still" is measured from its last
    // change, not from the first COMPLETE.
    type Seen = (
        String,
        Vec<(String, Option<String>, Severity)>,
        Option<u32>,
        bool,
    );
    let mut previous: Option<Seen> = None;
    let mut held_since: Option<Instant> = None;
    let mut seen = false;
    let mut last_message = String::new();
    let mut last_status: Option<String> = None;
    let mut looks = 0u32;
    loop {
        let now = Instant::now();
        let pause = status::pause(looks, opts.poll_interval);
        if !pause.is_zero() {
            tokio::time::sleep(pause.min(deadline.saturating_duration_since(now))).await;
        }
        looks += 1;
        let scan = api.findings(repository, &digest).await?;
        let observation = match &scan {
            None => {
                previous = None;
                held_since = None;
                Observation::NotFound
            }
            Some(s) => {
                seen = true;
                let mut ids: Vec<_> = s
                    .findings
                    .iter()
                    .map(|f| (f.id.clone(), f.package.clone(), f.severity))
                    .collect();
                ids.sort();
                let this: Seen = (s.status.clone(), ids, s.counted, s.enhanced);
                let unchanged = previous.as_ref() == Some(&this);
                if !matches!(s.status.as_str(), "COMPLETE" | "ACTIVE") {
                    held_since = None;
                } else if !unchanged || held_since.is_none() {
                    held_since = Some(Instant::now());
                }
                previous = Some(this);
                last_status = Some(s.status.clone());
                Observation::Status {
                    status: s.status.clone(),
                    description: s.description.clone(),
                    enhanced: s.enhanced || scan_type == ScanType::Enhanced,
                    findings: s.findings.len(),
                    counted: s.counted,
                    unchanged,
                }
            }
        };
        let situation = Situation {
            scan_type,
            frequency,
            registry,
            started,
            waited: began.elapsed(),
            held: held_since.map(|c| c.elapsed()),
            settle: opts.findings_settle,
        };
        let message = match (status::next(&observation, &situation, repository), scan) {
            (Next::Done, Some(s)) => {
                return Ok(Obtained::Findings {
                    status: s.status,
                    description: s.description.map(|d| status::outside(&d)),
                    findings: s.findings,
                    enhanced: s.enhanced || scan_type == ScanType::Enhanced,
                });
            }
            (Next::Unavailable { message, hint }, _) => {
                return Ok(Obtained::Unavailable {
                    status: last_status,
                    message,
                    hint,
                });
            }
            (Next::StartScan, _) if mode == Mode::Look => {
                return Ok(Obtained::Unavailable {
                    status: None,
                    message: "no scan of this image yet (a dry run starts none)".into(),
                    hint: "the real run starts the scan and waits for it".into(),
                });
            }
            (Next::StartScan, _) => {
                started = true;
                let said = match api.start_scan(repository, &digest).await? {
                    Started::Started => {
                        "no scan yet: asked ECR to scan the image (StartImageScan)".to_string()
                    }
                    Started::AlreadyScanned => {
                        "ECR says the image was scanned in the last 24 hours; waiting for that scan"
                            .to_string()
                    }
                    Started::Refused { code, message } => {
                        match status::refused(scan_type, &code, &message) {
                            Refusal::Enhanced(m) => {
                                scan_type = ScanType::Enhanced;
                                m
                            }
                            Refusal::Unavailable { message, hint } => {
                                return Ok(Obtained::Unavailable {
                                    status: None,
                                    message,
                                    hint,
                                });
                            }
                        }
                    }
                };
                // Look again at once: the scan may be quick, and a
                // refusal says the registry scans by itself.
                looks = 0;
                said
            }
            (Next::Wait(m), _) => m,
            // Done always follows a status; should it not, look again.
            (Next::Done, None) => "waiting for ECR to report the scan".to_string(),
        };
        if message != last_message {
            say(format!("gate: {who}: {message}"));
            last_message = message.clone();
        }
        if Instant::now() >= deadline {
            return Ok(Obtained::Unavailable {
                status: last_status,
                message: format!(
                    "no final scan result within --timeout {}: {message}",
                    crate::duration::show(timeout)
                ),
                hint: status::timeout_hint(&situation, seen),
            });
        }
    }
}

fn write_json(path: &Path, flag: &str, v: &serde_json::Value) -> Result<(), ConfigError> {
    let text = serde_json::to_string_pretty(v).map_err(|e| {
        ConfigError::new(format!("could not write {flag} {}", path.display())).source(e)
    })?;
    std::fs::write(path, text + "\n").map_err(|e| {
        ConfigError::new(format!("could not write {flag} {}", path.display())).source(e)
    })
}

/// `90s`, `10m`, `1h`, `500ms`, or plain seconds (`600`, `0.5`).
// --- the report ----------------------------------------------------------

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

impl Report {
    #[allow(clippy::too_many_arguments)]
    pub fn assemble(
        image: &ImageRef,
        scan_type: ScanType,
        policy: Policy,
        fail_on_scan_error: bool,
        allow: &AllowList,
        platforms: Vec<PlatformReport>,
        skipped: Vec<String>,
        seconds: f64,
    ) -> Report {
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
        let allowlist = allow.file.as_ref().map(|file| {
            let mut expired: BTreeMap<usize, Vec<String>> = BTreeMap::new();
            for p in &platforms {
                for (i, m) in &p.expired {
                    let e = expired.entry(*i).or_default();
                    for x in m {
                        if !e.contains(x) {
                            e.push(x.clone());
                        }
                    }
                }
            }
            // An entry is unused when it matched nothing anywhere — valid
            // or expired. Scans that failed saw nothing, so say nothing.
            let scanned = platforms
                .iter()
                .all(|p| p.verdict != PlatformVerdict::ScanError);
            let unused = allow
                .entries
                .iter()
                .enumerate()
                .filter(|(i, _)| {
                    scanned
                        && !expired.contains_key(i)
                        && !platforms.iter().any(|p| p.used.contains(i))
                })
                .map(|(_, e)| e.clone())
                .collect();
            AllowlistReport {
                file: file.clone(),
                entries: allow.entries.len(),
                expired: expired
                    .into_iter()
                    .map(|(i, matched)| ExpiredEntry {
                        entry: allow.entries[i].clone(),
                        matched,
                    })
                    .collect(),
                unused,
            }
        });
        Report {
            image: image.to_string(),
            repository: image.repository.clone(),
            digest: image.digest.clone(),
            verdict,
            scan_type,
            blocking: platforms.iter().map(|p| p.blocking.len()).sum(),
            policy: PolicyReport {
                severity_threshold: policy.threshold,
                max: policy.max,
                fail_on_scan_error,
            },
            counts,
            platforms,
            skipped,
            allowlist,
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

#[cfg(test)]
mod tests {
    use super::*;

    const D: &str = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
    const E: &str = "sha256:1111111111111111111111111111111111111111111111111111111111111111";
    const F: &str = "sha256:2222222222222222222222222222222222222222222222222222222222222222";

    #[test]
    fn an_index_is_gated_per_platform() {
        let d: Digest = D.parse().unwrap();
        let body = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": OCI_INDEX,
            "manifests": [
                { "mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": E, "size": 1,
                  "platform": { "os": "linux", "architecture": "amd64" } },
                { "mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": F, "size": 1,
                  "platform": { "os": "linux", "architecture": "arm64", "variant": "v8" } },
                { "mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": D, "size": 1,
                  "platform": { "os": "unknown", "architecture": "unknown" },
                  "annotations": { "vnd.docker.reference.type": "attestation-manifest" } },
            ]
        })
        .to_string();
        let (t, skipped) = targets(OCI_INDEX, &body, &d).unwrap();
        assert_eq!(t.len(), 2);
        assert_eq!(t[0].platform.as_deref(), Some("linux/amd64"));
        assert_eq!(t[1].platform.as_deref(), Some("linux/arm64/v8"));
        assert_eq!(t[1].digest.to_string(), F);
        assert_eq!(skipped.len(), 1);
        let (t, _) = targets("application/vnd.oci.image.manifest.v1+json", "{}", &d).unwrap();
        assert_eq!(
            t,
            vec![Target {
                digest: d.clone(),
                platform: None
            }]
        );
        let empty = serde_json::json!({ "manifests": [] }).to_string();
        assert!(targets(DOCKER_LIST, &empty, &d).is_err());
    }

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

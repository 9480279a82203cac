//! What to do with what ECR says about a scan, as a pure function: every
//! status ECR has (and ScanNotFoundException) gets its own decision and
//! message. The polling loop in `ecr.rs` only carries it out.

use std::time::Duration;

use serde::Serialize;

/// The registry's kind of scanning (GetRegistryScanningConfiguration).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ScanType {
    Basic,
    /// Amazon Inspector.
    Enhanced,
    /// The configuration could not be read (no permission); decided from
    /// what the findings look like.
    Unknown,
}

impl ScanType {
    pub fn name(self) -> &'static str {
        match self {
            ScanType::Basic => "basic",
            ScanType::Enhanced => "enhanced",
            ScanType::Unknown => "unknown",
        }
    }
}

/// How this repository is scanned (BatchGetRepositoryScanningConfiguration).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Frequency {
    ScanOnPush,
    Continuous,
    /// No rule covers the repository: only StartImageScan (basic) scans it.
    Manual,
    Unknown,
}

/// What one DescribeImageScanFindings poll found.
#[derive(Debug, Clone, PartialEq)]
pub enum Observation {
    /// ScanNotFoundException.
    NotFound,
    Status {
        status: String,
        description: Option<String>,
        /// Enhanced (Inspector) findings: either the registry says so or the
        /// answer carried enhancedFindings.
        enhanced: bool,
        /// Findings read over every page.
        findings: usize,
        /// The sum of findingSeverityCounts.
        counted: u32,
        /// The same findings as the previous poll.
        unchanged: bool,
    },
}

/// Where the wait stands.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Situation {
    pub scan_type: ScanType,
    pub frequency: Frequency,
    /// This run already asked for a scan (StartImageScan: once).
    pub started: bool,
    /// Since gate began waiting for this image.
    pub waited: Duration,
    /// Since COMPLETE/ACTIVE was first seen, if it has been.
    pub complete_for: Option<Duration>,
    /// How long an empty or changing enhanced result must hold still.
    pub settle: Duration,
}

/// A scan on push is registered within seconds of the push; wait this long
/// for it before asking for a scan of our own.
pub const SCAN_ON_PUSH_GRACE: Duration = Duration::from_secs(20);

#[derive(Debug, Clone, PartialEq)]
pub enum Next {
    /// The findings are final: gate on them.
    Done,
    /// Poll again; the message says what we are waiting for.
    Wait(String),
    /// Ask ECR for a scan (basic scanning), then poll.
    StartScan,
    /// No findings will come: a scan error, decided by --fail-on-scan-error.
    Unavailable { message: String, hint: String },
}

fn unavailable(message: impl Into<String>, hint: impl Into<String>) -> Next {
    Next::Unavailable {
        message: message.into(),
        hint: hint.into(),
    }
}

pub fn next(obs: &Observation, s: &Situation, repository: &str) -> Next {
    match obs {
        Observation::NotFound => not_found(s, repository),
        Observation::Status {
            status,
            description,
            enhanced,
            findings,
            counted,
            unchanged,
        } => {
            let said = description
                .as_deref()
                .filter(|d| !d.is_empty())
                .map(|d| format!(": {d}"))
                .unwrap_or_default();
            match status.as_str() {
                "IN_PROGRESS" => Next::Wait(format!("ECR is scanning the image{said}")),
                "PENDING" => Next::Wait(format!("the scan is queued{said}")),
                // ACTIVE: continuous scanning has scanned it and keeps
                // watching — as final as COMPLETE (aws/aws-sdk#288).
                "COMPLETE" | "ACTIVE" if !enhanced => Next::Done,
                "COMPLETE" | "ACTIVE" => settled(s, *findings, *counted, *unchanged),
                "FAILED" => unavailable(
                    format!("ECR could not scan the image{said}"),
                    "re-run later; if it keeps failing, the image may hold something the scanner cannot read (check the description above)",
                ),
                "UNSUPPORTED_IMAGE" => unavailable(
                    format!("ECR does not support scanning this image{said}"),
                    "basic scanning needs an operating system it knows in the image (FROM scratch images have none); enhanced scanning (Amazon Inspector) covers more, including language packages",
                ),
                "SCAN_ELIGIBILITY_EXPIRED" => unavailable(
                    format!(
                        "Amazon Inspector no longer scans this image: its scan duration has run out{said}"
                    ),
                    "push the image again (a new push is scanned), or lengthen the ECR re-scan duration in Amazon Inspector's settings",
                ),
                "FINDINGS_UNAVAILABLE" => unavailable(
                    format!("ECR has no findings for this image{said}"),
                    "the image may have been deleted, archived or never covered by a scan; push it again and re-run",
                ),
                "LIMIT_EXCEEDED" => unavailable(
                    format!("ECR's scan limit was exceeded for this image{said}"),
                    "basic scanning scans an image at most once every 24 hours; re-run after that, or switch the registry to enhanced scanning",
                ),
                "IMAGE_ARCHIVED" => unavailable(
                    format!("the image is archived and ECR does not scan archived images{said}"),
                    "restore it (aws ecr update-image-storage-class --target-storage-class STANDARD) and re-run",
                ),
                other => unavailable(
                    format!("ECR reports scan status {other}, which hoist does not know{said}"),
                    "check the scan in the ECR console; a newer hoist may know this status",
                ),
            }
        }
    }
}

/// ScanNotFoundException: no scan of this image exists (yet).
fn not_found(s: &Situation, repository: &str) -> Next {
    match s.scan_type {
        ScanType::Enhanced if s.frequency == Frequency::Manual => unavailable(
            format!(
                "the registry uses enhanced scanning (Amazon Inspector), but no scanning rule covers repository '{repository}', so the image is never scanned"
            ),
            format!(
                "add the repository to a rule: aws ecr put-registry-scanning-configuration --scan-type ENHANCED --rules '[{{\"scanFrequency\":\"SCAN_ON_PUSH\",\"repositoryFilters\":[{{\"filter\":\"{repository}\",\"filterType\":\"WILDCARD\"}}]}}]' (keep your existing rules in the list)"
            ),
        ),
        // Inspector registers new images on its own, sometimes minutes
        // after the push; StartImageScan is basic-only.
        ScanType::Enhanced => {
            Next::Wait("Amazon Inspector has not registered the image yet".into())
        }
        _ if s.started => Next::Wait("the scan was started; waiting for ECR to report it".into()),
        ScanType::Basic
            if s.frequency == Frequency::ScanOnPush && s.waited < SCAN_ON_PUSH_GRACE =>
        {
            Next::Wait("waiting for the scan on push to begin".into())
        }
        _ => Next::StartScan,
    }
}

/// COMPLETE can come before Inspector has filled in the findings
/// (aws/aws-sdk#289): accept them once two polls agree and they match the
/// severity counts — or, when they are empty or never match, once they have
/// held still for the settle time.
fn settled(s: &Situation, findings: usize, counted: u32, unchanged: bool) -> Next {
    let held = s.complete_for.unwrap_or_default();
    if unchanged && ((findings > 0 && findings as u32 == counted) || held >= s.settle) {
        Next::Done
    } else {
        Next::Wait(format!(
            "the scan is complete; waiting for Amazon Inspector's findings to settle ({findings} read, {counted} counted)"
        ))
    }
}

/// The pause before poll `n` (0-based): `base`, growing by half each time,
/// at most 30 s (or `base`, when that is larger).
pub fn backoff(n: u32, base: Duration) -> Duration {
    let cap = base.max(Duration::from_secs(30));
    let grown = base.as_secs_f64() * 1.5f64.powi(n.min(20) as i32);
    Duration::from_secs_f64(grown).min(cap)
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: Duration = Duration::from_secs(1);

    fn sit(scan_type: ScanType, frequency: Frequency) -> Situation {
        Situation {
            scan_type,
            frequency,
            started: false,
            waited: Duration::ZERO,
            complete_for: None,
            settle: 30 * S,
        }
    }

    fn status(
        s: &str,
        enhanced: bool,
        findings: usize,
        counted: u32,
        unchanged: bool,
    ) -> Observation {
        Observation::Status {
            status: s.into(),
            description: Some("said ECR".into()),
            enhanced,
            findings,
            counted,
            unchanged,
        }
    }

    fn kind(n: &Next) -> &'static str {
        match n {
            Next::Done => "done",
            Next::Wait(_) => "wait",
            Next::StartScan => "start",
            Next::Unavailable { .. } => "unavailable",
        }
    }

    #[test]
    fn every_status_has_its_decision() {
        use Frequency::*;
        use ScanType::*;
        let basic = sit(Basic, Manual);
        let enh = sit(Enhanced, Continuous);
        let cases: Vec<(&str, Observation, Situation, &str, &str)> = vec![
            (
                "in progress",
                status("IN_PROGRESS", false, 0, 0, false),
                basic,
                "wait",
                "scanning",
            ),
            (
                "pending",
                status("PENDING", true, 0, 0, false),
                enh,
                "wait",
                "queued",
            ),
            (
                "basic complete",
                status("COMPLETE", false, 1, 1, false),
                basic,
                "done",
                "",
            ),
            (
                "basic complete, no findings",
                status("COMPLETE", false, 0, 0, false),
                basic,
                "done",
                "",
            ),
            (
                "basic active",
                status("ACTIVE", false, 0, 0, false),
                basic,
                "done",
                "",
            ),
            (
                "failed",
                status("FAILED", false, 0, 0, false),
                basic,
                "unavailable",
                "could not scan the image: said ECR",
            ),
            (
                "unsupported",
                status("UNSUPPORTED_IMAGE", false, 0, 0, false),
                basic,
                "unavailable",
                "does not support scanning",
            ),
            (
                "eligibility expired",
                status("SCAN_ELIGIBILITY_EXPIRED", true, 0, 0, false),
                enh,
                "unavailable",
                "scan duration",
            ),
            (
                "findings unavailable",
                status("FINDINGS_UNAVAILABLE", true, 0, 0, false),
                enh,
                "unavailable",
                "no findings",
            ),
            (
                "limit exceeded",
                status("LIMIT_EXCEEDED", false, 0, 0, false),
                basic,
                "unavailable",
                "limit was exceeded",
            ),
            (
                "archived",
                status("IMAGE_ARCHIVED", false, 0, 0, false),
                basic,
                "unavailable",
                "archived",
            ),
            (
                "a status from the future",
                status("EXPLODED", false, 0, 0, false),
                basic,
                "unavailable",
                "EXPLODED",
            ),
        ];
        for (name, obs, s, want, says) in cases {
            let n = next(&obs, &s, "team/app");
            assert_eq!(kind(&n), want, "{name}: {n:?}");
            let text = match &n {
                Next::Wait(m) => m.clone(),
                Next::Unavailable { message, hint } => {
                    assert!(!hint.is_empty(), "{name}");
                    message.clone()
                }
                _ => String::new(),
            };
            assert!(text.contains(says), "{name}: {text}");
        }
    }

    #[test]
    fn enhanced_findings_must_settle() {
        let mut s = sit(ScanType::Enhanced, Frequency::ScanOnPush);
        let cases = [
            // (findings, counted, unchanged, complete_for, want)
            (0, 3, false, 0, "wait"),  // COMPLETE, nothing filled in yet
            (2, 3, true, 5, "wait"),   // partly filled
            (3, 3, false, 5, "wait"),  // matches, but first sight
            (3, 3, true, 5, "done"),   // matches twice
            (0, 0, true, 5, "wait"),   // empty: might still fill
            (0, 0, true, 30, "done"),  // empty and held still
            (2, 3, true, 31, "done"),  // never matches, but held still
            (2, 2, false, 60, "wait"), // still changing
        ];
        for (findings, counted, unchanged, held, want) in cases {
            s.complete_for = Some(held * S);
            for st in ["COMPLETE", "ACTIVE"] {
                let n = next(&status(st, true, findings, counted, unchanged), &s, "r");
                assert_eq!(
                    kind(&n),
                    want,
                    "{st} {findings}/{counted} {unchanged} {held}s"
                );
            }
        }
    }

    #[test]
    fn scan_not_found() {
        use Frequency::*;
        use ScanType::*;
        let cases = [
            // (type, frequency, started, waited, want)
            (Basic, Manual, false, 0, "start"),
            (Basic, Manual, true, 5, "wait"),
            (Basic, ScanOnPush, false, 5, "wait"),
            (Basic, ScanOnPush, false, 20, "start"),
            (Basic, ScanOnPush, true, 25, "wait"),
            (ScanType::Unknown, Frequency::Unknown, false, 0, "start"),
            (Enhanced, Manual, false, 0, "unavailable"),
            (Enhanced, ScanOnPush, false, 0, "wait"),
            (Enhanced, Continuous, false, 100, "wait"),
        ];
        for (t, f, started, waited, want) in cases {
            let mut s = sit(t, f);
            s.started = started;
            s.waited = waited * S;
            let n = next(&Observation::NotFound, &s, "team/app");
            assert_eq!(
                kind(&n),
                want,
                "{t:?} {f:?} started={started} waited={waited}"
            );
            if let Next::Unavailable { hint, .. } = n {
                assert!(
                    hint.contains("put-registry-scanning-configuration"),
                    "{hint}"
                );
                assert!(hint.contains("team/app"), "{hint}");
            }
        }
    }

    #[test]
    fn backoff_grows_to_a_cap() {
        let b = |n| backoff(n, 2 * S).as_secs_f64();
        assert_eq!(b(0), 2.0);
        assert_eq!(b(1), 3.0);
        assert_eq!(b(2), 4.5);
        assert_eq!(b(30), 30.0);
        assert_eq!(backoff(5, 60 * S), 60 * S);
        assert!(backoff(3, Duration::from_millis(50)) < Duration::from_millis(200));
    }
}

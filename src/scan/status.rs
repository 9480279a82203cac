//! What to do with what ECR says about a scan, as pure functions: how much
//! hoist knows about the image's scanning (its registry, basic or
//! enhanced), every status ECR has (and ScanNotFoundException) with its own
//! decision and message, a refused StartImageScan, and the pauses between
//! looks. The polling loop (`waiter.rs`) only carries them out.

use std::time::Duration;

use serde::Serialize;

/// The registry's kind of scanning (GetRegistryScanningConfiguration).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum ScanType {
    Basic,
    /// Amazon Inspector.
    Enhanced,
    /// Not known: the configuration could not be read (no permission), or
    /// the image is in another account's registry (see [`known`]). Judged
    /// by what the findings look like, and an empty result must settle.
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

    /// As the log and the step summary say it.
    pub fn described(self) -> &'static str {
        match self {
            ScanType::Basic => "basic scanning",
            ScanType::Enhanced => "enhanced scanning",
            ScanType::Unknown => "scan type unknown",
        }
    }
}

/// Whose registry the image is in, next to the identity hoist runs as.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Registry {
    /// The caller's own: what its scanning configuration says holds.
    Own,
    /// Another account's. GetRegistryScanningConfiguration and
    /// BatchGetRepositoryScanningConfiguration take no registry id: they
    /// read the caller's registry only, so they say nothing about this one.
    Other,
    /// Cannot tell: the image URI names an account, and hoist could learn
    /// neither the configuration's registry id nor its own account.
    Unsure,
}

/// What GetRegistryScanningConfiguration answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfigRead {
    Read {
        /// Unknown for a scan type newer than hoist.
        scan_type: ScanType,
        /// The registry the answer is about: always the caller's.
        registry_id: Option<String>,
    },
    /// AccessDeniedException: no ecr:GetRegistryScanningConfiguration.
    Denied,
    /// Any other failure, by its error code.
    Failed(String),
}

/// How much hoist knows about the way the image is scanned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Known {
    pub scan_type: ScanType,
    pub registry: Registry,
    /// Why the scan type is unknown, for the log.
    pub why: Option<String>,
}

/// Whether telling whose registry the image is in needs the caller's own
/// account from elsewhere (STS GetCallerIdentity): the image URI names an
/// account and the configuration's answer did not name its registry.
pub fn needs_caller(config: &ConfigRead, image_account: Option<&str>) -> bool {
    image_account.is_some()
        && !matches!(
            config,
            ConfigRead::Read {
                registry_id: Some(_),
                ..
            }
        )
}

/// What the configuration read says about this image. `image_account` is
/// the account of the image URI (None: the image was named without one, so
/// it is in the caller's default registry); `caller` the caller's account
/// when [`needs_caller`] had it looked up.
pub fn known(config: &ConfigRead, image_account: Option<&str>, caller: Option<&str>) -> Known {
    let own = match config {
        ConfigRead::Read {
            registry_id: Some(r),
            ..
        } => Some(r.as_str()),
        _ => caller,
    };
    let registry = match (image_account, own) {
        (None, _) => Registry::Own,
        (Some(a), Some(o)) if a == o => Registry::Own,
        (Some(_), Some(_)) => Registry::Other,
        (Some(_), None) => Registry::Unsure,
    };
    let unknown = |why: String| Known {
        scan_type: ScanType::Unknown,
        registry,
        why: Some(why),
    };
    match (config, registry) {
        (_, Registry::Other) => unknown(format!(
            "the image is in account {}'s registry, and the scanning configuration hoist can read is its own account's ({})",
            image_account.unwrap_or_default(),
            own.unwrap_or_default()
        )),
        (ConfigRead::Denied, _) => unknown(
            "no permission to read the registry's scanning configuration (ecr:GetRegistryScanningConfiguration)".into(),
        ),
        (ConfigRead::Failed(code), _) => unknown(format!(
            "the registry's scanning configuration could not be read ({code})"
        )),
        (ConfigRead::Read { .. }, Registry::Unsure) => unknown(
            "ECR's scanning configuration named no registry, so hoist cannot tell whether it is the image's".into(),
        ),
        (ConfigRead::Read { scan_type, .. }, _) => match scan_type {
            ScanType::Unknown => unknown("ECR reports a scan type hoist does not know".into()),
            t => Known {
                scan_type: *t,
                registry,
                why: None,
            },
        },
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
        /// answer carried `enhancedFindings`.
        enhanced: bool,
        /// Findings read over every page.
        findings: usize,
        /// The sum of findingSeverityCounts; None when the answer had none
        /// at all (aws/aws-sdk#289).
        counted: Option<u32>,
        /// The same result (findings and counts) as the previous poll.
        unchanged: bool,
    },
}

/// Where the wait stands.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Situation {
    pub scan_type: ScanType,
    pub frequency: Frequency,
    pub registry: Registry,
    /// This run already asked for a scan (StartImageScan: once).
    pub started: bool,
    /// Since gate began waiting for this image.
    pub waited: Duration,
    /// How long this same COMPLETE/ACTIVE result has been seen, unchanged.
    pub held: Option<Duration>,
    /// How long an empty or unmatched result must hold still.
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
    /// Ask ECR for a scan (basic scanning), then look at once.
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

/// Whether a status is a result the gate may judge: COMPLETE, or ACTIVE —
/// continuous scanning has scanned the image and keeps watching it, as
/// final as COMPLETE (aws/aws-sdk#288). Only such a result can hold still;
/// `complete` decides when it has held long enough.
pub fn is_final(status: &str) -> bool {
    matches!(status, "COMPLETE" | "ACTIVE")
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
                .map(|d| format!(": {}", outside(d)))
                .unwrap_or_default();
            if is_final(status) {
                return complete(s, *enhanced, *findings, *counted, *unchanged);
            }
            match status.as_str() {
                "IN_PROGRESS" => Next::Wait(format!("ECR is scanning the image{said}")),
                "PENDING" => Next::Wait(format!("the scan is queued{said}")),
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
                    format!(
                        "ECR reports scan status {}, which hoist does not know{said}",
                        outside(other)
                    ),
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
        // Continuous scanning exists only with enhanced scanning.
        ScanType::Unknown if s.frequency == Frequency::Continuous => Next::Wait(
            "the repository is scanned continuously (enhanced scanning): waiting for Amazon Inspector to register the image".into(),
        ),
        ScanType::Basic | ScanType::Unknown
            if s.frequency == Frequency::ScanOnPush && s.waited < SCAN_ON_PUSH_GRACE =>
        {
            Next::Wait("waiting for the scan on push to begin".into())
        }
        // Starting a basic scan in a registry whose scanning hoist cannot
        // see would be a guess: on an enhanced registry ECR refuses it, and
        // the scan is the registry owner's to configure.
        _ if s.registry != Registry::Own => Next::Wait(
            "no scan of the image yet; hoist starts none in a registry whose scanning configuration it cannot read, so it waits for the registry's own scan (scan on push, or Amazon Inspector)".into(),
        ),
        _ => Next::StartScan,
    }
}

/// COMPLETE or ACTIVE: final for basic scanning; an enhanced result, or one
/// hoist cannot tell from an enhanced one, must settle first.
fn complete(
    s: &Situation,
    enhanced: bool,
    findings: usize,
    counted: Option<u32>,
    unchanged: bool,
) -> Next {
    if enhanced || s.scan_type == ScanType::Enhanced {
        return settled(
            s,
            findings,
            counted.unwrap_or(0),
            unchanged,
            "Amazon Inspector's findings",
        );
    }
    match s.scan_type {
        ScanType::Basic => Next::Done,
        // Only a basic scan lists `findings`, and it is final at COMPLETE.
        _ if findings > 0 => Next::Done,
        // Nothing listed, and nothing says whether this is a clean basic
        // scan or an enhanced result Inspector has not filled in yet
        // (aws/aws-sdk#289: COMPLETE with no findingSeverityCounts and no
        // enhancedFindings): it is believed only once it held still.
        _ => settled(
            s,
            findings,
            counted.unwrap_or(0),
            unchanged,
            "an empty result (the scan type is unknown, and an enhanced scan can be COMPLETE before Amazon Inspector fills it in)",
        ),
    }
}

/// COMPLETE can come before Inspector has filled in the findings
/// (aws/aws-sdk#289): accept them once two polls agree and they match the
/// severity counts — or, when they are empty or never match, once they have
/// held still for the settle time. Counted findings none of which can be
/// read never pass: hoist would be passing a scan it could not see.
fn settled(s: &Situation, findings: usize, counted: u32, unchanged: bool, what: &str) -> Next {
    let held = unchanged && s.held.unwrap_or_default() >= s.settle;
    if held && findings == 0 && counted > 0 {
        return unavailable(
            format!("ECR counts {counted} findings for the image but lists none of them"),
            "re-run later; if it persists, compare aws ecr describe-image-scan-findings with the findings in Amazon Inspector",
        );
    }
    if unchanged && ((findings > 0 && findings as u32 == counted) || held) {
        Next::Done
    } else {
        Next::Wait(format!(
            "the scan is complete; waiting for {what} to settle ({findings} read, {counted} counted)"
        ))
    }
}

/// What a refused StartImageScan means.
#[derive(Debug, Clone, PartialEq)]
pub enum Refusal {
    /// The registry scans with Amazon Inspector: wait for its scan.
    Enhanced(String),
    /// No scan will come.
    Unavailable { message: String, hint: String },
}

/// StartImageScan was refused with `code`. ECR refuses manual scans on a
/// registry with enhanced scanning ("Manual scans using enhanced scanning
/// aren't supported", ECR user guide) with a ValidationException ("This
/// feature is disabled", as alexjurkiewicz/ecr-scan-image#44 saw it; the
/// error joined StartImageScan in the model release that brought enhanced
/// scanning, botocore 2021-11-29). When hoist did not know the scan type,
/// that refusal is what tells it.
pub fn refused(scan_type: ScanType, code: &str, message: &str) -> Refusal {
    let said = format!("{code}: {}", outside(message));
    match code {
        "ValidationException" if scan_type != ScanType::Basic => Refusal::Enhanced(format!(
            "ECR refused StartImageScan ({said}) as it does on registries with enhanced scanning, where only Amazon Inspector scans: waiting for Inspector's scan"
        )),
        "UnsupportedImageTypeException" => Refusal::Unavailable {
            message: format!("ECR refused to scan the image ({said})"),
            hint: "basic scanning needs an image whose operating system ECR knows; enhanced scanning scans on push by itself".into(),
        },
        "ImageArchivedException" => Refusal::Unavailable {
            message: format!("ECR refused to scan the image ({said})"),
            hint: "restore it (aws ecr update-image-storage-class --target-storage-class STANDARD) and re-run".into(),
        },
        _ => Refusal::Unavailable {
            message: format!("ECR refused to scan the image ({said})"),
            hint: "check the registry's scanning configuration (aws ecr get-registry-scanning-configuration) and the repository's (aws ecr batch-get-repository-scanning-configuration)".into(),
        },
    }
}

/// The hint when `--timeout` ran out; `seen` says whether any scan of the
/// image was ever reported.
pub fn timeout_hint(s: &Situation, seen: bool) -> String {
    if !seen && s.registry != Registry::Own && s.scan_type != ScanType::Enhanced {
        let tell = if s.registry == Registry::Unsure {
            "allow ecr:GetRegistryScanningConfiguration (so hoist can tell whose registry it is), or "
        } else {
            ""
        };
        return format!(
            "no scan of the image appeared, and hoist starts none in another account's registry: {tell}have the registry's owner scan it (scan on push or enhanced scanning for the repository, or aws ecr start-image-scan --registry-id ACCOUNT), then re-run hoist gate"
        );
    }
    "re-run hoist gate (it picks up the same scan), or raise --timeout".into()
}

/// The pause before look `n` since the gate began or asked for a scan:
/// none before the first (the scan may be done already), then `base`,
/// growing by half each time, at most 30 s (or `base`, when larger).
pub fn pause(n: u32, base: Duration) -> Duration {
    if n == 0 {
        return Duration::ZERO;
    }
    let cap = base.max(Duration::from_secs(30));
    let grown = base.as_secs_f64() * 1.5f64.powi((n - 1).min(20) as i32);
    Duration::from_secs_f64(grown).min(cap)
}

/// Text from ECR (a status description, an error message) as it may be
/// printed: control characters escaped, at most 300 characters.
pub fn outside(text: &str) -> String {
    let mut out = String::new();
    for (i, c) in text.chars().enumerate() {
        if i == 300 {
            out.push('…');
            break;
        }
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: Duration = Duration::from_secs(1);

    fn sit(scan_type: ScanType, frequency: Frequency) -> Situation {
        Situation {
            scan_type,
            frequency,
            registry: Registry::Own,
            started: false,
            waited: Duration::ZERO,
            held: None,
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
            counted: Some(counted),
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
            // (findings, counted, unchanged, held, want)
            (0, 3, false, 0, "wait"),  // COMPLETE, nothing filled in yet
            (2, 3, true, 5, "wait"),   // partly filled
            (3, 3, false, 5, "wait"),  // matches, but first sight
            (3, 3, true, 5, "done"),   // matches twice
            (0, 0, true, 5, "wait"),   // empty: might still fill
            (0, 0, true, 30, "done"),  // empty and held still
            (2, 3, true, 31, "done"),  // never matches, but held still
            (2, 2, false, 60, "wait"), // still changing
            (0, 3, true, 30, "unavailable"), // counted, never listed: not seen
        ];
        for (findings, counted, unchanged, held, want) in cases {
            s.held = Some(held * S);
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
            (ScanType::Unknown, ScanOnPush, false, 5, "wait"),
            (ScanType::Unknown, ScanOnPush, false, 20, "start"),
            (ScanType::Unknown, Continuous, false, 100, "wait"),
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
    fn what_the_configuration_read_tells() {
        use Registry::*;
        let read = |t: ScanType, id: Option<&str>| ConfigRead::Read {
            scan_type: t,
            registry_id: id.map(str::to_string),
        };
        let me = Some("123456789012");
        let them = Some("111122223333");
        type Case<'a> = (
            &'a str,
            ConfigRead,
            Option<&'a str>,
            Option<&'a str>,
            bool,
            ScanType,
            Registry,
            &'a str,
        );
        let cases: Vec<Case> = vec![
            // (name, config, image account, caller, needs caller, type, registry, why says)
            (
                "own, by name",
                read(ScanType::Basic, me),
                None,
                None,
                false,
                ScanType::Basic,
                Own,
                "",
            ),
            (
                "own, by URI",
                read(ScanType::Enhanced, me),
                me,
                None,
                false,
                ScanType::Enhanced,
                Own,
                "",
            ),
            (
                "another account",
                read(ScanType::Enhanced, me),
                them,
                None,
                false,
                ScanType::Unknown,
                Other,
                "account 111122223333's registry",
            ),
            (
                "another account, basic here",
                read(ScanType::Basic, me),
                them,
                None,
                false,
                ScanType::Unknown,
                Other,
                "its own account's (123456789012)",
            ),
            (
                "denied, by name",
                ConfigRead::Denied,
                None,
                None,
                false,
                ScanType::Unknown,
                Own,
                "ecr:GetRegistryScanningConfiguration",
            ),
            (
                "denied, URI of the caller",
                ConfigRead::Denied,
                me,
                me,
                true,
                ScanType::Unknown,
                Own,
                "no permission",
            ),
            (
                "denied, URI of another",
                ConfigRead::Denied,
                them,
                me,
                true,
                ScanType::Unknown,
                Other,
                "account 111122223333",
            ),
            (
                "denied, caller unknown",
                ConfigRead::Denied,
                them,
                None,
                true,
                ScanType::Unknown,
                Unsure,
                "no permission",
            ),
            (
                "failed",
                ConfigRead::Failed("ServerException".into()),
                None,
                None,
                false,
                ScanType::Unknown,
                Own,
                "(ServerException)",
            ),
            (
                "no registry id in the answer",
                read(ScanType::Basic, None),
                them,
                None,
                true,
                ScanType::Unknown,
                Unsure,
                "named no registry",
            ),
            (
                "no registry id, caller known",
                read(ScanType::Basic, None),
                me,
                me,
                true,
                ScanType::Basic,
                Own,
                "",
            ),
            (
                "a scan type from the future",
                read(ScanType::Unknown, me),
                None,
                None,
                false,
                ScanType::Unknown,
                Own,
                "does not know",
            ),
        ];
        for (name, config, account, caller, needs, t, r, why) in cases {
            assert_eq!(needs_caller(&config, account), needs, "{name}");
            let k = known(&config, account, caller);
            assert_eq!((k.scan_type, k.registry), (t, r), "{name}");
            assert_eq!(k.why.is_some(), t == ScanType::Unknown, "{name}");
            assert!(k.why.unwrap_or_default().contains(why), "{name}");
        }
    }

    #[test]
    fn an_empty_complete_result_of_unknown_type_must_settle() {
        let mut s = sit(ScanType::Unknown, Frequency::Unknown);
        let obs = |findings, counted: Option<u32>, enhanced, unchanged| Observation::Status {
            status: "COMPLETE".into(),
            description: None,
            enhanced,
            findings,
            counted,
            unchanged,
        };
        let cases = [
            // (findings, counted, enhanced, unchanged, held, want)
            // aws/aws-sdk#289: no counts, no enhancedFindings.
            (0, None, false, false, None, "wait"),
            (0, None, false, true, Some(5), "wait"),
            (0, None, false, true, Some(30), "done"),
            (0, None, false, false, Some(60), "wait"), // it changed: held anew
            // Counts without findings: not filled in; never passes unseen.
            (0, Some(2), false, true, Some(5), "wait"),
            (0, Some(2), false, true, Some(30), "unavailable"),
            // An empty count: still could be either kind, so it settles too.
            (0, Some(0), false, true, Some(5), "wait"),
            (0, Some(0), false, true, Some(30), "done"),
            // Basic findings: only a basic scan lists them; final.
            (2, Some(2), false, false, None, "done"),
            (2, None, false, false, None, "done"),
            // Enhanced findings: the enhanced rules.
            (1, Some(2), true, true, Some(5), "wait"),
            (2, Some(2), true, true, Some(1), "done"),
        ];
        for (findings, counted, enhanced, unchanged, held, want) in cases {
            s.held = held.map(|h| h * S);
            let n = next(&obs(findings, counted, enhanced, unchanged), &s, "r");
            assert_eq!(
                kind(&n),
                want,
                "{findings} {counted:?} enhanced={enhanced} unchanged={unchanged} held={held:?}: {n:?}"
            );
            if let (Next::Wait(m), false) = (&n, enhanced) {
                assert!(m.contains("scan type is unknown"), "{m}");
            }
        }
        // Known basic: the same empty answer is a clean scan at once.
        let basic = sit(ScanType::Basic, Frequency::Manual);
        assert_eq!(next(&obs(0, None, false, false), &basic, "r"), Next::Done);
    }

    #[test]
    fn no_scan_is_started_in_a_registry_hoist_cannot_see() {
        use Registry::*;
        let cases = [
            // (type, registry, started, want)
            (ScanType::Basic, Own, false, "start"),
            (ScanType::Unknown, Own, false, "start"),
            (ScanType::Unknown, Other, false, "wait"),
            (ScanType::Unknown, Unsure, false, "wait"),
            (ScanType::Unknown, Other, true, "wait"),
            (ScanType::Enhanced, Own, false, "wait"),
        ];
        for (t, r, started, want) in cases {
            let mut s = sit(t, Frequency::Unknown);
            s.registry = r;
            s.started = started;
            let n = next(&Observation::NotFound, &s, "team/app");
            assert_eq!(kind(&n), want, "{t:?} {r:?} started={started}");
        }
        // Its timeout says why and who can fix it.
        let mut s = sit(ScanType::Unknown, Frequency::Unknown);
        s.registry = Other;
        assert!(timeout_hint(&s, false).contains("start-image-scan --registry-id"));
        assert!(!timeout_hint(&s, false).contains("GetRegistryScanningConfiguration"));
        s.registry = Unsure;
        assert!(timeout_hint(&s, false).contains("ecr:GetRegistryScanningConfiguration"));
        assert!(timeout_hint(&s, true).contains("picks up the same scan"));
        s.registry = Own;
        assert!(timeout_hint(&s, false).contains("raise --timeout"));
    }

    #[test]
    fn a_refused_scan_start() {
        let cases = [
            // (known type, code, enhanced?, says)
            (
                ScanType::Unknown,
                "ValidationException",
                true,
                "enhanced scanning",
            ),
            (
                ScanType::Basic,
                "ValidationException",
                false,
                "ValidationException: This feature is disabled",
            ),
            (
                ScanType::Unknown,
                "UnsupportedImageTypeException",
                false,
                "refused to scan",
            ),
            (
                ScanType::Basic,
                "ImageArchivedException",
                false,
                "refused to scan",
            ),
            (
                ScanType::Unknown,
                "InvalidParameterException",
                false,
                "InvalidParameterException",
            ),
        ];
        for (t, code, enhanced, says) in cases {
            match refused(t, code, "This feature is disabled") {
                Refusal::Enhanced(m) => {
                    assert!(enhanced, "{t:?} {code}");
                    assert!(
                        m.contains(says) && m.contains("This feature is disabled"),
                        "{m}"
                    );
                }
                Refusal::Unavailable { message, hint } => {
                    assert!(!enhanced, "{t:?} {code}");
                    assert!(message.contains(says), "{message}");
                    assert!(!hint.is_empty());
                }
            }
        }
    }

    #[test]
    fn only_complete_and_active_are_final() {
        let cases = [
            ("COMPLETE", true),
            ("ACTIVE", true),
            ("IN_PROGRESS", false),
            ("PENDING", false),
            ("FAILED", false),
            ("UNSUPPORTED_IMAGE", false),
            ("SCAN_ELIGIBILITY_EXPIRED", false),
            ("FINDINGS_UNAVAILABLE", false),
            ("LIMIT_EXCEEDED", false),
            ("IMAGE_ARCHIVED", false),
            ("complete", false),
            ("", false),
        ];
        for (status, want) in cases {
            assert_eq!(is_final(status), want, "{status}");
        }
    }

    #[test]
    fn text_from_ecr_is_printable() {
        assert_eq!(outside("a\nb\u{1b}[31m"), "a\\nb\\u{1b}[31m");
        assert_eq!(outside(&"x".repeat(500)).chars().count(), 301);
    }

    #[test]
    fn the_first_look_is_at_once_then_pauses_grow_to_a_cap() {
        let p = |n| pause(n, 2 * S).as_secs_f64();
        assert_eq!(p(0), 0.0);
        assert_eq!(p(1), 2.0);
        assert_eq!(p(2), 3.0);
        assert_eq!(p(3), 4.5);
        assert_eq!(p(31), 30.0);
        assert_eq!(pause(6, 60 * S), 60 * S);
        assert_eq!(pause(0, 60 * S), Duration::ZERO);
        assert!(pause(4, Duration::from_millis(50)) < Duration::from_millis(200));
    }
}

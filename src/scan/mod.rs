//! The gate stage: wait for ECR's scan of a pushed image and decide whether
//! it may go on. An image index cannot be scanned by ECR
//! (containers-roadmap#1683), so each platform manifest in it is gated on
//! its own and reported per platform.
//!
//! Here: what to gate (the image, or an index's images) and the stage in
//! order — survey the registry, wait, judge, write the reports. The pieces:
//! `status.rs` decides what each scan status means and `verdict.rs` what
//! the findings mean (both pure); `waiter.rs` waits for one image's scan
//! (the `Waiter`); `ecr.rs` is the API edge; `report.rs` holds the one
//! [`Report`] with its log and step summary, which `sarif.rs` and
//! `gitlab.rs` render for other tools.

pub mod allowlist;
pub mod ecr;
pub mod gitlab;
pub mod report;
pub mod sarif;
pub mod settings;
pub mod status;
pub mod verdict;
pub mod waiter;

use std::path::Path;
use std::time::{Duration, Instant, SystemTime};

use crate::Context;
use crate::clock::Date;
use crate::error::{ConfigError, Error};
use crate::image::Digest;
use crate::image::manifest::{self, Entry, Parsed};
use crate::registry::reference::ImageRef;
use ecr::ScanApi;
use status::{Frequency, Known, Registry, ScanType};
use waiter::{Obtained, Waiter};

pub use report::{
    AllowlistReport, ExpiredEntry, Found, GateVerdict, PlatformReport, PlatformVerdict,
    PolicyReport, Report, ScanError,
};
pub use settings::Settings;

/// Gate `image`: wait (up to the settings' timeout overall) for ECR's scan
/// of it — of each platform, for an index — and judge the findings by the
/// policy.
pub async fn run(ctx: &Context, image: &ImageRef, settings: &Settings) -> Result<Report, Error> {
    gate(ctx, image, settings, Mode::Wait).await
}

/// What `ship --dry-run` shows: the scan as it stands, judged by the policy.
pub async fn look(ctx: &Context, image: &ImageRef, settings: &Settings) -> Result<Report, Error> {
    gate(ctx, image, settings, Mode::Look).await
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

impl Mode {
    /// How long to wait overall: a look does not.
    pub fn timeout(self, settings: &Settings) -> Duration {
        match self {
            Mode::Wait => settings.timeout,
            Mode::Look => Duration::ZERO,
        }
    }

    /// Whether a missing scan result fails the gate: what a look cannot
    /// see is only a warning.
    pub fn fail_on_scan_error(self, settings: &Settings) -> bool {
        match self {
            Mode::Wait => settings.fail_on_scan_error,
            Mode::Look => false,
        }
    }
}

async fn gate(
    ctx: &Context,
    image: &ImageRef,
    settings: &Settings,
    mode: Mode,
) -> Result<Report, Error> {
    let started_at = SystemTime::now();
    let clock = Instant::now();
    let sdk = ctx.aws().await?;
    let api = ScanApi::new(sdk, image.region(), image.account().map(str::to_string));
    let survey = survey(&api, sdk, image).await?;
    let (targets, skipped) = targets(&survey.media_type, &survey.body, &image.digest)?;
    let say = |line: String| {
        if !ctx.quiet {
            crate::output::say(&line);
        }
    };
    let timeout = mode.timeout(settings);
    say(announcement(
        image,
        survey.known.scan_type,
        &targets,
        timeout,
    ));
    let waiter = Waiter {
        api: &api,
        repository: &image.repository,
        scan_type: survey.known.scan_type,
        frequency: survey.frequency,
        registry: survey.known.registry,
        mode,
        deadline: clock + timeout,
        timeout,
        poll_interval: settings.poll_interval,
        settle: settings.findings_settle,
        say: &say,
    };
    let waits = targets.iter().map(|t| waiter.wait(t));
    let obtained = futures_util::future::try_join_all(waits).await?;
    let (platforms, enhanced) = judge(&targets, obtained, settings, Date::today());
    let found = Found {
        scan_type: match survey.known.scan_type {
            ScanType::Unknown if enhanced => ScanType::Enhanced,
            t => t,
        },
        platforms,
        skipped,
        seconds: clock.elapsed().as_secs_f64(),
    };
    let mut report = Report::assemble(image, settings, mode.fail_on_scan_error(settings), found);
    if let Some(a) = report.allowlist.as_ref().filter(|_| !ctx.quiet) {
        for (title, message, at) in a.warnings() {
            ctx.ci.warn_at(&title, &message, at.as_ref());
        }
    }
    write_reports(&mut report, settings, started_at)?;
    Ok(report)
}

/// What the gate learns of the registry before it waits: how the image is
/// scanned, and its manifest (an index names the images to gate).
struct Survey {
    known: Known,
    frequency: Frequency,
    media_type: String,
    body: String,
}

/// The scanning configuration, the repository's scan frequency and the
/// image's manifest — independent calls, made at once.
async fn survey(
    api: &ScanApi,
    sdk: &aws_config::SdkConfig,
    image: &ImageRef,
) -> Result<Survey, Error> {
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
    let (media_type, body) = match manifest? {
        Ok(m) => m,
        Err(missing) => visible_soon(api, image, missing).await?,
    };
    Ok(Survey {
        known,
        frequency,
        media_type,
        body,
    })
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

/// The first line: what is gated, how it is scanned, how long hoist waits.
fn announcement(
    image: &ImageRef,
    scan_type: ScanType,
    targets: &[Target],
    timeout: Duration,
) -> String {
    let platforms: Vec<&str> = targets
        .iter()
        .filter_map(|t| t.platform.as_deref())
        .collect();
    let listed = if platforms.is_empty() {
        String::new()
    } else {
        format!(", {} platforms ({})", targets.len(), platforms.join(", "))
    };
    format!(
        "gate: {image}: {}{listed}, waiting up to {}",
        scan_type.described(),
        crate::duration::show(timeout)
    )
}

/// Each target's scan judged by the policy and the allow-list as of
/// `today`; and whether any scan turned out enhanced (Inspector).
fn judge(
    targets: &[Target],
    obtained: Vec<Obtained>,
    settings: &Settings,
    today: Date,
) -> (Vec<PlatformReport>, bool) {
    let mut enhanced_seen = false;
    let platforms = targets
        .iter()
        .zip(obtained)
        .map(|(t, o)| match o {
            Obtained::Findings {
                status,
                description,
                findings,
                enhanced,
            } => {
                enhanced_seen |= enhanced;
                let v = verdict::decide(&findings, &settings.policy, &settings.allow, today);
                PlatformReport::judged(t, status, description, findings, v)
            }
            Obtained::Unavailable {
                status,
                message,
                hint,
            } => PlatformReport::unavailable(t, status, ScanError { message, hint }),
        })
        .collect();
    (platforms, enhanced_seen)
}

/// `--sarif` and `--gitlab-report`, when asked for; the report names them.
fn write_reports(
    report: &mut Report,
    settings: &Settings,
    started_at: SystemTime,
) -> Result<(), Error> {
    let finished_at = SystemTime::now();
    if let Some(path) = &settings.sarif {
        write_json(path, "--sarif", &sarif::render(report))?;
        report.sarif = Some(path.display().to_string());
    }
    if let Some(path) = &settings.gitlab_report {
        write_json(
            path,
            "--gitlab-report",
            &gitlab::render(report, started_at, finished_at),
        )?;
        report.gitlab_report = Some(path.display().to_string());
    }
    Ok(())
}

/// One image ECR can scan: the image itself, or one platform of an index.
#[derive(Debug, Clone, PartialEq)]
pub struct Target {
    pub digest: Digest,
    pub platform: Option<String>,
}

/// What to gate: a single image, or every image of an index — not its
/// attestations (`manifest::is_attestation`), which are no images, nor a
/// nested index, which ECR cannot scan either; those are listed as skipped.
pub fn targets(
    media_type: &str,
    body: &str,
    digest: &Digest,
) -> Result<(Vec<Target>, Vec<String>), Error> {
    if !manifest::is_index_type(media_type) {
        return Ok((
            vec![Target {
                digest: digest.clone(),
                platform: None,
            }],
            vec![],
        ));
    }
    let children = match Parsed::parse(body.as_bytes()) {
        Ok(Parsed::Index(children)) => children,
        Ok(Parsed::Image { .. }) => {
            return Err(ConfigError::new(format!(
                "ECR says {digest} is an index ({media_type}), but it lists no manifests"
            ))
            .hint("push the image again; if it persists, compare aws ecr batch-get-image with what was pushed")
            .into());
        }
        Err(e) => {
            return Err(ConfigError::new(format!("the index {digest} in ECR: {e}")).into());
        }
    };
    let mut out = Vec::new();
    let mut skipped = Vec::new();
    for c in &children {
        let Ok(d) = c.digest.parse::<Digest>() else {
            skipped.push(format!(
                "{} (not a digest)",
                crate::text::external(&c.digest, 80)
            ));
            continue;
        };
        match Entry::of(c) {
            Entry::Attestation => skipped.push(format!("{d} (attestation manifest)")),
            Entry::Index => skipped.push(format!("{d} (nested index)")),
            Entry::Image => out.push(Target {
                digest: d,
                platform: Some(c.platform_name()),
            }),
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

fn write_json(path: &Path, flag: &str, v: &serde_json::Value) -> Result<(), ConfigError> {
    let text = serde_json::to_string_pretty(v).map_err(|e| {
        ConfigError::new(format!("could not write {flag} {}", path.display())).source(e)
    })?;
    std::fs::write(path, text + "\n").map_err(|e| {
        ConfigError::new(format!("could not write {flag} {}", path.display())).source(e)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::image::{DOCKER_LIST, OCI_INDEX};

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
                { "mediaType": OCI_INDEX, "digest": D, "size": 1 },
                { "mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": "sha256:\u{1b}[2K", "size": 1 },
            ]
        })
        .to_string();
        let (t, skipped) = targets(OCI_INDEX, &body, &d).unwrap();
        assert_eq!(t.len(), 2);
        assert_eq!(t[0].platform.as_deref(), Some("linux/amd64"));
        assert_eq!(t[1].platform.as_deref(), Some("linux/arm64/v8"));
        assert_eq!(t[1].digest.to_string(), F);
        assert_eq!(
            skipped,
            [
                format!("{D} (attestation manifest)"),
                format!("{D} (nested index)"),
                "sha256:\\x1b[2K (not a digest)".to_string(),
            ]
        );
        // An image without a platform is still an image.
        let bare = serde_json::json!({ "manifests": [
            { "mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": E, "size": 1 }
        ] })
        .to_string();
        let (t, _) = targets(OCI_INDEX, &bare, &d).unwrap();
        assert_eq!(t[0].platform.as_deref(), Some("(no platform)"));
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
}

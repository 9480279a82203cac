//! `hoist ship`: the stages in one process with one set of credentials —
//! auth (through the run's [`Context`], once), push, gate, deploy — and one
//! summary.
//!
//! Everything that can be checked is checked before the first write: every
//! flag of every stage (the settings), the image on disk, the repository and
//! the tags, and the deploy's whole preflight — the function and alias, the
//! image's platform, layers and entrypoint, the region, pull permissions,
//! the alarms — run against the image read from disk. A failure there
//! writes nothing: no blob, no manifest, no tag, no repository, no scan, no
//! version. Only the scan is left to find out after the push.
//!
//! The first stage that fails ends the run with its own error (and so its
//! own exit code); a blocked gate ends it with exit code 1 and nothing
//! deployed.

use std::time::Instant;

use serde::Serialize;

use crate::Context;
use crate::deploy;
use crate::error::{Class, Error};
use crate::push;
use crate::registry::reference::ImageRef;
use crate::scan;

/// What `hoist ship` is asked to do: each stage's own settings, checked.
#[derive(Debug, Clone)]
pub struct Settings {
    pub push: push::Settings,
    pub gate: scan::Settings,
    /// None: stop after the gate (no --function and --alias).
    pub deploy: Option<deploy::Settings>,
    pub dry_run: bool,
}

#[derive(Debug, Serialize, schemars::JsonSchema)]
pub struct Report {
    pub dry_run: bool,
    pub push: push::Report,
    /// The gate's report; None when there was nothing to gate yet (a dry
    /// run of an image not in ECR).
    pub gate: Option<scan::Report>,
    /// The deploy's report (a plan, in a dry run); None when it did not run.
    pub deploy: Option<deploy::Report>,
    /// Why a stage did not run.
    pub skipped: Vec<String>,
    /// How long each stage took, in seconds.
    pub timings: Timings,
}

/// Seconds per stage, and in all.
#[derive(Debug, Clone, Default, Serialize, schemars::JsonSchema)]
pub struct Timings {
    /// Authentication, reading the image and the registry, and every check
    /// made before the first write.
    pub checks: f64,
    pub push: f64,
    /// Mostly waiting for ECR's scan.
    pub gate: f64,
    pub deploy: f64,
    pub total: f64,
    /// Of the total, waiting on AWS: the gate (ECR's scan) and the deploy's
    /// waits on Lambda (the update, new versions becoming Active,
    /// provisioned concurrency), bakes not included.
    pub aws_wait: f64,
}

pub async fn run(ctx: &Context, s: &Settings) -> Result<Report, Error> {
    let started = Instant::now();
    let mut timings = Timings::default();
    let prepared = {
        let _fold = ctx
            .ci
            .group("checks", "hoist: reading the image and checking everything");
        let prepared = push::prepare(ctx, &s.push)
            .await
            .map_err(|e| e.in_stage("checks"))?;
        if s.dry_run {
            drop(_fold);
            return dry_run(ctx, s, prepared, started).await;
        }
        check_before_writing(ctx, s, &prepared)
            .await
            .map_err(|e| e.in_stage("checks"))?;
        prepared
    };
    timings.checks = started.elapsed().as_secs_f64();
    let host = prepared.registry_host();

    let at = Instant::now();
    let pushed = {
        let _fold = ctx.ci.group("push", "hoist push");
        prepared.execute().await.map_err(|e| e.in_stage("push"))?
    };
    timings.push = at.elapsed().as_secs_f64();
    let mut report = Report {
        dry_run: false,
        push: pushed,
        gate: None,
        deploy: None,
        skipped: vec![],
        timings,
    };
    // The digest, never a tag, travels between the stages.
    let image = pushed_image(&report.push);
    let located = located(&image, host);

    let at = Instant::now();
    let gate = {
        let _fold = ctx.ci.group("gate", "hoist gate");
        scan::run(ctx, &image, &s.gate).await
    };
    let gate = gate.map_err(|e| failed_after(ctx, &report, e.in_stage("gate")))?;
    report.timings.gate = at.elapsed().as_secs_f64();
    let stop = gate.class().is_some();
    report.gate = Some(gate);
    let Some(deploy_settings) = (!stop).then_some(s.deploy.as_ref()).flatten() else {
        report.skipped.push(if stop {
            "deploy: the gate did not pass; nothing was deployed".into()
        } else {
            "deploy: no --function and --alias given".into()
        });
        report.timings.total = started.elapsed().as_secs_f64();
        report.timings.aws_wait = report.timings.gate;
        return Ok(report);
    };
    // A deploy that fails after a clean gate fails the run with its own
    // error; what was pushed stays pushed, and is reported as such.
    let at = Instant::now();
    let deployed = {
        let _fold = ctx.ci.group("deploy", "hoist deploy");
        deploy::run(ctx, &located, deploy_settings, false).await
    };
    report.deploy = Some(deployed.map_err(|e| failed_after(ctx, &report, e.in_stage("deploy")))?);
    report.timings.deploy = at.elapsed().as_secs_f64();
    report.timings.total = started.elapsed().as_secs_f64();
    report.timings.aws_wait = report.timings.gate
        + report
            .deploy
            .as_ref()
            .map_or(0.0, |d| d.timings.aws_wait.as_secs_f64());
    Ok(report)
}

/// A stage failed after the push: what was done stays reported — in the
/// log, as the CI outputs that exist (the digest, the image URI, the scan),
/// and in the step summary — before the failure ends the run.
fn failed_after(ctx: &Context, report: &Report, e: Error) -> Error {
    crate::output::always(&report.summary_line());
    let outputs = Report {
        dry_run: false,
        push: report.push.clone(),
        gate: report.gate.clone(),
        deploy: None,
        skipped: vec![],
        timings: report.timings.clone(),
    }
    .outputs();
    for problem in ctx.ci.publish(&outputs, ctx.dotenv.as_deref()) {
        tracing::warn!("{problem}");
    }
    e
}

/// Everything that can refuse the run without anything written: the
/// repository and the tags (a tag that cannot move), and the deploy's
/// whole preflight against the image as it is on disk.
async fn check_before_writing(
    ctx: &Context,
    s: &Settings,
    prepared: &push::Prepared,
) -> Result<(), Error> {
    let (digest, contents) = prepared.preflight().await?;
    if let Some(d) = &s.deploy {
        // The deploy reads the image where the push writes it (a FIPS host
        // stays one); the URI it hands Lambda names the standard host.
        let image = ImageRef {
            registry: s.push.registry.as_ref().map(|h| h.name()),
            repository: s.push.repository.clone(),
            digest,
        };
        // The plan's lines are for dry runs; here only a refusal matters.
        let quiet = Context {
            quiet: true,
            ..ctx.clone()
        };
        deploy::plan(&quiet, &image, d, &contents).await?;
        crate::output::say(&format!(
            "checks passed: the image can be deployed to {}:{}",
            d.function, d.alias
        ));
    }
    Ok(())
}

/// `--dry-run`: the push planned, the scan looked at (no scan started, no
/// wait), the deploy planned from the image on disk. Writes nothing.
async fn dry_run(
    ctx: &Context,
    s: &Settings,
    prepared: push::Prepared,
    started: Instant,
) -> Result<Report, Error> {
    let host = prepared.registry_host();
    let (planned, contents) = prepared.dry().await?;
    let mut report = Report {
        dry_run: true,
        push: planned,
        gate: None,
        deploy: None,
        skipped: vec![],
        timings: Timings::default(),
    };
    let image = pushed_image(&report.push);
    if report.push.already_present {
        report.gate = Some(scan::look(ctx, &image, &s.gate).await?);
    } else {
        report.skipped.push(
            "gate: the image is not in ECR yet, so it has no scan; the real run waits for it"
                .into(),
        );
    }
    match &s.deploy {
        Some(d) => {
            report.deploy = Some(deploy::plan(ctx, &located(&image, host), d, &contents).await?)
        }
        None => report
            .skipped
            .push("deploy: no --function and --alias given".into()),
    }
    report.timings.total = started.elapsed().as_secs_f64();
    Ok(report)
}

/// The image as the deploy reads it: at the registry host the push used
/// (a FIPS or dual-stack host stays one), while the report, the gate and
/// the URI handed to Lambda name the standard host.
fn located(image: &ImageRef, host: String) -> ImageRef {
    ImageRef {
        registry: Some(host),
        ..image.clone()
    }
}

fn pushed_image(push: &push::Report) -> ImageRef {
    ImageRef {
        registry: Some(push.registry.clone()),
        repository: push.repository.clone(),
        digest: push.digest.clone(),
    }
}

impl Report {
    /// How the stage that stopped the run failed, if one did.
    pub fn class(&self) -> Option<Class> {
        let gate = self.gate.as_ref().and_then(|g| g.class());
        gate.or_else(|| self.deploy.as_ref().and_then(|d| d.class()))
    }

    /// Each stage's outputs (the later stages' where they ran), and the
    /// summary of the whole run.
    pub fn outputs(&self) -> crate::ci::Outputs {
        let mut o = crate::ci::Outputs::default();
        self.push.outputs_into(&mut o);
        if let Some(g) = &self.gate {
            g.outputs_into(&mut o);
        }
        if let Some(d) = &self.deploy {
            d.outputs_into(&mut o);
        }
        o.summary = self.markdown();
        o
    }

    pub fn summary_line(&self) -> String {
        let mut lines = vec![self.push.summary_line()];
        if let Some(g) = &self.gate {
            lines.push(g.log());
        }
        if let Some(d) = &self.deploy {
            lines.push(d.summary_line());
        }
        lines.extend(self.skipped.iter().map(|s| format!("skipped {s}")));
        if !self.dry_run {
            lines.push(self.timings.line());
        }
        lines.join("\n")
    }

    pub fn markdown(&self) -> String {
        let mut md = self.push.markdown();
        if let Some(g) = &self.gate {
            md.push('\n');
            md.push_str(&g.markdown());
        }
        if let Some(d) = &self.deploy {
            md.push('\n');
            md.push_str(&d.markdown());
        }
        for s in &self.skipped {
            md.push_str(&format!("\n_skipped {s}_\n"));
        }
        if !self.dry_run {
            md.push_str(&format!("\n_{}_\n", self.timings.line()));
        }
        md
    }
}

impl Timings {
    /// `took 4.2s: checks 0.3s, push 1.1s, gate 2.1s (waiting for ECR's
    /// scan), deploy 0.7s; 2.5s of it waiting on AWS`
    pub fn line(&self) -> String {
        let show = crate::duration::show_secs;
        format!(
            "took {}: checks {}, push {}, gate {} (waiting for ECR's scan), deploy {}; {} of it waiting on AWS",
            show(self.total),
            show(self.checks),
            show(self.push),
            show(self.gate),
            show(self.deploy),
            show(self.aws_wait)
        )
    }
}

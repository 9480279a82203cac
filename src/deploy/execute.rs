//! The writes, as the plan says: pin an alias that follows `$LATEST`,
//! update the function's code (guarded by RevisionId), wait for the update
//! to settle, publish a version (guarded by CodeSha256 and RevisionId), wait
//! until it is Active, invoke it with the smoke event, then create the alias
//! or shift it (shift.rs). Every alias write is compare-and-set: when
//! someone else moved the alias, the deploy ends here as [`Executed::Lost`]
//! and is observed and planned again.

use std::time::{Duration, Instant};

use super::alarms::CloudWatch;
use super::error::DeployError;
use super::lambda::Lambda;
use super::observe::{self, Observed};
use super::plan::{AlarmState, LATEST, Moves, routing};
use super::provenance;
use super::record::{Record, Shifting};
use super::report::{End, Event, Report};
use super::settings::Settings;
use super::shift::{Ended, Shift};
use crate::Context;

/// How carrying out a plan ended.
pub enum Executed {
    Done,
    /// Someone else moved the alias between hoist reading it and writing
    /// it: observe and decide again. `shifted`: the shift (from, to) whose
    /// traffic had moved to `to` when that happened (hoist then stops if
    /// it was put back on `from`).
    Lost {
        shifted: Option<(String, String)>,
    },
}

pub struct Executor<'a> {
    pub ctx: &'a Context,
    pub lambda: &'a Lambda,
    pub cloudwatch: &'a CloudWatch,
    pub settings: &'a Settings,
    pub observed: &'a Observed,
    pub started: Instant,
}

impl Executor<'_> {
    fn say(&self, line: &str) {
        if !self.ctx.quiet {
            crate::output::say(line);
        }
    }

    fn event(&self, report: &mut Report, what: String) {
        report.timeline.push(Event {
            at_secs: (self.started.elapsed().as_secs_f64() * 10.0).round() / 10.0,
            what,
        });
    }

    fn timeout(&self) -> (Instant, Duration) {
        (
            Instant::now() + self.settings.timeout,
            self.settings.timeout,
        )
    }

    /// No alias yet: publish, then create it on the new version.
    pub async fn create(&self, report: &mut Report) -> Result<Executed, DeployError> {
        let version = self.new_version(report).await?;
        let record = format!("hoist: created on version {version}");
        let a = match self
            .lambda
            .create_alias(&self.settings.alias, &version, &record)
            .await
        {
            // Another run created it meanwhile: it exists now, so the next
            // round shifts it.
            Err(e) if e.code() == Some("ResourceConflictException") => {
                return Ok(Executed::Lost { shifted: None });
            }
            r => r?,
        };
        report.alias_arn = a.arn.clone();
        report.routing = routing(&a.version, &a.weights);
        let line = format!(
            "created alias {}:{} on version {version}",
            self.settings.function, self.settings.alias
        );
        self.say(&line);
        self.event(report, line);
        Ok(Executed::Done)
    }

    /// A new version, then the shift from `from`.
    pub async fn deploy(
        &self,
        from: &str,
        moves: &Moves,
        report: &mut Report,
    ) -> Result<Executed, DeployError> {
        let mut from = from.to_string();
        let mut revision = self
            .observed
            .alias
            .as_ref()
            .and_then(|a| a.revision_id.clone());
        if from == LATEST {
            match self.pin_latest(revision.as_deref(), report).await? {
                Some((pinned, r)) => (from, revision) = (pinned, r),
                None => return Ok(Executed::Lost { shifted: None }),
            }
        }
        report.previous_version = Some(from.clone());
        let version = self.new_version(report).await?;
        if from == version {
            // PublishVersion returned the version already serving (nothing
            // changed since it was published): the alias is where it
            // should be.
            report.end = End::AlreadyServing;
            return Ok(Executed::Done);
        }
        self.shift(&from, &version, moves.clone(), revision, report)
            .await
    }

    /// This image's own interrupted shift: no new version, the steps from
    /// where the alias stands.
    pub async fn resume(
        &self,
        from: &str,
        to: &str,
        moves: &Moves,
        report: &mut Report,
    ) -> Result<Executed, DeployError> {
        report.previous_version = Some(from.to_string());
        report.version = Some(to.to_string());
        let line = format!(
            "resuming the interrupted deployment of {} on alias {} at {}",
            self.observed.image.digest, self.settings.alias, report.routing
        );
        self.say(&line);
        self.event(report, line);
        let revision = self
            .observed
            .alias
            .as_ref()
            .and_then(|a| a.revision_id.clone());
        // Traffic had moved before this run (the lost runner's steps): the
        // alias moved under it even before its first write is a cut shift.
        Ok(
            match self
                .shift(from, to, moves.clone(), revision, report)
                .await?
            {
                Executed::Lost { .. } => Executed::Lost {
                    shifted: Some((from.to_string(), to.to_string())),
                },
                done => done,
            },
        )
    }

    /// This image's own interrupted shift with an alarm firing: all of the
    /// traffic back to `from`.
    pub async fn undo(
        &self,
        from: &str,
        to: &str,
        restore: &str,
        alarm: &AlarmState,
        report: &mut Report,
    ) -> Result<Executed, DeployError> {
        report.previous_version = Some(from.to_string());
        report.version = Some(to.to_string());
        let why = format!("alarm {} is {}: {}", alarm.name, alarm.state, alarm.reason);
        let line = format!("rolling back the interrupted deployment: {why}");
        self.say(&line);
        self.event(report, line);
        let revision = self
            .observed
            .alias
            .as_ref()
            .and_then(|a| a.revision_id.as_deref());
        let a = match self
            .lambda
            .route(&self.settings.alias, from, None, Some(restore), revision)
            .await
        {
            // Someone else moved it first; when they put it back on `from`
            // too, the next look says so instead of deploying again.
            Err(DeployError::Moved { .. }) => {
                return Ok(Executed::Lost {
                    shifted: Some((from.to_string(), to.to_string())),
                });
            }
            r => r?,
        };
        report.routing = routing(&a.version, &a.weights);
        self.event(report, format!("routing {} (restored)", report.routing));
        report.end = End::RolledBack {
            reason: why,
            alarm: Some(alarm.name.clone()),
        };
        Ok(Executed::Done)
    }

    /// The alias follows $LATEST: publish the code it serves now as a
    /// version and point the alias at it (so the shift goes from a published
    /// version). The version and the alias's new RevisionId; None when
    /// someone else moved the alias first.
    async fn pin_latest(
        &self,
        revision: Option<&str>,
        report: &mut Report,
    ) -> Result<Option<(String, Option<String>)>, DeployError> {
        let (deadline, timeout) = self.timeout();
        let began = Instant::now();
        let current = self.lambda.settle(false, deadline, timeout).await?;
        report.timings.add_update(began.elapsed());
        let serving = observe::digest(self.observed.serving.as_ref());
        let description = provenance::pinned(serving.as_ref(), &self.observed.image.digest);
        let pinned = self
            .lambda
            .publish(
                current.code_sha256.as_deref(),
                current.revision_id.as_deref(),
                &description,
                deadline,
                timeout,
            )
            .await?;
        self.wait_active(&pinned, report).await?;
        let a = match self
            .lambda
            .route(&self.settings.alias, &pinned, None, None, revision)
            .await
        {
            Err(DeployError::Moved { .. }) => return Ok(None),
            r => r?,
        };
        report.routing = routing(&a.version, &a.weights);
        let line = format!(
            "alias {} followed {LATEST}: published the code it served{} as version {pinned} and pointed the alias at it; shifting from version {pinned}",
            self.settings.alias,
            serving.map(|d| format!(" ({d})")).unwrap_or_default()
        );
        self.say(&line);
        self.event(report, line);
        Ok(Some((pinned, a.revision_id)))
    }

    /// Update the function to the image, publish it, wait until the version
    /// is Active, and smoke-test it: the new version's number.
    async fn new_version(&self, report: &mut Report) -> Result<String, DeployError> {
        let (deadline, timeout) = self.timeout();
        let f = &self.settings.function;
        self.say(&format!(
            "deploying {} to function {f}",
            self.observed.image.uri
        ));
        let began = Instant::now();
        let current = self.lambda.settle(false, deadline, timeout).await?;
        self.lambda
            .update_code(
                &self.observed.image.uri,
                self.settings.architecture,
                current.revision_id.as_deref(),
                deadline,
                timeout,
            )
            .await?;
        let (deadline, timeout) = self.timeout();
        let updated = self.lambda.settle(true, deadline, timeout).await?;
        report.timings.add_update(began.elapsed());
        let (commit, url) = provenance::from_env(&self.ctx.env);
        let description = provenance::description(
            &self.observed.image.digest,
            commit.as_deref(),
            url.as_deref(),
        );
        let version = self
            .lambda
            .publish(
                updated.code_sha256.as_deref(),
                updated.revision_id.as_deref(),
                &description,
                deadline,
                timeout,
            )
            .await?;
        self.say(&format!("published version {version} of function {f}"));
        report.version = Some(version.clone());
        self.event(report, format!("published version {version}"));
        // No invoke and no traffic before the version is Active.
        if self.wait_active(&version, report).await? {
            self.event(report, format!("version {version} is Active"));
        }
        self.smoke(&version, report).await?;
        Ok(version)
    }

    /// Whether it had to wait.
    async fn wait_active(&self, version: &str, report: &mut Report) -> Result<bool, DeployError> {
        let (deadline, timeout) = self.timeout();
        let began = Instant::now();
        let waited = self.lambda.wait_version(version, deadline, timeout).await;
        report.timings.add_version(began.elapsed());
        waited
    }

    async fn smoke(&self, version: &str, report: &mut Report) -> Result<(), DeployError> {
        let Some(smoke) = &self.settings.smoke else {
            return Ok(());
        };
        let (error, body) = self.lambda.invoke(version, smoke.payload.clone()).await?;
        let failed = match (&error, &smoke.expect) {
            (Some(e), _) => Some(format!(
                "the function returned an error ({})",
                crate::text::external(e, 100)
            )),
            (None, Some(want)) if !body.contains(want.as_str()) => {
                Some(format!("the response does not contain '{want}'"))
            }
            _ => None,
        };
        if let Some(why) = failed {
            return Err(DeployError::Smoke {
                version: version.to_string(),
                why,
                // The function's own output: one printable line.
                response: crate::text::external(&body, 2000),
            });
        }
        self.say(&format!("smoke test of version {version}: ok"));
        self.event(report, format!("smoke test of version {version} passed"));
        Ok(())
    }

    /// The steps (shift.rs), from `from` to `to`.
    async fn shift(
        &self,
        from: &str,
        to: &str,
        moves: Moves,
        revision_id: Option<String>,
        report: &mut Report,
    ) -> Result<Executed, DeployError> {
        let s = self.settings;
        let o = self.observed;
        let progress = Shifting {
            from: from.to_string(),
            to: to.to_string(),
            digest: o.image.digest.clone(),
            strategy: s.strategy.compact(),
            until: 0,
            id: o.me.id.clone(),
            before: moves.before.clone(),
            run: o.me.run.clone(),
        };
        let record = Record {
            current: to.to_string(),
            previous: from.to_string(),
        }
        .description(Some(&o.image.digest));
        let name = o
            .function
            .arn
            .split(':')
            .nth(6)
            .unwrap_or(&s.function)
            .to_string();
        let outcome = Shift {
            lambda: self.lambda,
            cloudwatch: self.cloudwatch,
            function_name: &name,
            alias: &s.alias,
            moves,
            alarms: &s.alarms,
            max_errors: s.max_errors,
            record,
            progress,
            revision_id,
            timeout: s.timeout,
            quiet: self.ctx.quiet,
            started: self.started,
        }
        .run()
        .await?;
        report.timeline.extend(outcome.timeline);
        report.timings.provisioned += outcome.timings.provisioned;
        report.timings.aws_wait += outcome.timings.provisioned;
        report.timings.bake += outcome.timings.bake;
        if let Some(a) = &outcome.alias {
            report.routing = routing(&a.version, &a.weights);
            report.alias_arn = a.arn.clone();
        }
        match outcome.ended {
            Ended::Finished(end) => {
                report.end = end;
                Ok(Executed::Done)
            }
            Ended::Lost { moved } => Ok(Executed::Lost {
                shifted: moved.then(|| (from.to_string(), to.to_string())),
            }),
        }
    }
}

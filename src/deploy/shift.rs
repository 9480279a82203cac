//! Moving the alias: each weighted step, its bake with the alarms watched,
//! then all of the traffic. With provisioned concurrency on the alias,
//! Lambda re-allocates it to the versions as the weights change; each bake
//! starts only once the allocation is READY again (otherwise a canary step
//! measures the cold starts the user pays to avoid). Whatever ends the shift early — an alarm, an
//! error, SIGINT or SIGTERM (a cancelled CI job) — the alias goes straight
//! back to the previous version before hoist exits: it is never left split.

use std::time::{Duration, Instant, SystemTime};

use super::alarms::CloudWatch;
use super::error::DeployError;
use super::lambda::Lambda;
use super::plan::{AlarmState, Alias, Watch, routing};
use super::strategy::{Step, show};
use super::{End, Event};

pub struct Shift<'a> {
    pub lambda: &'a Lambda,
    pub cloudwatch: &'a CloudWatch,
    /// The bare function name (CloudWatch's FunctionName dimension).
    pub function_name: &'a str,
    pub alias: &'a str,
    pub from: &'a str,
    pub to: &'a str,
    pub steps: Vec<Step>,
    pub alarms: &'a [String],
    pub watch: Watch,
    /// `--watch-errors`: roll back above this many errors of the new version.
    pub max_errors: Option<u64>,
    pub record: String,
    pub revision_id: Option<String>,
    /// The alias has provisioned concurrency: wait for it after each move.
    pub provisioned: bool,
    /// The longest each wait (provisioned concurrency) lasts.
    pub timeout: Duration,
    pub quiet: bool,
    pub started: Instant,
}

/// How the shift ended, with the alias as it was left.
pub struct Outcome {
    pub end: End,
    pub alias: Alias,
    pub timeline: Vec<Event>,
}

impl Shift<'_> {
    fn event(&self, timeline: &mut Vec<Event>, what: String) {
        if !self.quiet {
            eprintln!("{what}");
        }
        timeline.push(Event {
            at_secs: (self.started.elapsed().as_secs_f64() * 10.0).round() / 10.0,
            what,
        });
    }

    /// Run the shift, restoring the previous routing on an alarm, an error or
    /// a signal.
    pub async fn run(mut self) -> Result<Outcome, DeployError> {
        use tokio::signal::unix::{SignalKind, signal};
        // Registered only now, when there is routing to restore: before this
        // point a signal may end hoist at once, nothing having moved.
        let mut term = signal(SignalKind::terminate())
            .map_err(|e| DeployError::Image(format!("cannot watch for SIGTERM: {e}")))?;
        let mut int = signal(SignalKind::interrupt())
            .map_err(|e| DeployError::Image(format!("cannot watch for SIGINT: {e}")))?;
        let mut timeline = Vec::new();
        let result = {
            let steps = self.steps(&mut timeline);
            tokio::select! {
                r = steps => r.map_err(Stopped::Error),
                _ = term.recv() => Err(Stopped::Signal("SIGTERM", 143)),
                _ = int.recv() => Err(Stopped::Signal("SIGINT", 130)),
            }
        };
        match result {
            Ok((alias, None)) => Ok(Outcome {
                end: End::Deployed,
                alias,
                timeline,
            }),
            Ok((_, Some(alarm))) => {
                let why = format!("alarm {} is {}: {}", alarm.name, alarm.state, alarm.reason);
                let alias = self.restore(&mut timeline, &why).await?;
                Ok(Outcome {
                    end: End::RolledBack {
                        reason: why,
                        alarm: Some(alarm.name),
                    },
                    alias,
                    timeline,
                })
            }
            Err(Stopped::Signal(name, code)) => {
                let why = format!("{name} received (the job was cancelled)");
                let alias = self.restore(&mut timeline, &why).await?;
                Ok(Outcome {
                    end: End::Interrupted {
                        signal: name,
                        exit_code: code,
                    },
                    alias,
                    timeline,
                })
            }
            Err(Stopped::Error(e)) => {
                let why = format!("the shift failed: {e}");
                if let Err(r) = self.restore(&mut timeline, &why).await {
                    eprintln!("could not restore the alias: {r}");
                }
                Err(e)
            }
        }
    }

    /// Back to the previous version, wholly. No RevisionId: whatever the
    /// shift left (even a half-made call), this must win.
    async fn restore(
        &mut self,
        timeline: &mut Vec<Event>,
        why: &str,
    ) -> Result<Alias, DeployError> {
        self.event(timeline, format!("rolling back: {why}"));
        let alias = self
            .lambda
            .route(self.alias, self.from, None, None, None)
            .await?;
        self.event(
            timeline,
            format!(
                "routing {} (restored)",
                routing(&alias.version, &alias.weights)
            ),
        );
        Ok(alias)
    }

    /// The steps and bakes, then 100 %. Returns the alias and, if one fired,
    /// the alarm that stopped the shift.
    async fn steps(
        &mut self,
        timeline: &mut Vec<Event>,
    ) -> Result<(Alias, Option<AlarmState>), DeployError> {
        let since = SystemTime::now();
        for step in self.steps.clone() {
            let weight = f64::from(step.percent) / 100.0;
            let a = self
                .lambda
                .route(
                    self.alias,
                    self.from,
                    Some((self.to, weight)),
                    None,
                    self.revision_id.as_deref(),
                )
                .await?;
            self.revision_id = a.revision_id.clone();
            if self.provisioned {
                self.event(
                    timeline,
                    format!(
                        "routing {}; waiting for the provisioned concurrency of {} to be READY",
                        routing(&a.version, &a.weights),
                        self.alias
                    ),
                );
                let ready = self.provisioned_ready().await?;
                self.event(timeline, format!("{ready}; baking {}", show(step.bake)));
            } else {
                self.event(
                    timeline,
                    format!(
                        "routing {}; baking {}",
                        routing(&a.version, &a.weights),
                        show(step.bake)
                    ),
                );
            }
            if let Some(alarm) = self.bake(step, since, timeline).await? {
                return Ok((a, Some(alarm)));
            }
        }
        let a = self
            .lambda
            .route(
                self.alias,
                self.to,
                None,
                Some(&self.record),
                self.revision_id.as_deref(),
            )
            .await?;
        self.event(
            timeline,
            format!("routing {}", routing(&a.version, &a.weights)),
        );
        if self.provisioned {
            let ready = self.provisioned_ready().await?;
            self.event(timeline, ready);
        }
        Ok((a, None))
    }

    /// Wait for the alias's provisioned concurrency to be READY; the line
    /// that says so, with how long it took.
    async fn provisioned_ready(&self) -> Result<String, DeployError> {
        let began = Instant::now();
        let p = self
            .lambda
            .wait_provisioned(self.alias, Instant::now() + self.timeout, self.timeout)
            .await?;
        Ok(match p {
            Some(p) => format!(
                "provisioned concurrency of {} READY ({} of {}) after {:.1} s",
                self.alias,
                p.allocated,
                p.requested,
                began.elapsed().as_secs_f64()
            ),
            None => format!("alias {} no longer has provisioned concurrency", self.alias),
        })
    }

    /// Hold a step for its bake, checking the alarms (and the Errors metric)
    /// every few seconds, and once more at the end.
    async fn bake(
        &mut self,
        step: Step,
        since: SystemTime,
        timeline: &mut Vec<Event>,
    ) -> Result<Option<AlarmState>, DeployError> {
        let end = Instant::now() + step.bake;
        let poll = (step.bake / 10).clamp(Duration::from_secs(1), Duration::from_secs(15));
        let mut last_line = Instant::now();
        loop {
            let left = end.saturating_duration_since(Instant::now());
            tokio::time::sleep(poll.min(left)).await;
            if let Some(alarm) = self.check(since).await? {
                self.event(
                    timeline,
                    format!(
                        "alarm check: {} {} ({})",
                        alarm.name, alarm.state, alarm.reason
                    ),
                );
                return Ok(Some(alarm));
            }
            let left = end.saturating_duration_since(Instant::now());
            if left.is_zero() {
                self.event(
                    timeline,
                    format!(
                        "alarm check: {} OK after {}",
                        self.watched(),
                        show(step.bake)
                    ),
                );
                return Ok(None);
            }
            if !self.quiet && last_line.elapsed() >= Duration::from_secs(10).min(step.bake / 2) {
                eprintln!(
                    "  {}% on version {}, {} left in this step; {} OK",
                    step.percent,
                    self.to,
                    show(left + Duration::from_millis(999)),
                    self.watched()
                );
                last_line = Instant::now();
            }
        }
    }

    fn watched(&self) -> String {
        let mut w: Vec<String> = self.alarms.to_vec();
        if self.max_errors.is_some() {
            w.push("Errors metric".into());
        }
        if w.is_empty() {
            "nothing watched".into()
        } else {
            w.join(", ")
        }
    }

    async fn check(&mut self, since: SystemTime) -> Result<Option<AlarmState>, DeployError> {
        if !self.alarms.is_empty() {
            let states = self.cloudwatch.states(self.alarms).await?;
            if let Some(a) = self.watch.judge(&states) {
                return Ok(Some(a));
            }
        }
        if let Some(max) = self.max_errors {
            let function = self.function_name;
            let n = self
                .cloudwatch
                .errors(function, self.alias, self.to, since)
                .await?;
            if n > max as f64 {
                return Ok(Some(AlarmState {
                    name: format!("Errors of {function}:{} version {}", self.alias, self.to),
                    state: "ALARM".into(),
                    reason: format!("{n} errors since the shift began (--max-errors {max})"),
                    kind: "metric",
                }));
            }
        }
        Ok(None)
    }
}

enum Stopped {
    Error(DeployError),
    Signal(&'static str, u8),
}

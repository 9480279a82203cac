//! Moving the alias: each weighted step, its bake with the alarms watched,
//! then all of the traffic. With provisioned concurrency on the alias,
//! Lambda re-allocates it to the versions as the weights change; each bake
//! starts only once the allocation is READY again (otherwise a canary step
//! measures the cold starts the user pays to avoid). Whatever ends the
//! shift early — an alarm, an error, SIGINT or SIGTERM (a cancelled CI job)
//! — the alias goes straight back to the previous version before hoist
//! exits: it is never left split, unless putting it back fails too, which
//! is an error of its own ([`DeployError::RestoreFailed`]).
//!
//! Every UpdateAlias carries the RevisionId hoist read or got back last,
//! so two runs never both move the alias: when someone else moved it, the
//! write fails ([`DeployError::Moved`]), the shift stops without touching
//! the alias, and the deploy reads it again and decides again. Each
//! weighted step also writes the in-progress record (record.rs), so a run
//! that finds the alias split knows whose shift it is and whether its
//! runner is still there.

use std::time::{Duration, Instant, SystemTime};

use super::alarms::CloudWatch;
use super::error::DeployError;
use super::lambda::{Alias, Lambda};
use super::plan::{AlarmState, Moves, routing};
use super::record::Shifting;
use super::report::{End, Event, Timings};
use super::strategy::{Step, show};
use crate::error::Signal;

/// How long past a step's bake (and its wait for provisioned concurrency)
/// the in-progress record says its runner will write the alias again: an
/// alarm check and an UpdateAlias, with the SDK's retries. A run that finds
/// the lease passed takes the runner for lost.
const LEASE_MARGIN: Duration = Duration::from_secs(60);

pub struct Shift<'a> {
    pub lambda: &'a Lambda,
    pub cloudwatch: &'a CloudWatch,
    /// The bare function name (CloudWatch's FunctionName dimension).
    pub function_name: &'a str,
    pub alias: &'a str,
    pub moves: Moves,
    pub alarms: &'a [String],
    /// `--watch-errors`: roll back above this many errors of the new version.
    pub max_errors: Option<u64>,
    /// The record written with the last move (the finished deploy).
    pub record: String,
    /// The in-progress record (from, to, digest…); `until` is set per step.
    pub progress: Shifting,
    /// The alias's RevisionId as hoist last read or wrote it.
    pub revision_id: Option<String>,
    /// The longest each wait (provisioned concurrency) lasts.
    pub timeout: Duration,
    pub quiet: bool,
    pub started: Instant,
}

/// How the shift ended.
pub enum Ended {
    /// Deployed, rolled back by an alarm, or interrupted (restored).
    Finished(End),
    /// Someone else moved the alias: nothing was restored (it is theirs
    /// now); the deploy reads it again. `moved`: this shift had moved
    /// traffic before.
    Lost { moved: bool },
}

pub struct Outcome {
    pub ended: Ended,
    /// The alias as hoist last saw it.
    pub alias: Option<Alias>,
    pub timeline: Vec<Event>,
    /// Provisioned-concurrency waits and bakes.
    pub timings: Timings,
}

/// Why the steps stopped before the end.
enum Stopped {
    Error(DeployError),
    Signal(Signal),
}

/// The steps ran to the end, or an alarm stopped them.
enum Stepped {
    Done(Alias),
    Alarm(AlarmState),
}

/// State carried through the steps (and what a restore needs to say).
struct Progress {
    timeline: Vec<Event>,
    timings: Timings,
    /// The routing as hoist last set it.
    routing: String,
    last: Option<Alias>,
}

impl Shift<'_> {
    fn from(&self) -> &str {
        &self.progress.from
    }

    fn to(&self) -> &str {
        &self.progress.to
    }

    fn event(&self, p: &mut Progress, what: String) {
        if !self.quiet {
            crate::output::say(&what);
        }
        p.timeline.push(Event {
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
        let watch = |kind, s: Signal| {
            signal(kind).map_err(|source| DeployError::Signal {
                signal: s.name(),
                source,
            })
        };
        let mut term = watch(SignalKind::terminate(), Signal::Term)?;
        let mut int = watch(SignalKind::interrupt(), Signal::Int)?;
        let mut p = Progress {
            timeline: vec![],
            timings: Timings::default(),
            routing: String::new(),
            last: None,
        };
        let result = tokio::select! {
            r = self.steps(&mut p) => r.map_err(Stopped::Error),
            _ = term.recv() => Err(Stopped::Signal(Signal::Term)),
            _ = int.recv() => Err(Stopped::Signal(Signal::Int)),
        };
        let ended = match result {
            Ok(Stepped::Done(a)) => {
                p.last = Some(a);
                Ended::Finished(End::Deployed)
            }
            Ok(Stepped::Alarm(alarm)) => {
                let why = format!("alarm {} is {}: {}", alarm.name, alarm.state, alarm.reason);
                self.restore(&mut p, &why).await?;
                Ended::Finished(End::RolledBack {
                    reason: why,
                    alarm: Some(alarm.name),
                })
            }
            Err(Stopped::Error(DeployError::Moved { .. })) => {
                self.event(
                    &mut p,
                    format!(
                        "alias {} was moved by someone else: hoist leaves it to them and reads it again",
                        self.alias
                    ),
                );
                Ended::Lost {
                    moved: !p.routing.is_empty(),
                }
            }
            Err(Stopped::Signal(s)) => {
                let why = format!("{} received (the job was cancelled)", s.name());
                self.restore(&mut p, &why).await?;
                Ended::Finished(End::interrupted(s))
            }
            Err(Stopped::Error(e)) => {
                let why = format!("the shift failed: {e}");
                self.restore(&mut p, &why).await?;
                return Err(e);
            }
        };
        Ok(Outcome {
            ended,
            alias: p.last,
            timeline: p.timeline,
            timings: p.timings,
        })
    }

    /// Back to the previous version, wholly, with the description the alias
    /// had — compare-and-set on the RevisionId read just before, and only
    /// while the alias still carries this shift (someone who moved it since
    /// keeps it). A failure here is [`DeployError::RestoreFailed`], carrying
    /// `why` the shift stopped.
    async fn restore(&self, p: &mut Progress, why: &str) -> Result<(), DeployError> {
        self.event(p, format!("rolling back: {why}"));
        match self.put_back(p).await {
            Ok(()) => Ok(()),
            Err(e) => Err(DeployError::RestoreFailed {
                alias: format!("{}:{}", self.lambda.function, self.alias),
                version: self.from().to_string(),
                why: why.to_string(),
                routing: if p.routing.is_empty() {
                    "unknown".into()
                } else {
                    p.routing.clone()
                },
                restore: Box::new(e),
            }),
        }
    }

    async fn put_back(&self, p: &mut Progress) -> Result<(), DeployError> {
        // A few rounds: each lost compare-and-set is someone else's move,
        // read again before deciding.
        for _ in 0..5 {
            let Some(now) = self.lambda.alias(self.alias).await? else {
                return Err(DeployError::Answer(format!(
                    "alias {} no longer exists",
                    self.alias
                )));
            };
            if now.version == self.from() && now.split().is_none() {
                p.last = Some(now);
                return Ok(());
            }
            let ours = Shifting::parse(&now.description).is_some_and(|s| s.id == self.progress.id)
                || now.description == self.record;
            if !ours || (now.version != self.from() && now.version != self.to()) {
                let line = format!(
                    "alias {} was moved by someone else meanwhile (routing {}): left as it is",
                    self.alias,
                    routing(&now.version, &now.weights)
                );
                self.event(p, line);
                p.last = Some(now);
                return Ok(());
            }
            match self
                .lambda
                .route(
                    self.alias,
                    self.from(),
                    None,
                    Some(&self.moves.restore),
                    now.revision_id.as_deref(),
                )
                .await
            {
                Ok(a) => {
                    let line = format!("routing {} (restored)", routing(&a.version, &a.weights));
                    self.event(p, line);
                    p.last = Some(a);
                    return Ok(());
                }
                Err(DeployError::Moved { .. }) => continue,
                Err(e) => return Err(e),
            }
        }
        Err(DeployError::Moved {
            alias: format!("{}:{}", self.lambda.function, self.alias),
        })
    }

    /// The steps and bakes, then 100 %.
    async fn steps(&mut self, p: &mut Progress) -> Result<Stepped, DeployError> {
        let since = SystemTime::now();
        for step in self.moves.steps.clone() {
            let weight = f64::from(step.percent) / 100.0;
            let record = self.in_progress(step).description();
            let to = self.to().to_string();
            let a = self
                .route(p, self.from().to_string(), Some((&to, weight)), &record)
                .await?;
            if self.moves.provisioned {
                let line = format!(
                    "routing {}; waiting for the provisioned concurrency of {} to be READY",
                    routing(&a.version, &a.weights),
                    self.alias
                );
                self.event(p, line);
                let ready = self.provisioned_ready(p).await?;
                self.event(p, format!("{ready}; baking {}", show(step.bake)));
            } else {
                let line = format!(
                    "routing {}; baking {}",
                    routing(&a.version, &a.weights),
                    show(step.bake)
                );
                self.event(p, line);
            }
            if let Some(alarm) = self.bake(step, since, p).await? {
                return Ok(Stepped::Alarm(alarm));
            }
        }
        let (to, record) = (self.to().to_string(), self.record.clone());
        let a = self.route(p, to, None, &record).await?;
        self.event(p, format!("routing {}", routing(&a.version, &a.weights)));
        if self.moves.provisioned {
            let ready = self.provisioned_ready(p).await?;
            self.event(p, ready);
        }
        Ok(Stepped::Done(a))
    }

    /// One move, compare-and-set on the RevisionId hoist has.
    async fn route(
        &mut self,
        p: &mut Progress,
        version: String,
        extra: Option<(&str, f64)>,
        record: &str,
    ) -> Result<Alias, DeployError> {
        let a = self
            .lambda
            .route(
                self.alias,
                &version,
                extra,
                Some(record),
                self.revision_id.as_deref(),
            )
            .await?;
        self.revision_id = a.revision_id.clone();
        p.routing = routing(&a.version, &a.weights);
        p.last = Some(a.clone());
        Ok(a)
    }

    /// The in-progress record for `step`: its lease covers the wait for
    /// provisioned concurrency, the bake, and a margin.
    fn in_progress(&self, step: Step) -> Shifting {
        let mut lease = step.bake + LEASE_MARGIN;
        if self.moves.provisioned {
            lease += self.timeout;
        }
        Shifting {
            until: crate::clock::unix_now()
                .saturating_add(i64::try_from(lease.as_secs()).unwrap_or(i64::MAX)),
            ..self.progress.clone()
        }
    }

    /// Wait for the alias's provisioned concurrency to be READY; the line
    /// that says so, with how long it took.
    async fn provisioned_ready(&self, p: &mut Progress) -> Result<String, DeployError> {
        let began = Instant::now();
        let ready = self
            .lambda
            .wait_provisioned(self.alias, Instant::now() + self.timeout, self.timeout)
            .await;
        p.timings.add_provisioned(began.elapsed());
        Ok(match ready? {
            Some(r) => format!(
                "provisioned concurrency of {} READY ({} of {}) after {}",
                self.alias,
                r.allocated,
                r.requested,
                crate::duration::show(began.elapsed())
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
        p: &mut Progress,
    ) -> Result<Option<AlarmState>, DeployError> {
        let end = Instant::now() + step.bake;
        let poll = (step.bake / 10).clamp(Duration::from_secs(1), Duration::from_secs(15));
        let mut last_line = Instant::now();
        loop {
            let left = end.saturating_duration_since(Instant::now());
            let began = Instant::now();
            tokio::time::sleep(poll.min(left)).await;
            p.timings.bake += began.elapsed();
            if let Some(alarm) = self.check(since).await? {
                let line = format!(
                    "alarm check: {} {} ({})",
                    alarm.name, alarm.state, alarm.reason
                );
                self.event(p, line);
                return Ok(Some(alarm));
            }
            let left = end.saturating_duration_since(Instant::now());
            if left.is_zero() {
                let line = format!(
                    "alarm check: {} OK after {}",
                    self.watched(),
                    show(step.bake)
                );
                self.event(p, line);
                return Ok(None);
            }
            if !self.quiet && last_line.elapsed() >= Duration::from_secs(10).min(step.bake / 2) {
                crate::output::say(&format!(
                    "  {}% on version {}, {} left in this step; {} OK",
                    step.percent,
                    self.to(),
                    show(left + Duration::from_millis(999)),
                    self.watched()
                ));
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
            if let Some(a) = self.moves.watch.judge(&states) {
                return Ok(Some(a));
            }
        }
        if let Some(max) = self.max_errors {
            let function = self.function_name;
            let to = self.to().to_string();
            let n = self
                .cloudwatch
                .errors(function, self.alias, &to, since)
                .await?;
            if n > max as f64 {
                return Ok(Some(AlarmState {
                    name: format!("Errors of {function}:{} version {to}", self.alias),
                    state: "ALARM".into(),
                    reason: format!("{n} errors since the shift began (--max-errors {max})"),
                    kind: "metric",
                }));
            }
        }
        Ok(None)
    }
}

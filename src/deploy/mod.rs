//! The deploy stage: make a Lambda function run exactly the pushed image (by
//! digest), publish a version, and move an alias to it — at once, or step by
//! step with the alarms watched and automatic rollback.
//!
//! Read → decide → write, so that nothing is written until everything that
//! can be checked has been: `observe.rs` reads the function, the alias, the
//! versions behind it, the image, the repository policy and the alarms into
//! one value; `plan.rs` decides, purely (preflight, idempotency, an alias
//! split by another deployment or by this image's own interrupted one,
//! routing and role checks, the alarms, the steps, the dry run's lines);
//! `execute.rs` writes (UpdateFunctionCode guarded by RevisionId → wait for
//! LastUpdateStatus → PublishVersion guarded by CodeSha256 and RevisionId →
//! wait until Active → smoke invoke → shift, every alias write a
//! compare-and-set). When the alias is held by another deployment, or moved
//! under hoist, the deploy waits or observes again and decides again —
//! unless, moved under a shift, it was put back wholly on the version the
//! shift went from (`hoist rollback`, or by hand): that ends the deploy as
//! a rollback.

pub mod alarms;
pub mod error;
pub mod execute;
pub mod lambda;
pub mod observe;
pub mod plan;
pub mod platform;
pub mod preflight;
pub mod provenance;
pub mod pull;
pub mod record;
pub mod report;
pub mod rollback;
pub mod settings;
pub mod shift;
pub mod states;
pub mod strategy;
pub mod wait;

use std::collections::BTreeSet;
use std::time::Instant;

use crate::Context;
use crate::error::{Class, Error};
use crate::registry::reference::ImageRef;
pub use error::DeployError;
use execute::{Executed, Executor};
use lambda::{Alias, Lambda};
use observe::{Observed, Observer};
use plan::{Action, Holder, Plan, routing};
use record::Runner;
pub use report::{End, Event, Report, Timings};
pub use rollback::{RollbackReport, rollback};
pub use settings::{Rollback, Settings};
use strategy::show;

/// How many times hoist reads the alias again after someone else moved it
/// under it, before it gives up (each time it usually waits for the other
/// deployment first; waiting itself is bounded by --timeout).
const MAX_LOST: u32 = 10;

/// `hoist deploy`. Errors before the shift leave the alias untouched; the
/// shift itself ends in a report (deployed, rolled back, interrupted).
pub async fn run(
    ctx: &Context,
    image: &ImageRef,
    settings: &Settings,
    dry_run: bool,
) -> Result<Report, Error> {
    deploy(ctx, image, settings, dry_run, None).await
}

/// `ship --dry-run` and ship's check before it pushes: the plan for an image
/// read from disk (`contents`: its manifests and configs), which need not be
/// in the registry yet.
pub async fn plan(
    ctx: &Context,
    image: &ImageRef,
    settings: &Settings,
    contents: &crate::image::Contents,
) -> Result<Report, Error> {
    deploy(ctx, image, settings, true, Some(contents)).await
}

async fn deploy(
    ctx: &Context,
    image: &ImageRef,
    settings: &Settings,
    dry_run: bool,
    local: Option<&crate::image::Contents>,
) -> Result<Report, Error> {
    let started = Instant::now();
    let sdk = ctx.aws().await?;
    let lambda = Lambda::new(sdk, &settings.function, ctx.quiet);
    let cloudwatch = alarms::CloudWatch::new(sdk);
    let observer = Observer {
        ctx,
        lambda: &lambda,
        cloudwatch: &cloudwatch,
        settings,
        image,
        local,
        dry_run,
    };
    let mut me = Runner::new(&ctx.env);
    let mut r = Rounds::default();
    loop {
        let o = observer.observe(r.known.take(), &me).await?;
        // Only the look right after the alias was moved under a shift
        // tells whether that move was a put-back.
        if let Some(report) = r.cut.take().and_then(|c| c.put_back(&o, settings, started)) {
            return Ok(finished(report, started));
        }
        if r.lost == MAX_LOST {
            return Err(DeployError::Moved {
                alias: format!("{}:{}", settings.function, settings.alias),
            }
            .into());
        }
        let p = plan::plan(&o, settings)?;
        for w in p.warnings.iter().filter(|w| r.warned.insert(w.to_string())) {
            tracing::warn!("{w}");
        }
        if let (Action::Wait(holder), false) = (&p.action, dry_run) {
            r.timings.other_deployment += r.waiting.wait(&lambda, settings, &o, holder).await?;
            r.known = Some(o.image);
            continue;
        }
        let mut report = report_for(&o, &p, settings, dry_run);
        report.timeline = std::mem::take(&mut r.timeline);
        report.timings = r.timings;
        let executed = if dry_run {
            for l in &report.plan {
                say(ctx, &format!("plan: {l}"));
            }
            Executed::Done
        } else {
            for l in report.plan.iter().filter(|l| l.starts_with("check: ")) {
                tracing::info!("{l}");
            }
            let executor = Executor {
                ctx,
                lambda: &lambda,
                cloudwatch: &cloudwatch,
                settings,
                observed: &o,
                started,
            };
            execute(&executor, &p, &mut report).await?
        };
        let Executed::Lost { shifted } = executed else {
            return Ok(finished(report, started));
        };
        r.lost += 1;
        say(
            ctx,
            &format!(
                "alias {}:{} was moved by someone else while hoist was deploying: reading it again",
                settings.function, settings.alias
            ),
        );
        me.yielded = true;
        r.known = Some(o.image);
        (r.timeline, r.timings) = (report.timeline.clone(), report.timings);
        r.cut = shifted.map(|(from, to)| Cut { from, to, report });
    }
}

/// What carries over from one round (observe → plan → execute) to the
/// next, when hoist waits for another deployment or someone else moved the
/// alias under it: the timeline and the timings go on across rounds (the
/// waits for another deployment counted in `other_deployment`).
#[derive(Default)]
struct Rounds {
    /// The image as read (it does not change).
    known: Option<observe::Image>,
    waiting: Waiting,
    /// Warnings already printed.
    warned: BTreeSet<String>,
    /// Rounds that ended with the alias moved under hoist.
    lost: u32,
    /// The last round's shift, when the alias was moved under it after
    /// traffic had moved.
    cut: Option<Cut>,
    timeline: Vec<Event>,
    timings: Timings,
}

/// A shift from `from` to `to` that someone else moved the alias under,
/// after traffic had moved to `to` (this run's steps, or those of the lost
/// runner whose shift it resumed); `report` as it stood then.
struct Cut {
    from: String,
    to: String,
    report: Report,
}

impl Cut {
    /// Someone put the alias back wholly on `from` (`hoist rollback`, or by
    /// hand): that stops the deploy like a rollback — starting over would
    /// undo theirs. The alias moved anywhere else (another version, another
    /// split) is not a put-back: the deploy decides again.
    fn put_back(self, o: &Observed, s: &Settings, started: Instant) -> Option<Report> {
        let alias = o.alias.as_ref().filter(|a| put_back(a, &self.from))?;
        let Cut {
            from,
            to,
            mut report,
        } = self;
        let reason = format!(
            "alias {}:{} was put back on version {from} by someone else while hoist was shifting it to version {to} (hoist rollback, or by hand); hoist stopped",
            s.function, s.alias
        );
        report.timeline.push(Event {
            at_secs: (started.elapsed().as_secs_f64() * 10.0).round() / 10.0,
            what: format!(
                "alias {} was put back on version {from} by someone else: hoist stopped",
                s.alias
            ),
        });
        report.routing = routing(&alias.version, &alias.weights);
        report.alias_arn = alias.arn.clone();
        (report.previous_version, report.version) = (Some(from), Some(to));
        report.end = End::RolledBack {
            reason,
            alarm: None,
        };
        Some(report)
    }
}

/// The alias serves `from` wholly (a weight of 0 left behind is no share).
fn put_back(a: &Alias, from: &str) -> bool {
    a.version == from && a.split().is_none()
}

fn finished(mut report: Report, started: Instant) -> Report {
    report.timings.total = started.elapsed();
    report.seconds = report.timings.total.as_secs_f64();
    report
}

/// Carry out a plan's action.
async fn execute(e: &Executor<'_>, p: &Plan, report: &mut Report) -> Result<Executed, Error> {
    Ok(match &p.action {
        Action::AlreadyServing { version } => {
            say(
                e.ctx,
                &format!(
                    "alias {}:{} already serves {} (version {version}): nothing to do",
                    e.settings.function, e.settings.alias, report.digest
                ),
            );
            Executed::Done
        }
        Action::Create => e.create(report).await?,
        Action::Deploy { from, moves } => e.deploy(from, moves, report).await?,
        Action::Resume { from, to, moves } => e.resume(from, to, moves, report).await?,
        Action::Undo {
            from,
            to,
            restore,
            alarm,
        } => e.undo(from, to, restore, alarm, report).await?,
        // Handled before: waiting is not a write.
        Action::Wait(_) => Executed::Lost { shifted: None },
    })
}

fn say(ctx: &Context, line: &str) {
    if !ctx.quiet {
        crate::output::say(line);
    }
}

/// The report as the plan stands; the executor fills in what happened.
fn report_for(o: &Observed, p: &Plan, s: &Settings, dry_run: bool) -> Report {
    let alias = o.alias.as_ref();
    let (end, version, previous) = match &p.action {
        Action::AlreadyServing { version } => (End::AlreadyServing, Some(version.clone()), None),
        Action::Deploy { from, .. } => (End::Deployed, None, Some(from.clone())),
        Action::Resume { from, to, .. } | Action::Undo { from, to, .. } => {
            (End::Deployed, Some(to.clone()), Some(from.clone()))
        }
        Action::Create | Action::Wait(_) => (End::Deployed, None, None),
    };
    Report {
        end: if dry_run { End::DryRun } else { end },
        function: s.function.clone(),
        alias: s.alias.clone(),
        alias_arn: alias
            .map(|a| a.arn.clone())
            .unwrap_or_else(|| format!("{}:{}", o.function.arn, s.alias)),
        image_uri: o.image.uri.clone(),
        digest: o.image.digest.clone(),
        index_digest: o.image.index_digest.clone(),
        architecture: o.image.target.lambda(),
        strategy: s.strategy,
        version,
        previous_version: previous,
        routing: alias
            .map(|a| routing(&a.version, &a.weights))
            .unwrap_or_else(|| "—".into()),
        alarms: s.alarms.clone(),
        plan: p.lines.clone(),
        timeline: vec![],
        warnings: p.warnings.clone(),
        seconds: 0.0,
        timings: Timings::default(),
    }
}

/// Waiting for another deployment that holds the alias: in all at most
/// `--timeout` (`--deploy-timeout` in ship) per deploy.
#[derive(Default)]
struct Waiting {
    deadline: Option<Instant>,
}

impl Waiting {
    /// Until the alias changes (the other deployment moved on, finished or
    /// was rolled back) or its holder's lease passes; then the deploy
    /// observes and decides again. How long it waited.
    async fn wait(
        &mut self,
        lambda: &Lambda,
        s: &Settings,
        o: &Observed,
        holder: &Holder,
    ) -> Result<std::time::Duration, DeployError> {
        let began = Instant::now();
        let deadline = *self.deadline.get_or_insert(began + s.timeout);
        let seen = o.alias.as_ref();
        let until = holder.record.as_ref().map(|r| r.until);
        lambda.say(&format!(
            "alias {}:{} is split ({}) by {}; waiting for it to finish (up to {} in all)",
            s.function,
            s.alias,
            holder.routing,
            holder.describe(),
            show(s.timeout)
        ));
        let mut waiter = wait::Waiter::new(wait::OTHER_DEPLOYMENT, deadline);
        // The observation just made was the first look.
        waiter.next().await;
        loop {
            waiter.next().await;
            if waiter.expired() {
                return Err(busy(s, o, holder));
            }
            let now = lambda.alias(&s.alias).await?;
            if !same(now.as_ref(), seen) || until.is_some_and(|u| u <= crate::clock::unix_now()) {
                return Ok(began.elapsed());
            }
        }
    }
}

/// The alias unchanged (its RevisionId, or — where RevisionIds do not move,
/// as in emulators — its routing and description).
fn same(a: Option<&Alias>, b: Option<&Alias>) -> bool {
    match (a, b) {
        (Some(a), Some(b)) => {
            a.revision_id == b.revision_id
                && a.version == b.version
                && a.weights == b.weights
                && a.description == b.description
        }
        (None, None) => true,
        _ => false,
    }
}

/// Still held after the wait.
fn busy(s: &Settings, o: &Observed, h: &Holder) -> DeployError {
    let primary = o.alias.as_ref().map(|a| a.version.as_str()).unwrap_or("?");
    let clear = format!(
        "`hoist rollback --function {} --alias {}` clears the split, and --force takes the alias over from version {primary}",
        s.function, s.alias
    );
    let (hint, class) = match &h.record {
        // A hoist deployment still writing the alias: re-running later is
        // the fix.
        Some(_) => (
            format!("it is still running: re-run when it is done (or raise --timeout); {clear}"),
            Class::Infrastructure,
        ),
        None => (
            format!("wait for that deployment to finish, or {clear}"),
            Class::Usage,
        ),
    };
    DeployError::Refused {
        message: format!(
            "alias {}:{} is still split between versions ({}) by {} after waiting {}",
            s.function,
            s.alias,
            h.routing,
            h.describe(),
            show(s.timeout)
        ),
        hint,
        class,
    }
}

/// Text from AWS (Lambda's reasons, alarm reasons, ARNs) as hoist prints
/// it: control characters (newlines, terminal escapes, CI workflow-command
/// line starts) escaped, everything else as is.
pub fn outside(text: &str) -> String {
    text.chars()
        .map(|c| {
            if c.is_control() {
                c.escape_default().to_string()
            } else {
                c.to_string()
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::lambda::Alias;

    /// Moved under a shift from 3 to 4: put back only when wholly on 3.
    #[test]
    fn a_put_back_is_the_alias_wholly_on_the_version_shifted_from() {
        let alias = |version: &str, weights: &[(&str, f64)]| Alias {
            arn: "arn:aws:lambda:us-east-1:123456789012:function:f:live".into(),
            version: version.into(),
            weights: weights.iter().map(|(v, w)| (v.to_string(), *w)).collect(),
            description: String::new(),
            revision_id: Some("r".into()),
        };
        for (a, put_back) in [
            (alias("3", &[]), true),
            // A weight of 0 left behind is no share.
            (alias("3", &[("4", 0.0)]), true),
            // Split differently, or by someone else's deployment.
            (alias("3", &[("4", 0.5)]), false),
            (alias("3", &[("5", 0.1)]), false),
            // Another version, or the one shifted to.
            (alias("5", &[]), false),
            (alias("4", &[]), false),
            (alias("$LATEST", &[]), false),
        ] {
            assert_eq!(super::put_back(&a, "3"), put_back, "{a:?}");
        }
    }

    #[test]
    fn text_from_outside() {
        assert_eq!(super::outside("plain: ok"), "plain: ok");
        assert_eq!(
            super::outside("line\n::error::x\u{1b}[31m"),
            "line\\n::error::x\\u{1b}[31m"
        );
    }
}

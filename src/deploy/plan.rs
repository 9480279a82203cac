//! The deploy's decisions, as pure functions of what was observed
//! ([`Observed`]) and what was asked ([`Settings`]): whether there is
//! anything to do (idempotency), whether the alias is free — or split by
//! another deployment (wait for it), or by this image's own interrupted
//! deployment (complete it) —, whether Lambda could weight the two
//! versions, which alarms are watched, the steps, and the plan's lines (what
//! a dry run prints). Nothing here reads or writes; `execute.rs` carries
//! the plan out.

use std::collections::BTreeSet;

use super::error::DeployError;
use super::observe::{self, Observed};
use super::preflight;
use super::record::{Record, Shifting};
use super::settings::Settings;
use super::strategy::{Step, show};
use crate::error::Class;

/// The unpublished version. An alias on it serves whatever
/// UpdateFunctionCode writes, the moment the update lands; Lambda refuses
/// to weight it (Lambda developer guide, configuration-aliases: "Both
/// versions must be published. The alias cannot point to $LATEST").
pub use super::alarms::AlarmState;
pub use super::lambda::LATEST;

/// What the deploy will do.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    pub action: Action,
    /// What a dry run prints, and the `check:` lines a real run logs.
    pub lines: Vec<String>,
    pub warnings: Vec<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// The alias already serves exactly this digest, wholly: nothing to do.
    AlreadyServing { version: String },
    /// Another deployment has the alias split: wait until it is done (or
    /// its holder is gone), then observe and decide again.
    Wait(Holder),
    /// No such alias: publish the new version, create the alias on it.
    Create,
    /// Publish the new version, then move the alias from `from` (first
    /// pinning `$LATEST` to a version when `from` is `$LATEST`).
    Deploy { from: String, moves: Moves },
    /// This image's own deployment, interrupted mid-shift (its runner was
    /// lost): complete it from where the alias stands — no update, no new
    /// version, the bake and the alarm watch again.
    Resume {
        from: String,
        to: String,
        moves: Moves,
    },
    /// As Resume, but an alarm fires: send the alias back to `from`.
    Undo {
        from: String,
        to: String,
        /// The alias's description once back.
        restore: String,
        alarm: AlarmState,
    },
}

/// How the alias moves to the new version.
#[derive(Debug, Clone, PartialEq)]
pub struct Moves {
    pub steps: Vec<Step>,
    pub watch: Watch,
    /// The alias has provisioned concurrency: wait for it after each move.
    pub provisioned: bool,
    /// The previous version in the alias's record before this deploy (the
    /// in-progress record carries it, for whoever undoes the shift).
    pub before: Option<String>,
    /// The alias's description should the shift be undone.
    pub restore: String,
}

/// Who has an alias split, as far as its description says.
#[derive(Debug, Clone, PartialEq)]
pub struct Holder {
    /// The alias's routing, e.g. `3=90% 4=10%`.
    pub routing: String,
    /// The holder's in-progress record, when a hoist deploy split it.
    pub record: Option<Shifting>,
}

impl Holder {
    pub fn describe(&self) -> String {
        match &self.record {
            Some(r) => format!(
                "hoist's deployment of {} (version {}, {}{}, process {})",
                r.digest,
                r.to,
                r.strategy,
                r.run
                    .as_deref()
                    .map(|u| format!(", run {u}"))
                    .unwrap_or_default(),
                r.id
            ),
            None => "a deployment that left no hoist record on the alias (another tool, or a hand-made split)".into(),
        }
    }
}

/// Where a deploy starts.
#[derive(Debug, Clone, PartialEq)]
pub enum Start {
    AlreadyServing {
        version: String,
    },
    Create,
    /// The alias serves `from` wholly (or is taken over with --force).
    Shift {
        from: String,
    },
    /// This image's own interrupted deployment.
    Resume {
        record: Shifting,
        weight: f64,
    },
    /// Split by a live deployment of another image (or by one hoist did
    /// not make).
    Wait(Holder),
    /// Split by a deployment of another image whose runner is gone.
    Abandoned(Holder),
}

/// Where the deploy starts. A split alias is this image's own deployment
/// when its record says so — the same digest, and the alias split exactly
/// between the recorded versions, the additional one running this digest —
/// and its runner is gone: its lease (`until`) has passed, or this is a
/// re-run of the same CI run (CI systems re-run a job only once it has
/// ended). Otherwise a live runner may still be shifting it: wait.
pub fn start(o: &Observed, force: bool) -> Start {
    let Some(a) = &o.alias else {
        return Start::Create;
    };
    let target = &o.image.digest;
    let Some((extra, weight)) = a.split() else {
        return match observe::digest(o.serving.as_ref()) {
            Some(d) if &d == target => Start::AlreadyServing {
                version: a.version.clone(),
            },
            _ => Start::Shift {
                from: a.version.clone(),
            },
        };
    };
    if force {
        return Start::Shift {
            from: a.version.clone(),
        };
    }
    let record = Shifting::parse(&a.description).filter(|r| r.from == a.version && r.to == extra);
    let holder = Holder {
        routing: routing(&a.version, &a.weights),
        record: record.clone(),
    };
    let Some(r) = record else {
        return Start::Wait(holder);
    };
    let additional = observe::digest(o.additional.as_ref());
    let ours = &r.digest == target && additional.as_ref().is_none_or(|d| d == target);
    let rerun = !o.me.yielded && o.me.run.is_some() && r.run == o.me.run;
    let gone = r.until <= o.now || rerun || r.id == o.me.id;
    match (ours, gone) {
        (true, true) => Start::Resume { record: r, weight },
        (false, true) => Start::Abandoned(holder),
        (_, false) => Start::Wait(holder),
    }
}

/// The plan for `o`, or why the deploy is refused.
pub fn plan(o: &Observed, s: &Settings) -> Result<Plan, DeployError> {
    let mut p = Plan {
        action: Action::Create,
        lines: vec![format!(
            "image: {} ({}, {})",
            o.image.uri,
            o.image.facts.config.architecture,
            crate::progress::bytes(o.image.facts.layers.iter().map(|l| l.size).sum())
        )],
        warnings: vec![],
    };
    let mut checks = preflight_checks(o, s, &mut p.warnings)?;
    match start(o, s.force) {
        Start::AlreadyServing { version } => {
            if version == LATEST {
                p.warnings.push(format!(
                    "alias {} follows {LATEST} (UpdateFunctionCode changes what it serves at once); the next deploy publishes that code as a version and points the alias at it first",
                    s.alias
                ));
            }
            p.lines.push(format!(
                "alias {} already serves {} (version {version}): nothing to do",
                s.alias, o.image.digest
            ));
            p.action = Action::AlreadyServing { version };
        }
        Start::Wait(holder) => {
            p.lines.push(format!(
                "alias {} is split ({}) by {}: wait for it to finish (up to {}), then decide again",
                s.alias,
                holder.routing,
                holder.describe(),
                show(s.timeout)
            ));
            p.action = Action::Wait(holder);
        }
        Start::Abandoned(holder) => return Err(abandoned(o, s, &holder)),
        Start::Create => {
            begin_watch(o, s, &mut checks, &mut p.warnings)?;
            if !s.strategy.steps().is_empty() {
                p.warnings.push(format!(
                    "alias {} does not exist: it is created on the new version (nothing to shift from)",
                    s.alias
                ));
            }
            p.lines.extend(publish_lines(o, s, false));
            p.lines
                .push(format!("create alias {} on the new version", s.alias));
        }
        Start::Shift { from } => deploy(o, s, from, &mut checks, &mut p)?,
        Start::Resume { record, weight } => resume(o, s, record, weight, &mut checks, &mut p)?,
    }
    p.lines
        .extend(checks.into_iter().map(|c| format!("check: {c}")));
    Ok(p)
}

/// The image against the function, and whether Lambda may pull it: every
/// problem at once, or the `check:` lines.
fn preflight_checks(
    o: &Observed,
    s: &Settings,
    warnings: &mut Vec<String>,
) -> Result<Vec<String>, DeployError> {
    let mut problems = preflight::check(&o.image.facts, &o.function.facts, s.architecture);
    let mut checks = Vec::new();
    if let Some(r) = &o.image.facts.region {
        checks.push(format!(
            "region: the image and function {} are both in {r}",
            s.function
        ));
    }
    match &o.image.pull {
        Some((pull, read)) => {
            let found = super::pull::check(pull, read);
            checks.push(found.line);
            problems.extend(found.problem);
            warnings.extend(found.warning);
        }
        None => warnings.push(format!(
            "could not tell the function's account and region from its ARN ({}), so whether Lambda may pull the image was not checked",
            super::outside(&o.function.arn)
        )),
    }
    if !problems.is_empty() {
        return Err(DeployError::Preflight {
            function: s.function.clone(),
            problems,
        });
    }
    Ok(checks)
}

/// A new version, shifted to from `from`.
fn deploy(
    o: &Observed,
    s: &Settings,
    from: String,
    checks: &mut Vec<String>,
    p: &mut Plan,
) -> Result<(), DeployError> {
    // An alias on $LATEST serves the new image the moment
    // UpdateFunctionCode lands (no smoke test, no bake), Lambda refuses to
    // weight it, and "previous = $LATEST" would roll back to the new code.
    // So hoist first publishes the code $LATEST serves now as a version and
    // points the alias at it, then shifts from that version.
    let pin = from == LATEST;
    let steps = s.strategy.steps();
    if !steps.is_empty() && !pin {
        check_weighted(o, s, &from, checks)?;
    }
    let provisioned = !pin && provisioned_check(o, s, checks, &mut p.warnings);
    let watch = begin_watch(o, s, checks, &mut p.warnings)?;
    let description = o.alias.as_ref().map(|a| a.description.as_str());
    let shown_from = if pin {
        format!("the version published from {LATEST}")
    } else {
        from.clone()
    };
    p.lines.extend(publish_lines(o, s, pin));
    p.lines.extend(step_lines(
        s,
        &steps,
        provisioned,
        "the new version",
        &shown_from,
    ));
    p.lines.extend(watch_line(s));
    p.action = Action::Deploy {
        moves: Moves {
            steps,
            watch,
            provisioned,
            before: description.and_then(|d| before(d, &from)),
            restore: description.map(undone).unwrap_or_default(),
        },
        from,
    };
    Ok(())
}

/// This image's own interrupted shift, completed from where it stands.
fn resume(
    o: &Observed,
    s: &Settings,
    r: Shifting,
    weight: f64,
    checks: &mut Vec<String>,
    p: &mut Plan,
) -> Result<(), DeployError> {
    let at = (weight * 100.0).round() as u32;
    let provisioned = provisioned_check(o, s, checks, &mut p.warnings);
    p.lines.push(format!(
        "alias {} was left at {} by {} (its runner is gone): complete that shift from {at}% — no update, no new version",
        s.alias,
        routing(&r.from, &[(r.to.clone(), weight)]),
        Holder {
            routing: String::new(),
            record: Some(r.clone()),
        }
        .describe()
    ));
    // An alarm firing now is about the new version, which has had traffic
    // since the shift began: the shift is undone, as its runner would have.
    if let Err(StartProblem::Firing(firing)) =
        Watch::begin(&s.alarms, &o.alarms, s.ignore_alarms_at_start)
    {
        p.lines.push(format!(
            "alarm {} is in ALARM: send all of the traffic back to version {}",
            firing[0].name, r.from
        ));
        p.action = Action::Undo {
            from: r.from.clone(),
            to: r.to.clone(),
            restore: r.undone(),
            alarm: firing[0].clone(),
        };
        return Ok(());
    }
    let watch = begin_watch(o, s, checks, &mut p.warnings)?;
    let steps = s.strategy.steps_from(at);
    let shown_to = format!("version {}", r.to);
    p.lines
        .extend(step_lines(s, &steps, provisioned, &shown_to, &r.from));
    p.lines.extend(watch_line(s));
    p.action = Action::Resume {
        from: r.from.clone(),
        to: r.to.clone(),
        moves: Moves {
            steps,
            watch,
            provisioned,
            before: r.before.clone(),
            restore: r.undone(),
        },
    };
    Ok(())
}

/// The alias's record names `from` as current: its previous version.
fn before(description: &str, from: &str) -> Option<String> {
    match (Record::parse(description), Shifting::parse(description)) {
        (Some(r), _) if r.current == from => Some(r.previous),
        (_, Some(s)) if s.from == from => s.before,
        _ => None,
    }
}

/// The description an undone shift leaves: the one the alias had, unless
/// that was another deploy's in-progress record (then what it would undo
/// to).
fn undone(description: &str) -> String {
    match Shifting::parse(description) {
        Some(s) => s.undone(),
        None => description.to_string(),
    }
}

fn abandoned(o: &Observed, s: &Settings, h: &Holder) -> DeployError {
    let primary = o.alias.as_ref().map(|a| a.version.as_str()).unwrap_or("?");
    DeployError::refused(
        format!(
            "alias {}:{} is split ({}) by {}, whose runner is gone (it stopped writing the alias; it is not this image's deployment)",
            s.function,
            s.alias,
            h.routing,
            h.describe()
        ),
        format!(
            "re-run the deployment of that image to complete it, run `hoist rollback --function {} --alias {}` to clear it, or pass --force to deploy this image from version {primary}",
            s.function, s.alias
        ),
    )
}

/// Weighted aliases need both versions to share the execution role and the
/// dead-letter configuration (Lambda guide, configuration-aliases;
/// serverless-aws-alias#64); the new version takes $LATEST's.
fn check_weighted(
    o: &Observed,
    s: &Settings,
    from: &str,
    checks: &mut Vec<String>,
) -> Result<(), DeployError> {
    let Some(old) = &o.serving else {
        return Ok(());
    };
    let facts = |f: &super::lambda::Function| RoutingFacts {
        role: f.role.clone(),
        dead_letter: f.dead_letter.clone(),
    };
    let new = facts(&o.function);
    let why = weighted(from, &facts(old), &new);
    if !why.is_empty() {
        return Err(DeployError::refused(
            format!(
                "Lambda cannot split alias {} between version {from} and the new version: {}",
                s.alias,
                why.join("; ")
            ),
            "deploy with --strategy all-at-once, or give the function back the execution role and dead-letter queue of the version the alias serves",
        ));
    }
    checks.push(format!(
        "weighted routing: version {from} and the new version share the execution role and the dead-letter queue ({})",
        new.dead_letter.as_deref().unwrap_or("none")
    ));
    Ok(())
}

/// Whether each step waits for provisioned concurrency (the check line, or
/// a warning when it could not be read).
fn provisioned_check(
    o: &Observed,
    s: &Settings,
    checks: &mut Vec<String>,
    warnings: &mut Vec<String>,
) -> bool {
    match &o.provisioned {
        Ok(Some(p)) => {
            checks.push(format!(
                "provisioned concurrency: alias {} has {} ({}); after each routing change hoist waits until it is READY before baking",
                s.alias, p.requested, p.status
            ));
            true
        }
        Ok(None) => {
            checks.push(format!(
                "provisioned concurrency: none on alias {}",
                s.alias
            ));
            false
        }
        Err(e) => {
            warnings.push(format!(
                "could not read the provisioned concurrency of alias {} ({e}); if it has some, the bakes may begin before Lambda has allocated it to the new version",
                s.alias
            ));
            false
        }
    }
}

/// The alarms, before anything moves: all exist, none fires (unless
/// ignored at start).
fn begin_watch(
    o: &Observed,
    s: &Settings,
    checks: &mut Vec<String>,
    warnings: &mut Vec<String>,
) -> Result<Watch, DeployError> {
    if s.alarms.is_empty() {
        return Ok(Watch::default());
    }
    let w = Watch::begin(&s.alarms, &o.alarms, s.ignore_alarms_at_start).map_err(|p| match p {
        StartProblem::Missing(names) => DeployError::refused(
            format!(
                "CloudWatch has no alarm named {} in this region",
                names.join(", ")
            ),
            "check the --alarm names (and --region); metric, composite and log alarms all work",
        ),
        StartProblem::Firing(firing) => DeployError::Refused {
            message: format!(
                "not deploying: {}",
                firing
                    .iter()
                    .map(|s| format!("alarm {} is already in ALARM ({})", s.name, s.reason))
                    .collect::<Vec<_>>()
                    .join("; ")
            ),
            hint: "fix what fires it first, or pass --ignore-alarms-at-start to deploy anyway (e.g. the hotfix for it)".into(),
            class: Class::Policy,
        },
    })?;
    for a in o.alarms.iter().filter(|a| w.ignored.contains(&a.name)) {
        warnings.push(format!(
            "alarm {} is already in ALARM ({}); --ignore-alarms-at-start: it counts again once it recovers",
            a.name, a.reason
        ));
    }
    checks.push(format!(
        "alarms: {}",
        s.alarms
            .iter()
            .filter_map(|n| o.alarms.iter().find(|a| &a.name == n))
            .map(|a| format!("{} ({} alarm, {})", a.name, a.kind, a.state))
            .collect::<Vec<_>>()
            .join(", ")
    ));
    Ok(w)
}

/// Pin $LATEST (when `pin`), update, publish, wait for Active, smoke test.
fn publish_lines(o: &Observed, s: &Settings, pin: bool) -> Vec<String> {
    let numbered = |offset: u64| match o.next_version {
        Some(n) => format!("version {} (probably)", n + offset),
        None => "a new version".to_string(),
    };
    let mut lines = Vec::new();
    if pin {
        let digest = observe::digest(o.serving.as_ref())
            .map(|d| format!(" ({d})"))
            .unwrap_or_default();
        lines.push(format!(
            "alias {} follows {LATEST}, so UpdateFunctionCode would change what it serves at once (and Lambda cannot weight {LATEST}): first publish the code {LATEST} runs now{digest} as {} and point the alias at it; the shift goes from that version",
            s.alias,
            numbered(0)
        ));
    }
    lines.push(format!(
        "update function {} to it{}, then publish {} and wait until it is Active",
        s.function,
        s.architecture
            .map(|a| format!(" (architecture {})", a.lambda()))
            .unwrap_or_default(),
        numbered(u64::from(pin))
    ));
    if s.smoke.is_some() {
        lines.push("invoke the new version with the smoke event before moving any traffic".into());
    }
    lines
}

fn step_lines(
    s: &Settings,
    steps: &[Step],
    provisioned: bool,
    to: &str,
    from: &str,
) -> Vec<String> {
    let wait = if provisioned {
        "wait for provisioned concurrency READY, then "
    } else {
        ""
    };
    let mut lines: Vec<String> = steps
        .iter()
        .map(|st| {
            format!(
                "alias {}: {}% on {to}, {}% on {from}; {wait}bake {}",
                s.alias,
                st.percent,
                100 - st.percent,
                show(st.bake)
            )
        })
        .collect();
    lines.push(format!("alias {}: 100% on {to} (from {from})", s.alias));
    lines
}

fn watch_line(s: &Settings) -> Option<String> {
    if s.alarms.is_empty() && s.max_errors.is_none() {
        return None;
    }
    let mut w = s.alarms.clone();
    if let Some(max_errors) = s.max_errors {
        w.push(format!(
            "the Errors metric of the new version (more than {max_errors} rolls back)"
        ));
    }
    Some(format!("watch during every bake: {}", w.join(", ")))
}

/// What Lambda requires alike of the two versions of a weighted alias
/// (configuration-aliases): the execution role and the dead-letter queue
/// configuration (or none on both).
#[derive(Debug, Clone, PartialEq)]
pub struct RoutingFacts {
    pub role: String,
    pub dead_letter: Option<String>,
}

/// Why Lambda would refuse to split an alias between version `from` (`old`)
/// and the new version (`new`: $LATEST's configuration, which it takes).
pub fn weighted(from: &str, old: &RoutingFacts, new: &RoutingFacts) -> Vec<String> {
    let mut why = Vec::new();
    if old.role != new.role {
        why.push(format!(
            "version {from} runs as {} but the function now runs as {}",
            old.role, new.role
        ));
    }
    if old.dead_letter != new.dead_letter {
        let show = |d: &Option<String>| d.clone().unwrap_or_else(|| "none".into());
        why.push(format!(
            "version {from} has dead-letter queue {} but the function now has {}",
            show(&old.dead_letter),
            show(&new.dead_letter)
        ));
    }
    why
}

/// `5=90% 6=10%`: an alias's routing as shown to users.
pub fn routing(primary: &str, weights: &[(String, f64)]) -> String {
    let extra: f64 = weights.iter().map(|(_, w)| w).sum();
    let mut out = format!("{primary}={}%", percent(1.0 - extra));
    for (v, w) in weights {
        out.push_str(&format!(" {v}={}%", percent(*w)));
    }
    out
}

fn percent(w: f64) -> String {
    let p = (w * 1000.0).round() / 10.0;
    if p.fract() == 0.0 {
        format!("{}", p as i64)
    } else {
        format!("{p}")
    }
}

/// Judges the alarms during the bakes. An alarm already in ALARM when the
/// deploy started (allowed with `--ignore-alarms-at-start`, say for the
/// hotfix of what fires it) cannot tell about the new version until it has
/// recovered; it counts again from its first state other than ALARM.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Watch {
    pub ignored: BTreeSet<String>,
}

impl Watch {
    /// Before the deploy: alarms asked for but not found, and those firing.
    /// Firing alarms block unless `ignore_firing`.
    pub fn begin(
        wanted: &[String],
        states: &[AlarmState],
        ignore_firing: bool,
    ) -> Result<Watch, StartProblem> {
        let missing: Vec<String> = wanted
            .iter()
            .filter(|w| !states.iter().any(|s| &s.name == *w))
            .cloned()
            .collect();
        if !missing.is_empty() {
            return Err(StartProblem::Missing(missing));
        }
        let firing: Vec<AlarmState> = states.iter().filter(|s| s.firing()).cloned().collect();
        if !firing.is_empty() && !ignore_firing {
            return Err(StartProblem::Firing(firing));
        }
        Ok(Watch {
            ignored: firing.into_iter().map(|s| s.name).collect(),
        })
    }

    /// During a bake: the first alarm that says roll back, if any.
    pub fn judge(&mut self, states: &[AlarmState]) -> Option<AlarmState> {
        for s in states {
            if !s.firing() {
                self.ignored.remove(&s.name);
            }
        }
        states
            .iter()
            .find(|s| s.firing() && !self.ignored.contains(&s.name))
            .cloned()
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum StartProblem {
    Missing(Vec<String>),
    Firing(Vec<AlarmState>),
}

#[cfg(test)]
mod tests;

//! The deploy's decisions, as pure functions: whether there is anything to
//! do (idempotency), whether the alias is free to shift, what `hoist
//! rollback` goes back to, and how the alarms are judged during a bake.

use std::collections::BTreeSet;

use serde::Serialize;

use crate::image::Digest;

/// An alias as GetAlias describes it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Alias {
    pub arn: String,
    pub version: String,
    /// Additional versions and their weights (0.0–1.0); Lambda allows one.
    pub weights: Vec<(String, f64)>,
    pub description: String,
    #[serde(skip)]
    pub revision_id: Option<String>,
}

/// What a deploy starts from.
#[derive(Debug, Clone, PartialEq)]
pub enum Start {
    /// The alias serves exactly this digest, wholly: nothing to do.
    AlreadyServing { version: String },
    /// No such alias yet: create it on the new version.
    Create,
    /// The alias serves `from` wholly: shift from it.
    Shift { from: String },
    /// The alias is split between versions by another deployment.
    Busy {
        primary: String,
        additional: Vec<(String, f64)>,
    },
}

/// `serving` is the digest behind the alias's version (when known).
pub fn start(
    alias: Option<&Alias>,
    serving: Option<&Digest>,
    target: &Digest,
    force: bool,
) -> Start {
    let Some(a) = alias else {
        return Start::Create;
    };
    let split: Vec<(String, f64)> = a
        .weights
        .iter()
        .filter(|(_, w)| *w > 0.0)
        .cloned()
        .collect();
    if !split.is_empty() {
        return if force {
            Start::Shift {
                from: a.version.clone(),
            }
        } else {
            Start::Busy {
                primary: a.version.clone(),
                additional: split,
            }
        };
    }
    if serving == Some(target) {
        return Start::AlreadyServing {
            version: a.version.clone(),
        };
    }
    Start::Shift {
        from: a.version.clone(),
    }
}

/// The unpublished version. An alias on it serves whatever
/// UpdateFunctionCode writes, the moment the update lands; Lambda refuses
/// to weight it (Lambda developer guide, configuration-aliases: "Both
/// versions must be published. The alias cannot point to $LATEST").
pub const LATEST: &str = "$LATEST";

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

/// What hoist writes into the alias description when a deploy or rollback
/// completes, so that `hoist rollback` — in a later job, on another machine —
/// knows where to go back to. It survives the job because it lives on the
/// alias itself, and it changes in the same UpdateAlias call that moves the
/// traffic, so it cannot disagree with the alias.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub current: String,
    pub previous: String,
}

const RECORD_PREFIX: &str = "hoist:";

impl Record {
    pub fn description(&self, digest: Option<&Digest>) -> String {
        let mut s = format!(
            "{RECORD_PREFIX} current={} previous={}",
            self.current, self.previous
        );
        if let Some(d) = digest {
            s.push_str(&format!(" image={}", d.short()));
        }
        s
    }

    pub fn parse(description: &str) -> Option<Record> {
        let rest = description.trim().strip_prefix(RECORD_PREFIX)?;
        let mut current = None;
        let mut previous = None;
        for word in rest.split_whitespace() {
            match word.split_once('=') {
                Some(("current", v)) => current = Some(v.to_string()),
                Some(("previous", v)) => previous = Some(v.to_string()),
                _ => {}
            }
        }
        Some(Record {
            current: current?,
            previous: previous?,
        })
    }
}

/// What `hoist rollback` does.
#[derive(Debug, Clone, PartialEq)]
pub enum Rollback {
    /// The alias was left split (a deploy killed mid-shift): drop the
    /// additional version, keep the one that served before.
    ClearRouting { keep: String, drop: String },
    /// Move the alias wholly from one version to the other.
    To { from: String, to: String },
}

pub fn rollback(alias: &Alias, force: bool) -> Result<Rollback, String> {
    if let Some((v, _)) = alias.weights.iter().find(|(_, w)| *w > 0.0) {
        return Ok(Rollback::ClearRouting {
            keep: alias.version.clone(),
            drop: v.clone(),
        });
    }
    let Some(r) = Record::parse(&alias.description) else {
        return Err(format!(
            "the alias has no record of a hoist deploy (its description is '{}'), so there is no previous version to go back to",
            alias.description
        ));
    };
    if r.previous == LATEST {
        // Recorded by a deploy from an alias that followed $LATEST: that
        // code is gone ($LATEST is whatever was deployed since), so going
        // "back" to $LATEST would serve the new code.
        return Err(format!(
            "the recorded previous version is {LATEST}, which no longer holds the code the alias served before (UpdateFunctionCode replaced it): rolling back to it would serve the new code"
        ));
    }
    if alias.version == r.current || force {
        if alias.version == r.previous {
            return Err(format!(
                "the alias already serves version {}, the previous one",
                r.previous
            ));
        }
        return Ok(Rollback::To {
            from: alias.version.clone(),
            to: r.previous,
        });
    }
    Err(format!(
        "the alias serves version {}, but the last hoist deploy left it on version {} (replacing {}): it was changed since, outside hoist",
        alias.version, r.current, r.previous
    ))
}

/// A CloudWatch alarm's state, as DescribeAlarms gives it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AlarmState {
    pub name: String,
    pub state: String,
    pub reason: String,
    /// metric, composite or log.
    pub kind: &'static str,
}

impl AlarmState {
    pub fn firing(&self) -> bool {
        self.state == "ALARM"
    }
}

/// Judges the alarms during the bakes. An alarm already in ALARM when the
/// deploy started (allowed with `--ignore-alarms-at-start`, say for the
/// hotfix of what fires it) cannot tell about the new version until it has
/// recovered; it counts again from its first state other than ALARM.
#[derive(Debug, Clone, Default)]
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
mod tests {
    use super::*;

    fn alias(version: &str, weights: &[(&str, f64)], description: &str) -> Alias {
        Alias {
            arn: "arn:aws:lambda:us-east-1:123456789012:function:f:live".into(),
            version: version.into(),
            weights: weights.iter().map(|(v, w)| (v.to_string(), *w)).collect(),
            description: description.into(),
            revision_id: None,
        }
    }

    fn d(c: char) -> Digest {
        format!("sha256:{}", c.to_string().repeat(64))
            .parse()
            .unwrap()
    }

    #[test]
    fn where_a_deploy_starts() {
        let (a, b) = (d('a'), d('b'));
        let cases: Vec<(Option<Alias>, Option<&Digest>, bool, Start)> = vec![
            (None, None, false, Start::Create),
            (
                Some(alias("3", &[], "")),
                Some(&a),
                false,
                Start::AlreadyServing {
                    version: "3".into(),
                },
            ),
            (
                Some(alias("3", &[], "")),
                Some(&b),
                false,
                Start::Shift { from: "3".into() },
            ),
            (
                Some(alias("3", &[], "")),
                None,
                false,
                Start::Shift { from: "3".into() },
            ),
            // Split by another deployment, even onto this very digest: refused…
            (
                Some(alias("3", &[("4", 0.1)], "")),
                Some(&a),
                false,
                Start::Busy {
                    primary: "3".into(),
                    additional: vec![("4".into(), 0.1)],
                },
            ),
            // …unless forced.
            (
                Some(alias("3", &[("4", 0.1)], "")),
                Some(&b),
                true,
                Start::Shift { from: "3".into() },
            ),
            // A zero weight left behind is no split.
            (
                Some(alias("3", &[("4", 0.0)], "")),
                Some(&a),
                false,
                Start::AlreadyServing {
                    version: "3".into(),
                },
            ),
        ];
        for (al, serving, force, want) in cases {
            assert_eq!(
                start(al.as_ref(), serving, &a, force),
                want,
                "{al:?} {serving:?}"
            );
        }
    }

    #[test]
    fn records_and_rollbacks() {
        let r = Record {
            current: "5".into(),
            previous: "4".into(),
        };
        let text = r.description(Some(&d('a')));
        assert!(text.len() <= 256);
        assert_eq!(Record::parse(&text), Some(r.clone()));
        assert_eq!(Record::parse("my alias"), None);
        assert_eq!(Record::parse("hoist: current=5"), None);

        let cases: Vec<(Alias, bool, Result<Rollback, &str>)> = vec![
            (
                alias("5", &[], &text),
                false,
                Ok(Rollback::To {
                    from: "5".into(),
                    to: "4".into(),
                }),
            ),
            (
                alias("5", &[("6", 0.2)], &text),
                false,
                Ok(Rollback::ClearRouting {
                    keep: "5".into(),
                    drop: "6".into(),
                }),
            ),
            (
                alias("7", &[], &text),
                false,
                Err("changed since, outside hoist"),
            ),
            (
                alias("7", &[], &text),
                true,
                Ok(Rollback::To {
                    from: "7".into(),
                    to: "4".into(),
                }),
            ),
            (
                alias("4", &[], &text),
                true,
                Err("already serves version 4"),
            ),
            (
                alias("5", &[], "prod"),
                false,
                Err("no record of a hoist deploy"),
            ),
            // previous=$LATEST (an alias that followed $LATEST before a
            // deploy): refused, forced or not.
            (
                alias("5", &[], "hoist: current=5 previous=$LATEST"),
                false,
                Err("no longer holds the code"),
            ),
            (
                alias("7", &[], "hoist: current=5 previous=$LATEST"),
                true,
                Err("no longer holds the code"),
            ),
        ];
        for (a, force, want) in cases {
            let got = rollback(&a, force);
            match want {
                Ok(w) => assert_eq!(got, Ok(w), "{a:?}"),
                Err(w) => assert!(got.as_ref().unwrap_err().contains(w), "{a:?}: {got:?}"),
            }
        }
    }

    #[test]
    fn what_weighted_routing_needs() {
        let f = |role: &str, dlq: Option<&str>| RoutingFacts {
            role: role.into(),
            dead_letter: dlq.map(String::from),
        };
        let sqs = "arn:aws:sqs:us-east-1:1:dlq";
        let sns = "arn:aws:sns:us-east-1:1:dlq";
        let cases: Vec<(RoutingFacts, RoutingFacts, Vec<&str>)> = vec![
            (f("r", None), f("r", None), vec![]),
            (f("r", Some(sqs)), f("r", Some(sqs)), vec![]),
            (
                f("a", None),
                f("b", None),
                vec!["runs as a but the function now runs as b"],
            ),
            (
                f("r", Some(sqs)),
                f("r", Some(sns)),
                vec![
                    "dead-letter queue arn:aws:sqs:us-east-1:1:dlq but the function now has arn:aws:sns",
                ],
            ),
            (
                f("r", None),
                f("r", Some(sqs)),
                vec!["dead-letter queue none but"],
            ),
            (f("r", Some(sqs)), f("r", None), vec!["now has none"]),
            (
                f("a", Some(sqs)),
                f("b", None),
                vec!["runs as a", "now has none"],
            ),
        ];
        for (old, new, want) in cases {
            let got = weighted("3", &old, &new);
            assert_eq!(got.len(), want.len(), "{got:?}");
            for (g, w) in got.iter().zip(&want) {
                assert!(g.contains(w) && g.contains("version 3"), "{g} / {w}");
            }
        }
    }

    #[test]
    fn routing_as_shown() {
        assert_eq!(routing("3", &[]), "3=100%");
        assert_eq!(routing("3", &[("4".into(), 0.1)]), "3=90% 4=10%");
        assert_eq!(routing("3", &[("4".into(), 0.333)]), "3=66.7% 4=33.3%");
    }

    #[test]
    fn alarms() {
        let s = |n: &str, st: &str| AlarmState {
            name: n.into(),
            state: st.into(),
            reason: format!("{n} is {st}"),
            kind: "metric",
        };
        let wanted = vec!["a".to_string(), "b".to_string()];
        assert_eq!(
            Watch::begin(&wanted, &[s("a", "OK")], false).unwrap_err(),
            StartProblem::Missing(vec!["b".into()])
        );
        assert_eq!(
            Watch::begin(&wanted, &[s("a", "OK"), s("b", "ALARM")], false).unwrap_err(),
            StartProblem::Firing(vec![s("b", "ALARM")])
        );
        // INSUFFICIENT_DATA (no traffic yet) neither blocks nor rolls back.
        let mut w =
            Watch::begin(&wanted, &[s("a", "INSUFFICIENT_DATA"), s("b", "OK")], false).unwrap();
        assert_eq!(w.judge(&[s("a", "INSUFFICIENT_DATA"), s("b", "OK")]), None);
        assert_eq!(
            w.judge(&[s("a", "OK"), s("b", "ALARM")]),
            Some(s("b", "ALARM"))
        );

        // Ignored at start: silent while it keeps firing, counts once it has recovered.
        let mut w = Watch::begin(&wanted, &[s("a", "OK"), s("b", "ALARM")], true).unwrap();
        assert_eq!(w.judge(&[s("a", "OK"), s("b", "ALARM")]), None);
        assert_eq!(w.judge(&[s("a", "OK"), s("b", "OK")]), None);
        assert_eq!(
            w.judge(&[s("a", "OK"), s("b", "ALARM")]),
            Some(s("b", "ALARM"))
        );
        // Others still count meanwhile.
        let mut w = Watch::begin(&wanted, &[s("a", "OK"), s("b", "ALARM")], true).unwrap();
        assert_eq!(
            w.judge(&[s("a", "ALARM"), s("b", "ALARM")]),
            Some(s("a", "ALARM"))
        );
    }
}

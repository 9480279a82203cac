//! The plan as a table: observed worlds in, decisions and lines out.

use std::time::Duration;

use super::*;
use crate::deploy::lambda::{Alias, Function, Provisioned};
use crate::deploy::observe::Image;
use crate::deploy::platform::{Arch, Config};
use crate::deploy::preflight::{FunctionFacts, ImageFacts, Layer};
use crate::deploy::pull::{PolicyRead, Pull};
use crate::deploy::record::Runner;
use crate::deploy::strategy::Strategy;
use crate::image::Digest;

const NOW: i64 = 1_800_000_000;
const ARN: &str = "arn:aws:lambda:us-east-1:123456789012:function:app";

fn d(c: char) -> Digest {
    format!("sha256:{}", c.to_string().repeat(64))
        .parse()
        .unwrap()
}

fn function(description: &str) -> Function {
    Function {
        facts: FunctionFacts {
            name: "app".into(),
            account: "123456789012".into(),
            region: "us-east-1".into(),
            package_type: "Image".into(),
            architecture: Arch::X86_64,
            overrides_entrypoint: false,
        },
        arn: ARN.into(),
        role: "arn:aws:iam::123456789012:role/app".into(),
        dead_letter: None,
        revision_id: Some("r".into()),
        code_sha256: Some("c".into()),
        description: description.into(),
        image_uri: None,
        resolved_image_uri: None,
    }
}

/// A published version running `digest` (hoist's description says which).
fn version(digest: &Digest) -> Function {
    function(&format!("hoist {digest}"))
}

fn alias(version: &str, weights: &[(&str, f64)], description: &str) -> Alias {
    Alias {
        arn: format!("{ARN}:live"),
        version: version.into(),
        weights: weights.iter().map(|(v, w)| (v.to_string(), *w)).collect(),
        description: description.into(),
        revision_id: Some("rev-1".into()),
    }
}

fn me() -> Runner {
    Runner {
        id: "me000000".into(),
        run: Some("https://github.com/acme/app/actions/runs/7".into()),
        yielded: false,
    }
}

/// The world: function `app`, an image `d('a')` to deploy, nothing else.
fn world() -> Observed {
    Observed {
        function: function(""),
        alias: None,
        serving: None,
        additional: None,
        image: Image {
            uri: format!(
                "123456789012.dkr.ecr.us-east-1.amazonaws.com/app@{}",
                d('a')
            ),
            digest: d('a'),
            index_digest: None,
            facts: ImageFacts {
                account: Some("123456789012".into()),
                region: Some("us-east-1".into()),
                layers: vec![Layer {
                    media_type: "application/vnd.oci.image.layer.v1.tar+gzip".into(),
                    size: 2048,
                }],
                config_size: 300,
                config: Config {
                    os: "linux".into(),
                    architecture: "amd64".into(),
                    entrypoint: vec!["/app".into()],
                    cmd: vec![],
                },
            },
            target: Arch::X86_64,
            pull: Some((
                Pull::new(ARN, "123456789012", "app").unwrap(),
                PolicyRead::Text(None),
            )),
        },
        alarms: vec![],
        provisioned: Ok(None),
        next_version: None,
        now: NOW,
        me: me(),
    }
}

/// The alias on version 3 (running `d('f')`), split or not.
fn on(alias_: Alias) -> Observed {
    let mut o = world();
    o.serving = Some(version(&d('f')));
    if let Some((v, _)) = alias_.split() {
        o.additional = Some(version(&d(if v == "4" { 'a' } else { 'b' })));
    }
    o.alias = Some(alias_);
    o
}

fn settings(strategy: &str) -> Settings {
    Settings {
        function: "app".into(),
        alias: "live".into(),
        strategy: Strategy::parse(strategy).unwrap(),
        alarms: vec![],
        architecture: None,
        smoke: None,
        force: false,
        ignore_alarms_at_start: false,
        max_errors: None,
        timeout: Duration::from_secs(600),
    }
}

/// This image's own shift from 3 to 4, its lease ending at `until`.
fn ours(until: i64, run: Option<&str>) -> String {
    Shifting {
        from: "3".into(),
        to: "4".into(),
        digest: d('a'),
        strategy: "linear:10%:1m".into(),
        until,
        id: "other000".into(),
        before: Some("2".into()),
        run: run.map(String::from),
    }
    .description()
}

fn theirs(until: i64) -> String {
    Shifting {
        from: "3".into(),
        to: "5".into(),
        digest: d('b'),
        strategy: "canary:10%:5m".into(),
        until,
        id: "other000".into(),
        before: None,
        run: Some("https://github.com/acme/app/actions/runs/6".into()),
    }
    .description()
}

#[test]
fn where_a_deploy_starts() {
    let same_run = Some("https://github.com/acme/app/actions/runs/7");
    let split = |d: &str| alias("3", &[("4", 0.3)], d);
    let resume = |until| Start::Resume {
        record: Shifting::parse(&ours(until, None)).unwrap(),
        weight: 0.3,
    };
    let cases: Vec<(&str, Observed, bool, Start)> = vec![
        ("no alias", world(), false, Start::Create),
        (
            "serves this digest",
            {
                let mut o = on(alias("3", &[], ""));
                o.serving = Some(version(&d('a')));
                o
            },
            false,
            Start::AlreadyServing {
                version: "3".into(),
            },
        ),
        (
            "a zero weight left behind is no split",
            {
                let mut o = on(alias("3", &[("4", 0.0)], ""));
                o.serving = Some(version(&d('a')));
                o
            },
            false,
            Start::AlreadyServing {
                version: "3".into(),
            },
        ),
        (
            "serves another",
            on(alias("3", &[], "")),
            false,
            Start::Shift { from: "3".into() },
        ),
        (
            "serves something unknown",
            {
                let mut o = on(alias("3", &[], ""));
                o.serving = Some(function("by hand"));
                o
            },
            false,
            Start::Shift { from: "3".into() },
        ),
        (
            "split, no record: wait",
            on(split("prod")),
            false,
            Start::Wait(Holder {
                routing: "3=70% 4=30%".into(),
                record: None,
            }),
        ),
        (
            "split, forced",
            on(split(&theirs(NOW + 60))),
            true,
            Start::Shift { from: "3".into() },
        ),
        (
            "ours, its lease passed: resume",
            on(split(&ours(NOW - 1, None))),
            false,
            resume(NOW - 1),
        ),
        (
            "ours, lease live, another run: wait",
            on(split(&ours(NOW + 60, None))),
            false,
            Start::Wait(Holder {
                routing: "3=70% 4=30%".into(),
                record: Shifting::parse(&ours(NOW + 60, None)),
            }),
        ),
        (
            "ours, lease live, a re-run of the same CI run: resume",
            on(split(&ours(NOW + 60, same_run))),
            false,
            Start::Resume {
                record: Shifting::parse(&ours(NOW + 60, same_run)).unwrap(),
                weight: 0.3,
            },
        ),
        (
            "ours, same run, but this process lost a race: wait",
            {
                let mut o = on(split(&ours(NOW + 60, same_run)));
                o.me.yielded = true;
                o
            },
            false,
            Start::Wait(Holder {
                routing: "3=70% 4=30%".into(),
                record: Shifting::parse(&ours(NOW + 60, same_run)),
            }),
        ),
        (
            "another image, lease live: wait",
            on(alias("3", &[("5", 0.1)], &theirs(NOW + 60))),
            false,
            Start::Wait(Holder {
                routing: "3=90% 5=10%".into(),
                record: Shifting::parse(&theirs(NOW + 60)),
            }),
        ),
        (
            "another image, lease passed: abandoned",
            on(alias("3", &[("5", 0.1)], &theirs(NOW - 1))),
            false,
            Start::Abandoned(Holder {
                routing: "3=90% 5=10%".into(),
                record: Shifting::parse(&theirs(NOW - 1)),
            }),
        ),
        (
            "a record that does not match the split is no record",
            on(alias("3", &[("6", 0.1)], &ours(NOW - 1, None))),
            false,
            Start::Wait(Holder {
                routing: "3=90% 6=10%".into(),
                record: None,
            }),
        ),
        (
            "our record, but version 4 runs another image",
            {
                let mut o = on(split(&ours(NOW - 1, None)));
                o.additional = Some(version(&d('c')));
                o
            },
            false,
            Start::Abandoned(Holder {
                routing: "3=70% 4=30%".into(),
                record: Shifting::parse(&ours(NOW - 1, None)),
            }),
        ),
    ];
    for (what, o, force, want) in cases {
        assert_eq!(start(&o, force), want, "{what}");
    }
}

fn lines(p: &Plan) -> String {
    p.lines.join("\n")
}

#[test]
fn plans() {
    // A canary from version 3, after a finished deploy recorded 3 (from 2).
    let o = on(alias(
        "3",
        &[],
        "hoist: current=3 previous=2 image=ffffffffffff",
    ));
    let p = plan(&o, &settings("canary:10%:5m")).unwrap();
    let Action::Deploy { from, moves } = &p.action else {
        panic!("{p:?}")
    };
    assert_eq!(from, "3");
    assert_eq!(moves.before.as_deref(), Some("2"));
    assert_eq!(
        moves.restore,
        "hoist: current=3 previous=2 image=ffffffffffff"
    );
    assert_eq!(moves.steps.len(), 1);
    let want = [
        "image: 123456789012.dkr.ecr.us-east-1.amazonaws.com/app@sha256:aaaa",
        "update function app to it, then publish a new version and wait until it is Active",
        "alias live: 10% on the new version, 90% on 3; bake 5m",
        "alias live: 100% on the new version (from 3)",
        "check: region: the image and function app are both in us-east-1",
        "check: pull: same account",
        "check: weighted routing: version 3 and the new version share the execution role and the dead-letter queue (none)",
        "check: provisioned concurrency: none on alias live",
    ];
    assert_eq!(p.lines.len(), want.len(), "{}", lines(&p));
    for (l, w) in p.lines.iter().zip(want) {
        assert!(l.starts_with(w), "{l} / {w}");
    }

    // A dry run numbers the versions; an alias on $LATEST is pinned first.
    let mut o = on(alias(LATEST, &[], ""));
    o.next_version = Some(5);
    o.serving = Some(version(&d('f')));
    let p = plan(&o, &settings("canary:10%:5m")).unwrap();
    let text = lines(&p);
    assert!(
        text.contains(&format!(
            "first publish the code $LATEST runs now ({}) as version 5 (probably)",
            d('f')
        )),
        "{text}"
    );
    assert!(text.contains("then publish version 6 (probably)"), "{text}");
    assert!(
        text.contains("10% on the new version, 90% on the version published from $LATEST"),
        "{text}"
    );
    assert!(!text.contains("weighted routing"), "{text}");
    assert!(matches!(&p.action, Action::Deploy { from, .. } if from == LATEST));

    // Already serving, on $LATEST: nothing to do, and a warning.
    let mut o = on(alias(LATEST, &[], ""));
    o.serving = Some(version(&d('a')));
    let p = plan(&o, &settings("all-at-once")).unwrap();
    assert_eq!(
        p.action,
        Action::AlreadyServing {
            version: LATEST.into()
        }
    );
    assert!(p.warnings[0].contains("follows $LATEST"), "{p:?}");

    // No alias: created, the canary dropped with a warning.
    let p = plan(&world(), &settings("canary:10%:5m")).unwrap();
    assert_eq!(p.action, Action::Create);
    assert!(p.warnings[0].contains("does not exist"), "{p:?}");
    assert!(lines(&p).contains("create alias live on the new version"));

    // Provisioned concurrency, a smoke event, --architecture, alarms and
    // the Errors metric.
    let mut o = on(alias("3", &[], ""));
    o.provisioned = Ok(Some(Provisioned {
        requested: 5,
        allocated: 5,
        status: "READY".into(),
        reason: String::new(),
    }));
    o.alarms = vec![alarm("errors", "OK")];
    let mut s = settings("linear:50%:1m");
    s.alarms = vec!["errors".into()];
    s.max_errors = Some(2);
    s.architecture = Some(Arch::X86_64);
    s.smoke = Some(crate::deploy::settings::Smoke {
        path: "e.json".into(),
        payload: b"{}".to_vec(),
        expect: None,
    });
    let p = plan(&o, &s).unwrap();
    let text = lines(&p);
    for want in [
        "update function app to it (architecture x86_64)",
        "invoke the new version with the smoke event before moving any traffic",
        "alias live: 50% on the new version, 50% on 3; wait for provisioned concurrency READY, then bake 1m",
        "watch during every bake: errors, the Errors metric of the new version (more than 2 rolls back)",
        "check: provisioned concurrency: alias live has 5 (READY)",
        "check: alarms: errors (metric alarm, OK)",
    ] {
        assert!(text.contains(want), "{want}:\n{text}");
    }
    assert!(matches!(&p.action, Action::Deploy { moves, .. } if moves.provisioned));

    // Provisioned concurrency that could not be read: a warning.
    let mut o = on(alias("3", &[], ""));
    o.provisioned = Err("AccessDenied".into());
    let p = plan(&o, &settings("canary:10%:5m")).unwrap();
    assert!(p.warnings[0].contains("AccessDenied"), "{p:?}");
}

fn alarm(name: &str, state: &str) -> AlarmState {
    AlarmState {
        name: name.into(),
        state: state.into(),
        reason: format!("{name} is {state}"),
        kind: "metric",
    }
}

#[test]
fn refusals() {
    let refused = |o: &Observed, s: &Settings| plan(o, s).unwrap_err();
    // The image for another architecture.
    let mut o = on(alias("3", &[], ""));
    o.image.facts.config.architecture = "arm64".into();
    let e = refused(&o, &settings("all-at-once"));
    assert!(matches!(e, DeployError::Preflight { .. }), "{e}");

    // Weighted routing between different roles.
    let mut o = on(alias("3", &[], ""));
    o.serving.as_mut().unwrap().role = "arn:aws:iam::123456789012:role/old".into();
    let e = refused(&o, &settings("canary:10%:5m"));
    assert!(
        e.to_string()
            .contains("runs as arn:aws:iam::123456789012:role/old"),
        "{e}"
    );
    // …which all at once does not need.
    assert!(plan(&o, &settings("all-at-once")).is_ok());

    // Alarms: missing, firing (a policy refusal), firing but ignored.
    let mut s = settings("canary:10%:5m");
    s.alarms = vec!["errors".into(), "latency".into()];
    let mut o = on(alias("3", &[], ""));
    o.alarms = vec![alarm("errors", "OK")];
    let e = refused(&o, &s);
    assert!(e.to_string().contains("no alarm named latency"), "{e}");
    o.alarms.push(alarm("latency", "ALARM"));
    let e = refused(&o, &s);
    assert!(
        e.to_string().contains("alarm latency is already in ALARM"),
        "{e}"
    );
    assert_eq!(crate::error::Diagnose::class(&e), Class::Policy);
    s.ignore_alarms_at_start = true;
    let p = plan(&o, &s).unwrap();
    assert!(p.warnings[0].contains("--ignore-alarms-at-start"), "{p:?}");
    assert!(
        matches!(&p.action, Action::Deploy { moves, .. } if moves.watch.ignored.contains("latency"))
    );

    // Split by another image's deployment whose runner is gone.
    let o = on(alias("3", &[("5", 0.1)], &theirs(NOW - 1)));
    let e = refused(&o, &settings("all-at-once"));
    let (msg, hint) = (e.to_string(), crate::error::Diagnose::hint(&e).unwrap());
    assert!(
        msg.contains("split (3=90% 5=10%) by hoist's deployment of sha256:bbbb"),
        "{msg}"
    );
    assert!(msg.contains("runs/6"), "{msg}");
    assert!(
        hint.contains("hoist rollback --function app --alias live"),
        "{hint}"
    );
    assert!(hint.contains("--force"), "{hint}");
}

#[test]
fn waiting_and_recovering() {
    // Another image's live deployment: wait, saying whose.
    let o = on(alias("3", &[("5", 0.1)], &theirs(NOW + 60)));
    let p = plan(&o, &settings("all-at-once")).unwrap();
    assert!(matches!(p.action, Action::Wait(_)));
    let text = lines(&p);
    assert!(
        text.contains("alias live is split (3=90% 5=10%) by hoist's deployment of sha256:bbbb")
            && text.contains("(up to 10m)"),
        "{text}"
    );

    // Our own, its runner gone: complete the linear shift from 30 %.
    let mut o = on(alias("3", &[("4", 0.3)], &ours(NOW - 1, None)));
    let mut s = settings("linear:10%:1m");
    s.alarms = vec!["errors".into()];
    o.alarms = vec![alarm("errors", "OK")];
    let p = plan(&o, &s).unwrap();
    let Action::Resume { from, to, moves } = &p.action else {
        panic!("{p:?}")
    };
    assert_eq!((from.as_str(), to.as_str()), ("3", "4"));
    assert_eq!(
        moves.steps.iter().map(|s| s.percent).collect::<Vec<_>>(),
        vec![30, 40, 50, 60, 70, 80, 90]
    );
    assert_eq!(moves.before.as_deref(), Some("2"));
    assert_eq!(moves.restore, "hoist: current=3 previous=2");
    let text = lines(&p);
    assert!(
        text.contains("alias live was left at 3=70% 4=30% by hoist's deployment of sha256:aaaa")
            && text.contains("complete that shift from 30% — no update, no new version"),
        "{text}"
    );
    assert!(
        text.contains("alias live: 30% on version 4, 70% on 3; bake 1m"),
        "{text}"
    );
    assert!(!text.contains("update function"), "{text}");

    // …but its alarm fires: undo it.
    o.alarms = vec![alarm("errors", "ALARM")];
    let p = plan(&o, &s).unwrap();
    assert_eq!(
        p.action,
        Action::Undo {
            from: "3".into(),
            to: "4".into(),
            restore: "hoist: current=3 previous=2".into(),
            alarm: alarm("errors", "ALARM"),
        }
    );
    // (Ignored at start, it is watched instead.)
    s.ignore_alarms_at_start = true;
    assert!(matches!(
        plan(&o, &s).unwrap().action,
        Action::Resume { .. }
    ));
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
    let s = alarm;
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
    let mut w = Watch::begin(&wanted, &[s("a", "INSUFFICIENT_DATA"), s("b", "OK")], false).unwrap();
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

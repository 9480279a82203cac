//! `hoist deploy` and `hoist rollback` against moto's Lambda, CloudWatch and
//! IAM, with images pushed to the local registry (which plays ECR's
//! registry endpoint). moto is kinder than Lambda: it checks no routing
//! rule, keeps no dead-letter queue, takes any CodeSha256, always reports
//! Active/Successful and has no provisioned concurrency. So deploys go
//! through a Lambda endpoint in the test (AWS_ENDPOINT_URL_LAMBDA) that
//! forwards to moto but refuses what Lambda refuses and plays what moto
//! lacks (`common::lambda_rules`, which the suite's AWS front applies to
//! every other Lambda call too), and that answers recorded responses where a
//! scenario says so (updates that stay InProgress or fail, reason codes,
//! ResourceConflictException, a stale RevisionId, throttling with
//! retryAfterSeconds, Pending versions, invoking an image function). It
//! records every request, so a test can prove what was (not) written. Log
//! alarms, which moto lacks, are played by a CloudWatch endpoint the same
//! way.

mod common;

use std::collections::HashMap;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::fixtures::{Desc, Layout, fresh_seed};
use common::lambda_rules::{AliasWrite, Reply, Request, Strict, lambda_error};
use common::server::{self, Body};
use common::{Run, hoist, local, unique};
use serde_json::{Value, json};

// ---------------------------------------------------------------- AWS side

use common::lambda::{alias, block_on, cloudwatch, function, lambda, uri, versions};

fn alarm(name: &str) {
    block_on(
        cloudwatch()
            .put_metric_alarm()
            .alarm_name(name)
            .namespace("AWS/Lambda")
            .metric_name("Errors")
            .statistic(aws_sdk_cloudwatch::types::Statistic::Sum)
            .period(60)
            .evaluation_periods(1)
            .threshold(1.0)
            .comparison_operator(
                aws_sdk_cloudwatch::types::ComparisonOperator::GreaterThanOrEqualToThreshold,
            )
            .send(),
    )
    .expect("moto creates the alarm");
}

fn set_alarm(name: &str, state: &str, reason: &str) {
    block_on(
        cloudwatch()
            .set_alarm_state()
            .alarm_name(name)
            .state_value(state.into())
            .state_reason(reason)
            .send(),
    )
    .expect("moto sets the alarm state");
}

// ---------------------------------------------------------------- images

/// An image layout: one image per (arch, layer media type, config), pushed
/// to a fresh repository. Returns (repository, manifest digest).
fn push_image(arch: &str) -> (String, String) {
    let dir = tempfile::tempdir().unwrap();
    let l = Layout::new(dir.path());
    let layer = l.layer(20_000, fresh_seed());
    let m = l.image(&[layer], arch);
    l.write_index(&[(Some("latest"), &m)]);
    push_layout(&l)
}

fn push_layout(l: &Layout) -> (String, String) {
    let repo = unique("deploy");
    let run = common::push(&l.dir, &repo, &["--create-repository"]);
    let report = run.ok().json();
    (repo, report["digest"].as_str().unwrap().to_string())
}

// ---------------------------------------------------------------- hoist

fn deploy(image: &str, function: &str, extra: &[&str], env: &[(&str, &str)]) -> Run {
    let mut args = vec![
        "deploy",
        image,
        "--function",
        function,
        "--alias",
        "live",
        "--output",
        "json",
    ];
    args.extend_from_slice(extra);
    hoist(&args, env)
}

fn failed(run: &Run, code: i32, says: &[&str]) {
    assert_eq!(
        run.code, code,
        "stdout: {}\nstderr: {}",
        run.stdout, run.stderr
    );
    for s in says {
        assert!(
            run.stderr.contains(s),
            "stderr does not say '{s}':\n{}",
            run.stderr
        );
    }
}

/// hoist, started in the background, for tests that act during a bake.
fn spawn(args: &[&str], env: &[(&str, &str)]) -> std::process::Child {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_hoist"));
    cmd.args(args)
        .env_clear()
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for k in ["PATH", "HOME", "TMPDIR"] {
        if let Some(v) = std::env::var_os(k) {
            cmd.env(k, v);
        }
    }
    cmd.envs(&local().vars).envs(env.iter().copied());
    cmd.spawn().expect("hoist starts")
}

fn finish(child: std::process::Child) -> Run {
    let out = child.wait_with_output().unwrap();
    let run = Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    };
    common::assert_no_secrets(&run, false);
    run
}

/// Poll until the alias is split (the shift has begun), or panic.
fn wait_for_split(function: &str) -> HashMap<String, f64> {
    let until = Instant::now() + Duration::from_secs(60);
    loop {
        let (_, w) = alias(function, "live");
        if !w.is_empty() {
            return w;
        }
        assert!(Instant::now() < until, "the shift never began");
        std::thread::sleep(Duration::from_millis(200));
    }
}

// ---------------------------------------------------------------- a Lambda endpoint that records, plays real Lambda, and lies when told

/// One request the endpoint saw.
#[derive(Clone, Debug)]
struct Seen {
    method: String,
    path: String,
    /// The Lambda operation (see `kind`).
    kind: String,
    /// The `Qualifier` query parameter (a version or alias), if any.
    qualifier: Option<String>,
    /// The JSON body, when there is one.
    body: Value,
    at: Instant,
}

/// What a rule sees of a request: its operation, its number among requests
/// of that operation (from 0) and its qualifier.
struct Call<'a> {
    kind: &'a str,
    n: usize,
    qualifier: Option<&'a str>,
}

type Rule = Arc<dyn Fn(&Call) -> Option<Reply> + Send + Sync>;

/// The Lambda endpoint of the tests (AWS_ENDPOINT_URL_LAMBDA): it records
/// every request and lets a scenario's `Rule` lie on purpose; the rest is
/// `common::lambda_rules::Strict` in front of moto, as for every other
/// Lambda request of the suite (the AWS front does the same).
struct FakeLambda {
    seen: Arc<Mutex<Vec<Seen>>>,
    strict: Strict,
    _server: server::Running,
    url: String,
}

impl FakeLambda {
    fn start(rule: Rule) -> FakeLambda {
        let seen: Arc<Mutex<Vec<Seen>>> = Arc::default();
        let strict = Strict::default();
        // moto itself: the AWS front in between would play the rules again.
        let moto = local().upstream.moto.trim_end_matches('/').to_string();
        let client = reqwest::Client::builder().no_proxy().build().unwrap();
        let (s, st) = (seen.clone(), strict.clone());
        let running = server::serve(move |req: hyper::Request<hyper::body::Incoming>| {
            let (seen, strict, rule, client, moto) = (
                s.clone(),
                st.clone(),
                rule.clone(),
                client.clone(),
                moto.clone(),
            );
            async move {
                use http_body_util::BodyExt;
                let method = req.method().to_string();
                let path = req.uri().path().to_string();
                let query = req.uri().query().unwrap_or_default().to_string();
                let headers = req.headers().clone();
                let bytes = req
                    .into_body()
                    .collect()
                    .await
                    .map_err(std::io::Error::other)?
                    .to_bytes();
                let request = Request {
                    method,
                    path,
                    query,
                    headers,
                    bytes,
                };
                let (op, qualifier, body) = (request.kind(), request.qualifier(), request.body());
                let n = {
                    let mut seen = seen.lock().unwrap();
                    let n = seen.iter().filter(|x| x.kind == op).count();
                    seen.push(Seen {
                        method: request.method.clone(),
                        path: request.path.clone(),
                        kind: op.clone(),
                        qualifier: qualifier.clone(),
                        body: body.clone(),
                        at: Instant::now(),
                    });
                    n
                };
                let lie = rule(&Call {
                    kind: &op,
                    n,
                    qualifier: qualifier.as_deref(),
                });
                strict.handle(&client, &moto, request, lie).await
            }
        });
        let url = format!("http://{}", running.addr);
        FakeLambda {
            seen,
            strict,
            _server: running,
            url,
        }
    }

    /// Every UpdateAlias the RevisionId check saw.
    fn alias_writes(&self) -> Vec<AliasWrite> {
        self.strict.alias_writes()
    }

    fn env(&self) -> Vec<(&str, &str)> {
        vec![("AWS_ENDPOINT_URL_LAMBDA", self.url.as_str())]
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    fn count(&self, k: &str) -> usize {
        self.seen().iter().filter(|s| s.kind == k).count()
    }

    /// Every request that would change something (Lambda's REST API reads
    /// with GET and writes with everything else).
    fn writes(&self) -> Vec<String> {
        self.seen()
            .iter()
            .filter(|s| s.method != "GET")
            .map(|s| format!("{} {}", s.method, s.path))
            .collect()
    }

    /// Give `qualifier` ("$LATEST" or a version) a dead-letter queue.
    fn dead_letter(&self, qualifier: &str, arn: &str) {
        self.strict
            .dead_letters
            .lock()
            .unwrap()
            .insert(qualifier.into(), arn.into());
    }

    /// An SDK client for Lambda through this endpoint.
    fn client(&self) -> aws_sdk_lambda::Client {
        let conf = aws_sdk_lambda::config::Builder::from(&common::lambda::sdk())
            .endpoint_url(&self.url)
            .build();
        aws_sdk_lambda::Client::from_conf(conf)
    }
}

fn forward() -> Rule {
    Arc::new(|_| None)
}

/// A function serving a first image (alias `live` on version 1), and the
/// next build pushed to the same repository: (repo, function, first, next).
fn function_and_next_build() -> (String, String, String, String) {
    let (repo, first) = push_image("amd64");
    let f = function(&repo, &first, "x86_64");
    let dir = tempfile::tempdir().unwrap();
    let l = Layout::new(dir.path());
    let m = l.image(&[l.layer(20_000, fresh_seed())], "amd64");
    l.write_index(&[(Some("latest"), &m)]);
    let next = common::push(&l.dir, &repo, &[]).ok().json()["digest"]
        .as_str()
        .unwrap()
        .to_string();
    (repo, f, first, next)
}

// ================================================================ moto

#[test]
fn all_at_once_then_the_same_digest_again_then_rollback() {
    let (repo, f, _, second) = function_and_next_build();
    let image = format!("{repo}@{second}");
    let github = [
        ("GITHUB_SHA", "0123456789abcdef0123456789abcdef01234567"),
        ("GITHUB_REPOSITORY", "acme/app"),
        ("GITHUB_RUN_ID", "77"),
    ];
    let run = deploy(&image, &f, &[], &github);
    let report = run.ok().json();
    assert_eq!(report["result"], "deployed", "{report}");
    assert_eq!(report["version"], "2");
    assert_eq!(report["previous_version"], "1");
    assert_eq!(report["routing"], "2=100%");
    assert_eq!(report["digest"], second.as_str());
    assert!(
        report["alias_arn"]
            .as_str()
            .unwrap()
            .ends_with(&format!("function:{f}:live")),
        "{report}"
    );
    assert_eq!(alias(&f, "live"), ("2".into(), HashMap::new()));
    // The function runs the image by digest, and the version says where it came from.
    let code = block_on(lambda().get_function().function_name(&f).send()).unwrap();
    assert_eq!(
        code.code().unwrap().image_uri(),
        Some(uri(&repo, &second).as_str())
    );
    let vs = versions(&f);
    let (_, description) = vs.iter().find(|(v, _)| v == "2").unwrap();
    assert_eq!(
        description,
        &format!(
            "hoist {second} commit {} https://github.com/acme/app/actions/runs/77",
            github[0].1
        )
    );

    // Again: the alias already serves this digest — nothing is published.
    let again = deploy(&image, &f, &[], &[]);
    let r = again.ok().json();
    assert_eq!(r["result"], "already-serving", "{r}");
    assert_eq!(r["version"], "2");
    assert_eq!(versions(&f).len(), 2, "no new version");
    assert!(again.stderr.contains("already serves"), "{}", again.stderr);

    // Rollback goes to the version served before the deploy…
    let rb = hoist(
        &[
            "rollback",
            "--function",
            &f,
            "--alias",
            "live",
            "--output",
            "json",
        ],
        &[],
    );
    let r = rb.ok().json();
    assert_eq!(
        (r["from"].as_str(), r["to"].as_str()),
        (Some("2"), Some("1")),
        "{r}"
    );
    assert_eq!(alias(&f, "live"), ("1".into(), HashMap::new()));
    // …and a second one undoes the first.
    let rb = hoist(&["rollback", "--function", &f, "--alias", "live"], &[]);
    assert_eq!(rb.ok().stdout.trim(), "2");
    assert_eq!(alias(&f, "live").0, "2");
}

#[test]
fn a_missing_alias_is_created_and_a_canary_bakes_then_moves_everything() {
    let (repo, first) = push_image("amd64");
    let f = function(&repo, &first, "x86_64");
    // Through the endpoint that refuses what Lambda refuses.
    let fake = FakeLambda::start(forward());
    // A new alias, on the first deploy to it.
    let (_, second) = push_image("amd64");
    let _ = second;
    let run = hoist(
        &[
            "deploy",
            &format!("{repo}@{first}"),
            "--function",
            &f,
            "--alias",
            "beta",
            "--output",
            "json",
        ],
        &fake.env(),
    );
    let r = run.ok().json();
    assert_eq!(r["result"], "deployed", "{r}");
    assert_eq!(alias(&f, "beta").1, HashMap::new());

    // A canary with an alarm that stays OK: 20 % for 2 s, then all.
    let dir = tempfile::tempdir().unwrap();
    let l = Layout::new(dir.path());
    let m = l.image(&[l.layer(20_000, fresh_seed())], "amd64");
    l.write_index(&[(Some("latest"), &m)]);
    let next = common::push(&l.dir, &repo, &[]).ok().json()["digest"]
        .as_str()
        .unwrap()
        .to_string();
    let name = unique("alarm");
    alarm(&name);
    let run = deploy(
        &format!("{repo}@{next}"),
        &f,
        &["--strategy", "canary:20%:2s", "--alarm", &name],
        &fake.env(),
    );
    let r = run.ok().json();
    assert_eq!(r["result"], "deployed", "{r}");
    let v = r["version"].as_str().unwrap().to_string();
    let timeline: Vec<&str> = r["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["what"].as_str().unwrap())
        .collect();
    assert!(
        timeline
            .iter()
            .any(|t| t.starts_with(&format!("routing 1=80% {v}=20%"))),
        "{timeline:?}"
    );
    assert!(
        timeline
            .iter()
            .any(|t| t.contains("alarm check") && t.contains("OK")),
        "{timeline:?}"
    );
    assert_eq!(timeline.last().unwrap(), &format!("routing {v}=100%"));
    assert_eq!(alias(&f, "live"), (v, HashMap::new()));
}

#[test]
fn an_alarm_during_the_bake_rolls_the_alias_back() {
    let (repo, f, _, next) = function_and_next_build();
    let name = unique("alarm");
    alarm(&name);
    let image = format!("{repo}@{next}");
    let fake = FakeLambda::start(forward());
    let child = spawn(
        &[
            "deploy",
            &image,
            "--function",
            &f,
            "--alias",
            "live",
            "--strategy",
            "canary:10%:60s",
            "--alarm",
            &name,
            "--output",
            "json",
        ],
        &fake.env(),
    );
    let split = wait_for_split(&f);
    assert_eq!(split.values().copied().collect::<Vec<_>>(), vec![0.1]);
    set_alarm(&name, "ALARM", "Threshold Crossed: 3 errors in 1 minute");
    let run = finish(child);
    assert_eq!(run.code, 1, "{}\n{}", run.stdout, run.stderr);
    let r = run.json();
    assert_eq!(r["result"], "rolled-back", "{r}");
    assert_eq!(r["alarm"], name.as_str());
    assert!(
        r["reason"]
            .as_str()
            .unwrap()
            .contains("Threshold Crossed: 3 errors"),
        "{r}"
    );
    assert_eq!(r["routing"], "1=100%");
    assert!(
        run.stderr.contains(&format!("alarm {name} is ALARM")),
        "{}",
        run.stderr
    );
    // Straight back, no further weights.
    assert_eq!(alias(&f, "live"), ("1".into(), HashMap::new()));
    let timeline: Vec<&str> = r["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["what"].as_str().unwrap())
        .collect();
    assert!(
        !timeline.iter().any(|t| t.contains("=100%")
            && !t.contains("restored")
            && !t.starts_with("routing 1=100%")),
        "{timeline:?}"
    );
}

#[test]
fn sigterm_during_the_bake_restores_the_previous_routing() {
    let (repo, f, _, next) = function_and_next_build();
    let fake = FakeLambda::start(forward());
    let child = spawn(
        &[
            "deploy",
            &format!("{repo}@{next}"),
            "--function",
            &f,
            "--alias",
            "live",
            "--strategy",
            "linear:25%:60s",
            "--output",
            "json",
        ],
        &fake.env(),
    );
    wait_for_split(&f);
    let killed = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let run = finish(child);
    assert_eq!(run.code, 143, "{}\n{}", run.stdout, run.stderr);
    assert_eq!(run.json()["result"], "interrupted");
    assert!(run.stderr.contains("SIGTERM"), "{}", run.stderr);
    assert_eq!(alias(&f, "live"), ("1".into(), HashMap::new()));
}

/// An alarm fires, and putting the alias back fails too (UpdateAlias
/// denied here): the error says both — the alarm, and that the alias may be
/// left split — with the restore's failure as its cause and the command
/// that clears the split.
#[test]
fn a_failed_restore_says_what_stopped_the_shift_and_that_the_alias_may_be_split() {
    let (repo, f, _, next) = function_and_next_build();
    let name = unique("alarm");
    alarm(&name);
    let fake = FakeLambda::start(Arc::new(|c: &Call| {
        (c.kind == "UpdateAlias" && c.n >= 1).then(|| {
            lambda_error(
                403,
                "AccessDeniedException",
                "User: arn:aws:sts::123456789012:assumed-role/deploy/ci is not authorized to perform: lambda:UpdateAlias".into(),
            )
        })
    }));
    let child = spawn(
        &[
            "deploy",
            &format!("{repo}@{next}"),
            "--function",
            &f,
            "--alias",
            "live",
            "--strategy",
            "canary:10%:60s",
            "--alarm",
            &name,
        ],
        &fake.env(),
    );
    wait_for_split(&f);
    set_alarm(&name, "ALARM", "Threshold Crossed: 5 errors");
    let run = finish(child);
    failed(
        &run,
        2,
        &[
            &format!(
                "error: alarm {name} is ALARM: Threshold Crossed: 5 errors; then restoring alias {f}:live to version 1 failed, so the alias may be left split (1=90% 2=10%)"
            ),
            "caused by:",
            "not authorized to perform: lambda:UpdateAlias",
            &format!(
                "hint: put the alias back yourself: `hoist rollback --function {f} --alias live`"
            ),
        ],
    );
    assert_eq!(
        alias(&f, "live"),
        ("1".into(), HashMap::from([("2".into(), 0.1)])),
        "left split, as the error says"
    );
}

/// Every UpdateAlias hoist sent carried a RevisionId, and none whose
/// RevisionId was stale went through (the endpoint refuses those, as Lambda
/// does): two runs never both moved the alias.
fn every_alias_write_was_compare_and_set(fake: &FakeLambda) -> Vec<AliasWrite> {
    let writes = fake.alias_writes();
    for w in &writes {
        assert!(
            w.given.is_some(),
            "an UpdateAlias without RevisionId: {writes:?}"
        );
        assert_eq!(
            w.accepted,
            w.given.as_deref() == Some(w.current.as_str()),
            "{writes:?}"
        );
    }
    writes
}

fn logs(runs: &[Run]) -> String {
    runs.iter()
        .map(|r| format!("exit {}\n{}\n{}", r.code, r.stdout, r.stderr))
        .collect::<Vec<_>>()
        .join("\n----\n")
}

fn kill(child: &std::process::Child, signal: &str) {
    let killed = Command::new("kill")
        .args([signal, &child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
}

/// A runner lost mid-canary (SIGKILL: no handler runs) leaves the alias
/// split, with its in-progress record on it. A deploy of another image
/// meanwhile waits for that deployment (its runner's lease is live), then
/// says who holds the alias. The re-run of the same pipeline — the same
/// digest, the same CI run — recognises its own deployment and completes
/// it from the weight it stands at, with the bake, without --force, without
/// updating the function or publishing anything.
#[test]
fn a_canary_whose_runner_was_killed_is_completed_by_the_re_run() {
    let (repo, f, _, next) = function_and_next_build();
    let image = format!("{repo}@{next}");
    let fake = FakeLambda::start(forward());
    let mut env = fake.env();
    env.extend([("GITHUB_REPOSITORY", "acme/app"), ("GITHUB_RUN_ID", "4242")]);
    let args = [
        "deploy",
        &image,
        "--function",
        &f,
        "--alias",
        "live",
        "--strategy",
        "canary:20%:15s",
        "--output",
        "json",
    ];
    let child = spawn(&args, &env);
    wait_for_split(&f);
    kill(&child, "-KILL");
    let lost = finish(child);
    assert_eq!(lost.code, -1, "killed: {}", lost.stderr);
    assert_eq!(
        alias(&f, "live"),
        ("1".into(), HashMap::from([("2".into(), 0.2)]))
    );
    let record = common::lambda::alias_description(&f, "live");
    assert!(
        record.starts_with(&format!(
            "hoist: shifting from=1 to=2 image={next} strategy=canary:20%:15s until="
        )) && record.contains(" run=https://github.com/acme/app/actions/runs/4242"),
        "{record}"
    );

    // Another image: it waits (here 2 s), then names the holder.
    let other = next_build(&repo);
    let writes = fake.writes().len();
    let run = deploy(
        &format!("{repo}@{other}"),
        &f,
        &["--timeout", "2s"],
        &fake.env(),
    );
    failed(
        &run,
        3,
        &[
            "waiting for it to finish",
            "is still split between versions (1=80% 2=20%)",
            &format!(
                "by hoist's deployment of {next} (version 2, canary:20%:15s, run https://github.com/acme/app/actions/runs/4242"
            ),
            "re-run when it is done",
            "--force",
        ],
    );
    assert_eq!(fake.writes().len(), writes, "the other image wrote nothing");

    // The re-run of the same pipeline completes the shift.
    let before = fake.seen().len();
    let run = hoist(&args, &env);
    let r = run.ok().json();
    assert_eq!(r["result"], "deployed", "{r}");
    assert_eq!(
        (r["version"].as_str(), r["previous_version"].as_str()),
        (Some("2"), Some("1")),
        "{r}"
    );
    assert_eq!(r["routing"], "2=100%");
    let t = timeline(&r);
    assert!(
        t[0].starts_with(&format!(
            "resuming the interrupted deployment of {next} on alias live at 1=80% 2=20%"
        )),
        "{t:?}"
    );
    assert!(
        t.contains(&"routing 1=80% 2=20%; baking 15s".to_string()),
        "{t:?}"
    );
    assert!(
        t.contains(&"alarm check: nothing watched OK after 15s".to_string()),
        "{t:?}"
    );
    assert_eq!(t.last().unwrap(), "routing 2=100%");
    assert!(
        plan(&r)
            .iter()
            .any(|l| l.contains("was left at 1=80% 2=20%")
                && l.contains("no update, no new version")),
        "{r}"
    );
    let writes: Vec<String> = fake.seen()[before..]
        .iter()
        .filter(|s| s.method != "GET")
        .map(|s| s.kind.clone())
        .collect();
    assert_eq!(
        writes,
        ["UpdateAlias", "UpdateAlias"],
        "re-bake at 20 %, then 100 %"
    );
    assert_eq!(versions(&f).len(), 2, "nothing published");
    assert_eq!(alias(&f, "live"), ("2".into(), HashMap::new()));
    assert_eq!(
        common::lambda::alias_description(&f, "live"),
        format!("hoist: current=2 previous=1 image={}", &next[7..19])
    );
    every_alias_write_was_compare_and_set(&fake);
}

/// Two deploys of one alias started at once. Of the same image (two
/// pipelines of one commit): one shifts the alias; the other finds it split
/// by the first (or loses the race for its first move, and reads it again),
/// waits, and finds it serving the image. Of two images: each either
/// deploys (the second after waiting for the first) or stops with a clear
/// "changed while hoist was deploying". Either way no UpdateAlias with a
/// stale RevisionId went through, and the alias ends whole.
#[test]
fn two_deploys_at_once_never_both_move_the_alias() {
    let (repo, f, _, next) = function_and_next_build();
    let fake = FakeLambda::start(forward());
    let start = |image: &str| {
        spawn(
            &[
                "deploy",
                image,
                "--function",
                &f,
                "--alias",
                "live",
                "--strategy",
                "canary:20%:3s",
                "--output",
                "json",
            ],
            &fake.env(),
        )
    };
    let image = format!("{repo}@{next}");
    let (a, b) = (start(&image), start(&image));
    let runs = [finish(a), finish(b)];
    let mut results: Vec<String> = runs
        .iter()
        .map(|r| {
            assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
            r.json()["result"].as_str().unwrap().to_string()
        })
        .collect();
    results.sort();
    assert_eq!(results, ["already-serving", "deployed"], "{}", logs(&runs));
    let (v, weights) = alias(&f, "live");
    assert!(weights.is_empty(), "left split: {weights:?}");
    let deployed = runs
        .iter()
        .map(|r| r.json())
        .find(|r| r["result"] == "deployed")
        .unwrap();
    assert_eq!(deployed["version"].as_str(), Some(v.as_str()));
    let writes = every_alias_write_was_compare_and_set(&fake);
    eprintln!(
        "same image: {} alias writes, {} refused as stale",
        writes.len(),
        writes.iter().filter(|w| !w.accepted).count()
    );

    // Two images.
    let (one, two) = (next_build(&repo), next_build(&repo));
    let (a, b) = (
        start(&format!("{repo}@{one}")),
        start(&format!("{repo}@{two}")),
    );
    let runs = [finish(a), finish(b)];
    let mut deployed = vec![];
    for r in &runs {
        match r.code {
            0 => deployed.push(r.json()),
            3 => assert!(
                r.stderr.contains("changed while hoist was deploying"),
                "{}",
                r.stderr
            ),
            _ => panic!("{}\n{}", r.stdout, r.stderr),
        }
    }
    assert!(!deployed.is_empty(), "{}", logs(&runs));
    let (v, weights) = alias(&f, "live");
    assert!(weights.is_empty(), "left split: {weights:?}");
    let serving = versions(&f).into_iter().find(|(n, _)| *n == v).unwrap().1;
    assert!(
        serving.contains(&one) || serving.contains(&two),
        "{serving}"
    );
    let writes = every_alias_write_was_compare_and_set(&fake);
    eprintln!(
        "two images: {} deployed, {} alias writes, {} refused as stale",
        deployed.len(),
        writes.len(),
        writes.iter().filter(|w| !w.accepted).count()
    );
}

/// An operator puts the alias back (`hoist rollback`) while a canary
/// bakes. The deploy's next move carries a stale RevisionId and is refused;
/// it reads the alias, finds it wholly back on the version it was shifting
/// from, and stops as a rollback (exit 1, in the log and the JSON) — it
/// does not start over: no new version, no update, and no move of the alias
/// after the refused one.
#[test]
fn an_alias_put_back_during_the_bake_stops_the_deploy_as_a_rollback() {
    let (repo, f, _, next) = function_and_next_build();
    let fake = FakeLambda::start(forward());
    let mut child = spawn(
        &[
            "deploy",
            &format!("{repo}@{next}"),
            "--function",
            &f,
            "--alias",
            "live",
            "--strategy",
            "canary:20%:10s",
            "--output",
            "json",
        ],
        &fake.env(),
    );
    wait_for_split(&f);
    let rb = hoist(
        &[
            "rollback",
            "--function",
            &f,
            "--alias",
            "live",
            "--output",
            "json",
        ],
        &fake.env(),
    );
    let r = rb.ok().json();
    assert_eq!(
        (r["action"].as_str(), r["to"].as_str()),
        (Some("clear-routing"), Some("1")),
        "{r}"
    );
    assert!(
        child.try_wait().unwrap().is_none(),
        "the deploy ended before the rollback: the test proves nothing"
    );
    let (seen, writes) = (fake.seen().len(), fake.alias_writes().len());
    let run = finish(child);
    failed(
        &run,
        1,
        &[
            &format!(
                "rolled back: alias {f}:live was put back on version 1 by someone else while hoist was shifting it to version 2"
            ),
            "hoist stopped",
        ],
    );
    let r = run.json();
    assert_eq!(r["result"], "rolled-back", "{r}");
    assert!(
        r["reason"]
            .as_str()
            .unwrap()
            .contains("was put back on version 1 by someone else"),
        "{r}"
    );
    assert_eq!(r["alarm"], Value::Null);
    assert_eq!(
        (r["version"].as_str(), r["previous_version"].as_str()),
        (Some("2"), Some("1")),
        "{r}"
    );
    assert_eq!(r["routing"], "1=100%");
    let t = timeline(&r);
    assert!(
        t.contains(&"routing 1=80% 2=20%; baking 10s".to_string()),
        "{t:?}"
    );
    assert_eq!(
        t.last().unwrap(),
        "alias live was put back on version 1 by someone else: hoist stopped"
    );
    // After the rollback: one write, the deploy's 100 % move, refused.
    let after: Vec<String> = fake.seen()[seen..]
        .iter()
        .filter(|s| s.method != "GET")
        .map(|s| s.kind.clone())
        .collect();
    assert_eq!(after, ["UpdateAlias"], "{}", run.stderr);
    let all = every_alias_write_was_compare_and_set(&fake);
    assert_eq!(
        all[writes..].iter().map(|w| w.accepted).collect::<Vec<_>>(),
        [false],
        "{all:?}"
    );
    assert_eq!(alias(&f, "live"), ("1".into(), HashMap::new()));
    assert_eq!(versions(&f).len(), 2, "nothing published again");
}

/// `--watch-errors`: errors of the new version behind the alias (the
/// metric Lambda publishes, put into moto's CloudWatch here mid-bake) roll
/// the alias back like an alarm.
#[test]
fn errors_of_the_new_version_during_the_bake_roll_back() {
    let (repo, f, _, next) = function_and_next_build();
    let child = spawn(
        &[
            "deploy",
            &format!("{repo}@{next}"),
            "--function",
            &f,
            "--alias",
            "live",
            "--strategy",
            "canary:10%:60s",
            "--watch-errors",
            "--max-errors",
            "2",
            "--output",
            "json",
        ],
        &[],
    );
    let weights = wait_for_split(&f);
    let new = weights.keys().next().unwrap().clone();
    use aws_sdk_cloudwatch::types::{Dimension, MetricDatum, StandardUnit};
    let dim = |n: &str, v: &str| Dimension::builder().name(n).value(v).build();
    block_on(
        cloudwatch()
            .put_metric_data()
            .namespace("AWS/Lambda")
            .metric_data(
                MetricDatum::builder()
                    .metric_name("Errors")
                    .dimensions(dim("FunctionName", &f))
                    .dimensions(dim("Resource", &format!("{f}:live")))
                    .dimensions(dim("ExecutedVersion", &new))
                    .value(3.0)
                    .unit(StandardUnit::Count)
                    .timestamp(std::time::SystemTime::now().into())
                    .build(),
            )
            .send(),
    )
    .expect("moto takes the data point");
    let run = finish(child);
    assert_eq!(run.code, 1, "{}\n{}", run.stdout, run.stderr);
    let r = run.json();
    assert_eq!(r["result"], "rolled-back", "{r}");
    assert!(r["reason"].as_str().unwrap().contains("Errors"), "{r}");
    assert_eq!(alias(&f, "live"), ("1".into(), HashMap::new()));
}

#[test]
fn alarms_already_firing_block_unless_ignored_and_a_split_alias_needs_force() {
    let (repo, f, _, next) = function_and_next_build();
    let image = format!("{repo}@{next}");
    let name = unique("alarm");
    alarm(&name);
    set_alarm(&name, "ALARM", "errors before we start");

    let run = deploy(&image, &f, &["--alarm", &name], &[]);
    failed(
        &run,
        1,
        &[
            &format!("alarm {name} is already in ALARM (errors before we start)"),
            "--ignore-alarms-at-start",
        ],
    );
    assert_eq!(versions(&f).len(), 1, "nothing published");
    let run = deploy(&image, &f, &["--alarm", "no-such-alarm"], &[]);
    failed(&run, 2, &["no alarm named no-such-alarm"]);

    // The hotfix for what fires it goes through.
    let run = deploy(
        &image,
        &f,
        &["--alarm", &name, "--ignore-alarms-at-start"],
        &[],
    );
    let r = run.ok().json();
    assert_eq!(r["result"], "deployed", "{r}");
    assert!(
        r["warnings"][0]
            .as_str()
            .unwrap()
            .contains("already in ALARM"),
        "{r}"
    );

    // Someone else's deployment left the alias split.
    block_on(
        lambda()
            .update_alias()
            .function_name(&f)
            .name("live")
            .function_version("1")
            .routing_config(
                aws_sdk_lambda::types::AliasRoutingConfiguration::builder()
                    .additional_version_weights("2", 0.3)
                    .build(),
            )
            .send(),
    )
    .unwrap();
    // No hoist record says whose split it is: hoist waits for it (here
    // for 2 s), then refuses.
    let run = deploy(&image, &f, &["--timeout", "2s"], &[]);
    failed(
        &run,
        2,
        &[
            "waiting for it to finish",
            "is still split between versions (1=70% 2=30%) by a deployment that left no hoist record",
            "hoist rollback --function",
            "--force",
        ],
    );
    let run = deploy(&image, &f, &["--force"], &[]);
    let r = run.ok().json();
    // moto publishes a new version even when nothing changed (Lambda would
    // hand back version 2): either way the alias ends whole on it.
    let v = r["version"].as_str().unwrap().to_string();
    assert_eq!(r["routing"], format!("{v}=100%"));
    assert_eq!(alias(&f, "live"), (v, HashMap::new()));
}

// ================================================================ preflight

#[test]
fn an_index_deploys_the_child_for_the_functions_architecture() {
    let dir = tempfile::tempdir().unwrap();
    let l = Layout::new(dir.path());
    let amd = l.image(&[l.layer(10_000, fresh_seed())], "amd64");
    let arm = l.image(&[l.layer(10_000, fresh_seed())], "arm64");
    // An attestation manifest, as buildx adds one.
    let att = l.image_with_config(json!({"architecture": "unknown", "os": "unknown"}), &[]);
    let index = json!({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [
            {"mediaType": amd.media_type, "digest": amd.digest, "size": amd.size, "platform": {"os": "linux", "architecture": "amd64"}},
            {"mediaType": arm.media_type, "digest": arm.digest, "size": arm.size, "platform": {"os": "linux", "architecture": "arm64"}},
            {"mediaType": att.media_type, "digest": att.digest, "size": att.size, "platform": {"os": "unknown", "architecture": "unknown"},
             "annotations": {"vnd.docker.reference.type": "attestation-manifest", "vnd.docker.reference.digest": amd.digest}},
        ]
    });
    let idx = l.blob(
        "application/vnd.oci.image.index.v1+json",
        &serde_json::to_vec(&index).unwrap(),
    );
    l.write_index(&[(Some("latest"), &idx)]);
    let (repo, digest) = push_layout(&l);
    assert_eq!(digest, idx.digest);
    for (arch, child) in [("x86_64", &amd), ("arm64", &arm)] {
        let f = function(&repo, &amd.digest, arch);
        let run = deploy(&format!("{repo}@{digest}"), &f, &[], &[]);
        let r = run.ok().json();
        assert_eq!(r["digest"], child.digest.as_str(), "{arch}: {r}");
        assert_eq!(r["index_digest"], digest.as_str());
        let code = block_on(lambda().get_function().function_name(&f).send()).unwrap();
        assert_eq!(
            code.code().unwrap().image_uri(),
            Some(uri(&repo, &child.digest).as_str()),
            "{arch}"
        );
    }
}

#[test]
fn preflight_refusals_name_the_fix_and_write_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let l = Layout::new(dir.path());
    let layer = l.layer(10_000, fresh_seed());
    let arm = l.image(std::slice::from_ref(&layer), "arm64");
    let zstd_layer = l.blob(
        "application/vnd.oci.image.layer.v1.tar+zstd",
        &common::fixtures::random_bytes(5000, fresh_seed()),
    );
    let zstd = l.image_with_config(
        json!({"architecture": "amd64", "os": "linux", "config": {"Cmd": ["/app"]}}),
        &[zstd_layer],
    );
    let nothing = l.image_with_config(
        json!({"architecture": "amd64", "os": "linux", "config": {}}),
        std::slice::from_ref(&layer),
    );
    // A layer descriptor claiming 11 GiB: pushed as a manifest only (the
    // registry does not check descriptor sizes against blobs).
    let mut big = layer.clone();
    big.size = 11 * 1024 * 1024 * 1024;
    let huge = l.image_with_config(
        json!({"architecture": "amd64", "os": "linux", "config": {"Cmd": ["/app"]}}),
        &[big],
    );
    l.write_index(&[
        (Some("arm"), &arm),
        (Some("zstd"), &zstd),
        (Some("nothing"), &nothing),
    ]);
    let repo = unique("deploy");
    for r in ["arm", "zstd", "nothing"] {
        common::push(&l.dir, &repo, &["--create-repository", "--ref", r]).ok();
    }
    put_manifest(&repo, &huge, &std::fs::read(l.blob_path(&huge)).unwrap());

    let (base_repo, base) = push_image("amd64");
    let f = function(&base_repo, &base, "x86_64");
    let fake = FakeLambda::start(forward());
    let cases: &[(&Desc, Vec<&str>)] = &[
        (
            &arm,
            vec![
                "is linux/arm64 but function",
                "runs on x86_64",
                "--architecture arm64",
            ],
        ),
        (
            &zstd,
            vec![
                "media type application/vnd.oci.image.layer.v1.tar+zstd",
                "gzip",
            ],
        ),
        (
            &nothing,
            vec!["neither an ENTRYPOINT nor a CMD", "add ENTRYPOINT or CMD"],
        ),
        (&huge, vec!["over Lambda's 10 GiB image limit"]),
    ];
    for (image, says) in cases {
        let run = deploy(&format!("{repo}@{}", image.digest), &f, &[], &fake.env());
        failed(&run, 2, says);
    }
    assert!(
        fake.count("GetFunction") >= cases.len(),
        "the function was read each time"
    );
    assert_eq!(
        fake.writes(),
        Vec::<String>::new(),
        "no write reached Lambda"
    );
    assert_eq!(versions(&f).len(), 1);
    // --architecture arm64 makes the arm64 image fine.
    let run = deploy(
        &format!("{repo}@{}", arm.digest),
        &f,
        &["--architecture", "arm64", "--dry-run"],
        &fake.env(),
    );
    assert_eq!(run.ok().json()["result"], "dry-run");
}

/// PUT a manifest straight to the registry (for what hoist push would refuse
/// to write).
fn put_manifest(repo: &str, d: &Desc, bytes: &[u8]) {
    let l = local();
    let ca = std::fs::read(&l.vars["AWS_CA_BUNDLE"]).unwrap();
    let client = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(&ca).unwrap())
        .build()
        .unwrap();
    let res = block_on(
        client
            .put(format!(
                "https://{}/v2/{repo}/manifests/{}",
                l.registry, d.digest
            ))
            .basic_auth("AWS", Some(&l.password))
            .header("Content-Type", d.media_type.as_str())
            .body(bytes.to_vec())
            .send(),
    )
    .unwrap();
    assert!(
        res.status().is_success(),
        "the registry took the manifest: {}",
        res.status()
    );
}

#[test]
fn dry_run_prints_the_plan_and_writes_nothing() {
    let (repo, first) = push_image("amd64");
    let f = function(&repo, &first, "x86_64");
    let (_, _) = (0, 0);
    let dir = tempfile::tempdir().unwrap();
    let l = Layout::new(dir.path());
    let m = l.image(&[l.layer(20_000, fresh_seed())], "amd64");
    l.write_index(&[(Some("latest"), &m)]);
    let next = common::push(&l.dir, &repo, &[]).ok().json()["digest"]
        .as_str()
        .unwrap()
        .to_string();
    let name = unique("alarm");
    alarm(&name);
    let fake = FakeLambda::start(forward());
    let run = deploy(
        &format!("{repo}@{next}"),
        &f,
        &[
            "--dry-run",
            "--strategy",
            "LambdaLinear10PercentEvery1Minute",
            "--alarm",
            &name,
            "--watch-errors",
        ],
        &fake.env(),
    );
    let r = run.ok().json();
    assert_eq!(r["result"], "dry-run", "{r}");
    let plan: Vec<&str> = r["plan"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p.as_str().unwrap())
        .collect();
    assert!(plan[0].contains(&next), "{plan:?}");
    assert!(plan[1].contains("publish version 2 (probably)"), "{plan:?}");
    assert!(
        plan.iter()
            .any(|p| p.contains("10% on the new version, 90% on 1; bake 1m")),
        "{plan:?}"
    );
    assert!(
        plan.iter()
            .any(|p| p.contains("90% on the new version, 10% on 1; bake 1m")),
        "{plan:?}"
    );
    assert!(
        plan.iter()
            .any(|p| p.contains(&name) && p.contains("Errors metric")),
        "{plan:?}"
    );
    // Each preflight check, in the plan.
    for want in [
        "check: region: the image and function".to_string(),
        // --create-repository gave the repository the Lambda statement.
        format!("check: pull: same account; the policy of repository {repo} (account 123456789012) lets lambda.amazonaws.com pull for this function"),
        "check: weighted routing: version 1 and the new version share the execution role and the dead-letter queue (none)".to_string(),
        "check: provisioned concurrency: none on alias live".to_string(),
        format!("check: alarms: {name} (metric alarm, OK)"),
    ] {
        assert!(plan.iter().any(|p| p.starts_with(&want)), "{want}: {plan:?}");
    }
    assert!(fake.count("GetAlias") >= 1);
    assert!(fake.count("GetProvisionedConcurrencyConfig") >= 1);
    assert_eq!(
        fake.writes(),
        Vec::<String>::new(),
        "the dry run wrote nothing"
    );
    assert_eq!(versions(&f).len(), 1);
    assert_eq!(alias(&f, "live"), ("1".into(), HashMap::new()));
}

// ================================================================ recorded responses

/// A function, and a second image to deploy to it.
fn scenario() -> (String, String) {
    let (repo, f, _, next) = function_and_next_build();
    (f, format!("{repo}@{next}"))
}

/// After UpdateFunctionCode, the configuration reads InProgress `n` times,
/// then `last` (None: what moto says, Successful).
fn in_progress(n: usize, last: Option<(&'static str, &'static str)>) -> Rule {
    let updated = Arc::new(Mutex::new(None::<usize>));
    Arc::new(move |c: &Call| {
        let i = c.n;
        // Reads of the function itself, not of a published version.
        if c.kind != "GetFunctionConfiguration" || c.qualifier.is_some() {
            return None;
        }
        // Reads before the update are the pre-update settle: leave them.
        let mut u = updated.lock().unwrap();
        let base = *u.get_or_insert(i);
        let _ = &mut u;
        let k = i - base;
        if k == 0 {
            return None; // the settle before the update
        }
        let k = k - 1;
        if k < n {
            return Some(Reply::Edit(Box::new(|v| {
                v["LastUpdateStatus"] = json!("InProgress")
            })));
        }
        last.map(|(code, reason)| {
            Reply::Edit(Box::new(move |v| {
                v["LastUpdateStatus"] = json!("Failed");
                v["LastUpdateStatusReasonCode"] = json!(code);
                v["LastUpdateStatusReason"] = json!(reason);
            }))
        })
    })
}

#[test]
fn an_update_in_progress_is_waited_for() {
    let (f, image) = scenario();
    let fake = FakeLambda::start(in_progress(2, None));
    let run = deploy(&image, &f, &[], &fake.env());
    let r = run.ok().json();
    assert_eq!(r["result"], "deployed", "{r}");
    assert!(
        fake.count("GetFunctionConfiguration") >= 4,
        "settle before, InProgress twice, then Successful"
    );
    let seen = fake.seen();
    let last_read = seen
        .iter()
        .rposition(|s| s.kind == "GetFunctionConfiguration" && s.qualifier.is_none())
        .unwrap();
    let publish = seen
        .iter()
        .position(|s| s.kind == "PublishVersion")
        .unwrap();
    assert!(
        publish > last_read,
        "published only once the update was Successful"
    );
    assert!(
        run.stderr.contains("an update is in progress"),
        "{}",
        run.stderr
    );
}

#[test]
fn a_failed_update_reports_lambdas_reason_and_moves_nothing() {
    let (f, image) = scenario();
    let fake = FakeLambda::start(in_progress(
        1,
        Some((
            "ImageAccessDenied",
            "Lambda does not have permission to access the ECR image. Check the ECR permissions.",
        )),
    ));
    let run = deploy(&image, &f, &[], &fake.env());
    failed(
        &run,
        2,
        &[
            "could not update function",
            "ImageAccessDenied: Lambda does not have permission to access the ECR image",
            "ecr:BatchGetImage",
        ],
    );
    assert_eq!(fake.count("PublishVersion"), 0);
    assert_eq!(fake.count("UpdateAlias"), 0);
    assert_eq!(alias(&f, "live").0, "1");
}

#[test]
fn a_resource_conflict_is_waited_out_and_retried() {
    let (f, image) = scenario();
    let fake = FakeLambda::start(Arc::new(|c: &Call| {
        let (kind, n) = (c.kind, c.n);
        (kind == "UpdateFunctionCode" && n == 0).then(|| {
            Reply::Answer(409, Some("ResourceConflictException"), json!({"Type": "User", "message": "The operation cannot be performed at this time. An update is in progress for resource: arn:aws:lambda:us-east-1:123456789012:function:f"}), vec![])
        })
    }));
    let run = deploy(&image, &f, &[], &fake.env());
    assert_eq!(run.ok().json()["result"], "deployed");
    assert_eq!(fake.count("UpdateFunctionCode"), 2);
    assert!(
        run.stderr.contains("update is in progress"),
        "{}",
        run.stderr
    );
}

#[test]
fn a_stale_revision_id_fails_instead_of_overwriting() {
    let (f, image) = scenario();
    let fake = FakeLambda::start(Arc::new(|c: &Call| {
        let kind = c.kind;
        (kind == "UpdateFunctionCode").then(|| {
            Reply::Answer(412, Some("PreconditionFailedException"), json!({"Type": "User", "message": "The Revision Id provided does not match the latest Revision Id. Call the GetFunction/GetAlias API to retrieve the latest Revision Id"}), vec![])
        })
    }));
    let run = deploy(&image, &f, &[], &fake.env());
    failed(
        &run,
        3,
        &["changed while hoist was deploying", "RevisionId moved on"],
    );
    assert_eq!(fake.count("UpdateFunctionCode"), 1, "not retried");
    assert_eq!(fake.count("PublishVersion"), 0);
    assert_eq!(fake.count("UpdateAlias"), 0);
}

#[test]
fn throttling_is_retried_after_the_seconds_lambda_asks_for() {
    let (f, image) = scenario();
    let fake = FakeLambda::start(Arc::new(|c: &Call| {
        let (kind, n) = (c.kind, c.n);
        (kind == "PublishVersion" && n == 0).then(|| {
            Reply::Answer(429, Some("TooManyRequestsException"), json!({"Type": "User", "message": "Rate exceeded", "Reason": "CallerRateLimitExceeded", "retryAfterSeconds": "2"}), vec![("Retry-After", "2".into())])
        })
    }));
    let run = deploy(&image, &f, &[], &fake.env());
    assert_eq!(run.ok().json()["result"], "deployed");
    let publishes: Vec<Instant> = fake
        .seen()
        .iter()
        .filter(|s| s.kind == "PublishVersion")
        .map(|s| s.at)
        .collect();
    assert_eq!(publishes.len(), 2);
    let gap = publishes[1] - publishes[0];
    assert!(
        gap >= Duration::from_millis(1900),
        "waited {gap:?}, Lambda asked for 2 s"
    );
}

#[test]
fn the_smoke_event_invokes_the_new_version_before_any_traffic_moves() {
    let (f, image) = scenario();
    let event = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(event.path(), br#"{"ping": true}"#).unwrap();
    let event = event.path().to_str().unwrap().to_string();

    // A function error: the deploy stops with the response, the alias stays.
    let fake = FakeLambda::start(Arc::new(|c: &Call| {
        let kind = c.kind;
        (kind == "Invoke").then(|| {
            Reply::Answer(
                200,
                None,
                json!({"errorMessage": "boom: table missing", "errorType": "KeyError"}),
                vec![
                    ("X-Amz-Function-Error", "Unhandled".into()),
                    ("X-Amz-Executed-Version", "2".into()),
                ],
            )
        })
    }));
    let run = deploy(&image, &f, &["--smoke-event", &event], &fake.env());
    failed(
        &run,
        1,
        &[
            "smoke test of version 2 failed",
            "Unhandled",
            "boom: table missing",
        ],
    );
    assert_eq!(fake.count("UpdateAlias"), 0);
    assert!(fake.seen().iter().any(|s| s.path.ends_with("/invocations")));
    assert_eq!(alias(&f, "live").0, "1");
    drop(fake);

    // A response without the expected text stops it too; with it, it goes on.
    let fake = FakeLambda::start(Arc::new(|c: &Call| {
        let kind = c.kind;
        (kind == "Invoke").then(|| Reply::Answer(200, None, json!({"status": "ok"}), vec![]))
    }));
    // A fresh function each time: moto's GetFunction of version 1 reports
    // $LATEST's image URI, so after a stopped deploy version 1 would look
    // like the new image (real Lambda reports each version's own).
    let (f, image) = scenario();
    let run = deploy(
        &image,
        &f,
        &["--smoke-event", &event, "--smoke-expect", "\"healthy\""],
        &fake.env(),
    );
    failed(
        &run,
        1,
        &["does not contain '\"healthy\"'", "{\"status\":\"ok\"}"],
    );
    let (f, image) = scenario();
    let run = deploy(
        &image,
        &f,
        &["--smoke-event", &event, "--smoke-expect", "\"ok\""],
        &fake.env(),
    );
    let r = run.ok().json();
    assert_eq!(r["result"], "deployed", "{r}");
    let invoke = fake.seen().iter().position(|s| s.kind == "Invoke").unwrap();
    let moved = fake
        .seen()
        .iter()
        .position(|s| s.kind == "UpdateAlias")
        .unwrap();
    assert!(invoke < moved, "invoked before any traffic moved");
}

#[test]
fn bad_flags_are_refused_before_any_call() {
    let cases: &[(&[&str], &str)] = &[
        (
            &["--strategy", "blue-green"],
            "--strategy 'blue-green' is not a strategy",
        ),
        (&["--strategy", "canary:150%:1m"], "use 1 to 99"),
        (
            &["--smoke-expect", "ok"],
            "--smoke-expect needs --smoke-event",
        ),
        (&["--smoke-event", "/nonexistent.json"], "cannot be read"),
    ];
    let d = format!("app@sha256:{}", "a".repeat(64));
    for (extra, says) in cases {
        let run = hoist(
            &[
                &["deploy", &d, "--function", "f", "--alias", "live"][..],
                extra,
            ]
            .concat(),
            &[("AWS_ENDPOINT_URL", "http://127.0.0.1:9")],
        );
        failed(&run, 2, &[says]);
    }
    let run = hoist(
        &["deploy", "app:latest", "--function", "f", "--alias", "live"],
        &[],
    );
    failed(&run, 2, &["does not name an image by digest"]);
    let run = hoist(&["deploy", &d, "--function", "f", "--alias", "123"], &[]);
    failed(&run, 2, &["not a Lambda alias name"]);
}

// ================================================================ real Lambda, where moto is kinder

/// The next build of the image in `repo`: its digest.
fn next_build(repo: &str) -> String {
    let dir = tempfile::tempdir().unwrap();
    let l = Layout::new(dir.path());
    let m = l.image(&[l.layer(20_000, fresh_seed())], "amd64");
    l.write_index(&[(Some("latest"), &m)]);
    common::push(&l.dir, repo, &[]).ok().json()["digest"]
        .as_str()
        .unwrap()
        .to_string()
}

fn timeline(report: &Value) -> Vec<String> {
    report["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["what"].as_str().unwrap().to_string())
        .collect()
}

fn plan(report: &Value) -> Vec<String> {
    report["plan"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e.as_str().unwrap().to_string())
        .collect()
}

/// The endpoint itself: what Lambda refuses, it refuses — so a test that
/// passes through it cannot pass by way of something Lambda would not do.
#[test]
fn the_lambda_endpoint_refuses_what_lambda_refuses() {
    let (repo, f, _, next) = function_and_next_build();
    // Version 2 with the next build, published behind the endpoint's back.
    let moto = lambda();
    block_on(async {
        moto.update_function_code()
            .function_name(&f)
            .image_uri(uri(&repo, &next))
            .send()
            .await
            .unwrap();
        moto.publish_version()
            .function_name(&f)
            .send()
            .await
            .unwrap();
    });
    let fake = FakeLambda::start(forward());
    let l = fake.client();
    let weights = |pairs: &[(&str, f64)]| {
        aws_sdk_lambda::types::AliasRoutingConfiguration::builder()
            .set_additional_version_weights(Some(
                pairs.iter().map(|(v, w)| (v.to_string(), *w)).collect(),
            ))
            .build()
    };
    let refused = |primary: &str, pairs: &[(&str, f64)]| {
        let e = block_on(
            l.update_alias()
                .function_name(&f)
                .name("live")
                .function_version(primary)
                .routing_config(weights(pairs))
                .send(),
        )
        .expect_err("Lambda refuses this routing");
        let s = e.into_service_error();
        assert!(s.is_invalid_parameter_value_exception(), "{s:?}");
        s.to_string()
    };
    assert!(refused("$LATEST", &[("1", 0.1)]).contains("$LATEST"));
    assert!(refused("1", &[("$LATEST", 0.1)]).contains("$LATEST"));
    refused("2", &[("1", 0.1), ("3", 0.1)]);
    fake.dead_letter("2", "arn:aws:sqs:us-east-1:123456789012:dlq");
    assert!(refused("2", &[("1", 0.1)]).contains("dead letter queue"));
    // moto would take any CodeSha256.
    let e = block_on(
        l.publish_version()
            .function_name(&f)
            .code_sha256("c2FtZSBvbGQgY29kZQ==")
            .send(),
    )
    .expect_err("a stale CodeSha256 is refused");
    assert!(
        e.to_string()
            .contains("is different from current CodeSHA256")
            || format!("{e:?}").contains("is different from current CodeSHA256"),
        "{e:?}"
    );
    let e = block_on(
        l.get_provisioned_concurrency_config()
            .function_name(&f)
            .qualifier("live")
            .send(),
    )
    .expect_err("no provisioned concurrency");
    assert!(
        e.into_service_error()
            .is_provisioned_concurrency_config_not_found_exception()
    );
    // And what Lambda allows, it allows: the same queue on both.
    fake.dead_letter("1", "arn:aws:sqs:us-east-1:123456789012:dlq");
    block_on(
        l.update_alias()
            .function_name(&f)
            .name("live")
            .function_version("1")
            .routing_config(weights(&[("2", 0.0)]))
            .send(),
    )
    .unwrap_or_else(|e| panic!("{e:?}"));

    // UpdateAlias with a RevisionId is a compare-and-set (moto ignores it):
    // every change issues a new one, and a stale one is refused.
    // The new RevisionId, or the error's code.
    let move_with = |rev: &str, description: &str| -> Result<String, String> {
        use aws_sdk_lambda::error::ProvideErrorMetadata;
        block_on(
            l.update_alias()
                .function_name(&f)
                .name("live")
                .function_version("1")
                .description(description)
                .revision_id(rev)
                .send(),
        )
        .map(|a| a.revision_id().unwrap().to_string())
        .map_err(|e| e.code().unwrap_or("?").to_string())
    };
    let read = || common::lambda::alias_revision(&f, "live");
    let first = read();
    assert_eq!(read(), first, "reading does not change it");
    let second = move_with(&first, "one").unwrap();
    assert_ne!(second, first);
    assert_eq!(read(), second);
    assert_eq!(
        move_with(&first, "two"),
        Err("PreconditionFailedException".into()),
        "a stale RevisionId is refused"
    );
    // A change made behind the endpoint's back (straight to moto) moves it on too.
    block_on(
        lambda()
            .update_alias()
            .function_name(&f)
            .name("live")
            .description("three")
            .send(),
    )
    .unwrap();
    assert_eq!(
        move_with(&second, "four"),
        Err("PreconditionFailedException".into()),
        "changed since"
    );
    let writes = fake.alias_writes();
    assert_eq!(
        writes.iter().map(|w| w.accepted).collect::<Vec<_>>(),
        [true, true, false, false],
        "{writes:?}"
    );
}

/// An alias on $LATEST, deployed with a canary: the code it served is
/// published as a version first, the alias pointed at it, and the shift
/// goes from that version — never weights on $LATEST (the endpoint would
/// refuse them, as Lambda does), and rollback returns to the old code.
#[test]
fn an_alias_on_latest_is_pinned_to_a_version_and_shifted_from_it() {
    let (repo, first) = push_image("amd64");
    let f = common::lambda::function_on_latest(&repo, &first, "x86_64");
    let next = next_build(&repo);
    let image = format!("{repo}@{next}");
    let fake = FakeLambda::start(forward());

    let run = deploy(
        &image,
        &f,
        &["--dry-run", "--strategy", "canary:20%:1s"],
        &fake.env(),
    );
    let r = run.ok().json();
    let p = plan(&r);
    assert!(
        p.iter().any(|l| l.contains("follows $LATEST")
            && l.contains(&format!(
                "publish the code $LATEST runs now ({first}) as version 1 (probably)"
            ))),
        "{p:?}"
    );
    assert!(
        p.iter()
            .any(|l| l.contains("then publish version 2 (probably)")),
        "{p:?}"
    );
    assert!(
        p.iter().any(
            |l| l.contains("20% on the new version, 80% on the version published from $LATEST")
        ),
        "{p:?}"
    );
    assert!(run.stderr.contains("follows $LATEST"), "{}", run.stderr);
    assert_eq!(
        fake.writes(),
        Vec::<String>::new(),
        "the dry run wrote nothing"
    );

    let run = deploy(&image, &f, &["--strategy", "canary:20%:1s"], &fake.env());
    let r = run.ok().json();
    assert_eq!(r["result"], "deployed", "{r}");
    assert_eq!(
        (r["version"].as_str(), r["previous_version"].as_str()),
        (Some("2"), Some("1")),
        "{r}"
    );
    let t = timeline(&r);
    assert!(
        t[0].contains("followed $LATEST") && t[0].contains("as version 1"),
        "{t:?}"
    );
    assert!(
        t.iter().any(|l| l.starts_with("routing 1=80% 2=20%")),
        "{t:?}"
    );
    assert_eq!(t.last().unwrap(), "routing 2=100%");
    assert!(run.stderr.contains("followed $LATEST"), "{}", run.stderr);
    assert_eq!(alias(&f, "live"), ("2".into(), HashMap::new()));
    // Version 1 is the old code (its description says which), version 2 the new.
    let vs = versions(&f);
    let d = |v: &str| vs.iter().find(|(n, _)| n == v).unwrap().1.clone();
    assert!(
        d("1").starts_with(&format!(
            "hoist {first} ($LATEST as served before deploying"
        )),
        "{vs:?}"
    );
    assert!(d("2").starts_with(&format!("hoist {next}")), "{vs:?}");
    // The order: pin, then update, then the new version, then the shift.
    let writes: Vec<String> = fake
        .seen()
        .iter()
        .filter(|s| s.method != "GET")
        .map(|s| match s.kind.as_str() {
            "UpdateAlias" => format!(
                "UpdateAlias {} {}",
                s.body["FunctionVersion"].as_str().unwrap_or("?"),
                s.body["RoutingConfig"]["AdditionalVersionWeights"]
            ),
            k => k.to_string(),
        })
        .collect();
    assert_eq!(
        writes,
        vec![
            "PublishVersion",
            "UpdateAlias 1 {}",
            "UpdateFunctionCode",
            "PublishVersion",
            "UpdateAlias 1 {\"2\":0.2}",
            "UpdateAlias 2 {}",
        ],
        "{writes:?}"
    );
    // Rollback goes to the old code, not to $LATEST (which is the new code).
    let rb = hoist(&["rollback", "--function", &f, "--alias", "live"], &[]);
    assert_eq!(rb.ok().stdout.trim(), "1");
}

/// A record naming $LATEST as the previous version (left by a deploy from
/// an alias that followed $LATEST): rolling back to it would serve the new
/// code, so rollback refuses, forced or not, and writes nothing.
#[test]
fn rollback_never_goes_back_to_latest() {
    let (_, f, _, _) = function_and_next_build();
    block_on(
        lambda()
            .update_alias()
            .function_name(&f)
            .name("live")
            .function_version("1")
            .description("hoist: current=1 previous=$LATEST image=sha256:aaaaaaaaaaaa")
            .send(),
    )
    .unwrap();
    let fake = FakeLambda::start(forward());
    for extra in [&[][..], &["--force"][..]] {
        let run = hoist(
            &[
                &["rollback", "--function", &f, "--alias", "live"][..],
                extra,
            ]
            .concat(),
            &fake.env(),
        );
        failed(
            &run,
            2,
            &[
                "recorded previous version is $LATEST",
                "would serve the new code",
            ],
        );
    }
    assert_eq!(fake.writes(), Vec::<String>::new());
}

/// Weighted routing needs the same dead-letter queue on both versions (the
/// endpoint plays DLQs, which moto does not keep): refused before any
/// write, with the fix; all at once works.
#[test]
fn a_canary_between_versions_with_different_dead_letter_queues_is_refused_first() {
    let (f, image) = scenario();
    let fake = FakeLambda::start(forward());
    fake.dead_letter("1", "arn:aws:sqs:us-east-1:123456789012:dlq-a");
    fake.dead_letter("$LATEST", "arn:aws:sqs:us-east-1:123456789012:dlq-b");
    let run = deploy(&image, &f, &["--strategy", "canary:10%:1s"], &fake.env());
    failed(
        &run,
        2,
        &[
            "Lambda cannot split alias live between version 1 and the new version",
            "dead-letter queue arn:aws:sqs:us-east-1:123456789012:dlq-a but the function now has arn:aws:sqs:us-east-1:123456789012:dlq-b",
            "--strategy all-at-once",
        ],
    );
    assert_eq!(fake.writes(), Vec::<String>::new(), "nothing written");

    // Same queue: the plan says the check passed.
    fake.dead_letter("$LATEST", "arn:aws:sqs:us-east-1:123456789012:dlq-a");
    let run = deploy(
        &image,
        &f,
        &["--strategy", "canary:10%:1s", "--dry-run"],
        &fake.env(),
    );
    let p = plan(&run.ok().json());
    assert!(
        p.iter().any(|l| l
            == "check: weighted routing: version 1 and the new version share the execution role and the dead-letter queue (arn:aws:sqs:us-east-1:123456789012:dlq-a)"),
        "{p:?}"
    );

    // All at once needs no split.
    fake.dead_letter("$LATEST", "arn:aws:sqs:us-east-1:123456789012:dlq-b");
    let run = deploy(&image, &f, &[], &fake.env());
    assert_eq!(run.ok().json()["result"], "deployed");
}

/// PublishVersion guarded by CodeSha256, while another deploy changes the
/// code: Lambda answers InvalidParameterValueException (not 412), and hoist
/// treats it like a stale RevisionId.
#[test]
fn a_publish_that_loses_a_race_is_a_concurrent_change() {
    let (repo, f, _, next) = function_and_next_build();
    let image = format!("{repo}@{next}");
    let other = uri(&repo, &format!("sha256:{}", "c".repeat(64)));
    let name = f.clone();
    let fake = FakeLambda::start(Arc::new(move |c: &Call| {
        if c.kind == "PublishVersion" && c.n == 0 {
            // Another deployment updates the function just now.
            let (name, other) = (name.clone(), other.clone());
            std::thread::spawn(move || {
                block_on(
                    lambda()
                        .update_function_code()
                        .function_name(&name)
                        .image_uri(other)
                        .send(),
                )
                .unwrap()
            })
            .join()
            .unwrap();
        }
        None
    }));
    let run = deploy(&image, &f, &[], &fake.env());
    failed(
        &run,
        3,
        &[
            "changed while hoist was deploying",
            "CodeSha256 no longer matched $LATEST",
            "wait for the other deployment to finish",
        ],
    );
    assert_eq!(fake.count("PublishVersion"), 1, "not retried");
    assert_eq!(fake.count("UpdateAlias"), 0);
    assert_eq!(alias(&f, "live").0, "1");
}

/// A new version stays Pending for a while: nothing invokes it and no
/// traffic goes to it before it is Active.
#[test]
fn a_new_version_is_active_before_the_smoke_test_and_the_traffic() {
    let (f, image) = scenario();
    let event = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(event.path(), br#"{"ping": true}"#).unwrap();
    // Version 2 reads Pending twice, then (moto) Active.
    let reads = Arc::new(Mutex::new(0usize));
    let r2 = reads.clone();
    let fake = FakeLambda::start(Arc::new(move |c: &Call| match (c.kind, c.qualifier) {
        ("GetFunctionConfiguration", Some("2")) => {
            let mut n = r2.lock().unwrap();
            *n += 1;
            (*n <= 2).then(|| {
                Reply::Edit(Box::new(|v| {
                    v["State"] = json!("Pending");
                    v["StateReason"] = json!("The function is being created.");
                    v["StateReasonCode"] = json!("Creating");
                }))
            })
        }
        ("Invoke", _) => Some(Reply::Answer(200, None, json!({"ok": true}), vec![])),
        _ => None,
    }));
    let run = deploy(
        &image,
        &f,
        &[
            "--smoke-event",
            event.path().to_str().unwrap(),
            "--strategy",
            "canary:10%:1s",
        ],
        &fake.env(),
    );
    let r = run.ok().json();
    assert_eq!(r["result"], "deployed", "{r}");
    assert!(
        run.stderr
            .contains("version 2 is Pending; waiting until it is Active"),
        "{}",
        run.stderr
    );
    assert!(timeline(&r).contains(&"version 2 is Active".to_string()));
    let seen = fake.seen();
    let active = seen
        .iter()
        .rposition(|s| s.kind == "GetFunctionConfiguration" && s.qualifier.as_deref() == Some("2"))
        .unwrap();
    let invoke = seen.iter().position(|s| s.kind == "Invoke").unwrap();
    let routed = seen.iter().position(|s| s.kind == "UpdateAlias").unwrap();
    assert_eq!(*reads.lock().unwrap(), 3, "Pending twice, then Active");
    assert!(active < invoke && invoke < routed, "{seen:?}");
}

/// Reason codes that need the user: exit 2 with the fix, never "re-running
/// is safe"; the same for a synchronous "deleted image", a function being
/// deleted, and a published version that failed.
#[test]
fn what_only_the_user_can_fix_fails_with_the_fix() {
    let (repo, _, first, next) = function_and_next_build();
    let image = format!("{repo}@{next}");
    // A fresh function for each case: moto reports $LATEST's image for
    // version 1, so after one failed update version 1 would look like the
    // new image (real Lambda reports each version's own).
    let fresh = || function(&repo, &first, "x86_64");
    let cases: &[(&'static str, &'static str, &'static str)] = &[
        (
            "FunctionError.InvalidEntryPoint",
            "Couldn't find valid bootstrap(s): [/app/bootstrap]",
            "absolute path to an executable",
        ),
        (
            "FunctionError.RuntimeInitError",
            "Runtime exited with error: exit status 1",
            "runtime interface emulator",
        ),
        (
            "InsufficientRolePermissions",
            "The function's execution role does not have permission to call CreateNetworkInterface on EC2",
            "execution role lacks permissions",
        ),
        (
            "KMSKeyNotFound",
            "Lambda couldn't decrypt the environment variables because the KMS key was not found.",
            "set another key",
        ),
        (
            "DisabledKMSKey",
            "Lambda couldn't decrypt the environment variables because the KMS key used is disabled.",
            "enable it",
        ),
        (
            "InvalidConfiguration",
            "The configuration is invalid.",
            "update-function-configuration",
        ),
        ("ImageDeleted", "The image was deleted.", "lifecycle"),
        (
            "ImageAccessDenied",
            "Lambda does not have permission to access the ECR image. Check the ECR permissions.",
            "ecr:SetRepositoryPolicy",
        ),
        (
            "InvalidImage",
            "ImageLayerFailure: UnsupportedImageLayerDetected",
            "gzip",
        ),
    ];
    for (code, reason, fix) in cases {
        let fake = FakeLambda::start(in_progress(1, Some((code, reason))));
        let run = deploy(&image, &fresh(), &[], &fake.env());
        failed(&run, 2, &[code, reason, fix, "the alias was not moved"]);
        assert!(
            !run.stderr.contains("re-running is safe"),
            "{code}: {}",
            run.stderr
        );
        assert_eq!(fake.count("PublishVersion"), 0, "{code}");
        assert_eq!(fake.count("UpdateAlias"), 0, "{code}");
    }

    // UpdateFunctionCode refused at once: the function's image is gone.
    let fake = FakeLambda::start(Arc::new(|c: &Call| {
        (c.kind == "UpdateFunctionCode").then(|| {
            lambda_error(
                400,
                "InvalidParameterValueException",
                "The function is trying to use a deleted image.".into(),
            )
        })
    }));
    let run = deploy(&image, &fresh(), &[], &fake.env());
    failed(
        &run,
        2,
        &[
            "ImageDeleted",
            "trying to use a deleted image",
            "Push that image again",
        ],
    );
    assert!(!run.stderr.contains("re-running is safe"), "{}", run.stderr);

    // A function being deleted: refused before the update.
    let fake = FakeLambda::start(Arc::new(|c: &Call| {
        (c.kind == "GetFunctionConfiguration").then(|| {
            Reply::Edit(Box::new(|v| {
                v["State"] = json!("Deleting");
                v["StateReason"] = json!("The function is being deleted.");
            }))
        })
    }));
    let run = deploy(&image, &fresh(), &[], &fake.env());
    failed(&run, 2, &["is Deleting", "is being deleted"]);
    assert_eq!(fake.count("UpdateFunctionCode"), 0);

    // The published version failed: no traffic goes to it.
    let fake = FakeLambda::start(Arc::new(|c: &Call| {
        (c.kind == "GetFunctionConfiguration" && c.qualifier.is_some()).then(|| {
            Reply::Edit(Box::new(|v| {
                v["State"] = json!("Failed");
                v["StateReasonCode"] = json!("FunctionError.InvalidEntryPoint");
                v["StateReason"] = json!("Couldn't find valid bootstrap(s)");
            }))
        })
    }));
    let f = fresh();
    let run = deploy(&image, &f, &[], &fake.env());
    failed(
        &run,
        2,
        &[
            "failed: FunctionError.InvalidEntryPoint",
            "no traffic was moved to the version",
        ],
    );
    assert_eq!(fake.count("UpdateAlias"), 0);
    assert_eq!(alias(&f, "live").0, "1");
}

/// Provisioned concurrency as Lambda reports it on the alias.
fn provisioned(status: &str, allocated: i32, reason: Option<&str>) -> Reply {
    let mut body = json!({
        "RequestedProvisionedConcurrentExecutions": 5,
        "AvailableProvisionedConcurrentExecutions": allocated,
        "AllocatedProvisionedConcurrentExecutions": allocated,
        "Status": status,
        "LastModified": "2026-11-30T10:00:00+0000",
    });
    if let Some(r) = reason {
        body["StatusReason"] = json!(r);
    }
    Reply::Answer(200, None, body, vec![])
}

/// After each routing change, Lambda re-allocates the alias's provisioned
/// concurrency: IN_PROGRESS, then READY (or FAILED). `after` says what the
/// reads after the first weighted step return.
fn allocation(after: &'static [(&'static str, i32)], reason: Option<&'static str>) -> Rule {
    let state = Arc::new(Mutex::new((0usize, 0usize))); // (alias updates, reads since)
    Arc::new(move |c: &Call| {
        let mut s = state.lock().unwrap();
        match c.kind {
            "UpdateAlias" => {
                *s = (s.0 + 1, 0);
                None
            }
            "GetProvisionedConcurrencyConfig" if s.0 == 0 => Some(provisioned("READY", 5, None)),
            "GetProvisionedConcurrencyConfig" => {
                let (status, allocated) = after.get(s.1).or(after.last()).copied().unwrap();
                s.1 += 1;
                Some(provisioned(status, allocated, reason))
            }
            _ => None,
        }
    })
}

#[test]
fn each_bake_starts_once_provisioned_concurrency_is_ready_again() {
    let (f, image) = scenario();
    let fake = FakeLambda::start(allocation(
        &[("IN_PROGRESS", 2), ("IN_PROGRESS", 4), ("READY", 5)],
        None,
    ));
    let run = deploy(&image, &f, &["--strategy", "canary:20%:2s"], &fake.env());
    let r = run.ok().json();
    assert_eq!(r["result"], "deployed", "{r}");
    let p = plan(&r);
    assert!(
        p.iter().any(|l| l
            == "check: provisioned concurrency: alias live has 5 (READY); after each routing change hoist waits until it is READY before baking"),
        "{p:?}"
    );
    let t = timeline(&r);
    let waiting = t
        .iter()
        .position(|l| {
            l == "routing 1=80% 2=20%; waiting for the provisioned concurrency of live to be READY"
        })
        .unwrap_or_else(|| panic!("{t:?}"));
    assert!(
        t[waiting + 1].starts_with("provisioned concurrency of live READY (5 of 5) after")
            && t[waiting + 1].ends_with("; baking 2s"),
        "{t:?}"
    );
    // Reads: once before the shift, three times after the weighted step
    // (the last READY), then after the final move; the bake (2 s) counts
    // from the READY read.
    let seen = fake.seen();
    let moves: Vec<usize> = seen
        .iter()
        .enumerate()
        .filter(|(_, s)| s.kind == "UpdateAlias")
        .map(|(i, _)| i)
        .collect();
    assert_eq!(moves.len(), 2);
    let reads_between: Vec<&Seen> = seen[moves[0]..moves[1]]
        .iter()
        .filter(|s| s.kind == "GetProvisionedConcurrencyConfig")
        .collect();
    assert_eq!(reads_between.len(), 3, "IN_PROGRESS, IN_PROGRESS, READY");
    let ready_at = reads_between[2].at;
    assert!(
        seen[moves[1]].at.duration_since(ready_at) >= Duration::from_secs(2),
        "the bake began only once the allocation was READY"
    );
}

#[test]
fn provisioned_concurrency_that_fails_sends_the_alias_back() {
    let (f, image) = scenario();
    let fake = FakeLambda::start(allocation(
        &[("IN_PROGRESS", 1), ("FAILED", 1)],
        Some("Insufficient unreserved concurrency available to allocate 5 provisioned concurrency"),
    ));
    let run = deploy(&image, &f, &["--strategy", "canary:20%:30s"], &fake.env());
    failed(
        &run,
        2,
        &[
            "could not allocate the provisioned concurrency of alias",
            "Insufficient unreserved concurrency",
            "rolling back",
            "the alias went back to the previous version",
        ],
    );
    assert_eq!(alias(&f, "live"), ("1".into(), HashMap::new()));
    let last = fake
        .seen()
        .into_iter()
        .rev()
        .find(|s| s.kind == "UpdateAlias")
        .unwrap();
    assert_eq!(
        last.body["FunctionVersion"], "1",
        "restored: {:?}",
        last.body
    );
}

/// The image's region is checked before hoist reads it: the registry (here
/// a closed port) is never asked, and the message is about regions.
#[test]
fn an_image_in_another_region_is_refused_before_it_is_read() {
    let (repo, f, _, next) = function_and_next_build();
    let image = format!("123456789012.dkr.ecr.eu-west-1.amazonaws.com/{repo}@{next}");
    let fake = FakeLambda::start(forward());
    let mut env = fake.env();
    env.push(("HOIST_REGISTRY_ENDPOINT", "https://127.0.0.1:9"));
    let run = deploy(&image, &f, &[], &env);
    failed(
        &run,
        2,
        &[
            "the image is in region eu-west-1 but function",
            "is in us-east-1; Lambda pulls only from its own region",
            "push the image to an ECR repository in us-east-1",
        ],
    );
    assert!(!run.stderr.contains("could not reach"), "{}", run.stderr);
    assert_eq!(fake.writes(), Vec::<String>::new());
}

/// The repository policy is read and evaluated: an explicit Deny for
/// Lambda stops the deploy before any write, with the statement to use.
#[test]
fn a_repository_policy_that_denies_lambda_is_refused_first() {
    let (repo, f, _, next) = function_and_next_build();
    let deny = json!({"Version": "2012-10-17", "Statement": [{"Sid": "NoLambda", "Effect": "Deny", "Principal": {"Service": "lambda.amazonaws.com"}, "Action": "ecr:*"}]});
    common::ecr(async |ecr| {
        ecr.set_repository_policy()
            .repository_name(&repo)
            .policy_text(deny.to_string())
            .send()
            .await
            .unwrap()
    });
    let fake = FakeLambda::start(forward());
    let run = deploy(&format!("{repo}@{next}"), &f, &[], &fake.env());
    failed(
        &run,
        2,
        &[
            "denies lambda.amazonaws.com the pull (statement 'NoLambda' denies ecr:BatchGetImage)",
            r#""Principal":{"Service":"lambda.amazonaws.com"}"#,
            r#""aws:sourceARN":"arn:aws:lambda:us-east-1:123456789012:function:*""#,
        ],
    );
    assert_eq!(fake.writes(), Vec::<String>::new());
}

/// The CloudWatch endpoint of the log-alarm tests
/// (AWS_ENDPOINT_URL_CLOUDWATCH): it forwards to moto (metric alarms,
/// metrics) and plays one log alarm, which moto does not have — in the
/// `LogAlarms` list of the awsQuery DescribeAlarms answer, and only when the
/// request asks for AlarmTypes LogAlarm, as CloudWatch does (without it only
/// metric alarms come back).
struct FakeCloudWatch {
    /// (StateValue, StateReason) of the log alarm.
    state: Arc<Mutex<(String, String)>>,
    /// For each DescribeAlarms naming the log alarm: whether it asked for
    /// log alarms.
    asked: Arc<Mutex<Vec<bool>>>,
    _server: server::Running,
    url: String,
}

impl FakeCloudWatch {
    fn start(log_alarm: &str) -> FakeCloudWatch {
        let state = Arc::new(Mutex::new((
            "OK".to_string(),
            "No log lines matched the query".to_string(),
        )));
        let asked: Arc<Mutex<Vec<bool>>> = Arc::default();
        let moto = local().vars["AWS_ENDPOINT_URL"].clone();
        let client = reqwest::Client::new();
        let (st, ask, name) = (state.clone(), asked.clone(), log_alarm.to_string());
        let running = server::serve(move |req: hyper::Request<hyper::body::Incoming>| {
            let (state, asked, name, client, moto) = (
                st.clone(),
                ask.clone(),
                name.clone(),
                client.clone(),
                moto.clone(),
            );
            async move {
                use http_body_util::BodyExt;
                let (parts, body) = req.into_parts();
                let bytes = body
                    .collect()
                    .await
                    .map_err(std::io::Error::other)?
                    .to_bytes();
                let form: Vec<(String, String)> =
                    url::form_urlencoded::parse(&bytes).into_owned().collect();
                let has = |k: &str, v: &str| {
                    form.iter()
                        .any(|(fk, fv)| fk.starts_with(k) && fv.as_str() == v)
                };
                let mut out = client.post(format!("{moto}{}", parts.uri.path()));
                for (k, v) in &parts.headers {
                    if !matches!(k.as_str(), "host" | "connection" | "transfer-encoding") {
                        out = out.header(k, v);
                    }
                }
                let res = out
                    .body(bytes.to_vec())
                    .send()
                    .await
                    .map_err(std::io::Error::other)?;
                let status = res.status().as_u16();
                let mut text = res.text().await.map_err(std::io::Error::other)?;
                if has("Action", "DescribeAlarms") && has("AlarmNames.member.", &name) {
                    let wanted = has("AlarmTypes.member.", "LogAlarm");
                    asked.lock().unwrap().push(wanted);
                    if wanted {
                        let (value, reason) = state.lock().unwrap().clone();
                        let member = format!(
                            "<LogAlarms><member><AlarmName>{name}</AlarmName><AlarmArn>arn:aws:cloudwatch:us-east-1:123456789012:alarm:{name}</AlarmArn><ScheduledQueryConfiguration><QueryString>fields @message | filter @message like /ERROR/</QueryString></ScheduledQueryConfiguration><StateValue>{value}</StateValue><StateReason>{}</StateReason><Threshold>1.0</Threshold></member></LogAlarms>",
                            reason
                                .replace('&', "&amp;")
                                .replace('<', "&lt;")
                                .replace('>', "&gt;")
                        );
                        text = text.replacen(
                            "</DescribeAlarmsResult>",
                            &format!("{member}</DescribeAlarmsResult>"),
                            1,
                        );
                    }
                }
                let mut r = server::full(status, &text);
                r.headers_mut()
                    .insert("Content-Type", "text/xml".parse().unwrap());
                Ok::<hyper::Response<Body>, std::io::Error>(r)
            }
        });
        let url = format!("http://{}", running.addr);
        FakeCloudWatch {
            state,
            asked,
            _server: running,
            url,
        }
    }

    fn set(&self, value: &str, reason: &str) {
        *self.state.lock().unwrap() = (value.into(), reason.into());
    }
}

/// A CloudWatch log alarm is watched like the others: named in the plan,
/// and in ALARM during a bake it rolls the alias back.
#[test]
fn a_log_alarm_in_alarm_rolls_the_alias_back() {
    let (repo, f, _, next) = function_and_next_build();
    let image = format!("{repo}@{next}");
    let name = unique("logs");
    let cw = FakeCloudWatch::start(&name);
    let fake = FakeLambda::start(forward());
    let mut env = fake.env();
    env.push(("AWS_ENDPOINT_URL_CLOUDWATCH", cw.url.as_str()));

    let run = deploy(
        &image,
        &f,
        &["--dry-run", "--strategy", "canary:10%:1m", "--alarm", &name],
        &env,
    );
    let p = plan(&run.ok().json());
    assert!(
        p.contains(&format!("check: alarms: {name} (log alarm, OK)")),
        "{p:?}"
    );

    let child = spawn(
        &[
            "deploy",
            &image,
            "--function",
            &f,
            "--alias",
            "live",
            "--strategy",
            "canary:10%:60s",
            "--alarm",
            &name,
            "--output",
            "json",
        ],
        &env,
    );
    wait_for_split(&f);
    cw.set("ALARM", "Threshold Crossed: 4 log lines matched ERROR");
    let run = finish(child);
    assert_eq!(run.code, 1, "{}\n{}", run.stdout, run.stderr);
    let r = run.json();
    assert_eq!(r["result"], "rolled-back", "{r}");
    assert_eq!(r["alarm"], name.as_str());
    assert!(
        r["reason"]
            .as_str()
            .unwrap()
            .contains("4 log lines matched ERROR"),
        "{r}"
    );
    assert_eq!(alias(&f, "live"), ("1".into(), HashMap::new()));
    let asked = cw.asked.lock().unwrap().clone();
    assert!(
        asked.len() >= 3 && asked.iter().all(|a| *a),
        "every DescribeAlarms asked for log alarms: {asked:?}"
    );
}

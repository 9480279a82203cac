//! `hoist deploy` and `hoist rollback` against moto's Lambda, CloudWatch and
//! IAM, with images pushed to the local registry (which plays ECR's
//! registry endpoint). What moto does not emulate — updates that stay
//! InProgress or fail, ResourceConflictException, a stale RevisionId,
//! throttling with retryAfterSeconds, invoking an image function — is played
//! by a Lambda endpoint in the test (AWS_ENDPOINT_URL_LAMBDA) that forwards
//! to moto and answers the recorded responses where the scenario says so;
//! it records every request, so a test can prove what was (not) written.

mod common;

use std::collections::HashMap;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::fixtures::{Desc, Layout, fresh_seed};
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

// ---------------------------------------------------------------- a Lambda endpoint that records, and lies when told

#[derive(Clone, Debug)]
struct Seen {
    method: String,
    path: String,
    at: Instant,
}

type Rule = Arc<dyn Fn(&str, &str, usize) -> Option<Reply> + Send + Sync>;

/// What the endpoint does with a request instead of forwarding it.
enum Reply {
    /// Answer this (status, AWS error type or none, JSON body, extra headers).
    Answer(
        u16,
        Option<&'static str>,
        Value,
        Vec<(&'static str, String)>,
    ),
    /// Forward, then change the JSON answer.
    Edit(Box<dyn Fn(&mut Value) + Send>),
}

struct FakeLambda {
    seen: Arc<Mutex<Vec<Seen>>>,
    _server: server::Running,
    url: String,
}

impl FakeLambda {
    /// `rule(method, path, n)` sees the n-th (from 0) request with this
    /// method and path kind.
    fn start(rule: Rule) -> FakeLambda {
        let seen: Arc<Mutex<Vec<Seen>>> = Arc::default();
        let moto = local().vars["AWS_ENDPOINT_URL"].clone();
        let client = reqwest::Client::new();
        let s = seen.clone();
        let running = server::serve(move |req: hyper::Request<hyper::body::Incoming>| {
            let (seen, rule, client, moto) =
                (s.clone(), rule.clone(), client.clone(), moto.clone());
            async move {
                let method = req.method().to_string();
                let path = req.uri().path().to_string();
                let query = req
                    .uri()
                    .query()
                    .map(|q| format!("?{q}"))
                    .unwrap_or_default();
                let op = kind(&method, &path);
                let n = {
                    let mut seen = seen.lock().unwrap();
                    let n = seen
                        .iter()
                        .filter(|x| kind(&x.method, &x.path) == op)
                        .count();
                    seen.push(Seen {
                        method: method.clone(),
                        path: path.clone(),
                        at: Instant::now(),
                    });
                    n
                };
                match rule(&method, &op, n) {
                    Some(Reply::Answer(status, error, body, headers)) => {
                        let mut r = server::full(status, &body.to_string());
                        if let Some(t) = error {
                            r.headers_mut()
                                .insert("x-amzn-ErrorType", t.parse().unwrap());
                        }
                        for (k, v) in headers {
                            r.headers_mut().insert(k, v.parse().unwrap());
                        }
                        Ok(r)
                    }
                    edit => {
                        let res =
                            server::relay(&client, &format!("{moto}{path}{query}"), req).await?;
                        match edit {
                            Some(Reply::Edit(f)) => {
                                let status = res.status().as_u16();
                                let mut v: Value =
                                    res.json().await.map_err(std::io::Error::other)?;
                                f(&mut v);
                                Ok(server::full(status, &v.to_string()))
                            }
                            _ => {
                                let status = res.status().as_u16();
                                Ok::<hyper::Response<Body>, std::io::Error>(server::answer(
                                    res,
                                    status,
                                    |l| l.to_string(),
                                ))
                            }
                        }
                    }
                }
            }
        });
        let url = format!("http://{}", running.addr);
        FakeLambda {
            seen,
            _server: running,
            url,
        }
    }

    fn env(&self) -> Vec<(&str, &str)> {
        vec![("AWS_ENDPOINT_URL_LAMBDA", self.url.as_str())]
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    fn count(&self, k: &str) -> usize {
        self.seen()
            .iter()
            .filter(|s| kind(&s.method, &s.path) == k)
            .count()
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
}

/// A Lambda operation's name from its REST method and path.
fn kind(method: &str, path: &str) -> String {
    let parts: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let op = match (method, parts.get(3).copied(), parts.len()) {
        ("GET", None, _) => "GetFunction",
        ("GET", Some("configuration"), _) => "GetFunctionConfiguration",
        ("PUT", Some("code"), _) => "UpdateFunctionCode",
        ("POST", Some("versions"), _) => "PublishVersion",
        ("GET", Some("versions"), _) => "ListVersionsByFunction",
        ("GET", Some("aliases"), _) => "GetAlias",
        ("PUT", Some("aliases"), _) => "UpdateAlias",
        ("POST", Some("aliases"), _) => "CreateAlias",
        ("POST", Some("invocations"), _) => "Invoke",
        _ => "other",
    };
    op.to_string()
}

fn forward() -> Rule {
    Arc::new(|_, _, _| None)
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
        &[],
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
        &[],
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
        &[],
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
        &[],
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
    let run = deploy(&image, &f, &[], &[]);
    failed(
        &run,
        2,
        &["split between versions (1=70% 2=30%)", "--force"],
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
    let arm = l.image(&[layer.clone()], "arm64");
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
        &[layer.clone()],
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
    assert!(fake.count("GetAlias") >= 1);
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
    Arc::new(move |_, kind, i| {
        if kind == "UpdateFunctionCode" {
            return None;
        }
        if kind != "GetFunctionConfiguration" {
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
        .rposition(|s| kind(&s.method, &s.path) == "GetFunctionConfiguration")
        .unwrap();
    let publish = seen
        .iter()
        .position(|s| kind(&s.method, &s.path) == "PublishVersion")
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
    let fake = FakeLambda::start(Arc::new(|_, kind, n| {
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
    let fake = FakeLambda::start(Arc::new(|_, kind, _| {
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
    let fake = FakeLambda::start(Arc::new(|_, kind, n| {
        (kind == "PublishVersion" && n == 0).then(|| {
            Reply::Answer(429, Some("TooManyRequestsException"), json!({"Type": "User", "message": "Rate exceeded", "Reason": "CallerRateLimitExceeded", "retryAfterSeconds": "2"}), vec![("Retry-After", "2".into())])
        })
    }));
    let run = deploy(&image, &f, &[], &fake.env());
    assert_eq!(run.ok().json()["result"], "deployed");
    let publishes: Vec<Instant> = fake
        .seen()
        .iter()
        .filter(|s| kind(&s.method, &s.path) == "PublishVersion")
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
    let fake = FakeLambda::start(Arc::new(|_, kind, _| {
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
    let fake = FakeLambda::start(Arc::new(|_, kind, _| {
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
    let invoke = fake
        .seen()
        .iter()
        .position(|s| kind(&s.method, &s.path) == "Invoke")
        .unwrap();
    let moved = fake
        .seen()
        .iter()
        .position(|s| kind(&s.method, &s.path) == "UpdateAlias")
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

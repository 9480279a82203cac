//! The auth stage against moto's STS: tokens signed here with a key made
//! here, in each CI system's claim shapes (aws-facts.md part E), fetched the
//! way each system hands them out.

mod common;

use std::time::{Duration, SystemTime};

use common::forward_proxy::ForwardProxy;
use common::server::{full, serve};
use common::{Run, fixtures, hoist, unique};
use serde_json::{Value, json};

const ROLE: &str = "arn:aws:iam::123456789012:role/ci-deploy";

fn now() -> i64 {
    hoist::clock::unix_now()
}

/// A JWT with `claims` (plus iat/exp), signed with a key this test run made.
fn jwt(claims: Value) -> String {
    use std::sync::OnceLock;
    static KEY: OnceLock<Vec<u8>> = OnceLock::new();
    let key = KEY.get_or_init(|| fixtures::random_bytes(32, fixtures::fresh_seed()));
    let mut c = claims;
    c["iat"] = json!(now());
    if c.get("exp").is_none() {
        c["exp"] = json!(now() + 300);
    }
    jsonwebtoken::encode(
        &jsonwebtoken::Header::default(),
        &c,
        &jsonwebtoken::EncodingKey::from_secret(key),
    )
    .unwrap()
}

fn github_claims() -> Value {
    json!({
        "iss": "https://token.actions.githubusercontent.com", "aud": "sts.amazonaws.com",
        "sub": "repo:acme/app:environment:production", "environment": "production",
        "repository": "acme/app", "ref": "refs/heads/main", "job_workflow_ref": "acme/app/.github/workflows/deploy.yml@refs/heads/main",
        "event_name": "push", "run_id": "4242", "run_attempt": "1", "runner_environment": "github-hosted",
    })
}

fn gitlab_claims() -> Value {
    json!({
        "iss": "https://gitlab.com", "aud": "sts.amazonaws.com",
        "sub": "project_path:acme/app:ref_type:branch:ref:main", "project_path": "acme/app", "namespace_path": "acme",
        "ref": "main", "ref_type": "branch", "ref_protected": "true", "pipeline_id": "991", "job_id": "12345",
    })
}

/// Every secret a test handed in, or hoist could have printed.
fn assert_quiet_about(run: &Run, secrets: &[&str]) {
    for text in [&run.stdout, &run.stderr] {
        for line in text.lines().filter(|l| !l.starts_with("::add-mask::")) {
            for s in secrets {
                assert!(!line.contains(s), "a secret reached the output: {line}");
            }
            assert!(
                !line.contains("ASIA"),
                "an STS access key id reached the output: {line}"
            );
        }
    }
}

fn auth(extra_args: &[&str], env: &[(&str, &str)]) -> Run {
    let mut args = vec!["auth", "--role-arn", ROLE, "--output", "json"];
    args.extend_from_slice(extra_args);
    hoist(&args, env)
}

#[test]
fn token_file_then_push_with_the_new_credentials() {
    let token = jwt(gitlab_claims());
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("token");
    std::fs::write(&file, &token).unwrap();
    // moto is plain http: HTTP_PROXY carries the AWS calls, so the test sees
    // which key signed them.
    let proxy = ForwardProxy::start();
    let (_, m) = fixtures::Layout::simple(&dir.path().join("img"), 1, 1000);
    let run = hoist(
        &[
            "push",
            dir.path().join("img").to_str().unwrap(),
            "--repository",
            &unique("oidc"),
            "--create-repository",
            "--role-arn",
            ROLE,
            "--id-token-file",
            file.to_str().unwrap(),
        ],
        &[("HTTP_PROXY", &proxy.url())],
    );
    run.ok();
    assert_eq!(run.stdout.trim(), m.digest);
    assert!(
        run.stderr.contains(
            "authenticated as arn:aws:sts::123456789012:assumed-role/ci-deploy/hoist-local"
        ),
        "{}",
        run.stderr
    );
    let keys = proxy.signed_by();
    assert!(!keys.is_empty(), "ECR calls went through the proxy");
    assert!(
        keys.iter().all(|k| k.starts_with("ASIA")),
        "every ECR call was signed with the role's temporary key, not the environment's: {keys:?}"
    );
    assert_quiet_about(&run, &[&token]);
}

#[test]
fn github_token_endpoint_checks_bearer_and_audience() {
    let token = jwt(github_claims());
    let t = token.clone();
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let s = seen.clone();
    let endpoint = serve(move |req: hyper::Request<hyper::body::Incoming>| {
        let (t, s) = (t.clone(), s.clone());
        async move {
            let auth = req
                .headers()
                .get("authorization")
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_string();
            let query = req.uri().query().unwrap_or_default().to_string();
            s.lock().unwrap().push(query.clone());
            if auth != "bearer request-token-xyz" {
                return Ok(full(401, "{}"));
            }
            Ok(full(200, &json!({ "value": t }).to_string()))
        }
    });
    let url = format!("http://{}/token?api-version=2.0", endpoint.addr);
    let run = auth(
        &[],
        &[
            ("GITHUB_ACTIONS", "true"),
            ("ACTIONS_ID_TOKEN_REQUEST_URL", &url),
            ("ACTIONS_ID_TOKEN_REQUEST_TOKEN", "request-token-xyz"),
            ("GITHUB_RUN_ID", "4242"),
            ("GITHUB_RUN_ATTEMPT", "2"),
        ],
    );
    let report = run.ok().json();
    assert_eq!(
        report["authenticated_arn"],
        "arn:aws:sts::123456789012:assumed-role/ci-deploy/hoist-github-4242-2"
    );
    assert_eq!(report["aws_account_id"], "123456789012");
    assert_eq!(
        seen.lock().unwrap().as_slice(),
        ["api-version=2.0&audience=sts.amazonaws.com"],
        "the URL's own query is kept, the audience added"
    );
    assert!(
        run.stderr.contains(&format!("::add-mask::{token}")),
        "the token is masked on GitHub"
    );
    assert_quiet_about(&run, &[&token, "request-token-xyz"]);
}

#[test]
fn github_without_id_token_permission() {
    let run = auth(&[], &[("GITHUB_ACTIONS", "true")]);
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(
        run.stderr.contains("permissions: id-token: write"),
        "{}",
        run.stderr
    );
}

#[test]
fn buildkite_agent_is_asked_for_the_audience() {
    let token = jwt(
        json!({ "iss": "https://agent.buildkite.com", "aud": "sts.amazonaws.com", "sub": "organization:acme:pipeline:app:ref:refs/heads/main:commit:abc:step:deploy", "organization_slug": "acme", "pipeline_slug": "app" }),
    );
    let bin = tempfile::tempdir().unwrap();
    let log = bin.path().join("calls");
    let agent = bin.path().join("buildkite-agent");
    std::fs::write(
        &agent,
        format!(
            "#!/bin/sh\necho \"$@\" >> {}\n[ \"$1\" = oidc ] && echo '{token}'\nexit 0\n",
            log.display()
        ),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&agent, std::fs::Permissions::from_mode(0o755)).unwrap();
    let path = format!(
        "{}:{}",
        bin.path().display(),
        std::env::var("PATH").unwrap()
    );
    let run = auth(
        &[],
        &[
            ("BUILDKITE", "true"),
            ("BUILDKITE_JOB_ID", "0190-abc"),
            ("PATH", &path),
        ],
    );
    let report = run.ok().json();
    assert_eq!(
        report["authenticated_arn"],
        "arn:aws:sts::123456789012:assumed-role/ci-deploy/hoist-buildkite-0190-abc"
    );
    let calls = std::fs::read_to_string(log).unwrap();
    assert!(
        calls.contains("oidc request-token --audience sts.amazonaws.com --lifetime"),
        "{calls}"
    );
    assert!(
        calls.contains("meta-data set hoist-authenticated-arn"),
        "outputs as meta-data: {calls}"
    );
    assert_quiet_about(&run, &[&token]);
}

#[test]
fn each_ci_systems_variable() {
    for (ci_env, var) in [
        (("GITLAB_CI", "true"), "HOIST_ID_TOKEN"),
        (("CIRCLECI", "true"), "CIRCLE_OIDC_TOKEN_V2"),
        (
            ("BITBUCKET_BUILD_NUMBER", "17"),
            "BITBUCKET_STEP_OIDC_TOKEN",
        ),
    ] {
        let token = jwt(gitlab_claims());
        let project = tempfile::tempdir().unwrap();
        let run = auth(
            &[],
            &[
                ci_env,
                (var, &token),
                ("CI_PROJECT_DIR", project.path().to_str().unwrap()),
            ],
        );
        run.ok();
        assert_quiet_about(&run, &[&token]);
    }
    // Jenkins: the oidc-provider plugin's credential bound as a file.
    let token = jwt(
        json!({ "iss": "https://jenkins.example.com/oidc", "aud": "sts.amazonaws.com", "sub": "https://jenkins.example.com/job/app/" }),
    );
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("t"), &token).unwrap();
    let run = auth(
        &[],
        &[
            ("JENKINS_URL", "https://jenkins.example.com/"),
            ("BUILD_TAG", "jenkins-app-12"),
            (
                "AWS_WEB_IDENTITY_TOKEN_FILE",
                dir.path().join("t").to_str().unwrap(),
            ),
        ],
    );
    assert_eq!(
        run.ok().json()["authenticated_arn"],
        "arn:aws:sts::123456789012:assumed-role/ci-deploy/hoist-jenkins-jenkins-app-12"
    );
}

#[test]
fn export_to_github_env_and_as_shell_lines() {
    let token = jwt(github_claims());
    let dir = tempfile::tempdir().unwrap();
    let github_env = dir.path().join("github_env");
    let run = auth(
        &["--export", "--id-token-env", "MY_TOKEN"],
        &[
            ("GITHUB_ACTIONS", "true"),
            ("GITHUB_ENV", github_env.to_str().unwrap()),
            ("MY_TOKEN", &token),
        ],
    );
    run.ok();
    let written = std::fs::read_to_string(&github_env).unwrap();
    for k in [
        "AWS_ACCESS_KEY_ID=ASIA",
        "AWS_SECRET_ACCESS_KEY=",
        "AWS_SESSION_TOKEN=",
        "AWS_REGION=us-east-1",
    ] {
        assert!(written.contains(k), "{k} in $GITHUB_ENV");
    }
    let key = written
        .lines()
        .find_map(|l| l.strip_prefix("AWS_SECRET_ACCESS_KEY="))
        .unwrap();
    assert!(
        run.stderr.contains(&format!("::add-mask::{key}")),
        "each credential is masked"
    );
    assert_quiet_about(&run, &[&token, key]);

    // Elsewhere: export lines on stdout, and only there.
    let run = hoist(
        &[
            "auth",
            "--role-arn",
            ROLE,
            "--export",
            "--id-token-env",
            "MY_TOKEN",
        ],
        &[("MY_TOKEN", &token)],
    );
    run.ok();
    assert!(
        run.stdout.starts_with("export AWS_ACCESS_KEY_ID=ASIA"),
        "{}",
        run.stdout
    );
    assert!(!run.stderr.contains("ASIA"));
}

#[test]
fn what_can_be_seen_locally_fails_before_sts() {
    let dir = tempfile::tempdir().unwrap();
    let expired = jwt(
        json!({ "iss": "https://gitlab.com", "aud": "sts.amazonaws.com", "sub": "project_path:acme/app:ref_type:branch:ref:main", "exp": now() - 60 }),
    );
    let wrong_aud = jwt(
        json!({ "iss": "https://gitlab.com", "aud": "https://gitlab.com", "sub": "project_path:acme/app:ref_type:branch:ref:main" }),
    );
    // (environment, arguments, what the error says)
    type Case<'a> = (Vec<(&'a str, String)>, Vec<&'a str>, &'a str);
    let cases: Vec<Case> = vec![
        (
            vec![
                ("HOIST_ID_TOKEN", expired.clone()),
                ("GITLAB_CI", "true".into()),
            ],
            vec![],
            "expired",
        ),
        (
            vec![
                ("HOIST_ID_TOKEN", wrong_aud.clone()),
                ("GITLAB_CI", "true".into()),
            ],
            vec![],
            "not 'sts.amazonaws.com'",
        ),
        (
            vec![
                ("HOIST_ID_TOKEN", "not-a-jwt".into()),
                ("GITLAB_CI", "true".into()),
            ],
            vec![],
            "not a JWT",
        ),
        (vec![("GITLAB_CI", "true".into())], vec![], "id_tokens"),
        (vec![], vec!["--ci", "travis"], "unknown CI system"),
        (vec![], vec![], "--id-token-file"),
    ];
    for (env, args, needle) in cases {
        let proxy = ForwardProxy::start();
        let mut env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let url = proxy.url();
        env.push(("HTTP_PROXY", &url));
        env.push(("CI_PROJECT_DIR", dir.path().to_str().unwrap()));
        let run = auth(&args, &env);
        assert_eq!(run.code, 2, "{needle}: {}", run.stderr);
        assert!(run.stderr.contains(needle), "{needle}: {}", run.stderr);
        assert!(run.stderr.contains("hint:"), "{needle}: {}", run.stderr);
        assert_eq!(proxy.forwarded(), 0, "{needle}: no call reached AWS");
        assert_quiet_about(&run, &[&expired, &wrong_aud]);
    }
}

/// An STS in front of moto's that fails as told, then passes requests on.
fn flaky_sts(
    failures: Vec<(u16, &'static str)>,
) -> (
    common::server::Running,
    std::sync::Arc<std::sync::atomic::AtomicUsize>,
) {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let calls = std::sync::Arc::new(AtomicUsize::new(0));
    let c = calls.clone();
    let moto = common::local().vars["AWS_ENDPOINT_URL"].clone();
    let client = reqwest::Client::builder().no_proxy().build().unwrap();
    let server = serve(move |req: hyper::Request<hyper::body::Incoming>| {
        let (c, failures, moto, client) =
            (c.clone(), failures.clone(), moto.clone(), client.clone());
        async move {
            let n = c.fetch_add(1, Ordering::SeqCst);
            if let Some((status, code)) = failures.get(n) {
                let body = format!(
                    "<ErrorResponse xmlns=\"https://sts.amazonaws.com/doc/2011-06-15/\"><Error><Type>Sender</Type><Code>{code}</Code><Message>injected {code}</Message></Error><RequestId>r{n}</RequestId></ErrorResponse>"
                );
                let mut r = full(*status, &body);
                r.headers_mut()
                    .insert("content-type", "text/xml".parse().unwrap());
                return Ok(r);
            }
            let url = format!(
                "{moto}{}",
                req.uri()
                    .path_and_query()
                    .map(|p| p.as_str())
                    .unwrap_or("/")
            );
            let res = common::server::relay(&client, &url, req).await?;
            let status = res.status().as_u16();
            Ok(common::server::answer(res, status, str::to_string))
        }
    });
    (server, calls)
}

#[test]
fn idp_communication_errors_are_retried() {
    let token = jwt(gitlab_claims());
    let (sts, calls) = flaky_sts(vec![
        (400, "IDPCommunicationError"),
        (400, "IDPCommunicationError"),
    ]);
    let endpoint = format!("http://{}", sts.addr);
    let run = auth(
        &["--id-token-env", "T"],
        &[("T", &token), ("AWS_ENDPOINT_URL_STS", &endpoint)],
    );
    run.ok();
    assert_eq!(calls.load(std::sync::atomic::Ordering::SeqCst), 3);
    assert!(
        run.stderr.contains("IDPCommunicationError") && run.stderr.contains("retrying"),
        "{}",
        run.stderr
    );
}

#[test]
fn access_denied_fails_fast_with_the_claims() {
    let token = jwt(github_claims());
    let (sts, calls) = flaky_sts(vec![(403, "AccessDenied"); 10]);
    let endpoint = format!("http://{}", sts.addr);
    let run = auth(
        &["--id-token-env", "T"],
        &[("T", &token), ("AWS_ENDPOINT_URL_STS", &endpoint)],
    );
    assert_eq!(run.code, 2, "{}", run.stderr);
    // Fails fast: one exchange, no retry (hoist's or the SDK's) and no
    // backoff announced — counted, not timed.
    assert_eq!(
        calls.load(std::sync::atomic::Ordering::SeqCst),
        1,
        "no retry of a refusal"
    );
    assert!(!run.stderr.contains("retrying"), "{}", run.stderr);
    for needle in [
        "AccessDenied",
        "sub: repo:acme/app:environment:production",
        "environment: production",
        "job_workflow_ref:",
        "hoist doctor",
        "environment:` to the job changes sub",
    ] {
        assert!(run.stderr.contains(needle), "{needle}:\n{}", run.stderr);
    }
    assert_quiet_about(&run, &[&token]);
}

#[test]
fn expired_token_at_sts_gets_a_new_token_from_a_renewing_source() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("t");
    std::fs::write(&file, jwt(gitlab_claims())).unwrap();
    let (sts, calls) = flaky_sts(vec![(400, "ExpiredTokenException")]);
    let endpoint = format!("http://{}", sts.addr);
    let run = auth(
        &["--id-token-file", file.to_str().unwrap()],
        &[("AWS_ENDPOINT_URL_STS", &endpoint)],
    );
    run.ok();
    assert_eq!(calls.load(std::sync::atomic::Ordering::SeqCst), 2);
    assert!(
        run.stderr.contains("fetching a new token"),
        "{}",
        run.stderr
    );
}

/// InvalidIdentityToken gets exactly one more try, with a new token: STS
/// also says it when it could not fetch the provider's keys.
#[test]
fn invalid_identity_token_gets_one_retry_with_a_new_token() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("t");
    std::fs::write(&file, jwt(gitlab_claims())).unwrap();
    let (sts, calls) = flaky_sts(vec![(400, "InvalidIdentityToken")]);
    let run = auth(
        &["--id-token-file", file.to_str().unwrap()],
        &[("AWS_ENDPOINT_URL_STS", &format!("http://{}", sts.addr))],
    );
    run.ok();
    assert_eq!(calls.load(std::sync::atomic::Ordering::SeqCst), 2);
    assert!(
        run.stderr.contains("fetching a new token"),
        "{}",
        run.stderr
    );

    let (sts, calls) = flaky_sts(vec![(400, "InvalidIdentityToken"); 10]);
    let run = auth(
        &["--id-token-file", file.to_str().unwrap()],
        &[("AWS_ENDPOINT_URL_STS", &format!("http://{}", sts.addr))],
    );
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert_eq!(
        calls.load(std::sync::atomic::Ordering::SeqCst),
        2,
        "a second refusal is final"
    );
    assert!(
        run.stderr.contains("InvalidIdentityToken")
            && run.stderr.contains("project_path: acme/app"),
        "{}",
        run.stderr
    );
}

#[test]
fn doctor_prints_a_policy_that_accepts_exactly_this_job() {
    let claims = github_claims();
    let token = jwt(claims.clone());
    let proxy = ForwardProxy::start();
    let env = [
        ("GITHUB_ACTIONS", "true"),
        ("T", token.as_str()),
        ("HTTP_PROXY", proxy.url().leak()),
    ];
    let run = hoist(&["doctor", "--id-token-env", "T", "--role-arn", ROLE], &env);
    run.ok();
    assert_eq!(proxy.forwarded(), 0, "doctor never calls STS");
    for needle in [
        "CI system: github",
        "sub: repo:acme/app:environment:production",
        "environment: production",
    ] {
        assert!(run.stderr.contains(needle), "{needle}:\n{}", run.stderr);
    }
    // The policy's conditions, checked here against the claims, not by hoist.
    let policy: Value = serde_json::from_str(&run.stdout).unwrap();
    let st = &policy["Statement"][0];
    assert_eq!(
        st["Principal"]["Federated"],
        "arn:aws:iam::123456789012:oidc-provider/token.actions.githubusercontent.com"
    );
    assert_eq!(st["Action"], "sts:AssumeRoleWithWebIdentity");
    let cond = st["Condition"]["StringEquals"].as_object().unwrap();
    assert_eq!(cond.len(), 2);
    assert_eq!(
        cond["token.actions.githubusercontent.com:aud"],
        claims["aud"]
    );
    assert_eq!(
        cond["token.actions.githubusercontent.com:sub"],
        claims["sub"]
    );

    // And hoist's own check agrees, in `aws iam get-role` form.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("role.json");
    std::fs::write(
        &file,
        json!({ "Role": { "RoleName": "ci-deploy", "AssumeRolePolicyDocument": policy } })
            .to_string(),
    )
    .unwrap();
    let run = hoist(
        &[
            "doctor",
            "--id-token-env",
            "T",
            "--trust-policy",
            file.to_str().unwrap(),
        ],
        &env,
    );
    run.ok();
    assert!(
        run.stderr.contains("the trust policy accepts this token"),
        "{}",
        run.stderr
    );
    assert_quiet_about(&run, &[&token]);
}

#[test]
fn doctor_names_the_condition_that_does_not_match() {
    // The classic: the policy was written for the main branch; the job
    // gained `environment: production`, which changes sub.
    let token = jwt(github_claims());
    let policy = json!({
        "Version": "2012-10-17",
        "Statement": [{
            "Effect": "Allow",
            "Principal": { "Federated": "arn:aws:iam::123456789012:oidc-provider/token.actions.githubusercontent.com" },
            "Action": "sts:AssumeRoleWithWebIdentity",
            "Condition": {
                "StringEquals": { "token.actions.githubusercontent.com:aud": "sts.amazonaws.com" },
                "StringLike": { "token.actions.githubusercontent.com:sub": "repo:acme/app:ref:refs/heads/main" }
            }
        }]
    });
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("policy.json");
    std::fs::write(&file, policy.to_string()).unwrap();
    let run = hoist(
        &[
            "doctor",
            "--id-token-env",
            "T",
            "--trust-policy",
            file.to_str().unwrap(),
        ],
        &[("GITHUB_ACTIONS", "true"), ("T", &token)],
    );
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(run.stderr.contains("does NOT accept"), "{}", run.stderr);
    assert!(
        run.stderr.contains("StringLike token.actions.githubusercontent.com:sub = repo:acme/app:ref:refs/heads/main does not hold: the token's sub is repo:acme/app:environment:production"),
        "{}",
        run.stderr
    );
    assert!(
        !run.stderr.contains(":aud ="),
        "the audience condition holds and is not blamed:\n{}",
        run.stderr
    );
}

/// Long jobs: when the SDK finds the credentials about to expire, the
/// provider gets a fresh token and exchanges it again.
#[test]
fn credentials_about_to_expire_are_refreshed_with_a_fresh_token() {
    use aws_credential_types::provider::ProvideCredentials;
    use hoist::auth::sts::{Exchange, Refreshing};
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("t");
    std::fs::write(&file, jwt(gitlab_claims())).unwrap();
    let (sts_front, calls) = flaky_sts(vec![]);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let conf = aws_sdk_sts::Config::builder()
            .behavior_version(aws_sdk_sts::config::BehaviorVersion::latest())
            .region(aws_sdk_sts::config::Region::new("us-east-1"))
            .endpoint_url(format!("http://{}", sts_front.addr))
            .http_client(common::lambda::http_client())
            .build();
        let exchange = Exchange {
            role_arn: ROLE.into(),
            chain_role_arn: None,
            session_name: "hoist-test".into(),
            audience: hoist::auth::Audience::Default("sts.amazonaws.com"),
            duration_secs: None,
            session_policy: None,
            source: hoist::ci::TokenSource::File(file.clone()),
            sts: aws_sdk_sts::Client::from_conf(conf),
            http: reqwest::Client::new(),
            mask: std::sync::Arc::new(|_| {}),
            policy: Default::default(),
        };
        // What the first exchange got, with a minute left.
        let almost = aws_credential_types::Credentials::new(
            "AKIAOLD",
            "old",
            Some("old".into()),
            Some(SystemTime::now() + Duration::from_secs(30)),
            "test",
        );
        // The CI system has minted a new token meanwhile.
        std::fs::write(&file, jwt(gitlab_claims())).unwrap();
        let provider = Refreshing::new(exchange, almost);
        let fresh = provider.provide_credentials().await.expect("refreshed");
        assert_ne!(fresh.access_key_id(), "AKIAOLD");
        assert!(fresh.expiry().unwrap() > SystemTime::now() + Duration::from_secs(600));
    });
    assert_eq!(
        calls.load(std::sync::atomic::Ordering::SeqCst),
        1,
        "one new exchange"
    );
}

#[test]
fn chain_role_hops_into_another_account() {
    let token = jwt(gitlab_claims());
    let other = "arn:aws:iam::210987654321:role/deployer";
    let run = auth(
        &["--id-token-env", "T", "--chain-role-arn", other],
        &[("T", &token)],
    );
    let report = run.ok().json();
    let arn = report["authenticated_arn"].as_str().unwrap();
    assert!(
        arn.contains(":assumed-role/deployer/"),
        "the second role is who hoist became: {arn}"
    );
    assert_quiet_about(&run, &[&token]);
}

#[test]
fn bad_auth_flags_are_usage_errors() {
    let token = jwt(gitlab_claims());
    let dir = tempfile::tempdir().unwrap();
    let policy = dir.path().join("p.json");
    std::fs::write(&policy, "not json").unwrap();
    for (args, needle) in [
        (
            vec!["auth", "--role-arn", "ci-deploy", "--id-token-env", "T"],
            "not an IAM role ARN",
        ),
        (
            vec![
                "auth",
                "--role-arn",
                ROLE,
                "--duration",
                "60",
                "--id-token-env",
                "T",
            ],
            "--duration 60",
        ),
        (
            vec![
                "auth",
                "--role-arn",
                ROLE,
                "--chain-role-arn",
                ROLE,
                "--duration",
                "7200",
                "--id-token-env",
                "T",
            ],
            "too long with --chain-role-arn",
        ),
        (
            vec![
                "auth",
                "--role-arn",
                ROLE,
                "--session-policy",
                policy.to_str().unwrap(),
                "--id-token-env",
                "T",
            ],
            "is not JSON",
        ),
        (vec!["auth", "--id-token-env", "T"], "--role-arn"),
    ] {
        let run = hoist(&args, &[("T", &token)]);
        assert_eq!(run.code, 2, "{args:?}: {}", run.stderr);
        assert!(run.stderr.contains(needle), "{args:?}: {}", run.stderr);
    }
}

/// moto's STS ignores the session policy and the duration, so this test reads
/// what reached STS instead: a recorder in front of moto keeps every request
/// body (form-encoded Query protocol) and passes it on.
#[test]
fn session_policy_duration_and_session_name_reach_sts() {
    use std::sync::{Arc, Mutex};
    let bodies: Arc<Mutex<Vec<String>>> = Arc::default();
    let b = bodies.clone();
    let moto = common::local().vars["AWS_ENDPOINT_URL"].clone();
    let client = reqwest::Client::builder().no_proxy().build().unwrap();
    let sts = serve(move |req: hyper::Request<hyper::body::Incoming>| {
        let (b, moto, client) = (b.clone(), moto.clone(), client.clone());
        async move {
            use http_body_util::BodyExt;
            let (parts, body) = req.into_parts();
            let bytes = body
                .collect()
                .await
                .map_err(std::io::Error::other)?
                .to_bytes();
            b.lock()
                .unwrap()
                .push(String::from_utf8_lossy(&bytes).into_owned());
            let mut out = client.request(parts.method.clone(), format!("{moto}{}", parts.uri));
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
            Ok(common::server::answer(res, status, str::to_string))
        }
    });
    let dir = tempfile::tempdir().unwrap();
    let policy = json!({"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Action": ["ecr:*"], "Resource": "*"}]});
    let policy_file = dir.path().join("session.json");
    std::fs::write(&policy_file, policy.to_string()).unwrap();
    let token = jwt(gitlab_claims());
    let other = "arn:aws:iam::210987654321:role/deployer";
    let run = auth(
        &[
            "--id-token-env",
            "T",
            "--session-policy",
            policy_file.to_str().unwrap(),
            "--duration",
            "1800",
            "--chain-role-arn",
            other,
            "--ci",
            "gitlab",
        ],
        &[
            ("T", &token),
            ("CI_JOB_ID", "12345"),
            // GitLab's dotenv report goes here, not into the working tree.
            ("CI_PROJECT_DIR", dir.path().to_str().unwrap()),
            ("AWS_ENDPOINT_URL_STS", &format!("http://{}", sts.addr)),
        ],
    );
    run.ok();
    let sent = bodies.lock().unwrap().clone();
    let forms: Vec<std::collections::HashMap<String, String>> = sent
        .iter()
        .map(|b| {
            url::form_urlencoded::parse(b.as_bytes())
                .into_owned()
                .collect()
        })
        .collect();
    assert_eq!(
        forms.len(),
        2,
        "the web-identity exchange, then the chained hop: {forms:?}"
    );
    let (first, hop) = (&forms[0], &forms[1]);
    assert_eq!(first["Action"], "AssumeRoleWithWebIdentity");
    assert_eq!(first["RoleArn"], ROLE);
    assert_eq!(first["WebIdentityToken"], token);
    assert_eq!(first["DurationSeconds"], "1800");
    assert!(
        !first.contains_key("Policy"),
        "the policy narrows the last session only: the first must still be allowed the hop"
    );
    assert!(
        first["RoleSessionName"].starts_with("hoist-gitlab-12345"),
        "{}",
        first["RoleSessionName"]
    );
    assert_eq!(hop["Action"], "AssumeRole");
    assert_eq!(hop["RoleArn"], other);
    assert_eq!(hop["DurationSeconds"], "1800");
    assert_eq!(
        serde_json::from_str::<Value>(&hop["Policy"]).unwrap(),
        policy,
        "the session policy is sent as given, on the session hoist uses"
    );
    assert_quiet_about(&run, &[&token]);

    // Without a hop, the one session is the one narrowed.
    bodies.lock().unwrap().clear();
    let run = auth(
        &[
            "--id-token-env",
            "T",
            "--session-policy",
            policy_file.to_str().unwrap(),
        ],
        &[
            ("T", &token),
            ("AWS_ENDPOINT_URL_STS", &format!("http://{}", sts.addr)),
        ],
    );
    run.ok();
    let bodies = bodies.lock().unwrap().clone();
    assert_eq!(bodies.len(), 1);
    let form: std::collections::HashMap<String, String> =
        url::form_urlencoded::parse(bodies[0].as_bytes())
            .into_owned()
            .collect();
    assert_eq!(form["Action"], "AssumeRoleWithWebIdentity");
    assert_eq!(
        serde_json::from_str::<Value>(&form["Policy"]).unwrap(),
        policy
    );
    assert!(
        !form.contains_key("DurationSeconds"),
        "the role's own default applies"
    );
}

// --- CircleCI and Bitbucket: tokens as their documentation shows them ---------

const CIRCLE_ORG: &str = "b6c5d1ee-6f4a-4e3c-9a59-0e4b4c2d8f11";
const CIRCLE_PROJECT: &str = "2f1a9c3e-7d8b-4a6f-b5e4-1c2d3e4f5a6b";

/// `$CIRCLE_OIDC_TOKEN_V2` as CircleCI's "Using OpenID Connect tokens in
/// jobs" describes it: the issuer and the audience are the organisation's,
/// `sub` names organisation, project, the user who triggered the pipeline,
/// and the change's origin and ref; lifetime one hour.
fn circleci_claims(user: &str) -> Value {
    json!({
        "iss": format!("https://oidc.circleci.com/org/{CIRCLE_ORG}"),
        "aud": CIRCLE_ORG,
        "sub": format!("org/{CIRCLE_ORG}/project/{CIRCLE_PROJECT}/user/{user}/vcs-origin/github.com/acme/app/vcs-ref/refs/heads/main"),
        "oidc.circleci.com/project-id": CIRCLE_PROJECT,
        "oidc.circleci.com/vcs-origin": "github.com/acme/app",
        "oidc.circleci.com/vcs-ref": "refs/heads/main",
        "oidc.circleci.com/context-ids": ["7d1f4b2a-3c5e-4f60-8a9b-0c1d2e3f4a5b"],
        "oidc.circleci.com/ssh-rerun": false,
        "exp": now() + 3600,
    })
}

const BITBUCKET_WORKSPACE: &str = "7c4b5c76-3a1e-4a57-93f0-c6c5e0b9e0a1";
const BITBUCKET_REPO: &str = "{1de489be-ce6a-42a0-a8c8-eadbf1174ac7}";

/// `$BITBUCKET_STEP_OIDC_TOKEN` as Atlassian's "Integrate Pipelines with
/// resource servers using OIDC" and "Deploy on AWS using Bitbucket Pipelines
/// OpenID Connect" describe it: the workspace's issuer, the audience
/// `ari:cloud:bitbucket::workspace/<uuid>`, `sub` =
/// `{REPOSITORY_UUID}[:{ENVIRONMENT_UUID}]:{STEP_UUID}` — the step UUID new
/// on every run.
fn bitbucket_claims(step: &str, workspace: &str) -> Value {
    json!({
        "iss": "https://api.bitbucket.org/2.0/workspaces/acme/pipelines-config/identity/oidc",
        "aud": format!("ari:cloud:bitbucket::workspace/{workspace}"),
        "sub": format!("{BITBUCKET_REPO}:{{{step}}}"),
        "accountUuid": "{5b3c9d0e-1f2a-4b3c-8d4e-5f6a7b8c9d0e}",
        "workspaceUuid": format!("{{{BITBUCKET_WORKSPACE}}}"),
        "repositoryUuid": BITBUCKET_REPO,
        "pipelineUuid": "{0a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d}",
        "stepUuid": format!("{{{step}}}"),
        "branchName": "main",
        "exp": now() + 3600,
    })
}

/// Their tokens carry their platform's own audience, and `--role-arn` is
/// all hoist needs: it expects that audience from them by default. An
/// explicit --audience still decides.
#[test]
fn circleci_and_bitbucket_tokens_with_their_own_audience() {
    let circle = jwt(circleci_claims("9e8d7c6b-5a4f-4e3d-2c1b-0a9f8e7d6c5b"));
    let bitbucket = jwt(bitbucket_claims(
        "759de0c6-eaee-4eaa-b7a6-c507eec759a7",
        BITBUCKET_WORKSPACE,
    ));
    let cases = [
        (
            [("CIRCLECI", "true"), ("CIRCLE_BUILD_NUM", "77")],
            "CIRCLE_OIDC_TOKEN_V2",
            &circle,
            "hoist-circleci-77",
            CIRCLE_ORG.to_string(),
        ),
        (
            [
                ("BITBUCKET_BUILD_NUMBER", "17"),
                ("BITBUCKET_COMMIT", "abc"),
            ],
            "BITBUCKET_STEP_OIDC_TOKEN",
            &bitbucket,
            "hoist-bitbucket-17",
            format!("ari:cloud:bitbucket::workspace/{BITBUCKET_WORKSPACE}"),
        ),
    ];
    for (ci, var, token, session, audience) in cases {
        let mut env = ci.to_vec();
        env.push((var, token.as_str()));
        let run = auth(&[], &env);
        assert_eq!(
            run.ok().json()["authenticated_arn"],
            format!("arn:aws:sts::123456789012:assumed-role/ci-deploy/{session}")
        );
        assert_quiet_about(&run, &[token]);

        // doctor says which audience it expects, and finds it.
        let run = hoist(&["doctor", "--role-arn", ROLE], &env);
        run.ok();
        assert!(
            run.stderr
                .contains(&format!("expected audience: {audience}")),
            "{}",
            run.stderr
        );

        // --audience overrides: this token is not for sts.amazonaws.com.
        let proxy = ForwardProxy::start();
        let url = proxy.url();
        env.push(("HTTP_PROXY", &url));
        let run = auth(&["--audience", "sts.amazonaws.com"], &env);
        assert_eq!(run.code, 2, "{}", run.stderr);
        assert!(
            run.stderr.contains(&format!(
                "is for audience [\"{audience}\"], not 'sts.amazonaws.com'"
            )),
            "{}",
            run.stderr
        );
        assert_eq!(proxy.forwarded(), 0, "refused before STS");
    }
}

/// A Bitbucket token for another workspace than its own claims say (a
/// custom `oidc: audiences:` list, say) is refused before STS, with a hint
/// in Bitbucket's terms.
#[test]
fn bitbucket_token_for_another_audience_is_explained() {
    let token = jwt(bitbucket_claims(
        "759de0c6-eaee-4eaa-b7a6-c507eec759a7",
        "00000000-0000-0000-0000-000000000000",
    ));
    let proxy = ForwardProxy::start();
    let url = proxy.url();
    let run = auth(
        &[],
        &[
            ("BITBUCKET_BUILD_NUMBER", "17"),
            ("BITBUCKET_STEP_OIDC_TOKEN", &token),
            ("HTTP_PROXY", &url),
        ],
    );
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(
        run.stderr.contains(&format!(
            "not 'ari:cloud:bitbucket::workspace/{BITBUCKET_WORKSPACE}' or 'sts.amazonaws.com'"
        )),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr
            .contains("unless the step lists `oidc: audiences:`")
            && run.stderr.contains("--audience"),
        "{}",
        run.stderr
    );
    assert_eq!(proxy.forwarded(), 0);
}

/// The trust policy doctor proposes for a CircleCI or Bitbucket job holds on
/// the job's next run — a new step UUID, another user triggering it — and
/// not for another repository or project: checked by doctor itself
/// (--trust-policy) against the next run's token.
#[test]
fn doctor_policies_hold_across_runs_on_circleci_and_bitbucket() {
    let cases = [
        (
            "circleci",
            vec![("CIRCLECI", "true")],
            "CIRCLE_OIDC_TOKEN_V2",
            circleci_claims("9e8d7c6b-5a4f-4e3d-2c1b-0a9f8e7d6c5b"),
            circleci_claims("11111111-2222-4333-8444-555555555555"),
            {
                let mut other = circleci_claims("9e8d7c6b-5a4f-4e3d-2c1b-0a9f8e7d6c5b");
                other["sub"] = json!(
                    other["sub"]
                        .as_str()
                        .unwrap()
                        .replace(CIRCLE_PROJECT, "33333333-3333-4333-8333-333333333333")
                );
                other
            },
            format!(
                "org/{CIRCLE_ORG}/project/{CIRCLE_PROJECT}/user/*/vcs-origin/github.com/acme/app/vcs-ref/refs/heads/main"
            ),
            format!("oidc.circleci.com/org/{CIRCLE_ORG}"),
            CIRCLE_ORG.to_string(),
        ),
        (
            "bitbucket",
            vec![("BITBUCKET_BUILD_NUMBER", "17")],
            "BITBUCKET_STEP_OIDC_TOKEN",
            bitbucket_claims("759de0c6-eaee-4eaa-b7a6-c507eec759a7", BITBUCKET_WORKSPACE),
            bitbucket_claims("0f5e2a39-8c1d-4b7e-9a6f-2d3c4b5a6978", BITBUCKET_WORKSPACE),
            {
                let mut other =
                    bitbucket_claims("759de0c6-eaee-4eaa-b7a6-c507eec759a7", BITBUCKET_WORKSPACE);
                other["sub"] = json!(
                    other["sub"]
                        .as_str()
                        .unwrap()
                        .replace(BITBUCKET_REPO, "{99999999-9999-4999-8999-999999999999}")
                );
                other
            },
            format!("{BITBUCKET_REPO}:{{????????-????-????-????-????????????}}"),
            "api.bitbucket.org/2.0/workspaces/acme/pipelines-config/identity/oidc".to_string(),
            format!("ari:cloud:bitbucket::workspace/{BITBUCKET_WORKSPACE}"),
        ),
    ];
    let dir = tempfile::tempdir().unwrap();
    for (name, ci, var, first, next, other, pattern, host, audience) in cases {
        let doctor = |claims: &Value, extra: &[&str]| {
            let token = jwt(claims.clone());
            let mut env: Vec<(&str, &str)> = ci.clone();
            env.push((var, &token));
            let mut args = vec!["doctor", "--role-arn", ROLE];
            args.extend_from_slice(extra);
            let run = hoist(&args, &env);
            assert_quiet_about(&run, &[&token]);
            run
        };
        let run = doctor(&first, &[]);
        run.ok();
        let policy: Value = serde_json::from_str(&run.stdout).unwrap();
        let st = &policy["Statement"][0];
        assert_eq!(
            st["Principal"]["Federated"],
            format!("arn:aws:iam::123456789012:oidc-provider/{host}"),
            "{name}"
        );
        assert_eq!(
            st["Condition"]["StringEquals"],
            json!({ format!("{host}:aud"): audience }),
            "{name}"
        );
        assert_eq!(
            st["Condition"]["StringLike"],
            json!({ format!("{host}:sub"): pattern }),
            "{name}"
        );
        assert!(
            run.stderr.contains("run after run"),
            "{name}: {}",
            run.stderr
        );

        let file = dir.path().join(format!("{name}.json"));
        std::fs::write(&file, policy.to_string()).unwrap();
        let file = file.to_str().unwrap();
        let run = doctor(&next, &["--trust-policy", file]);
        assert_eq!(
            run.code, 0,
            "{name}: the next run is refused:\n{}",
            run.stderr
        );
        assert!(run.stderr.contains("the trust policy accepts this token"));
        let run = doctor(&other, &["--trust-policy", file]);
        assert_eq!(
            run.code, 2,
            "{name}: another project is accepted:\n{}",
            run.stderr
        );
        assert!(
            run.stderr.contains(&format!("StringLike {host}:sub")),
            "{name}: {}",
            run.stderr
        );
    }
}

/// `--role-session-name` names the STS session instead of the generated
/// name; one STS refuses is refused before any call.
#[test]
fn role_session_name_names_the_session() {
    let token = jwt(gitlab_claims());
    let run = auth(
        &[
            "--id-token-env",
            "T",
            "--ci",
            "gitlab",
            "--role-session-name",
            "deploy-42@app",
        ],
        &[("T", &token), ("CI_JOB_ID", "12345")],
    );
    run.ok();
    let call = common::local()
        .aws
        .calls()
        .into_iter()
        .find(|c| c.operation == "AssumeRoleWithWebIdentity")
        .expect("STS was asked");
    assert_eq!(
        call.params["RoleSessionName"], "deploy-42@app",
        "{:?}",
        call.params
    );

    let calls = common::local().aws.calls().len();
    let run = auth(
        &[
            "--id-token-env",
            "T",
            "--ci",
            "gitlab",
            "--role-session-name",
            "no spaces allowed",
        ],
        &[("T", &token)],
    );
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(
        run.stderr.contains("is not a session name STS takes"),
        "{}",
        run.stderr
    );
    assert_eq!(common::local().aws.calls().len(), calls, "no call was made");
}

/// A token is anyone's text. Its claims, quoted by `hoist doctor` and in
/// errors, stay one printable line each: a claim holding a line break and
/// a workflow command (either form) issues no command on GitHub, and an
/// `exp` at the edge of the integers does not overflow.
#[test]
fn hostile_claims_issue_no_workflow_command() {
    let mut claims = github_claims();
    claims["sub"] = json!("repo:acme/app:ref:refs/heads/main\n::add-mask::acme\r\n##[error]forged");
    claims["environment"] = json!("\u{1b}[2Kproduction\n::error::forged");
    let token = jwt(claims);
    let env = [("GITHUB_ACTIONS", "true"), ("T", token.as_str())];
    let run = hoist(&["doctor", "--id-token-env", "T", "--role-arn", ROLE], &env);
    run.ok();
    for stream in [&run.stdout, &run.stderr] {
        for line in stream.lines() {
            let l = line.trim();
            assert!(
                !l.starts_with("::add-mask::acme") && !l.starts_with("::error::forged"),
                "a forged command: {line:?}\n{stream}"
            );
            assert!(!l.contains("##[error]"), "{line:?}");
            assert!(!l.contains('\u{1b}'), "{line:?}");
        }
    }
    assert!(run.stderr.contains("sub: repo:acme/app"), "{}", run.stderr);

    let mut claims = github_claims();
    claims["exp"] = json!(i64::MIN);
    let token = jwt(claims);
    let env = [("GITHUB_ACTIONS", "true"), ("T", token.as_str())];
    let run = hoist(&["doctor", "--id-token-env", "T", "--role-arn", ROLE], &env);
    assert_eq!(
        run.code, 2,
        "an expired token is a problem, not a panic: {}",
        run.stderr
    );
    assert!(run.stderr.contains("expired"), "{}", run.stderr);
}

/// GitHub's token endpoint answering without end: hoist reads at most what
/// a token can take (64 KiB), and says so — no memory grows, no hang.
#[test]
fn an_endless_token_answer_is_refused_unread() {
    let endpoint = serve(|_req: hyper::Request<hyper::body::Incoming>| async {
        Ok(common::misbehaving::zeros(200, None))
    });
    let url = format!("http://{}/token?api-version=2.0", endpoint.addr);
    let (run, peak_mib) = common::hoist_measured(
        &["auth", "--role-arn", ROLE],
        &[
            ("GITHUB_ACTIONS", "true"),
            ("ACTIONS_ID_TOKEN_REQUEST_URL", &url),
            ("ACTIONS_ID_TOKEN_REQUEST_TOKEN", "request-token-xyz"),
        ],
        Duration::from_secs(60),
    );
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(
        run.stderr.contains("more than a token can be"),
        "{}",
        run.stderr
    );
    assert!(peak_mib < 200, "{peak_mib} MiB");
}

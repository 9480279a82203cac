//! A broken or hostile world gets a bounded, clear failure: a registry or an
//! AWS endpoint that never answers, answers with a gigabyte, never stops
//! sending, or redirects to plain http elsewhere; input files far over any
//! sane size. Each case ends by itself with its documented exit code, in
//! bounded memory (peak RSS measured), with no secret in any output — the
//! log at trace level included — and nothing pushed.

mod common;

use std::time::Duration;

use common::fixtures::Layout;
use common::misbehaving::{Act, Misbehaving, Rule};
use common::{Run, hoist_measured, local, unique};

/// A generous ceiling on hoist's peak memory: a bound, not a benchmark.
const RSS_CEILING_MIB: u64 = 200;
/// How long a run may take before the test calls it hung.
const DEADLINE: Duration = Duration::from_secs(150);
const GIB: u64 = 1 << 30;

/// Trace-level logging, short timeouts: every case also proves that nothing
/// secret reaches the log however verbose it is, and ends quickly.
const TRACE: (&str, &str) = ("HOIST_LOG", "trace");

fn check(run: &Run, rss: u64, code: i32, says: &[&str]) {
    assert_eq!(run.code, code, "exit code; stderr:\n{}", tail(&run.stderr));
    assert!(rss < RSS_CEILING_MIB, "peak RSS {rss} MiB");
    assert!(
        run.stderr.len() < 256 * 1024,
        "the log is bounded: {} bytes",
        run.stderr.len()
    );
    assert!(
        !run.stderr.contains("internal error"),
        "{}",
        tail(&run.stderr)
    );
    for s in says {
        assert!(
            run.stderr.contains(s),
            "stderr does not say '{s}':\n{}",
            tail(&run.stderr)
        );
    }
    let longest = run.stderr.lines().map(str::len).max().unwrap_or(0);
    assert!(
        longest < 4096,
        "no line carries a body: {longest} characters"
    );
}

fn tail(s: &str) -> String {
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(40)..]
        .iter()
        .map(|l| l.chars().take(400).collect::<String>())
        .collect::<Vec<_>>()
        .join("\n")
}

/// Push a small image to a new repository through `endpoint`.
fn push_through(endpoint: &str, extra: &[&str], env: &[(&str, &str)]) -> (Run, u64, String) {
    let dir = tempfile::tempdir().unwrap();
    Layout::simple(dir.path(), 1, 100_000);
    let repo = unique("hostile");
    let mut args = vec![
        "push",
        dir.path().to_str().unwrap(),
        "--repository",
        &repo,
        "--create-repository",
        "--registry-endpoint",
        endpoint,
        "--http-timeout",
        "1s",
    ];
    args.extend_from_slice(extra);
    let mut env = env.to_vec();
    env.push(TRACE);
    let (run, rss) = hoist_measured(&args, &env, DEADLINE);
    (run, rss, repo)
}

fn nothing_pushed(repo: &str) {
    assert!(common::registry_tags(repo).is_empty(), "no tag in {repo}");
    // No manifest either, by digest included: the registry's storage holds
    // a revision for every manifest it accepted.
    let revisions = local()
        .dir
        .join("registry-data/docker/registry/v2/repositories")
        .join(repo)
        .join("_manifests/revisions/sha256");
    let stored = std::fs::read_dir(&revisions)
        .map(|d| d.count())
        .unwrap_or(0);
    assert_eq!(stored, 0, "no manifest in {repo} ({})", revisions.display());
}

#[test]
fn a_registry_that_never_answers() {
    let bad = Misbehaving::start(vec![Rule::any(Act::Silent)], None);
    let (run, rss, repo) = push_through(&bad.endpoint(), &[], &[]);
    check(
        &run,
        rss,
        3,
        &["sent nothing for 1s", "failed after 6 attempts", "hint:"],
    );
    nothing_pushed(&repo);
}

#[test]
fn a_registry_that_stops_reading_an_upload() {
    let front = local().front.endpoint();
    let bad = Misbehaving::start(
        vec![Rule::on("PATCH", "/blobs/uploads/", Act::Silent)],
        Some(front),
    );
    let (run, rss, repo) = push_through(&bad.endpoint(), &["--jobs", "1"], &[]);
    check(
        &run,
        rss,
        3,
        &["sent nothing for 1s", "failed after 6 attempts"],
    );
    assert!(
        run.stderr.contains("waiting for its answer to the upload")
            || run.stderr.contains("the registry stopped taking bytes"),
        "{}",
        tail(&run.stderr)
    );
    nothing_pushed(&repo);
}

#[test]
fn a_registry_error_body_of_a_gigabyte() {
    let front = local().front.endpoint();
    let bad = Misbehaving::start(
        vec![Rule::on(
            "POST",
            "/blobs/uploads/",
            Act::Huge {
                status: 500,
                bytes: GIB,
            },
        )],
        Some(front),
    );
    let (run, rss, repo) = push_through(&bad.endpoint(), &["--jobs", "1"], &[]);
    check(
        &run,
        rss,
        3,
        &["the registry answered 500", "failed after 6 attempts"],
    );
    assert_eq!(
        bad.hits(),
        6,
        "six attempts, each reading a few KiB at most"
    );
    nothing_pushed(&repo);
}

#[test]
fn a_manifest_refusal_with_a_gigabyte_body() {
    let front = local().front.endpoint();
    let bad = Misbehaving::start(
        vec![Rule::on(
            "PUT",
            "/manifests/",
            Act::Huge {
                status: 400,
                bytes: GIB,
            },
        )],
        Some(front),
    );
    let (run, rss, repo) = push_through(&bad.endpoint(), &["--tag", "v1"], &[]);
    check(
        &run,
        rss,
        3,
        &["pushing manifest", "the registry answered 400"],
    );
    assert_eq!(bad.hits(), 1, "a 400 is not retried");
    nothing_pushed(&repo);
}

#[test]
fn a_registry_manifest_that_never_ends() {
    // A tag that exists, answered without its digest, so hoist reads the
    // manifest — which never ends.
    let front = local().front.endpoint();
    let bad = Misbehaving::start(
        vec![
            Rule::on(
                "HEAD",
                "/manifests/v1",
                Act::Headers(vec![(
                    "Content-Type",
                    "application/vnd.oci.image.manifest.v1+json",
                )]),
            ),
            Rule::on("GET", "/manifests/v1", Act::Endless { status: 200 }),
        ],
        Some(front),
    );
    let (run, rss, repo) = push_through(&bad.endpoint(), &["--tag", "v1"], &[]);
    check(&run, rss, 3, &["larger than 4194304 bytes"]);
    nothing_pushed(&repo);
}

#[test]
fn a_blob_redirect_to_plain_http_elsewhere_is_not_followed() {
    // An image and a function that runs it, as deploy's preflight reads them.
    let dir = tempfile::tempdir().unwrap();
    let (_, m) = Layout::simple(dir.path(), 1, 2_000);
    let repo = unique("hostile-redirect");
    common::push(dir.path(), &repo, &["--create-repository"]).ok();
    let function = common::lambda::function(&repo, &m.digest, "x86_64");
    let front = local().front.endpoint();
    let bad = Misbehaving::start(
        vec![Rule::on(
            "GET",
            "/blobs/sha256:",
            Act::Redirect("http://192.0.2.1/layer".into()),
        )],
        Some(front),
    );
    let (run, rss) = hoist_measured(
        &[
            "deploy",
            &format!("{repo}@{}", m.digest),
            "--function",
            &function,
            "--alias",
            "live",
            "--dry-run",
            "--registry-endpoint",
            &bad.endpoint(),
        ],
        &[TRACE],
        DEADLINE,
    );
    check(
        &run,
        rss,
        3,
        &["redirected to http://192.0.2.1, which is not https"],
    );
    assert_eq!(
        common::lambda::versions(&function).len(),
        1,
        "nothing published"
    );
}

/// An AWS endpoint (every service) that misbehaves so, and the same push.
fn push_with_aws(act: Act) -> (Run, u64, String) {
    let bad = Misbehaving::start(vec![Rule::any(act)], None);
    let endpoint = bad.endpoint();
    let front = local().front.endpoint();
    let out = push_through(&front, &[], &[("AWS_ENDPOINT_URL", &endpoint)]);
    drop(bad);
    out
}

#[test]
fn an_aws_endpoint_that_never_answers() {
    let (run, rss, repo) = push_with_aws(Act::Silent);
    check(&run, rss, 3, &["error:", "hint:"]);
    nothing_pushed(&repo);
}

#[test]
fn an_aws_error_body_of_a_gigabyte() {
    let (run, rss, repo) = push_with_aws(Act::Huge {
        status: 500,
        bytes: GIB,
    });
    check(&run, rss, 3, &["error:"]);
    nothing_pushed(&repo);
}

#[test]
fn an_aws_answer_that_never_ends() {
    let (run, rss, repo) = push_with_aws(Act::Endless { status: 200 });
    check(&run, rss, 3, &["error:"]);
    nothing_pushed(&repo);
}

/// Input files: over their limits (or devices that never end) they are
/// refused before being read, with exit 2 and in a few MiB of memory.
#[test]
fn input_files_over_their_limits_are_refused_before_reading() {
    let dir = tempfile::tempdir().unwrap();
    let big = dir.path().join("big");
    // Sparse: 50 MB on paper, nothing on disk.
    std::fs::File::create(&big)
        .unwrap()
        .set_len(50 << 20)
        .unwrap();
    let big = big.to_str().unwrap();
    let image = tempfile::tempdir().unwrap();
    Layout::simple(image.path(), 1, 1_000);
    let src = image.path().to_str().unwrap();
    let role = "arn:aws:iam::123456789012:role/ci";
    let long = "x".repeat(30_000);
    let jwt = common_jwt();
    // (arguments, environment, what the error says)
    type Case<'a> = (Vec<&'a str>, Vec<(&'a str, &'a str)>, &'a str);
    let cases: Vec<Case> = vec![
        (
            vec!["auth", "--role-arn", role, "--id-token-file", "/dev/zero"],
            vec![],
            "is a device or a pipe",
        ),
        (
            vec!["auth", "--role-arn", role, "--id-token-file", big],
            vec![],
            "larger than 20000 bytes",
        ),
        (
            vec!["auth", "--role-arn", role, "--id-token-env", "T"],
            vec![("T", long.as_str())],
            "more than an OIDC token",
        ),
        (
            vec![
                "push",
                src,
                "--repository",
                "team/app",
                "--role-arn",
                role,
                "--id-token-file",
                big,
                "--session-policy",
                big,
            ],
            vec![],
            "--session-policy",
        ),
        (
            vec![
                "gate",
                "team/app@sha256:0000000000000000000000000000000000000000000000000000000000000000",
                "--allowlist",
                big,
            ],
            vec![],
            "--allowlist",
        ),
        (
            vec!["doctor", "--id-token-env", "T", "--trust-policy", big],
            vec![("T", jwt.as_str())],
            "--trust-policy",
        ),
        (
            vec!["push", src, "--repository", "team/app"],
            vec![("AWS_CA_BUNDLE", "/dev/zero")],
            "AWS_CA_BUNDLE",
        ),
    ];
    for (args, env, says) in cases {
        let (run, rss) = hoist_measured(&args, &env, DEADLINE);
        assert_eq!(run.code, 2, "{args:?}: {}", run.stderr);
        assert!(
            run.stderr.contains(says),
            "{args:?} does not say '{says}': {}",
            run.stderr
        );
        assert!(rss < 64, "{args:?}: peak RSS {rss} MiB");
    }
}

/// `hoist auth --export` writes credentials only where asked, readable by
/// the owner only; outside GitHub with --output json they are in the JSON
/// (the AWS CLI's credential_process shape), never lost to a crash.
#[test]
fn exported_credentials_are_private_and_never_lost() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let token = dir.path().join("token");
    std::fs::write(&token, common_jwt()).unwrap();
    let file = dir.path().join("creds.env");
    let token = token.to_str().unwrap();
    let run = common::hoist(
        &[
            "auth",
            "--role-arn",
            "arn:aws:iam::123456789012:role/ci",
            "--id-token-file",
            token,
            "--export",
            "--dotenv",
            file.to_str().unwrap(),
            "--ci",
            "local",
        ],
        &[],
    );
    run.ok();
    let mode = std::fs::metadata(&file).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "credentials file mode {mode:o}");

    let run = common::hoist(
        &[
            "auth",
            "--role-arn",
            "arn:aws:iam::123456789012:role/ci",
            "--id-token-file",
            token,
            "--export",
            "--output",
            "json",
            "--ci",
            "local",
        ],
        &[],
    );
    run.ok();
    let v = run.json();
    assert_eq!(v["exported"]["to"], "stdout", "{v}");
    assert_eq!(v["exported"]["credentials"]["Version"], 1, "{v}");
    assert!(
        v["exported"]["credentials"]["SecretAccessKey"].is_string(),
        "{v}"
    );
}

/// The credentials STS issues, at the most talkative settings a user can
/// ask for (`HOIST_LOG=trace`, `-vv`, the SDK's LOG_SENSITIVE_BODIES): the
/// keys reach the file that was asked for and no line of the log, nor the
/// token they were exchanged for.
#[test]
fn sts_credentials_never_reach_the_log_at_trace() {
    let dir = tempfile::tempdir().unwrap();
    let jwt = common_jwt();
    let token = dir.path().join("token");
    std::fs::write(&token, &jwt).unwrap();
    let file = dir.path().join("creds.env");
    let run = common::hoist(
        &[
            "auth",
            "--role-arn",
            "arn:aws:iam::123456789012:role/ci",
            "--id-token-file",
            token.to_str().unwrap(),
            "--export",
            "--dotenv",
            file.to_str().unwrap(),
            "--ci",
            "local",
            "-vv",
        ],
        &[("HOIST_LOG", "trace"), ("LOG_SENSITIVE_BODIES", "true")],
    );
    run.ok();
    assert!(
        run.stderr.contains("ignoring LOG_SENSITIVE_BODIES"),
        "{}",
        run.stderr
    );
    let exported = std::fs::read_to_string(&file).unwrap();
    let value = |key: &str| {
        exported
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{key}=")))
            .map(|v| v.trim_matches('"').to_string())
            .unwrap_or_else(|| panic!("{key} in {exported}"))
    };
    for secret in [
        value("AWS_SECRET_ACCESS_KEY"),
        value("AWS_SESSION_TOKEN"),
        jwt.clone(),
    ] {
        assert!(secret.len() >= 16, "{secret}");
        for stream in [&run.stdout, &run.stderr] {
            assert!(
                !stream.contains(&secret),
                "a secret in the output at trace:\n{stream}"
            );
        }
    }
}

/// A JWT moto's STS takes (it checks no signature), for sts.amazonaws.com,
/// valid for an hour.
fn common_jwt() -> String {
    use base64::Engine;
    let b64 = |v: serde_json::Value| {
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string())
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    format!(
        "{}.{}.{}",
        b64(serde_json::json!({ "alg": "RS256", "typ": "JWT" })),
        b64(
            serde_json::json!({ "iss": "https://token.example", "sub": "repo:acme/app:ref:refs/heads/main", "aud": "sts.amazonaws.com", "iat": now, "exp": now + 3600 })
        ),
        "c2lnbmF0dXJl"
    )
}

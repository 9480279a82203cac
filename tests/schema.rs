//! Machine output (issue 16): every JSON document hoist prints carries
//! `schema_version`, its JSON Schema in `schemas/` is the one the types
//! generate today, and real outputs of every command validate against it
//! (check-jsonschema, which the local environment installs).

mod common;

use std::path::{Path, PathBuf};

use common::fixtures::Layout;
use common::lambda::{alias, function};
use common::{hoist, unique};
use serde_json::{Value, json};

const ROLE: &str = "arn:aws:iam::123456789012:role/ci-deploy";
const FAST_GATE: &[&str] = &[
    "--severity-threshold",
    "critical",
    "--poll-interval",
    "50ms",
    "--findings-settle",
    "0s",
];

fn schemas() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("schemas")
}

/// The committed schemas are what `hoist schema` generates now: a change to
/// a report type that is not reflected there fails here.
#[test]
fn committed_schemas_are_current() {
    for doc in [
        "auth", "doctor", "push", "gate", "deploy", "rollback", "ship", "config", "error",
    ] {
        let run = hoist(&["schema", doc], &[]);
        let run = run.ok();
        let path = schemas().join(format!("{doc}.json"));
        let committed = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            committed == format!("{}\n", run.stdout.trim_end()),
            "{} is stale or missing: regenerate with `cargo run -- schema --dir schemas`, check the diff, and raise schema_version (src/schema.rs) if a field was removed, renamed or changed type",
            path.display()
        );
    }
    // --dir writes the same files.
    let dir = tempfile::tempdir().unwrap();
    hoist(&["schema", "--dir", dir.path().to_str().unwrap()], &[]).ok();
    for entry in std::fs::read_dir(schemas()).unwrap() {
        let entry = entry.unwrap();
        assert_eq!(
            std::fs::read(entry.path()).unwrap(),
            std::fs::read(dir.path().join(entry.file_name())).unwrap(),
            "{}",
            entry.path().display()
        );
    }
}

/// Validate `doc` against `schemas/NAME.json` with check-jsonschema.
fn validate(name: &str, doc: &Value) {
    assert_eq!(doc["schema_version"], 1, "{name}: {doc}");
    let l = common::local();
    let tool = l.dir.join("venv/bin/check-jsonschema");
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join(format!("{name}.json"));
    std::fs::write(&file, doc.to_string()).unwrap();
    let out = std::process::Command::new(&tool)
        .arg("--schemafile")
        .arg(schemas().join(format!("{name}.json")))
        .arg(&file)
        .output()
        .unwrap_or_else(|e| panic!("{} runs: {e}", tool.display()));
    assert!(
        out.status.success(),
        "{name} does not validate:\n{}\n{}\n{doc:#}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn jwt(claims: Value) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let mut c = claims;
    c["iat"] = json!(now);
    c["exp"] = json!(now + 300);
    jsonwebtoken::encode(
        &jsonwebtoken::Header::default(),
        &c,
        &jsonwebtoken::EncodingKey::from_secret(b"schema-test-key-schema-test-key!"),
    )
    .unwrap()
}

/// One real run of every command, each document validated.
#[test]
fn every_command_output_validates_against_its_schema() {
    let work = tempfile::tempdir().unwrap();
    let repo = unique("schema");
    common::create_repository(&repo, false);
    let (layout, _) = Layout::simple(&work.path().join("img"), 1, 2000);
    let source = layout.dir.to_str().unwrap();

    let push = hoist(
        &[
            "push",
            source,
            "--repository",
            &repo,
            "--tag",
            "v1",
            "--output",
            "json",
            "-q",
        ],
        &[],
    );
    let push = push.ok().json();
    validate("push", &push);
    let image = format!("{repo}@{}", push["digest"].as_str().unwrap());

    let mut args = vec!["gate", image.as_str(), "--output", "json", "-q"];
    args.extend_from_slice(FAST_GATE);
    let gate = hoist(&args, &[]).ok().json();
    validate("gate", &gate);

    // ship: push, gate and deploy to a function whose alias serves version 1.
    let f = function(&repo, &format!("sha256:{}", "0".repeat(64)), "x86_64");
    let mut args = vec![
        "ship",
        source,
        "--repository",
        &repo,
        "--function",
        &f,
        "--alias",
        "live",
        "--output",
        "json",
        "-q",
    ];
    args.extend_from_slice(FAST_GATE);
    let ship = hoist(&args, &[]).ok().json();
    assert_eq!(ship["command"], "ship");
    validate("ship", &ship);
    assert_eq!(alias(&f, "live").0, "2");

    // deploy: a plan (dry run) and a real one to a new alias.
    for extra in [vec!["--dry-run"], vec![]] {
        let mut args = vec![
            "deploy",
            image.as_str(),
            "--function",
            &f,
            "--alias",
            "beta",
            "--output",
            "json",
            "-q",
        ];
        args.extend(extra);
        let deploy = hoist(&args, &[]).ok().json();
        validate("deploy", &deploy);
    }

    let rollback = hoist(
        &[
            "rollback",
            "--function",
            &f,
            "--alias",
            "live",
            "--output",
            "json",
            "-q",
        ],
        &[],
    );
    validate("rollback", &rollback.ok().json());

    // auth and doctor, with a GitHub-shaped token (moto's STS takes any).
    let token = jwt(json!({
        "iss": "https://token.actions.githubusercontent.com", "aud": "sts.amazonaws.com",
        "sub": "repo:acme/app:ref:refs/heads/main", "repository": "acme/app",
        "ref": "refs/heads/main", "run_id": "7", "run_attempt": "1",
    }));
    let env = [("GITHUB_ACTIONS", "true"), ("T", token.as_str())];
    let auth = hoist(
        &[
            "auth",
            "--role-arn",
            ROLE,
            "--id-token-env",
            "T",
            "--output",
            "json",
            "-q",
        ],
        &env,
    );
    validate("auth", &auth.ok().json());
    let exported = hoist(
        &[
            "auth",
            "--role-arn",
            ROLE,
            "--id-token-env",
            "T",
            "--export",
            "--ci",
            "local",
            "--output",
            "json",
            "-q",
        ],
        &env,
    );
    let exported = exported.ok().json();
    assert_eq!(exported["exported"]["to"], "stdout");
    validate("auth", &exported);
    let doctor = hoist(
        &[
            "doctor",
            "--id-token-env",
            "T",
            "--role-arn",
            ROLE,
            "--output",
            "json",
        ],
        &env,
    );
    validate("doctor", &doctor.ok().json());

    let config = hoist(&["config", "ship", "--output", "json"], &[]);
    validate("config", &config.ok().json());

    // A failure's document.
    let error = hoist(
        &[
            "deploy",
            "not a digest",
            "--function",
            "f",
            "--alias",
            "a",
            "--output",
            "json",
        ],
        &[],
    );
    assert_eq!(error.code, 2, "{}", error.stderr);
    let error: Value = serde_json::from_str(&error.stdout).unwrap();
    validate("error", &error);
}

//! hoist on Buildkite: the plugin (plugin.yml, hooks/command) and what hoist
//! hands the agent — meta-data, the annotation, secrets for the redactor —
//! with `buildkite-agent` played by tests/buildkite/bin/buildkite-agent, a
//! stand-in as strict as the real agent (blank meta-data refused with its
//! error, meta-data shared by the whole build).
//!
//! The plugin's own tests are bats (tests/buildkite/plugin.bats, as
//! Buildkite's plugin-tester runs them); `plugin_bats_tests_pass` runs them
//! here so they are part of the suite.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{SystemTime, UNIX_EPOCH};

use common::fixtures::Layout;
use common::lambda::{block_on, lambda, role, uri};
use common::{local, registry_manifest, tool, unique};
use serde_json::{Value, json};
use serde_yaml_ng::Value as Yaml;

const ROLE: &str = "arn:aws:iam::123456789012:role/ci-deploy";

fn repo_root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn output(cmd: &mut Command) -> (i32, String) {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    (
        out.status.code().unwrap_or(-1),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

#[test]
fn plugin_bats_tests_pass() {
    let (code, text) = output(
        Command::new(tool("bats"))
            .arg(repo_root().join("tests/buildkite"))
            .env("HOIST_TEST_BINARY", env!("CARGO_BIN_EXE_hoist")),
    );
    assert_eq!(code, 0, "bats tests/buildkite failed:\n{text}");
    assert!(!text.contains("# skip"), "a bats test was skipped:\n{text}");
}

// --- plugin.yml -------------------------------------------------------------

/// The plugin's own properties; every other one is a hoist flag.
const OWN: &[&str] = &["command", "binary", "docker", "docker-image"];

fn plugin_yml() -> Yaml {
    serde_yaml_ng::from_str(&std::fs::read_to_string(repo_root().join("plugin.yml")).unwrap())
        .unwrap()
}

fn properties(plugin: &Yaml) -> BTreeSet<String> {
    plugin["configuration"]["properties"]
        .as_mapping()
        .expect("configuration.properties")
        .keys()
        .map(|k| k.as_str().unwrap().to_string())
        .collect()
}

/// Every environment variable hoist reads for a flag or an argument, from
/// clap's definition of every command: `HOIST_ROLE_ARN` → `role-arn`.
fn hoist_options() -> BTreeSet<String> {
    use clap::CommandFactory;
    let cli = hoist::cli::Cli::command();
    let mut names = BTreeSet::new();
    let mut add = |cmd: &clap::Command| {
        for arg in cmd.get_arguments() {
            if let Some(env) = arg.get_env() {
                let env = env.to_str().unwrap();
                let name = env
                    .strip_prefix("HOIST_")
                    .unwrap_or_else(|| panic!("{env} is not HOIST_…"));
                names.insert(name.to_ascii_lowercase().replace('_', "-"));
            }
        }
    };
    add(&cli);
    for sub in cli.get_subcommands() {
        add(sub);
    }
    names
}

/// The plugin offers exactly hoist's options: each property other than the
/// plugin's own is a hoist flag (its HOIST_<FLAG> variable, which the hook
/// sets, is what hoist reads), and each hoist flag is a property. Adding a
/// flag to hoist without the plugin, or a property without a flag, fails
/// here.
#[test]
fn plugin_options_are_exactly_hoists_flags() {
    let plugin = plugin_yml();
    assert_eq!(plugin["name"].as_str(), Some("hoist"));
    for key in ["description", "author"] {
        assert!(plugin[key].as_str().is_some_and(|s| !s.is_empty()), "{key}");
    }
    assert!(plugin["requirements"].as_sequence().is_some());
    assert_eq!(
        plugin["configuration"]["additionalProperties"].as_bool(),
        Some(false),
        "an unknown option must be refused by schema validation too"
    );
    let mut props = properties(&plugin);
    for own in OWN {
        assert!(props.remove(*own), "plugin.yml lacks its own option {own}");
    }
    let flags = hoist_options();
    let not_flags: Vec<_> = props.difference(&flags).collect();
    let not_offered: Vec<_> = flags.difference(&props).collect();
    assert!(
        not_flags.is_empty() && not_offered.is_empty(),
        "plugin properties that are no hoist flag: {not_flags:?}; hoist flags the plugin does not offer: {not_offered:?}"
    );
    // Each has a description and a type (or a $ref to one).
    for (name, spec) in plugin["configuration"]["properties"].as_mapping().unwrap() {
        assert!(spec["description"].as_str().is_some(), "{name:?}");
        assert!(
            spec["type"].as_str().is_some() || spec["$ref"].as_str().is_some(),
            "{name:?}"
        );
    }
}

/// plugin.yml's `configuration` as a JSON Schema file (check-jsonschema
/// reads JSON and YAML alike).
fn configuration_schema(dir: &Path) -> PathBuf {
    let config: Value = serde_json::to_value(&plugin_yml()["configuration"]).unwrap();
    let mut schema = config.as_object().unwrap().clone();
    schema.insert(
        "$schema".into(),
        json!("http://json-schema.org/draft-07/schema#"),
    );
    schema.insert("type".into(), json!("object"));
    let path = dir.join("configuration.schema.json");
    std::fs::write(&path, Value::Object(schema).to_string()).unwrap();
    path
}

/// The configuration is a valid JSON Schema (draft 07, as Buildkite's
/// plugin linter reads it), the example pipeline's plugin configuration
/// fits it, and it refuses what the agent's plugin validation should.
#[test]
fn plugin_configuration_is_a_schema_the_example_fits() {
    let check = tool("check-jsonschema");
    let dir = tempfile::tempdir().unwrap();
    let schema = configuration_schema(dir.path());
    let (code, text) = output(Command::new(&check).arg("--check-metaschema").arg(&schema));
    assert_eq!(code, 0, "{text}");

    let example = repo_root().join("examples/buildkite/plugin-pipeline.yml");
    let (code, text) = output(
        Command::new(&check)
            .args(["--builtin-schema", "vendor.buildkite"])
            .arg(&example),
    );
    assert_eq!(code, 0, "{text}");
    let pipeline: Yaml =
        serde_yaml_ng::from_str(&std::fs::read_to_string(&example).unwrap()).unwrap();
    let mut configs = vec![];
    for step in pipeline["steps"].as_sequence().unwrap() {
        for plugin in step["plugins"].as_sequence().into_iter().flatten() {
            for (location, config) in plugin.as_mapping().unwrap() {
                if location.as_str().unwrap().contains("/hoist.git#") {
                    configs.push(serde_json::to_value(config).unwrap());
                }
            }
        }
    }
    assert_eq!(configs.len(), 1, "the example uses the plugin once");
    let validate = |config: &Value| {
        let f = dir.path().join("config.json");
        std::fs::write(&f, config.to_string()).unwrap();
        output(
            Command::new(&check)
                .arg("--schemafile")
                .arg(&schema)
                .arg(&f),
        )
    };
    let (code, text) = validate(&configs[0]);
    assert_eq!(code, 0, "the example's configuration: {text}");
    for (bad, why) in [
        (json!({ "severity": "HIGH" }), "an unknown option"),
        (json!({ "max-errors": "three" }), "a number that is not one"),
        (
            json!({ "architecture": "amd64" }),
            "an architecture Lambda lacks",
        ),
        (
            json!({ "scan-timeout": "ten minutes" }),
            "a duration hoist cannot read",
        ),
        (json!({ "command": "launch" }), "a command hoist lacks"),
    ] {
        let (code, text) = validate(&bad);
        assert_ne!(code, 0, "{why} passed the schema: {text}");
    }
    for good in [
        json!({ "tag": "a,b", "max": ["HIGH=0", "MEDIUM=5"], "scan-timeout": "90s", "deploy-timeout": "1m30s", "timeout": 600, "create-repository": true, "max-errors": 3 }),
        json!({ "command": "rollback", "function": "app", "alias": "live", "force": true }),
    ] {
        let (code, text) = validate(&good);
        assert_eq!(code, 0, "{good}: {text}");
    }
}

// --- hoist through the plugin, against the local environment -----------------

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// A JWT shaped as the agent's `oidc request-token` prints it.
fn buildkite_token(step: &str) -> String {
    let key = common::fixtures::random_bytes(32, common::fixtures::fresh_seed());
    jsonwebtoken::encode(
        &jsonwebtoken::Header::default(),
        &json!({
            "iss": "https://agent.buildkite.com", "aud": "sts.amazonaws.com",
            "sub": format!("organization:acme:pipeline:app:ref:refs/heads/main:commit:9f8e7d:step:{step}"),
            "organization_slug": "acme", "pipeline_slug": "app", "build_branch": "main",
            "iat": now(), "nbf": now(), "exp": now() + 900,
        }),
        &jsonwebtoken::EncodingKey::from_secret(&key),
    )
    .unwrap()
}

/// A container-image function with version 1 published and no alias yet:
/// the first deploy creates the alias, so there is no previous version.
fn function_without_alias(repo: &str) -> String {
    let name = unique("fn-first");
    let client = lambda();
    let role = role();
    block_on(async {
        client
            .create_function()
            .function_name(&name)
            .role(role)
            .package_type(aws_sdk_lambda::types::PackageType::Image)
            .code(
                aws_sdk_lambda::types::FunctionCode::builder()
                    .image_uri(uri(repo, &format!("sha256:{}", "0".repeat(64))))
                    .build(),
            )
            .architectures("x86_64".into())
            .send()
            .await
            .expect("moto creates the function");
        client
            .publish_version()
            .function_name(&name)
            .send()
            .await
            .unwrap();
    });
    name
}

/// One Buildkite build: its ids, the stand-in agent's state, a PATH with
/// hoist (the binary under test) and the agent.
struct Build {
    work: tempfile::TempDir,
    id: String,
}

struct Step {
    code: i32,
    log: String,
}

impl Build {
    fn new() -> Build {
        let work = tempfile::tempdir().unwrap();
        let bin = work.path().join("bin");
        std::fs::create_dir_all(&bin).unwrap();
        std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_hoist"), bin.join("hoist")).unwrap();
        std::fs::create_dir_all(work.path().join("agent")).unwrap();
        std::fs::create_dir_all(work.path().join("checkout")).unwrap();
        Build {
            work,
            id: unique("build"),
        }
    }

    fn agent_state(&self) -> PathBuf {
        self.work.path().join("agent")
    }

    fn checkout(&self) -> PathBuf {
        self.work.path().join("checkout")
    }

    /// Run the plugin's command hook as the agent does for a step with this
    /// `key` (None: no key) and plugin configuration (the location
    /// `…/hoist.git#v…` names its variables BUILDKITE_PLUGIN_HOIST_GIT_…).
    fn step(&self, key: Option<&str>, config: &[(&str, &str)], extra: &[(&str, &str)]) -> Step {
        let l = local();
        let token = buildkite_token(key.unwrap_or("unkeyed"));
        std::fs::write(self.agent_state().join("oidc-token"), &token).unwrap();
        let path = format!(
            "{}:{}:{}",
            self.work.path().join("bin").display(),
            repo_root().join("tests/buildkite/bin").display(),
            std::env::var("PATH").unwrap()
        );
        let socket = self.work.path().join("job-api.sock");
        std::fs::write(&socket, "").unwrap();
        let mut env: BTreeMap<String, String> = l.vars.clone();
        // No static keys: the role is assumed with the agent's OIDC token.
        env.remove("AWS_ACCESS_KEY_ID");
        env.remove("AWS_SECRET_ACCESS_KEY");
        for (k, v) in [
            ("PATH", path.as_str()),
            ("HOME", self.work.path().to_str().unwrap()),
            ("BUILDKITE", "true"),
            ("CI", "true"),
            ("BUILDKITE_BUILD_ID", &self.id),
            ("BUILDKITE_JOB_ID", &unique("job")),
            ("BUILDKITE_STEP_ID", &unique("step")),
            ("BUILDKITE_AGENT_ACCESS_TOKEN", "agent-access-token-xyz"),
            ("BUILDKITE_AGENT_JOB_API_SOCKET", socket.to_str().unwrap()),
            ("BUILDKITE_AGENT_JOB_API_TOKEN", "job-api-token-xyz"),
            (
                "BUILDKITE_AGENT_STANDIN_STATE",
                self.agent_state().to_str().unwrap(),
            ),
            ("BUILDKITE_PLUGIN_NAME", "HOIST_GIT"),
        ] {
            env.insert(k.into(), v.into());
        }
        if let Some(k) = key {
            env.insert("BUILDKITE_STEP_KEY".into(), k.into());
        }
        for (k, v) in config {
            env.insert(
                format!(
                    "BUILDKITE_PLUGIN_HOIST_GIT_{}",
                    k.to_ascii_uppercase().replace('-', "_")
                ),
                v.to_string(),
            );
        }
        for (k, v) in extra {
            env.insert(k.to_string(), v.to_string());
        }
        let (code, log) = output(
            Command::new("bash")
                .arg(repo_root().join("hooks/command"))
                .env_clear()
                .envs(&env)
                .current_dir(self.checkout()),
        );
        assert!(!log.contains(&token), "the OIDC token reached the log");
        Step { code, log }
    }

    /// The agent's `meta-data keys` and `get`, for the whole build.
    fn meta_data(&self) -> BTreeMap<String, String> {
        let agent = repo_root().join("tests/buildkite/bin/buildkite-agent");
        let run = |args: &[&str]| {
            let out = Command::new(&agent)
                .args(args)
                .env("BUILDKITE_AGENT_STANDIN_STATE", self.agent_state())
                .env("BUILDKITE_AGENT_ACCESS_TOKEN", "agent-access-token-xyz")
                .env("BUILDKITE_JOB_ID", "test-reader")
                .env("BUILDKITE_BUILD_ID", &self.id)
                .stdin(Stdio::null())
                .output()
                .unwrap();
            assert!(out.status.success(), "{args:?}: {out:?}");
            String::from_utf8(out.stdout).unwrap()
        };
        run(&["meta-data", "keys"])
            .lines()
            .map(|k| (k.to_string(), run(&["meta-data", "get", k])))
            .collect()
    }

    /// (style, body) of the annotation with this context.
    fn annotation(&self, context: &str) -> Option<(String, String)> {
        let dir = self
            .agent_state()
            .join(format!("builds/{}/annotations", self.id));
        let hex: String = context.bytes().map(|b| format!("{b:02x}")).collect();
        let body = std::fs::read_to_string(dir.join(format!("{hex}.md"))).ok()?;
        let style = std::fs::read_to_string(dir.join(format!("{hex}.style"))).unwrap();
        Some((style, body))
    }

    fn redacted(&self) -> Vec<String> {
        std::fs::read_to_string(self.agent_state().join("redacted"))
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect()
    }
}

/// What `hoist ship` writes when it authenticated, pushed, gated and
/// deployed.
const SHIP_OUTPUTS: &[&str] = &[
    "aws-account-id",
    "authenticated-arn",
    "digest",
    "image-uri",
    "repository-uri",
    "scan-verdict",
    "scan-blocking",
    "scan-critical",
    "scan-high",
    "scan-medium",
    "scan-low",
    "scan-informational",
    "scan-undefined",
    "version",
    "previous-version",
    "alias-arn",
    "routing",
    "deployed-digest",
];

/// A first deploy through the plugin (the alias does not exist yet, so
/// previous-version is empty, which the agent refuses): every other output
/// is written, under the step's key, the run exits 0 without a warning, the
/// build page gets the step's annotation, and the redactor every secret.
/// A second, unkeyed hoist step of the same build keeps its own keys.
#[test]
fn first_deploy_writes_every_other_key_under_the_step_key() {
    let l = local();
    let build = Build::new();
    Layout::simple(&build.checkout().join("image"), 2, 3000);
    let repo = unique("bk/first");
    // Without scan on push: the gate starts the scan at once; moto's one
    // finding is HIGH, hence the CRITICAL threshold.
    common::create_repository(&repo, true);
    let function = function_without_alias(&repo);
    let config = [
        ("source", "image"),
        ("repository", repo.as_str()),
        ("tag", "v1"),
        ("role-arn", ROLE),
        ("severity-threshold", "CRITICAL"),
        ("poll-interval", "50ms"),
        ("function", function.as_str()),
        ("alias", "live"),
    ];
    let step = build.step(Some("deploy-eu"), &config, &[]);
    assert_eq!(step.code, 0, "{}", step.log);
    assert!(
        !step.log.contains("WARN") && !step.log.contains("meta-data"),
        "no warning about meta-data:\n{}",
        step.log
    );

    let md = build.meta_data();
    let expected: BTreeSet<String> = SHIP_OUTPUTS
        .iter()
        .filter(|k| **k != "previous-version")
        .map(|k| format!("deploy-eu:hoist-{k}"))
        .collect();
    assert_eq!(
        md.keys().cloned().collect::<BTreeSet<_>>(),
        expected,
        "{md:#?}"
    );
    let digest = &md["deploy-eu:hoist-digest"];
    assert!(registry_manifest(&repo, digest).is_some());
    assert_eq!(md["deploy-eu:hoist-deployed-digest"], *digest);
    assert_eq!(md["deploy-eu:hoist-version"], "2");
    assert_eq!(md["deploy-eu:hoist-routing"], "2=100%");
    assert!(md["deploy-eu:hoist-alias-arn"].ends_with(&format!("{function}:live")));
    assert_eq!(md["deploy-eu:hoist-aws-account-id"], "123456789012");
    assert!(
        md["deploy-eu:hoist-authenticated-arn"]
            .starts_with("arn:aws:sts::123456789012:assumed-role/ci-deploy/hoist-buildkite-"),
        "{md:?}"
    );
    assert_eq!(common::lambda::alias(&function, "live").0, "2");

    let (style, body) = build
        .annotation("hoist-deploy-eu")
        .expect("the step's annotation");
    assert_eq!(style, "success");
    assert!(
        body.contains(digest.as_str()) && body.contains("hoist deploy"),
        "{body}"
    );

    // Every secret hoist handled went to the redactor: the OIDC token, the
    // role's credentials, the registry password.
    let redacted = build.redacted();
    let token = std::fs::read_to_string(build.agent_state().join("oidc-token")).unwrap();
    assert!(redacted.contains(&token), "the OIDC token");
    assert!(redacted.contains(&l.password), "the registry password");
    assert!(
        redacted
            .iter()
            .any(|s| s.starts_with("ASIA") || s.len() > 100),
        "the role's credentials: {} secrets",
        redacted.len()
    );

    // A second hoist step of the build, without a key: its own keys, the
    // first step's untouched.
    let step = build.step(
        None,
        &[
            ("command", "push"),
            ("source", "image"),
            ("repository", &repo),
            ("role-arn", ROLE),
        ],
        &[],
    );
    assert_eq!(step.code, 0, "{}", step.log);
    let md = build.meta_data();
    assert_eq!(md["hoist-digest"], *digest);
    assert_eq!(md["deploy-eu:hoist-version"], "2");
    assert!(
        build.annotation("hoist-deploy-eu").is_some(),
        "the first step's annotation stays"
    );
}

/// The agent refusing one key (here the API, for the first one written)
/// does not stop the others; the error names the key and why, and the step
/// fails (exit 2): a later step would go on without the output it needs.
/// The push itself is done, and re-running is safe.
#[test]
fn a_refused_key_does_not_stop_the_others() {
    let build = Build::new();
    Layout::simple(&build.checkout().join("image"), 1, 2000);
    let repo = unique("bk/refused");
    common::create_repository(&repo, false);
    let step = build.step(
        Some("push"),
        &[
            ("command", "push"),
            ("source", "image"),
            ("repository", &repo),
            ("role-arn", ROLE),
        ],
        &[("BUILDKITE_AGENT_STANDIN_REFUSE", "push:hoist-digest")],
    );
    assert_eq!(step.code, 2, "{}", step.log);
    assert!(
        step.log.contains("buildkite-agent meta-data set failed for 1 of")
            && step.log.contains(
                "push:hoist-digest (exit status 1: fatal: failed to set meta-data: POST .../data/set: 500 Internal Server Error)"
            ),
        "{}",
        step.log
    );
    let md = build.meta_data();
    assert!(!md.contains_key("push:hoist-digest"));
    for k in [
        "push:hoist-image-uri",
        "push:hoist-repository-uri",
        "push:hoist-aws-account-id",
        "push:hoist-authenticated-arn",
    ] {
        assert!(md.contains_key(k), "{k} in {md:?}");
    }
}

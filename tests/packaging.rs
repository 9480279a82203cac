//! hoist as users get it: the composite action (action.yml) run by a
//! simulated GitHub runner, the GitLab template run by gitlab-ci-local, the
//! Dockerfile's final stage built by buildah — each pushing to the local
//! environment with the real binary — and every packaging file checked by
//! the linters and schemas CI systems apply (check-jsonschema, zizmor,
//! hadolint).
//!
//! The tools come from `localenv/localenv up` (run by ./scripts/test); a test
//! whose tool is missing fails, it does not skip.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use common::fixtures::{self, Layout};
use common::server::{Body, Running, serve};
use common::{local, registry_manifest, registry_tags, sha256_hex, tool, unique};
use http_body_util::{BodyExt, Full};
use serde_json::{Value, json};
use serde_yaml_ng::Value as Yaml;

const ROLE: &str = "arn:aws:iam::123456789012:role/ci-deploy";

fn repo_root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn output(cmd: &mut Command) -> (i32, String) {
    let out: Output = cmd
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code().unwrap_or(-1), text)
}

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// A JWT with `claims` (plus iat/exp), signed with a key this run made (moto's
/// STS does not check signatures; hoist checks exp and aud itself).
fn jwt(claims: Value) -> String {
    let key = fixtures::random_bytes(32, fixtures::fresh_seed());
    let mut c = claims;
    c["iat"] = json!(now());
    c["exp"] = json!(now() + 600);
    jsonwebtoken::encode(
        &jsonwebtoken::Header::default(),
        &c,
        &jsonwebtoken::EncodingKey::from_secret(&key),
    )
    .unwrap()
}

/// The test binary without its debug info (40 MB instead of ~290): what the
/// release server hands out and what goes into the image.
fn stripped_hoist(work: &Path) -> PathBuf {
    let out = work.join("hoist-stripped");
    let (code, text) = output(
        Command::new("strip")
            .arg("-o")
            .arg(&out)
            .arg(env!("CARGO_BIN_EXE_hoist")),
    );
    assert_eq!(code, 0, "strip failed: {text}");
    out
}

/// A small OCI layout to ship.
fn layout(work: &Path) -> PathBuf {
    let dir = work.join("image");
    Layout::simple(&dir, 2, 2000);
    dir
}

// --- schemas and linters ----------------------------------------------------

/// `check-jsonschema --builtin-schema SCHEMA FILES…`: (exit code, output).
fn check_schema(schema: &str, files: &[PathBuf]) -> (i32, String) {
    output(
        Command::new(tool("check-jsonschema"))
            .args(["--builtin-schema", schema])
            .args(files),
    )
}

#[test]
fn action_yml_matches_github_actions_schema() {
    let (code, text) = check_schema("vendor.github-actions", &[repo_root().join("action.yml")]);
    assert_eq!(code, 0, "{text}");

    // The schema does reject a broken action: the check is not vacuous.
    let dir = tempfile::tempdir().unwrap();
    let broken = dir.path().join("action.yml");
    let text = std::fs::read_to_string(repo_root().join("action.yml")).unwrap();
    std::fs::write(&broken, text.replace("using: composite", "using: compost")).unwrap();
    let (code, _) = check_schema("vendor.github-actions", &[broken]);
    assert_ne!(code, 0, "a runs.using of 'compost' passed the schema");
}

#[test]
fn workflows_match_github_workflows_schema() {
    let files = workflow_files();
    assert!(files.len() >= 3, "release, ci and the example: {files:?}");
    let (code, text) = check_schema("vendor.github-workflows", &files);
    assert_eq!(code, 0, "{text}");
}

/// .github/workflows/*.yml and the example deploy workflow.
fn workflow_files() -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(repo_root().join(".github/workflows"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yml"))
        .collect();
    files.push(repo_root().join("examples/github/deploy.yml"));
    files.sort();
    files
}

#[test]
fn buildkite_example_matches_buildkite_schema() {
    let example = repo_root().join("examples/buildkite/pipeline.yml");
    let (code, text) = check_schema("vendor.buildkite", std::slice::from_ref(&example));
    assert_eq!(code, 0, "{text}");

    let dir = tempfile::tempdir().unwrap();
    let broken = dir.path().join("pipeline.yml");
    let text = std::fs::read_to_string(&example).unwrap();
    std::fs::write(&broken, text.replace("concurrency: 1", "concurrency: one")).unwrap();
    let (code, _) = check_schema("vendor.buildkite", &[broken]);
    assert_ne!(code, 0, "a concurrency of 'one' passed the schema");
}

/// The examples for GitLab, CircleCI and Bitbucket pass their CI system's
/// schema (and the schema does refuse a broken one); the GitLab example's
/// inputs are the component's, with values of the component's types.
#[test]
fn ci_examples_match_their_schemas() {
    let dir = tempfile::tempdir().unwrap();
    for (file, schema, from, to) in [
        (
            "examples/gitlab/.gitlab-ci.yml",
            "vendor.gitlab-ci",
            "- if: $CI_COMMIT_BRANCH",
            "- iff: $CI_COMMIT_BRANCH",
        ),
        (
            "examples/circleci/config.yml",
            "vendor.circle-ci",
            "version: 2.1",
            "version: two",
        ),
        (
            "examples/bitbucket/bitbucket-pipelines.yml",
            "vendor.bitbucket-pipelines",
            "\n          oidc: true",
            "\n          oidc: 7",
        ),
    ] {
        let path = repo_root().join(file);
        let (code, out) = check_schema(schema, std::slice::from_ref(&path));
        assert_eq!(code, 0, "{file}: {out}");
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.contains(from), "{file}");
        let broken = dir.path().join(path.file_name().unwrap());
        std::fs::write(&broken, text.replacen(from, to, 1)).unwrap();
        let (code, _) = check_schema(schema, &[broken]);
        assert_ne!(code, 0, "{file}: '{to}' passed the schema");
    }

    let component = std::fs::read_to_string(repo_root().join(COMPONENT)).unwrap();
    let spec: Yaml = serde_yaml_ng::from_str(component.split_once("\n---\n").unwrap().0).unwrap();
    let inputs = &spec["spec"]["inputs"];
    let example: Yaml = serde_yaml_ng::from_str(
        &std::fs::read_to_string(repo_root().join("examples/gitlab/.gitlab-ci.yml")).unwrap(),
    )
    .unwrap();
    let include = &example["include"][0];
    assert!(
        include["component"]
            .as_str()
            .unwrap()
            .ends_with(&format!("/hoist@{}", env!("CARGO_PKG_VERSION"))),
        "the example pins this version"
    );
    for (name, value) in include["inputs"].as_mapping().unwrap() {
        let input = &inputs[name];
        assert!(!input.is_null(), "the component has no input {name:?}");
        match input["type"].as_str().unwrap_or("string") {
            "boolean" => assert!(value.is_bool(), "{name:?}"),
            "number" => assert!(value.is_number(), "{name:?}"),
            _ => assert!(value.is_string(), "{name:?}"),
        }
        if let Some(options) = input["options"].as_sequence() {
            assert!(options.contains(value), "{name:?}");
        }
    }
    for required in ["source", "repository"] {
        assert!(inputs[required]["default"].is_null());
        assert!(!include["inputs"][required].is_null(), "{required}");
    }
}

/// check-jsonschema reads one YAML document per file; a template with
/// `spec: inputs` is two (the header, then the jobs), so each is checked on
/// its own, as GitLab itself does: the jobs after interpolation.
fn gitlab_documents(text: &str, dir: &Path) -> Vec<PathBuf> {
    let (header, jobs) = text
        .split_once("\n---\n")
        .expect("the template has a spec header and a --- separator");
    let jobs = interpolated(header, jobs);
    let mut files = vec![];
    for (name, doc) in [("header.yml", header), ("jobs.yml", jobs.as_str())] {
        let p = dir.join(name);
        std::fs::write(&p, doc).unwrap();
        files.push(p);
    }
    files
}

/// The jobs as GitLab validates them: each `$[[ inputs.NAME ]]` replaced
/// by the input's default (an input without one by a placeholder), in keys
/// and values; a value that is only the input takes the default's type.
fn interpolated(header: &str, jobs: &str) -> String {
    let spec: Yaml = serde_yaml_ng::from_str(header).unwrap_or(Yaml::Null);
    let inputs = spec["spec"]["inputs"]
        .as_mapping()
        .cloned()
        .unwrap_or_default();
    let value_of = |name: &str| -> Yaml {
        match inputs.get(name).map(|i| &i["default"]) {
            Some(d) if !d.is_null() => d.clone(),
            _ => Yaml::String(format!("input-{name}")),
        }
    };
    let as_text = |v: &Yaml| match v {
        Yaml::String(s) => s.clone(),
        other => serde_yaml_ng::to_string(other).unwrap().trim().to_string(),
    };
    let subst = |s: &str| -> Yaml {
        let whole = s
            .strip_prefix("$[[ inputs.")
            .and_then(|r| r.strip_suffix(" ]]"))
            .filter(|name| !name.contains(' '));
        if let Some(name) = whole {
            return value_of(name);
        }
        let mut out = String::new();
        let mut rest = s;
        while let Some(at) = rest.find("$[[ inputs.") {
            out.push_str(&rest[..at]);
            let after = &rest[at + "$[[ inputs.".len()..];
            let end = after.find(" ]]").expect("an input reference ends with ]]");
            out.push_str(&as_text(&value_of(&after[..end])));
            rest = &after[end + " ]]".len()..];
        }
        out.push_str(rest);
        Yaml::String(out)
    };
    fn walk(v: &mut Yaml, subst: &dyn Fn(&str) -> Yaml) {
        match v {
            Yaml::String(s) => *v = subst(s),
            Yaml::Sequence(items) => items.iter_mut().for_each(|i| walk(i, subst)),
            Yaml::Mapping(m) => {
                let entries = std::mem::take(m);
                for (mut k, mut val) in entries {
                    walk(&mut k, subst);
                    walk(&mut val, subst);
                    m.insert(k, val);
                }
            }
            _ => {}
        }
    }
    let mut doc: Yaml = serde_yaml_ng::from_str(jobs).unwrap();
    walk(&mut doc, &subst);
    serde_yaml_ng::to_string(&doc).unwrap()
}

#[test]
fn gitlab_template_matches_gitlab_ci_schema() {
    let dir = tempfile::tempdir().unwrap();
    let text = std::fs::read_to_string(repo_root().join("templates/hoist/template.yml")).unwrap();
    let (code, out) = check_schema("vendor.gitlab-ci", &gitlab_documents(&text, dir.path()));
    assert_eq!(code, 0, "{out}");

    // Both documents are really checked: a bad key in either fails.
    for (from, to) in [
        ("\nspec:\n  inputs:", "\nspec:\n  inputz:"),
        ("\n    when: always", "\n    when: sometimes"),
        // Checked after interpolation: a default GitLab refuses fails.
        (
            "options: [start, prepare, verify, access]\n      default: start",
            "options: [start, prepare, verify, access]\n      default: begin",
        ),
    ] {
        assert!(text.contains(from));
        let broken = dir.path().join("broken");
        std::fs::create_dir_all(&broken).unwrap();
        let (code, _) = check_schema(
            "vendor.gitlab-ci",
            &gitlab_documents(&text.replacen(from, to, 1), &broken),
        );
        assert_ne!(code, 0, "'{to}' passed the schema");
    }
}

#[test]
fn zizmor_finds_nothing_in_the_action_and_workflows() {
    let mut files = workflow_files();
    files.push(repo_root().join("action.yml"));
    let (code, text) = output(Command::new(tool("zizmor")).arg("--offline").args(&files));
    assert_eq!(code, 0, "zizmor findings:\n{text}");

    // zizmor does flag what it exists to catch: an expression spliced into
    // a script (template injection).
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.yml");
    std::fs::write(
        &bad,
        "on: issues\npermissions: {}\njobs:\n  j:\n    runs-on: ubuntu-24.04\n    steps:\n      - run: echo \"${{ github.event.issue.title }}\"\n",
    )
    .unwrap();
    let (code, text) = output(Command::new(tool("zizmor")).arg("--offline").arg(&bad));
    assert_ne!(code, 0, "zizmor passed a template injection:\n{text}");
    assert!(text.contains("template-injection"), "{text}");
}

#[test]
fn hadolint_finds_nothing_in_the_dockerfile() {
    let (code, text) = output(Command::new(tool("hadolint")).arg(repo_root().join("Dockerfile")));
    assert_eq!(code, 0, "hadolint findings:\n{text}");

    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("Dockerfile");
    std::fs::write(&bad, "FROM debian\nRUN apt-get install curl\n").unwrap();
    let (code, _) = output(Command::new(tool("hadolint")).arg(&bad));
    assert_ne!(
        code, 0,
        "hadolint passed an untagged base and an unpinned apt-get"
    );
}

// --- the Dockerfile's final stage -------------------------------------------

/// The final stage of the Dockerfile, built by buildah from a root file
/// system laid out by scripts/image-rootfs (the build stage's Rust base
/// image cannot be pulled here; the test binary, a glibc debug build, stands
/// in for the release's static musl one and brings its libraries along),
/// pushed to the local registry by hoist itself, pulled back and run.
#[test]
fn image_from_the_dockerfile_is_pushed_by_hoist_and_runs() {
    let l = local();
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    let ctx = w.join("build-context");
    let busybox = tool("busybox");
    let (code, text) = output(
        Command::new("sh")
            .arg(repo_root().join("scripts/image-rootfs"))
            .arg(ctx.join("rootfs"))
            .arg(stripped_hoist(w))
            .arg(&busybox)
            .arg("/etc/ssl/certs/ca-certificates.crt"),
    );
    assert_eq!(code, 0, "image-rootfs: {text}");

    // Only the Dockerfile in the context: the final stage needs nothing else.
    let df = w.join("dockerfile");
    std::fs::create_dir_all(&df).unwrap();
    std::fs::copy(repo_root().join("Dockerfile"), df.join("Dockerfile")).unwrap();
    let name = "localhost/hoist-image-test:latest";
    fixtures::run(
        fixtures::buildah(w)
            .args(["bud", "--isolation", "chroot", "-q", "--build-context"])
            .arg(format!("build={}", ctx.display()))
            .args(["-t", name])
            .arg(&df),
        "buildah bud (the Dockerfile's final stage)",
    );
    let oci = w.join("oci");
    fixtures::run(
        fixtures::buildah(w)
            .args(["push", "-q", name])
            .arg(format!("oci:{}:latest", oci.display())),
        "buildah push",
    );

    let repo = unique("pkg/image");
    let pushed = common::push(&oci, &repo, &["--create-repository"]);
    let report = pushed.ok().json();
    let digest = report["digest"].as_str().unwrap().to_string();

    // Run what the registry holds, not what buildah built.
    let certs = w.join("certs");
    std::fs::create_dir_all(&certs).unwrap();
    std::fs::copy(&l.vars["AWS_CA_BUNDLE"], certs.join("ca.crt")).unwrap();
    let from = fixtures::buildah(w)
        .args(["from", "-q", "--creds"])
        .arg(format!("AWS:{}", l.password))
        .arg("--cert-dir")
        .arg(&certs)
        .arg(format!("docker://{}/{repo}@{digest}", l.registry))
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(
        from.status.success(),
        "buildah from the pushed image: {}",
        String::from_utf8_lossy(&from.stderr)
    );
    let ctr = String::from_utf8(from.stdout).unwrap().trim().to_string();
    let run_in = |args: &[&str]| -> String {
        let out = fixtures::buildah(w)
            .args(["run", "--isolation", "chroot", &ctr, "--"])
            .args(args)
            .stdin(Stdio::null())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{args:?} in the image failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    assert_eq!(
        run_in(&["hoist", "--version"]).trim(),
        format!("hoist {}", env!("CARGO_PKG_VERSION"))
    );
    // What CI agents need: a shell, a non-root user, a writable /tmp, the CAs.
    let shell = run_in(&[
        "sh",
        "-c",
        "id -u; echo \"$HOME\"; touch /tmp/x && echo tmp-writable; test -s \"$SSL_CERT_FILE\" && echo cas",
    ]);
    assert_eq!(shell, "10001\n/home/hoist\ntmp-writable\ncas\n");

    let inspect = fixtures::buildah(w)
        .args(["inspect", "--type", "container", &ctr])
        .output()
        .unwrap();
    let config: Value = serde_json::from_slice(&inspect.stdout).unwrap();
    let oci_config = &config["OCIv1"]["config"];
    assert_eq!(oci_config["User"], "10001:10001");
    assert_eq!(oci_config["Cmd"], json!(["hoist", "--help"]));
    assert!(
        oci_config.get("Entrypoint").is_none_or(Value::is_null),
        "no entrypoint: CI systems run their own commands"
    );
}

// --- GitLab: the component and the template, run by gitlab-ci-local -----------

/// The component, and the template path that older `include:`s name.
const COMPONENT: &str = "templates/hoist/template.yml";
const TEMPLATE: &str = "gitlab/hoist.yml";

/// gitlab/hoist.yml is the component, byte for byte: `include: project:` /
/// `remote:` users get the same job as `include: component:` users.
#[test]
fn gitlab_template_is_the_component() {
    assert_eq!(
        std::fs::read_to_string(repo_root().join(TEMPLATE)).unwrap(),
        std::fs::read_to_string(repo_root().join(COMPONENT)).unwrap(),
        "copy {COMPONENT} to {TEMPLATE}"
    );
    assert!(
        repo_root().join("templates/hoist/README.md").exists(),
        "the component's README"
    );
}

/// The component's inputs: each described; typed where the value is a
/// boolean or a number, so natural YAML (`true`, `3`) is accepted; options
/// for severities and architectures, a regex for durations and strategies;
/// the image defaults to the release's, matching this version.
#[test]
fn gitlab_component_inputs_are_typed_and_described() {
    let text = std::fs::read_to_string(repo_root().join(COMPONENT)).unwrap();
    let (header, _) = text.split_once("\n---\n").unwrap();
    let spec: Yaml = serde_yaml_ng::from_str(header).unwrap();
    let inputs = spec["spec"]["inputs"].as_mapping().unwrap();
    for (name, input) in inputs {
        assert!(
            input["description"].as_str().is_some_and(|d| !d.is_empty()),
            "{name:?} has no description"
        );
        if let Some(options) = input["options"].as_sequence() {
            assert!(
                options.contains(&input["default"]),
                "{name:?}: the default is not one of the options"
            );
        }
    }
    let field = |name: &str, key: &str| inputs[name][key].clone();
    for name in [
        "create-repository",
        "fail-on-scan-error",
        "watch-errors",
        "ignore-alarms-at-start",
        "force",
        "dry-run",
    ] {
        assert_eq!(field(name, "type").as_str(), Some("boolean"), "{name}");
        assert!(field(name, "default").as_bool().is_some(), "{name}");
    }
    for name in ["jobs", "role-duration-seconds", "max-errors"] {
        assert_eq!(field(name, "type").as_str(), Some("number"), "{name}");
    }
    for name in ["severity-threshold", "architecture"] {
        assert!(field(name, "options").as_sequence().is_some(), "{name}");
    }
    for name in ["scan-timeout", "deploy-timeout", "strategy", "duration"] {
        assert!(field(name, "regex").as_str().is_some(), "{name}");
    }
    // This version's image: by tag on main; by digest at a release's tagged
    // commit (scripts/release-pin; tests/release.rs).
    let tagged = format!("ghcr.io/hoist-dev/hoist:{}", env!("CARGO_PKG_VERSION"));
    let default = field("image", "default");
    let default = default.as_str().unwrap();
    assert!(
        default == tagged
            || default
                .strip_prefix(&format!("{tagged}@sha256:"))
                .is_some_and(|hex| hex.len() == 64),
        "the image input defaults to this release's image, not {default}"
    );
    // The action's names, and the former ones still there.
    for name in [
        "role-to-assume",
        "role-duration-seconds",
        "aws-region",
        "role-arn",
        "duration",
        "environment",
    ] {
        assert!(inputs.contains_key(name), "{name}");
    }
    // Each regex matches its default and hoist's own forms.
    // grep -E (POSIX ERE) reads these patterns as GitLab's RE2 does: no
    // construct they use differs.
    let matches = |name: &str, value: &str| {
        let re = field(name, "regex");
        Command::new("sh")
            .arg("-c")
            .arg("printf '%s\\n' \"$1\" | grep -qE \"$2\"")
            .arg("sh")
            .arg(value)
            .arg(re.as_str().unwrap())
            .env("LC_ALL", "C")
            .stdin(Stdio::null())
            .status()
            .unwrap()
            .success()
    };
    for (name, good, bad) in [
        (
            "scan-timeout",
            vec!["10m", "90s", "1.5h", "600", "500ms", "1m30s"],
            vec!["ten", "10 m", "", "5d"],
        ),
        (
            "deploy-timeout",
            vec!["10m", "1m30s", "300", "1.5m"],
            vec!["soon", "1m30"],
        ),
        (
            "strategy",
            vec![
                "all-at-once",
                "canary:10%:5m",
                "linear:10%:1m",
                "LambdaCanary10Percent5Minutes",
                "LambdaLinear10PercentEvery1Minute",
                "LambdaAllAtOnce",
                "Canary10Percent5Minutes",
                "CodeDeployDefault.LambdaCanary10Percent5Minutes",
            ],
            vec!["canary", "blue-green", "Canary10Percent5Hours"],
        ),
        ("duration", vec!["", "900"], vec!["15m"]),
    ] {
        for v in good {
            assert!(matches(name, v), "{name} refuses {v:?}");
        }
        for v in bad {
            assert!(!matches(name, v), "{name} accepts {v:?}");
        }
    }
}

/// A project of its own for gitlab-ci-local: the component (and the
/// template at its old path), an OCI layout `image/`, `.gitlab-ci.yml`, a
/// git remote named origin (gitlab.example.com/acme/app) and one commit.
fn gitlab_project(work: &Path, pipeline: &str) -> PathBuf {
    let project = work.join("project");
    for f in [COMPONENT, TEMPLATE] {
        let to = project.join(f);
        std::fs::create_dir_all(to.parent().unwrap()).unwrap();
        std::fs::copy(repo_root().join(f), to).unwrap();
    }
    Layout::simple(&project.join("image"), 2, 3000);
    std::fs::write(project.join(".gitlab-ci.yml"), pipeline).unwrap();
    let git = |args: &[&str]| {
        let (code, text) = output(Command::new("git").args(args).current_dir(&project));
        assert_eq!(code, 0, "git {args:?}: {text}");
    };
    git(&["init", "-q", "-b", "main"]);
    git(&[
        "remote",
        "add",
        "origin",
        "https://gitlab.example.com/acme/app.git",
    ]);
    git(&["add", "."]);
    git(&[
        "-c",
        "user.name=test",
        "-c",
        "user.email=test@example.com",
        "commit",
        "-q",
        "-m",
        "pipeline",
    ]);
    project
}

/// gitlab-ci-local's shell executor runs the pipeline of `project` with a
/// GitLab-shaped OIDC token as HOIST_ID_TOKEN. (exit code, log, token)
fn gitlab_ci_local(work: &Path, project: &Path) -> (i32, String, String) {
    let l = local();
    let token = jwt(json!({
        "iss": "https://gitlab.com", "aud": "sts.amazonaws.com",
        "sub": "project_path:acme/app:ref_type:branch:ref:main", "project_path": "acme/app",
        "namespace_path": "acme", "ref": "main", "ref_type": "branch", "pipeline_id": "991", "job_id": "4711",
    }));
    let hoist_dir = Path::new(env!("CARGO_BIN_EXE_hoist")).parent().unwrap();
    let path = format!(
        "{}:{}",
        hoist_dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let mut cmd = Command::new(tool("gitlab-ci-local"));
    cmd.current_dir(project)
        .env_clear()
        .env("PATH", path)
        .env("HOME", work)
        // The component's job names an image; run its script in this shell.
        .args(["--force-shell-executor", "--home"])
        .arg(work.join("gcl-home"));
    let mut variables = vec![
        format!("HOIST_ID_TOKEN={token}"),
        // What a GitLab runner sets and gitlab-ci-local does not: GITLAB_CI
        // (it says false), and CI_PROJECT_DIR as the directory the script
        // runs in (with an image it says /builds/…, even when
        // --force-shell-executor runs the script here).
        "GITLAB_CI=true".to_string(),
        format!("CI_PROJECT_DIR={}", project.display()),
        // moto answers at once: poll it quickly.
        "HOIST_POLL_INTERVAL=50ms".to_string(),
    ];
    for k in [
        "AWS_ENDPOINT_URL",
        "AWS_CA_BUNDLE",
        "AWS_REGION",
        "HOIST_REGISTRY_ENDPOINT",
    ] {
        variables.push(format!("{k}={}", l.vars[k]));
    }
    for v in &variables {
        cmd.arg("--variable").arg(v);
    }
    let (code, text) = output(&mut cmd);
    (code, text, token)
}

/// What both pipelines check: hoist authenticated with the job's id token,
/// pushed, gated and deployed; a later job read the digest from the dotenv
/// report; the findings are in the container-scanning report.
fn check_gitlab_run(project: &Path, text: &str, token: &str, repo: &str, function: &str) {
    let l = local();
    assert!(!text.contains(token), "the id token reached the job log");
    assert!(
        text.contains("assumed-role/ci-deploy/hoist-gitlab-")
            && text.contains("with the OIDC token from $HOIST_ID_TOKEN"),
        "hoist authenticated with the job's id token:\n{text}"
    );
    let dotenv = std::fs::read_to_string(project.join("hoist.env")).unwrap();
    let digest = dotenv
        .lines()
        .find_map(|l| l.strip_prefix("HOIST_DIGEST="))
        .expect("hoist.env has HOIST_DIGEST")
        .to_string();
    assert!(
        text.contains(&format!(
            "later job got digest={digest} image-uri={}/{repo}@{digest}",
            l.ecr_host
        )),
        "the later job read the digest from the dotenv report:\n{text}"
    );
    assert!(registry_manifest(repo, &digest).is_some());
    // The gate ran on the pushed digest: its verdict in the dotenv report,
    // its findings in the container-scanning report artifact.
    assert!(dotenv.contains("HOIST_SCAN_VERDICT=passed"), "{dotenv}");
    assert!(dotenv.contains("HOIST_VERSION=2"), "deployed: {dotenv}");
    assert_eq!(common::lambda::alias(function, "live").0, "2");
    let report: Value = serde_json::from_str(
        &std::fs::read_to_string(project.join("gl-container-scanning-report.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(
        report["vulnerabilities"][0]["identifiers"][0]["value"],
        "CVE-9999-9999"
    );
    let mut tags = registry_tags(repo);
    tags.sort();
    assert_eq!(tags, ["one", "two"]);
}

const READ_DIGEST_JOB: &str = r#"read-digest:
  stage: verify
  needs: [hoist]
  script:
    - test -n "$HOIST_DIGEST"
    - echo "later job got digest=$HOIST_DIGEST image-uri=$HOIST_IMAGE_URI"
"#;

/// The template at its old path, included with its old input names
/// (`role-arn`, an `image`, a lowercase severity), as pipelines written for
/// the first template do: `hoist ship` authenticates through moto's STS,
/// pushes to the local registry, gates, deploys, writes hoist.env; a later
/// job of the same pipeline reads the digest from the dotenv report.
#[test]
fn gitlab_template_ships_and_a_later_job_reads_the_digest() {
    let work = tempfile::tempdir().unwrap();
    let repo = unique("pkg/gitlab");
    // Without scan on push (moto scans only when asked): the gate starts the
    // scan at once. moto's one finding is HIGH, hence the CRITICAL threshold.
    common::create_repository(&repo, true);
    let function = common::lambda::function(&repo, &format!("sha256:{}", "0".repeat(64)), "x86_64");
    let project = gitlab_project(
        work.path(),
        &format!(
            r#"stages: [deploy, verify]
include:
  - local: gitlab/hoist.yml
    inputs:
      image: registry.example.com/tools/hoist:{version}
      source: image
      repository: {repo}
      tags: one,two
      severity-threshold: critical
      function: {function}
      alias: live
      role-arn: {ROLE}
      duration: "900"
{READ_DIGEST_JOB}"#,
            version = env!("CARGO_PKG_VERSION")
        ),
    );
    let (code, text, token) = gitlab_ci_local(work.path(), &project);
    assert_eq!(code, 0, "gitlab-ci-local failed:\n{text}");
    assert!(
        text.contains("DURATION=900"),
        "the former duration input: {text}"
    );
    check_gitlab_run(&project, &text, &token, &repo, &function);
}

/// The catalog component, included as `include: component:` (its own
/// project at this commit, as GitLab's docs test a component), with the
/// action's input names and natural YAML values — booleans and numbers
/// unquoted — and the default image: the same pipeline works, the job is a
/// deployment to the environment given.
#[test]
fn gitlab_component_takes_natural_yaml() {
    let work = tempfile::tempdir().unwrap();
    let repo = unique("pkg/component");
    common::create_repository(&repo, true);
    let function = common::lambda::function(&repo, &format!("sha256:{}", "0".repeat(64)), "x86_64");
    let project = gitlab_project(
        work.path(),
        &format!(
            r#"stages: [deploy, verify]
include:
  - component: $CI_SERVER_FQDN/acme/app/hoist@$CI_COMMIT_SHA
    inputs:
      source: image
      repository: {repo}
      tags: one,two
      create-repository: true
      jobs: 2
      severity-threshold: CRITICAL
      fail-on-scan-error: true
      function: {function}
      alias: live
      strategy: canary:50%:1s
      max-errors: 3
      role-to-assume: {ROLE}
      role-duration-seconds: 900
      aws-region: us-east-1
      environment: staging
hoist:
  before_script:
    - echo "deploying to environment $CI_ENVIRONMENT_NAME"
{READ_DIGEST_JOB}"#
        ),
    );
    let (code, text, token) = gitlab_ci_local(work.path(), &project);
    assert_eq!(code, 0, "gitlab-ci-local failed:\n{text}");
    assert!(
        text.contains("hoist: typed inputs: CREATE_REPOSITORY=true JOBS=2 DURATION=900 FAIL_ON_SCAN_ERROR=true WATCH_ERRORS=false MAX_ERRORS=3"),
        "typed inputs reached the job as their values:\n{text}"
    );
    assert!(
        text.contains("deploying to environment staging"),
        "the environment input:\n{text}"
    );
    check_gitlab_run(&project, &text, &token, &repo, &function);
}

/// The job is a deployment by default; a job that only pushes and gates
/// says `environment-action: prepare`, and GitLab records no deployment.
#[test]
fn gitlab_component_environment_action() {
    for (inputs, action) in [
        ("", "start"),
        ("      environment-action: prepare\n", "prepare"),
    ] {
        let work = tempfile::tempdir().unwrap();
        let project = gitlab_project(
            work.path(),
            &format!(
                "include:\n  - local: {COMPONENT}\n    inputs:\n      source: image\n      repository: team/app\n{inputs}"
            ),
        );
        let pipeline = common::gitlab_preview(work.path(), &project);
        let environment = &pipeline["hoist"]["environment"];
        assert_eq!(
            environment["name"].as_str(),
            Some("production"),
            "{environment:?}"
        );
        assert_eq!(
            environment["action"].as_str(),
            Some(action),
            "{environment:?}"
        );
    }
}

/// Two names for one role that disagree: the job stops before hoist runs.
#[test]
fn gitlab_component_refuses_two_different_roles() {
    let work = tempfile::tempdir().unwrap();
    let project = gitlab_project(
        work.path(),
        &format!(
            r#"include:
  - local: {COMPONENT}
    inputs:
      source: image
      repository: never/pushed
      role-to-assume: {ROLE}
      role-arn: arn:aws:iam::123456789012:role/another
"#
        ),
    );
    let (code, text, _) = gitlab_ci_local(work.path(), &project);
    assert_ne!(code, 0, "{text}");
    assert!(
        text.contains(
            "the inputs role-to-assume and role-arn (its former name) name different roles"
        ),
        "{text}"
    );
}

/// Natural YAML the component's types refuse: gitlab-ci-local says which
/// input and why, as GitLab does when the pipeline is created.
#[test]
fn gitlab_component_refuses_values_of_the_wrong_type() {
    for (input, value, why) in [
        (
            "create-repository",
            "\"yes\"",
            "provided value is not a boolean",
        ),
        ("max-errors", "three", "provided value is not a number"),
        (
            "architecture",
            "amd64",
            "is not in the list of allowed options",
        ),
    ] {
        let work = tempfile::tempdir().unwrap();
        let project = gitlab_project(
            work.path(),
            &format!(
                "include:\n  - local: {COMPONENT}\n    inputs:\n      source: image\n      repository: never/pushed\n      {input}: {value}\n"
            ),
        );
        let (code, text, _) = gitlab_ci_local(work.path(), &project);
        assert_ne!(code, 0, "{input}: {value} was accepted:\n{text}");
        assert!(
            text.contains(input) && text.contains(why),
            "{input}: {text}"
        );
    }
}

// --- GitHub: the composite action under a simulated runner --------------------

/// Plays the GitHub runner for a composite action: inputs with their
/// defaults, `${{ … }}` in each step's env (the expressions action.yml
/// uses — anything else fails the test), `bash --noprofile --norc -eo
/// pipefail` per step, and the runner's files (GITHUB_OUTPUT per step,
/// GITHUB_ENV and GITHUB_PATH carried to later steps, GITHUB_STEP_SUMMARY
/// collected), then the action's outputs.
struct Runner {
    work: PathBuf,
    /// The runner's own environment for every step.
    env: BTreeMap<String, String>,
    /// `github.token`: the job's GITHUB_TOKEN.
    github_token: String,
}

struct StepRun {
    id: String,
    code: i32,
    log: String,
}

struct ActionRun {
    steps: Vec<StepRun>,
    /// What each step wrote to its $GITHUB_OUTPUT.
    step_outputs: BTreeMap<String, BTreeMap<String, String>>,
    outputs: BTreeMap<String, String>,
    summary: String,
    path: Vec<String>,
}

impl ActionRun {
    fn step(&self, id: &str) -> &StepRun {
        self.steps
            .iter()
            .find(|s| s.id == id)
            .unwrap_or_else(|| panic!("step {id} did not run"))
    }

    fn log(&self) -> String {
        self.steps
            .iter()
            .map(|s| format!("--- step {} (exit {})\n{}", s.id, s.code, s.log))
            .collect()
    }

    fn ok(&self) -> &Self {
        assert!(
            self.steps.iter().all(|s| s.code == 0) && self.steps.len() == 2,
            "the action failed:\n{}",
            self.log()
        );
        self
    }
}

impl Runner {
    fn new(work: &Path, server: &str) -> Runner {
        let l = local();
        let mut env: BTreeMap<String, String> = l.vars.clone();
        // No static keys: credentials come from the role the action assumes.
        env.remove("AWS_ACCESS_KEY_ID");
        env.remove("AWS_SECRET_ACCESS_KEY");
        let dir = |name: &str| {
            let d = work.join(name);
            std::fs::create_dir_all(&d).unwrap();
            d.display().to_string()
        };
        for (k, v) in [
            ("PATH", std::env::var("PATH").unwrap_or_default()),
            ("HOME", dir("home")),
            ("GITHUB_ACTIONS", "true".into()),
            ("CI", "true".into()),
            ("RUNNER_OS", "Linux".into()),
            ("RUNNER_ARCH", "X64".into()),
            ("RUNNER_TEMP", dir("runner-temp")),
            ("RUNNER_TOOL_CACHE", dir("tool-cache")),
            ("GITHUB_WORKSPACE", dir("workspace")),
            ("GITHUB_SERVER_URL", server.into()),
            ("GITHUB_API_URL", format!("{server}/api/v3")),
            ("GITHUB_REPOSITORY", "acme/app".into()),
            ("GITHUB_RUN_ID", "4242".into()),
            ("GITHUB_RUN_ATTEMPT", "1".into()),
            (
                "ACTIONS_ID_TOKEN_REQUEST_URL",
                format!("{server}/oidc/token?api-version=2.0"),
            ),
            ("ACTIONS_ID_TOKEN_REQUEST_TOKEN", "request-token-xyz".into()),
            ("GITHUB_ACTION_PATH", repo_root().display().to_string()),
        ] {
            env.insert(k.to_string(), v);
        }
        Runner {
            work: work.to_path_buf(),
            env,
            github_token: GITHUB_TOKEN.into(),
        }
    }

    fn run(&self, given: &[(&str, &str)]) -> ActionRun {
        let text = std::fs::read_to_string(repo_root().join("action.yml")).unwrap();
        let action: Yaml = serde_yaml_ng::from_str(&text).unwrap();
        assert_eq!(action["runs"]["using"].as_str(), Some("composite"));

        let mut inputs = BTreeMap::new();
        for (name, spec) in action["inputs"].as_mapping().unwrap() {
            let name = name.as_str().unwrap().to_string();
            let value = match given.iter().find(|(k, _)| *k == name) {
                Some((_, v)) => v.to_string(),
                None => {
                    assert!(
                        spec["required"].as_bool() != Some(true),
                        "the test gives no value for the required input {name}"
                    );
                    // A default may be an expression of the github context
                    // (`${{ github.token }}`).
                    let default = spec["default"].as_str().unwrap_or_default();
                    expand(
                        default,
                        &BTreeMap::new(),
                        &BTreeMap::new(),
                        &self.github_token,
                    )
                }
            };
            inputs.insert(name, value);
        }
        for (k, _) in given {
            assert!(inputs.contains_key(*k), "action.yml has no input {k}");
        }

        let mut outputs_of: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
        let mut carried_env: BTreeMap<String, String> = BTreeMap::new();
        let mut path: Vec<String> = vec![];
        let mut summary = String::new();
        let mut steps = vec![];
        for (i, step) in action["runs"]["steps"]
            .as_sequence()
            .unwrap()
            .iter()
            .enumerate()
        {
            let id = step["id"].as_str().unwrap_or("unnamed").to_string();
            assert_eq!(step["shell"].as_str(), Some("bash"), "step {id}");
            assert!(
                step.get("if").is_none(),
                "step {id}: `if:` is not simulated"
            );
            let files = |name: &str| {
                let p = self.work.join(format!("step{i}-{name}"));
                std::fs::write(&p, "").unwrap();
                p
            };
            let (output_file, env_file, path_file, summary_file) = (
                files("output"),
                files("env"),
                files("path"),
                files("summary"),
            );
            let script = self.work.join(format!("step{i}.sh"));
            let eval = |s: &str| expand(s, &inputs, &outputs_of, &self.github_token);
            std::fs::write(&script, eval(step["run"].as_str().unwrap())).unwrap();

            let mut env = self.env.clone();
            env.extend(carried_env.clone());
            if !path.is_empty() {
                let mut p = path.iter().rev().cloned().collect::<Vec<_>>();
                p.push(env["PATH"].clone());
                env.insert("PATH".into(), p.join(":"));
            }
            for (k, v) in [
                ("GITHUB_OUTPUT", &output_file),
                ("GITHUB_ENV", &env_file),
                ("GITHUB_PATH", &path_file),
                ("GITHUB_STEP_SUMMARY", &summary_file),
            ] {
                env.insert(k.into(), v.display().to_string());
            }
            if let Some(step_env) = step["env"].as_mapping() {
                for (k, v) in step_env {
                    env.insert(k.as_str().unwrap().into(), eval(v.as_str().unwrap()));
                }
            }
            let out = Command::new("bash")
                .args(["--noprofile", "--norc", "-eo", "pipefail"])
                .arg(&script)
                .env_clear()
                .envs(&env)
                .current_dir(&env["GITHUB_WORKSPACE"])
                .stdin(Stdio::null())
                .output()
                .unwrap();
            let code = out.status.code().unwrap_or(-1);
            steps.push(StepRun {
                id: id.clone(),
                code,
                log: format!(
                    "{}{}",
                    String::from_utf8_lossy(&out.stdout),
                    String::from_utf8_lossy(&out.stderr)
                ),
            });
            let read = |p: &Path| std::fs::read_to_string(p).unwrap();
            outputs_of.insert(id, parse_commands_file(&read(&output_file)));
            carried_env.extend(parse_commands_file(&read(&env_file)));
            path.extend(read(&path_file).lines().map(str::to_string));
            summary.push_str(&read(&summary_file));
            if code != 0 {
                break; // later steps of a composite action do not run
            }
        }
        let mut outputs = BTreeMap::new();
        for (name, spec) in action["outputs"].as_mapping().unwrap() {
            let value = expand(
                spec["value"].as_str().unwrap(),
                &inputs,
                &outputs_of,
                &self.github_token,
            );
            outputs.insert(name.as_str().unwrap().to_string(), value);
        }
        ActionRun {
            steps,
            step_outputs: outputs_of,
            outputs,
            summary,
            path,
        }
    }
}

/// `${{ … }}` as action.yml uses it: `inputs.X`, `steps.ID.outputs.X`,
/// `github.token`, and `A || B` (the first non-empty).
fn expand(
    text: &str,
    inputs: &BTreeMap<String, String>,
    steps: &BTreeMap<String, BTreeMap<String, String>>,
    github_token: &str,
) -> String {
    let value = |expr: &str| -> String {
        let expr = expr.trim();
        if let Some(name) = expr.strip_prefix("inputs.") {
            return inputs
                .get(name)
                .unwrap_or_else(|| panic!("action.yml uses undeclared input {name}"))
                .clone();
        }
        if let Some(rest) = expr.strip_prefix("steps.") {
            let (id, name) = rest.split_once(".outputs.").expect("steps.ID.outputs.NAME");
            return steps
                .get(id)
                .and_then(|o| o.get(name))
                .cloned()
                .unwrap_or_default();
        }
        match expr {
            "github.token" => github_token.to_string(),
            _ => panic!("the simulated runner does not evaluate `{expr}`"),
        }
    };
    let mut out = String::new();
    let mut rest = text;
    while let Some(start) = rest.find("${{") {
        out.push_str(&rest[..start]);
        let end = rest[start..].find("}}").expect("closing }}") + start;
        let expr = &rest[start + 3..end];
        let v = expr
            .split("||")
            .map(value)
            .find(|v| !v.is_empty())
            .unwrap_or_default();
        out.push_str(&v);
        rest = &rest[end + 2..];
    }
    out.push_str(rest);
    out
}

/// GITHUB_OUTPUT / GITHUB_ENV: `name=value` lines and `name<<DELIM` blocks.
fn parse_commands_file(text: &str) -> BTreeMap<String, String> {
    let mut map = BTreeMap::new();
    let mut lines = text.lines();
    while let Some(line) = lines.next() {
        if let Some((name, delim)) = line.split_once("<<") {
            let value: Vec<&str> = lines.by_ref().take_while(|l| *l != delim).collect();
            map.insert(name.to_string(), value.join("\n"));
        } else if let Some((name, value)) = line.split_once('=') {
            map.insert(name.to_string(), value.to_string());
        }
    }
    map
}

/// The job's GITHUB_TOKEN in the simulated runner (`github.token`).
const GITHUB_TOKEN: &str = "ghs_jobtoken0123456789";

/// The repository hoist's releases come from by default.
const CANONICAL: &str = "hoist-dev/hoist";

/// One release v{VERSION} on the fake github.com: its repository, its
/// assets, and whether the repository is private (its assets then come only
/// through the REST API, with a token — as GitHub answers 404 otherwise).
struct Release {
    repo: String,
    assets: Vec<(String, Vec<u8>)>,
    private: bool,
}

/// What a request carried: which server, the path, its Authorization.
#[derive(Debug, Clone)]
struct Seen {
    storage: bool,
    path: String,
    auth: Option<String>,
}

/// Plays github.com for the action: release downloads under
/// `/OWNER/REPO/releases/download/TAG/ASSET`; the REST API under `/api/v3`
/// (`repos/OWNER/REPO/releases/tags/TAG`, and `releases/assets/ID` which,
/// asked for `application/octet-stream`, redirects to the storage server
/// as GitHub does); the Actions OIDC token endpoint. The storage server
/// refuses a request that carries an Authorization header (a presigned URL
/// allows one auth mechanism only), so a client that forwards the token
/// across the redirect fails. Records every request.
struct GitHub {
    server: Running,
    _storage: Running,
    seen: Arc<Mutex<Vec<Seen>>>,
}

impl GitHub {
    fn start(releases: Vec<Release>, oidc_token: String) -> GitHub {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let releases = Arc::new(releases);
        let tag = format!("v{VERSION}");

        let (s, r) = (seen.clone(), releases.clone());
        let storage = serve(move |req: hyper::Request<hyper::body::Incoming>| {
            let (s, r) = (s.clone(), r.clone());
            async move {
                let path = req.uri().path().to_string();
                let auth = header(&req, "authorization");
                s.lock().unwrap().push(Seen {
                    storage: true,
                    path: path.clone(),
                    auth: auth.clone(),
                });
                if auth.is_some() {
                    return Ok(bytes(
                        400,
                        b"<Error><Code>InvalidArgument</Code><Message>Only one auth mechanism allowed</Message></Error>".to_vec(),
                    ));
                }
                // /OWNER/REPO/ASSET
                let found = r.iter().find_map(|rel| {
                    let name = path.strip_prefix(&format!("/{}/", rel.repo))?;
                    rel.assets
                        .iter()
                        .find(|(n, _)| n == name)
                        .map(|(_, b)| b.clone())
                });
                Ok(match found {
                    Some(b) => bytes(200, b),
                    None => bytes(404, b"NoSuchKey".to_vec()),
                })
            }
        });
        let storage_url = format!("http://{}", storage.addr);

        let (s, r) = (seen.clone(), releases);
        let server = serve(move |req: hyper::Request<hyper::body::Incoming>| {
            let (s, r, oidc_token, tag, storage_url) = (
                s.clone(),
                r.clone(),
                oidc_token.clone(),
                tag.clone(),
                storage_url.clone(),
            );
            async move {
                let path = req.uri().path().to_string();
                let auth = header(&req, "authorization");
                s.lock().unwrap().push(Seen {
                    storage: false,
                    path: path.clone(),
                    auth: auth.clone(),
                });
                if path == "/oidc/token" {
                    if auth.as_deref() != Some("bearer request-token-xyz") {
                        return Ok(bytes(401, b"{}".to_vec()));
                    }
                    return Ok(bytes(
                        200,
                        json!({ "value": oidc_token }).to_string().into_bytes(),
                    ));
                }
                let not_found = || {
                    Ok(bytes(
                        404,
                        br#"{"message":"Not Found","status":"404"}"#.to_vec(),
                    ))
                };
                if let Some(rest) = path.strip_prefix("/api/v3/repos/") {
                    // A wrong token is refused; none sees public releases only.
                    let authorized = match auth.as_deref() {
                        Some(a) if a == format!("Bearer {GITHUB_TOKEN}") => true,
                        Some(_) => {
                            return Ok(bytes(401, br#"{"message":"Bad credentials"}"#.to_vec()));
                        }
                        None => false,
                    };
                    let Some(rel) = r.iter().find(|rel| {
                        rest.starts_with(&format!("{}/releases/", rel.repo))
                            && (authorized || !rel.private)
                    }) else {
                        return not_found();
                    };
                    let rest = &rest[rel.repo.len() + "/releases/".len()..];
                    if rest == format!("tags/{tag}") {
                        let assets: Vec<Value> = rel
                            .assets
                            .iter()
                            .enumerate()
                            .map(|(i, (name, b))| json!({ "id": 100 + i, "name": name, "size": b.len(), "url": format!("/api/v3/repos/{}/releases/assets/{}", rel.repo, 100 + i) }))
                            .collect();
                        return Ok(bytes(
                            200,
                            serde_json::to_vec_pretty(
                                &json!({ "tag_name": tag, "assets": assets }),
                            )
                            .unwrap(),
                        ));
                    }
                    if let Some(id) = rest
                        .strip_prefix("assets/")
                        .and_then(|i| i.parse::<usize>().ok())
                    {
                        let Some((name, _)) = id.checked_sub(100).and_then(|i| rel.assets.get(i))
                        else {
                            return not_found();
                        };
                        if header(&req, "accept").as_deref() != Some("application/octet-stream") {
                            // Without it the API describes the asset instead.
                            return Ok(bytes(
                                200,
                                json!({ "id": id, "name": name }).to_string().into_bytes(),
                            ));
                        }
                        return Ok(hyper::Response::builder()
                            .status(302)
                            .header("Location", format!("{storage_url}/{}/{name}", rel.repo))
                            .body(Full::new(Bytes::new()).map_err(|e| match e {}).boxed())
                            .unwrap());
                    }
                    return not_found();
                }
                // Browser downloads: public releases only.
                let found = r.iter().filter(|rel| !rel.private).find_map(|rel| {
                    let name =
                        path.strip_prefix(&format!("/{}/releases/download/{tag}/", rel.repo))?;
                    rel.assets
                        .iter()
                        .find(|(n, _)| n == name)
                        .map(|(_, b)| b.clone())
                });
                match found {
                    Some(b) => Ok(bytes(200, b)),
                    None => not_found(),
                }
            }
        });
        GitHub {
            server,
            _storage: storage,
            seen,
        }
    }

    fn url(&self) -> String {
        format!("http://{}", self.server.addr)
    }

    /// Every request for a release (API, download, storage).
    fn downloads(&self) -> Vec<Seen> {
        self.seen
            .lock()
            .unwrap()
            .iter()
            .filter(|s| s.storage || s.path.contains("/releases/"))
            .cloned()
            .collect()
    }

    fn download_paths(&self) -> Vec<String> {
        self.downloads().into_iter().map(|s| s.path).collect()
    }
}

fn header(req: &hyper::Request<hyper::body::Incoming>, name: &str) -> Option<String> {
    req.headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}

fn bytes(status: u16, body: Vec<u8>) -> hyper::Response<Body> {
    hyper::Response::builder()
        .status(status)
        .body(Full::new(Bytes::from(body)).map_err(|e| match e {}).boxed())
        .unwrap()
}

fn github_token() -> String {
    jwt(json!({
        "iss": "https://token.actions.githubusercontent.com", "aud": "sts.amazonaws.com",
        "sub": "repo:acme/app:ref:refs/heads/main", "repository": "acme/app", "ref": "refs/heads/main",
        "run_id": "4242", "run_attempt": "1",
    }))
}

const VERSION: &str = env!("CARGO_PKG_VERSION");

/// Release v{VERSION} of `repo` with the x86_64 Linux binary and (when
/// given) its checksum file.
fn release(repo: &str, binary: &[u8], checksum: Option<String>, private: bool) -> Release {
    let mut assets = vec![("hoist-x86_64-linux".to_string(), binary.to_vec())];
    if let Some(sum) = checksum {
        assets.push((
            "hoist-x86_64-linux.sha256".into(),
            format!("{sum}  hoist-x86_64-linux\n").into_bytes(),
        ));
    }
    Release {
        repo: repo.into(),
        assets,
        private,
    }
}

/// GitHub serving hoist's public release of this build (the stripped
/// binary and its checksum file).
fn public_release(w: &Path) -> GitHub {
    let binary = std::fs::read(stripped_hoist(w)).unwrap();
    GitHub::start(
        vec![release(
            CANONICAL,
            &binary,
            Some(sha256_hex(&binary)),
            false,
        )],
        github_token(),
    )
}

/// The installed, verified release ships: OIDC role, push, gate, deploy,
/// outputs and summary. The release repository is hoist's own, and private
/// here: only the API with the job's token reaches it — the token goes to
/// github.com, never on to the storage the download redirects to. Every
/// output action.yml declares is one a step writes, and every output hoist
/// writes is declared.
#[test]
fn action_installs_the_verified_release_and_ships() {
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    let binary = std::fs::read(stripped_hoist(w)).unwrap();
    let sum = sha256_hex(&binary);
    let token = github_token();
    let github = GitHub::start(
        vec![release(CANONICAL, &binary, Some(sum.clone()), true)],
        token.clone(),
    );
    let mut runner = Runner::new(w, &github.url());
    fast_gate(&mut runner.env);
    let image = layout(w);
    let repo = unique("pkg/action");
    // Without scan on push (moto scans only when asked), so the gate starts
    // the scan at once instead of first waiting for the push's own.
    common::create_repository(&repo, true);
    // A function with alias `live` on version 1 (moto does not check the
    // image it was made with).
    let function = common::lambda::function(&repo, &format!("sha256:{}", "0".repeat(64)), "x86_64");
    let inputs = [
        ("image", image.to_str().unwrap()),
        ("repository", repo.as_str()),
        // One per line, as a YAML block: hoist gets them comma-separated.
        ("tags", "first\n second \n"),
        // moto's one finding is HIGH.
        ("severity-threshold", "critical"),
        ("function", function.as_str()),
        ("alias", "live"),
        ("strategy", "canary:50%:1s"),
        ("role-to-assume", ROLE),
        ("aws-region", "us-east-1"),
    ];
    let run = runner.run(&inputs);
    run.ok();
    assert!(
        run.step_outputs["install"]["bin"].ends_with("/hoist"),
        "the install step hands on the hoist it verified: {:?}",
        run.step_outputs
    );
    let log = run.log();
    // The token is masked (the runner hides it from then on) and never
    // printed anywhere else.
    assert!(log.contains(&format!("::add-mask::{token}")), "{log}");
    assert!(
        log.lines()
            .all(|l| l.starts_with("::add-mask::") || !l.contains(&token)),
        "the OIDC token reached the log"
    );
    assert!(
        !log.contains(GITHUB_TOKEN),
        "the job's token reached the log"
    );

    // Installed from hoist's releases through the API with the job's token,
    // the files fetched from storage without it; verified, cached, on PATH.
    let api = format!("/api/v3/repos/{CANONICAL}/releases");
    let seen: Vec<(bool, String, bool)> = github
        .downloads()
        .into_iter()
        .map(|s| (s.storage, s.path, s.auth.is_some()))
        .collect();
    assert_eq!(
        seen,
        [
            (false, format!("{api}/tags/v{VERSION}"), true),
            (false, format!("{api}/assets/100"), true),
            (true, format!("/{CANONICAL}/hoist-x86_64-linux"), false),
            (false, format!("{api}/assets/101"), true),
            (
                true,
                format!("/{CANONICAL}/hoist-x86_64-linux.sha256"),
                false
            ),
        ],
        "{log}"
    );
    assert!(
        github
            .downloads()
            .iter()
            .filter(|s| s.auth.is_some())
            .all(|s| s.auth.as_deref() == Some(&format!("Bearer {GITHUB_TOKEN}"))),
        "the job's token, as a bearer token"
    );
    assert!(
        log.contains(&format!("verified hoist-x86_64-linux (sha256 {sum})")),
        "{log}"
    );
    let cached = w.join(format!("tool-cache/hoist/{VERSION}/x86_64-linux"));
    assert_eq!(
        sha256_hex(&std::fs::read(cached.join("hoist")).unwrap()),
        sum
    );
    assert_eq!(run.path, [cached.display().to_string()]);
    assert_eq!(
        run.outputs["hoist-path"],
        cached.join("hoist").display().to_string()
    );

    // Every output the steps wrote is declared, and every declared output
    // is written: action.yml's outputs, derived from what hoist wrote.
    let action: Yaml =
        serde_yaml_ng::from_str(&std::fs::read_to_string(repo_root().join("action.yml")).unwrap())
            .unwrap();
    let declared: BTreeSet<(String, String)> = action["outputs"]
        .as_mapping()
        .unwrap()
        .values()
        .map(|spec| {
            let v = spec["value"].as_str().unwrap();
            let (step, name) = v
                .trim_start_matches("${{ steps.")
                .trim_end_matches(" }}")
                .split_once(".outputs.")
                .unwrap_or_else(|| panic!("an output that is not a step's: {v}"));
            (step.to_string(), name.to_string())
        })
        .collect();
    let written: BTreeSet<(String, String)> = run
        .step_outputs
        .iter()
        .flat_map(|(step, o)| o.keys().map(move |k| (step.clone(), k.clone())))
        .collect();
    assert_eq!(
        written.difference(&declared).collect::<Vec<_>>(),
        Vec::<&(String, String)>::new(),
        "outputs hoist writes that action.yml does not declare"
    );
    assert_eq!(
        declared.difference(&written).collect::<Vec<_>>(),
        Vec::<&(String, String)>::new(),
        "outputs action.yml declares that no step writes"
    );
    for (name, spec) in action["outputs"].as_mapping().unwrap() {
        let name = name.as_str().unwrap();
        if name != "hoist-path" {
            assert_eq!(
                spec["value"].as_str().unwrap(),
                format!("${{{{ steps.ship.outputs.{name} }}}}"),
                "action output {name} is hoist's output of the same name"
            );
        }
    }

    // The inputs reached hoist: OIDC role (no static keys in the runner's
    // environment), the repository created, both tags; and every input left
    // empty (jobs, duration, …) was not passed as an empty value.
    assert!(
        run.step("ship")
            .log
            .contains("assumed-role/ci-deploy/hoist-github-4242-1"),
        "{log}"
    );
    assert_eq!(run.outputs["aws-account-id"], "123456789012");
    assert_eq!(
        run.outputs["authenticated-arn"],
        "arn:aws:sts::123456789012:assumed-role/ci-deploy/hoist-github-4242-1"
    );
    let digest = run.outputs["digest"].clone();
    assert!(
        digest.starts_with("sha256:") && digest.len() == 71,
        "{:?}",
        run.outputs
    );
    let l = local();
    assert_eq!(
        run.outputs["image-uri"],
        format!("{}/{repo}@{digest}", l.ecr_host)
    );
    assert_eq!(
        run.outputs["repository-uri"],
        format!("{}/{repo}", l.ecr_host)
    );
    assert!(registry_manifest(&repo, &digest).is_some());
    // The gate ran on the pushed digest, and said so in the outputs.
    assert_eq!(run.outputs["scan-verdict"], "passed", "{:?}", run.outputs);
    assert_eq!(run.outputs["scan-high"], "1");
    assert_eq!(run.outputs["scan-informational"], "0");
    assert_eq!(run.outputs["scan-undefined"], "0");
    // And deployed it: version 2 published, the alias moved from 1.
    assert_eq!(run.outputs["version"], "2", "{:?}", run.outputs);
    assert_eq!(run.outputs["previous-version"], "1");
    assert_eq!(run.outputs["routing"], "2=100%");
    assert_eq!(run.outputs["deployed-digest"], digest);
    assert_eq!(common::lambda::alias(&function, "live").0, "2");
    let mut tags = registry_tags(&repo);
    tags.sort();
    assert_eq!(tags, ["first", "second"]);
    assert!(
        run.summary.contains(&digest),
        "step summary: {}",
        run.summary
    );

    // A second run finds the binary in the tool cache: nothing downloaded.
    let before = github.downloads().len();
    let again = runner.run(&inputs);
    again.ok();
    assert_eq!(github.downloads().len(), before, "{}", again.log());
    assert!(
        again.step("install").log.contains("is in the tool cache"),
        "{}",
        again.log()
    );
    assert_eq!(again.outputs["digest"], digest, "the same image again");
}

/// Without a token (the token input emptied), the public download URL; with
/// release-repository, that repository's releases, not hoist's.
#[test]
fn action_downloads_publicly_and_from_the_release_repository_given() {
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    let binary = std::fs::read(stripped_hoist(w)).unwrap();
    let sum = sha256_hex(&binary);
    for (case, inputs, expected) in [
        (
            "no token",
            vec![("token", "")],
            vec![
                format!("/{CANONICAL}/releases/download/v{VERSION}/hoist-x86_64-linux"),
                format!("/{CANONICAL}/releases/download/v{VERSION}/hoist-x86_64-linux.sha256"),
            ],
        ),
        (
            "another release repository",
            vec![("release-repository", "acme/hoist-fork")],
            vec![
                format!("/api/v3/repos/acme/hoist-fork/releases/tags/v{VERSION}"),
                "/api/v3/repos/acme/hoist-fork/releases/assets/100".into(),
                "/acme/hoist-fork/hoist-x86_64-linux".into(),
                "/api/v3/repos/acme/hoist-fork/releases/assets/101".into(),
                "/acme/hoist-fork/hoist-x86_64-linux.sha256".into(),
            ],
        ),
    ] {
        let case_dir = w.join(case.replace(' ', "-"));
        std::fs::create_dir_all(&case_dir).unwrap();
        // hoist's own release would be a wrong binary: only the expected
        // source can pass.
        let github = GitHub::start(
            vec![
                release(CANONICAL, &binary, Some(sum.clone()), false),
                release("acme/hoist-fork", &binary, Some(sum.clone()), true),
            ],
            github_token(),
        );
        let mut runner = Runner::new(&case_dir, &github.url());
        fast_gate(&mut runner.env);
        let image = layout(&case_dir);
        let repo = unique("pkg/public");
        common::create_repository(&repo, false);
        let mut given = vec![
            ("image", image.to_str().unwrap()),
            ("repository", repo.as_str()),
            ("role-to-assume", ROLE),
            ("severity-threshold", "critical"),
        ];
        given.extend(inputs);
        let run = runner.run(&given);
        run.ok();
        assert_eq!(github.download_paths(), expected, "{case}: {}", run.log());
        assert!(
            run.outputs["digest"].starts_with("sha256:"),
            "{case}: {}",
            run.log()
        );
    }
}

/// Every platform the release builds for (.github/workflows/release.yml) gets
/// its own asset: Linux and macOS runners, x86_64 and ARM64. Each asset here
/// is a small stand-in script that names its platform, so the log shows
/// which one the install step verified, cached and the ship step ran. The
/// macOS runners have no sha256sum: their checksums go through shasum.
#[test]
fn action_installs_the_release_for_the_runners_platform() {
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    let platforms = [
        ("Linux", "X64", "x86_64-linux"),
        ("Linux", "ARM64", "aarch64-linux"),
        ("macOS", "X64", "x86_64-macos"),
        ("macOS", "ARM64", "aarch64-macos"),
    ];
    let mut assets = vec![];
    let mut sums = BTreeMap::new();
    for (_, _, platform) in platforms {
        let name = format!("hoist-{platform}");
        let script = format!("#!/bin/sh\necho \"hoist {VERSION} ({platform} stand-in): $*\"\n");
        let sum = sha256_hex(script.as_bytes());
        assets.push((
            format!("{name}.sha256"),
            format!("{sum}  {name}\n").into_bytes(),
        ));
        assets.push((name, script.into_bytes()));
        sums.insert(platform, sum);
    }
    let no_sha256sum = path_without(w, "sha256sum");

    for (os, arch, platform) in platforms {
        let case_dir = w.join(platform);
        std::fs::create_dir_all(&case_dir).unwrap();
        let github = GitHub::start(
            vec![Release {
                repo: CANONICAL.into(),
                assets: assets.clone(),
                private: false,
            }],
            github_token(),
        );
        let mut runner = Runner::new(&case_dir, &github.url());
        runner.env.insert("RUNNER_OS".into(), os.into());
        runner.env.insert("RUNNER_ARCH".into(), arch.into());
        if os == "macOS" {
            runner.env.insert("PATH".into(), no_sha256sum.clone());
        }
        let run = runner.run(&[
            ("image", "image.tar"),
            ("repository", "pkg/never-pushed"),
            ("token", ""),
        ]);
        run.ok();
        let asset = format!("hoist-{platform}");
        assert_eq!(
            github.download_paths(),
            [
                format!("/{CANONICAL}/releases/download/v{VERSION}/{asset}"),
                format!("/{CANONICAL}/releases/download/v{VERSION}/{asset}.sha256"),
            ],
            "{platform}: {}",
            run.log()
        );
        let install = &run.step("install").log;
        let cached = case_dir.join(format!("tool-cache/hoist/{VERSION}/{platform}"));
        for expected in [
            format!("verified {asset} (sha256 {})", sums[platform]),
            format!(
                "using hoist {VERSION} ({platform} stand-in): --version from {}",
                cached.display()
            ),
        ] {
            assert!(install.contains(&expected), "{platform}: {install}");
        }
        assert_eq!(
            run.outputs["hoist-path"],
            cached.join("hoist").display().to_string()
        );
        assert!(
            run.step("ship")
                .log
                .contains(&format!("({platform} stand-in): ship")),
            "{platform}: {}",
            run.log()
        );
    }
}

/// A PATH of one directory holding every command of this PATH but `name`
/// (symbolic links to them): a runner without that command.
fn path_without(w: &Path, name: &str) -> String {
    let dir = w.join(format!("path-without-{name}"));
    std::fs::create_dir_all(&dir).unwrap();
    let path = std::env::var_os("PATH").unwrap_or_default();
    for d in std::env::split_paths(&path) {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let link = dir.join(e.file_name());
            if e.file_name() != name && std::fs::symlink_metadata(&link).is_err() {
                std::os::unix::fs::symlink(e.path(), &link).unwrap();
            }
        }
    }
    dir.display().to_string()
}

/// Failures a re-run may fix end the install step with 3, naming what
/// failed, and hoist does not run: GitHub out of reach (the download and
/// the network named), and a command the step does not expect to fail —
/// here the tool cache cannot be created — (the line named, not the
/// command's own code: mkdir's 1 would read as "blocked by policy").
#[test]
fn action_install_failures_a_rerun_may_fix_exit_3() {
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    let github = public_release(w);
    // A port nothing listens on: connections are refused.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    // Under a regular file: no directory can be made there.
    let file = w.join("a-file");
    std::fs::write(&file, "").unwrap();
    let unwritable = file.join("cache").display().to_string();
    // A cached hoist, checksum recorded, that does not run.
    let broken = b"#!/bin/sh\nexit 1\n";
    for (case, server, tool_cache, cached, expected) in [
        (
            "no network",
            format!("http://127.0.0.1:{closed}"),
            None,
            false,
            "could not download http://127.0.0.1:",
        ),
        (
            "the tool cache cannot be made",
            github.url(),
            Some(unwritable.as_str()),
            false,
            "the install step failed at line",
        ),
        (
            "the cached hoist does not run",
            github.url(),
            None,
            true,
            "hoist does not run (hoist --version failed)",
        ),
    ] {
        let case_dir = w.join(case.replace(' ', "-"));
        std::fs::create_dir_all(&case_dir).unwrap();
        let mut runner = Runner::new(&case_dir, &server);
        if let Some(dir) = tool_cache {
            runner.env.insert("RUNNER_TOOL_CACHE".into(), dir.into());
        }
        if cached {
            let dir = case_dir.join(format!("tool-cache/hoist/{VERSION}"));
            std::fs::create_dir_all(dir.join("x86_64-linux")).unwrap();
            let bin = dir.join("x86_64-linux/hoist");
            std::fs::write(&bin, broken).unwrap();
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(0o755)).unwrap();
            std::fs::write(dir.join("x86_64-linux.complete"), sha256_hex(broken)).unwrap();
        }
        let image = layout(&case_dir);
        let run = runner.run(&[
            ("image", image.to_str().unwrap()),
            ("repository", "pkg/never-pushed"),
            ("token", ""),
        ]);
        assert_eq!(
            run.steps.len(),
            1,
            "{case}: the ship step must not run:\n{}",
            run.log()
        );
        let install = run.step("install");
        assert_eq!(install.code, 3, "{case}: {}", install.log);
        assert!(
            install.log.contains("::error title=hoist install::")
                && install.log.contains(expected)
                && install.log.contains("re-run the job"),
            "{case}: {}",
            install.log
        );
        assert!(
            !run.step_outputs
                .get("install")
                .is_some_and(|o| o.contains_key("bin")),
            "{case}: a hoist was handed on: {:?}",
            run.step_outputs
        );
    }
}

#[test]
fn action_refuses_an_unverified_binary() {
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    let binary = std::fs::read(stripped_hoist(w)).unwrap();
    let wrong = sha256_hex(b"something else");
    // (case, the .sha256 file, the error, the exit code: 3 where a re-run
    // may fix it — a damaged download —, 2 where the release must change)
    for (case, checksum, expected, exit) in [
        (
            "checksum mismatch",
            Some(wrong.clone()),
            format!("but its hoist-x86_64-linux.sha256 says {wrong}: refusing to run it"),
            3,
        ),
        (
            "no checksum file",
            None,
            "but no hoist-x86_64-linux.sha256 (HTTP 404): refusing to run an unverified binary"
                .to_string(),
            2,
        ),
        (
            "not a checksum",
            Some("not-a-checksum".into()),
            "holds no SHA-256 checksum: refusing".to_string(),
            2,
        ),
    ] {
        let case_dir = w.join(case.replace(' ', "-"));
        std::fs::create_dir_all(&case_dir).unwrap();
        let github = GitHub::start(
            vec![release(CANONICAL, &binary, checksum, false)],
            github_token(),
        );
        let runner = Runner::new(&case_dir, &github.url());
        let image = layout(&case_dir);
        let run = runner.run(&[
            ("image", image.to_str().unwrap()),
            ("repository", "pkg/never-pushed"),
            // Even where a source build is allowed: a bad checksum is not a
            // missing release.
            ("build-from-source", "true"),
        ]);
        assert_eq!(
            run.steps.len(),
            1,
            "{case}: the ship step must not run:\n{}",
            run.log()
        );
        let install = run.step("install");
        assert_eq!(install.code, exit, "{case}: {}", install.log);
        assert!(
            install.log.contains("::error title=hoist install::")
                && install.log.contains(&expected),
            "{case}: {}",
            install.log
        );
        assert!(
            !install.log.contains("building hoist"),
            "{case}: {}",
            install.log
        );
        let cached = case_dir.join(format!("tool-cache/hoist/{VERSION}"));
        assert!(
            !cached.join("x86_64-linux/hoist").exists()
                && !cached.join("x86_64-linux.complete").exists(),
            "{case}: an unverified binary was cached"
        );
        assert!(run.path.is_empty(), "{case}: nothing added to PATH");
    }
}

/// cargo, as a stand-in that records its arguments and installs the test
/// binary (a real release build takes far longer than a test may).
fn fake_cargo(w: &Path) -> (PathBuf, PathBuf) {
    let fake_bin = w.join("fake-bin");
    std::fs::create_dir_all(&fake_bin).unwrap();
    let cargo_log = w.join("cargo-args");
    let cargo = fake_bin.join("cargo");
    std::fs::write(
        &cargo,
        format!(
            "#!/bin/sh\nprintf '%s\\n' \"$*\" >> '{log}'\n\
             while [ $# -gt 0 ]; do [ \"$1\" = --root ] && root=$2; shift; done\n\
             mkdir -p \"$root/bin\" && cp '{bin}' \"$root/bin/hoist\"\n",
            log = cargo_log.display(),
            bin = env!("CARGO_BIN_EXE_hoist"),
        ),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&cargo, std::fs::Permissions::from_mode(0o755)).unwrap();
    (fake_bin, cargo_log)
}

/// No release asset for this version, or no release for the runner's
/// platform: the step fails and says what to change — unless
/// build-from-source is true, when it says why it builds from the action's
/// own source with `cargo install`.
#[test]
fn action_builds_from_source_only_when_allowed() {
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    let (fake_bin, cargo_log) = fake_cargo(w);

    for (case, os, arch, expect_download, why) in [
        (
            "no release asset",
            "Linux",
            "X64",
            true,
            format!("{CANONICAL} has no release v{VERSION} with hoist-x86_64-linux (HTTP 404)"),
        ),
        (
            "no release for Windows",
            "Windows",
            "X64",
            false,
            "hoist's releases have no binary for Windows/X64".to_string(),
        ),
    ] {
        for allowed in [false, true] {
            let case_dir = w.join(format!("{}-{allowed}", case.replace(' ', "-")));
            std::fs::create_dir_all(&case_dir).unwrap();
            std::fs::write(&cargo_log, "").unwrap();
            let github = GitHub::start(vec![], github_token());
            let mut runner = Runner::new(&case_dir, &github.url());
            fast_gate(&mut runner.env);
            let path = format!("{}:{}", fake_bin.display(), runner.env["PATH"]);
            runner.env.insert("PATH".into(), path);
            runner.env.insert("RUNNER_OS".into(), os.into());
            runner.env.insert("RUNNER_ARCH".into(), arch.into());
            let image = layout(&case_dir);
            let repo = unique("pkg/source");
            common::create_repository(&repo, true);
            let mut inputs = vec![
                ("image", image.to_str().unwrap()),
                ("repository", repo.as_str()),
                ("severity-threshold", "critical"),
                ("role-to-assume", ROLE),
            ];
            if allowed {
                inputs.push(("build-from-source", "true"));
            }
            let run = runner.run(&inputs);
            assert_eq!(
                !github.downloads().is_empty(),
                expect_download,
                "{case}: {:?}",
                github.downloads()
            );
            let install = run.step("install");
            let args = std::fs::read_to_string(&cargo_log).unwrap();
            if !allowed {
                assert_eq!(run.steps.len(), 1, "{case}: {}", run.log());
                // Not 1 (hoist's "blocked by policy"): the workflow must change.
                assert_eq!(install.code, 2, "{case}: {}", install.log);
                assert!(
                    install
                        .log
                        .contains(&format!("::error title=hoist install::{why}. "))
                        && install.log.contains("build-from-source: true"),
                    "{case}: {}",
                    install.log
                );
                assert_eq!(args, "", "{case}: nothing built");
                continue;
            }
            run.ok();
            assert!(
                install.log.contains(&format!(
                    "{why}: building hoist {VERSION} from the action's source, as build-from-source is true"
                )),
                "{case}: {}",
                install.log
            );
            let root = case_dir.join("tool-cache/hoist");
            let expected_prefix = format!(
                "install --locked --path {} --root {}/{VERSION}-source-",
                repo_root().display(),
                root.display()
            );
            // …/<version>-source-<16 hex of the source's hash>/<arch>
            let source_hash = args
                .trim_end()
                .strip_prefix(&expected_prefix)
                .and_then(|rest| rest.strip_suffix(&format!("/{arch}")))
                .unwrap_or_else(|| panic!("{case}: cargo was called with: {args}"));
            assert!(
                source_hash.len() == 16 && source_hash.chars().all(|c| c.is_ascii_hexdigit()),
                "{case}: the cache key holds no hash of the source: {args}"
            );
            assert!(
                run.outputs["digest"].starts_with("sha256:"),
                "{case}: the built binary shipped:\n{}",
                run.log()
            );
            assert!(registry_manifest(&repo, &run.outputs["digest"]).is_some());
        }
    }
}

/// A failing `hoist ship` fails the action's step with hoist's own exit code
/// and error, and sets no outputs.
#[test]
fn action_fails_with_hoists_exit_code() {
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    let github = public_release(w);
    let runner = Runner::new(w, &github.url());
    let image = layout(w);
    let repo = unique("pkg/missing");
    let run = runner.run(&[
        ("image", image.to_str().unwrap()),
        ("repository", &repo),
        ("role-to-assume", ROLE),
    ]);
    let ship = run.step("ship");
    assert_eq!(ship.code, 2, "a usage error: {}", run.log());
    assert!(
        ship.log
            .contains(&format!("repository '{repo}' does not exist")),
        "{}",
        ship.log
    );
    assert_eq!(run.outputs["digest"], "");
    assert_eq!(run.outputs["image-uri"], "");
}

/// moto answers at once: poll its scans quickly.
fn fast_gate(env: &mut BTreeMap<String, String>) {
    env.insert("HOIST_POLL_INTERVAL".into(), "50ms".into());
}

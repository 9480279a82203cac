//! What every integration test shares: the local environment (registry +
//! moto, started by `localenv/localenv up`), running the real hoist binary,
//! and checking what reached the registry.
#![allow(dead_code)]

pub mod aws;
pub mod fixtures;
pub mod forward_proxy;
pub mod lambda;
pub mod lambda_rules;
pub mod misbehaving;
pub mod named_host;
pub mod proxy;
pub mod server;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;

pub struct Local {
    /// env.sh's variables — with `HOIST_REGISTRY_ENDPOINT` pointing at the
    /// suite's ECR front, so every hoist run meets ECR's behaviour.
    pub vars: BTreeMap<String, String>,
    /// The real registry and moto behind the front.
    pub upstream: proxy::Upstream,
    /// The suite's ECR (see proxy.rs), for this test process.
    pub front: proxy::Proxy,
    /// The suite's AWS API endpoint (moto and what it lacks; see aws.rs),
    /// which `AWS_ENDPOINT_URL` points at.
    pub aws: aws::AwsFront,
    pub dir: PathBuf,
    /// `127.0.0.1:PORT` of the registry.
    pub registry: String,
    pub password: String,
    pub ecr_host: String,
}

/// Where `localenv up` keeps its servers' state and the tools it installs:
/// `$HOIST_LOCALENV_DIR`, or `.localenv` in the checkout.
pub fn localenv_dir() -> PathBuf {
    std::env::var_os("HOIST_LOCALENV_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join(".localenv"))
}

/// A tool `localenv up` installs: into its venv (PyPI), its node_modules
/// (npm), or on PATH (Debian). Needs no server, so it starts none.
pub fn tool(name: &str) -> PathBuf {
    let dir = localenv_dir();
    for candidate in [
        dir.join("venv/bin").join(name),
        dir.join("node/node_modules/.bin").join(name),
    ] {
        if candidate.exists() {
            return candidate;
        }
    }
    std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default())
        .map(|d| d.join(name))
        .find(|p| p.is_file())
        .unwrap_or_else(|| {
            panic!("{name} is not installed: run localenv/localenv up (or ./scripts/test), which installs it")
        })
}

/// The pipeline gitlab-ci-local expands for the project in `project`
/// (includes, inputs and defaults applied), as GitLab would hand it to a
/// runner; gitlab-ci-local keeps its state under `work`.
pub fn gitlab_preview(work: &Path, project: &Path) -> serde_yaml_ng::Value {
    let out = Command::new(tool("gitlab-ci-local"))
        .current_dir(project)
        .env("HOME", work)
        .arg("--home")
        .arg(work.join("gcl-home"))
        .arg("--preview")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let errors = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{text}{errors}");
    // Warnings first, then the expanded YAML.
    let (_, yaml) = text
        .split_once("---\n")
        .unwrap_or_else(|| panic!("gitlab-ci-local printed no pipeline: {text}{errors}"));
    serde_yaml_ng::from_str(yaml).unwrap()
}

/// The environment `localenv up` wrote to `$HOIST_LOCALENV_DIR/env.sh`.
pub fn local() -> &'static Local {
    static LOCAL: OnceLock<Local> = OnceLock::new();
    LOCAL.get_or_init(|| {
        let dir = localenv_dir();
        let text = std::fs::read_to_string(dir.join("env.sh")).unwrap_or_else(|_| panic!("no {}/env.sh: start the local environment first (localenv/localenv up), or run ./scripts/test", dir.display()));
        let mut vars = BTreeMap::new();
        for line in text.lines() {
            let Some(rest) = line.trim().strip_prefix("export ") else { continue };
            let Some((k, v)) = rest.split_once('=') else { continue };
            let v = v.trim().trim_matches('"').trim_matches('\'');
            if k == "PATH" {
                continue;
            }
            vars.insert(k.to_string(), v.to_string());
        }
        let registry = vars.get("HOIST_LOCALENV_REGISTRY").cloned().expect("env.sh sets HOIST_LOCALENV_REGISTRY");
        let password = vars.get("HOIST_LOCALENV_REGISTRY_PASSWORD").cloned().expect("env.sh sets HOIST_LOCALENV_REGISTRY_PASSWORD");
        let region = vars.get("AWS_REGION").cloned().unwrap_or_else(|| "us-east-1".into());
        let upstream = proxy::Upstream {
            endpoint: vars["HOIST_REGISTRY_ENDPOINT"].trim_end_matches('/').to_string(),
            ca: std::fs::read(&vars["AWS_CA_BUNDLE"]).expect("the local CA is readable"),
            password: password.clone(),
            moto: vars["AWS_ENDPOINT_URL"].clone(),
            region: region.clone(),
        };
        let front = proxy::Proxy::start_with(proxy::Options::default(), upstream.clone());
        vars.insert("HOIST_REGISTRY_ENDPOINT".into(), front.endpoint());
        let aws = aws::AwsFront::start(&upstream.moto);
        vars.insert("AWS_ENDPOINT_URL".into(), aws.endpoint());
        Local { vars, upstream, front, aws, dir, registry, password, ecr_host: format!("123456789012.dkr.ecr.{region}.amazonaws.com") }
    })
}

/// A repository name no other test uses.
pub fn unique(prefix: &str) -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    format!(
        "{prefix}-{}-{nanos:x}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    pub fn ok(&self) -> &Self {
        assert_eq!(self.code, 0, "hoist failed:\n{}", self.stderr);
        self
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| {
            panic!(
                "stdout is not JSON ({e}):\n{}\nstderr:\n{}",
                self.stdout, self.stderr
            )
        })
    }
}

/// Run the hoist binary with a clean environment: the local environment's
/// variables, PATH and TMPDIR, and `extra`. Nothing of the CI system the tests
/// themselves run in leaks in.
/// `hoist push SOURCE --repository REPO --output json -q EXTRA…`
pub fn push(source: &Path, repo: &str, extra: &[&str]) -> Run {
    let mut args = vec![
        "push",
        source.to_str().unwrap(),
        "--repository",
        repo,
        "--output",
        "json",
        "-q",
    ];
    args.extend_from_slice(extra);
    hoist(&args, &[])
}

/// `hoist push SOURCE --repository REPO --output json EXTRA…` without -q:
/// for tests that read hoist's warnings (-q silences them).
pub fn push_logged(source: &Path, repo: &str, extra: &[&str]) -> Run {
    let mut args = vec![
        "push",
        source.to_str().unwrap(),
        "--repository",
        repo,
        "--output",
        "json",
    ];
    args.extend_from_slice(extra);
    hoist(&args, &[])
}

/// `push_logged` through `endpoint`.
pub fn push_via_logged(endpoint: &str, source: &Path, repo: &str, extra: &[&str]) -> Run {
    let mut args = vec!["--registry-endpoint", endpoint];
    args.extend_from_slice(extra);
    push_logged(source, repo, &args)
}

/// The same, through `endpoint` (a proxy in front of the registry) as
/// --registry-endpoint.
pub fn push_via(endpoint: &str, source: &Path, repo: &str, extra: &[&str]) -> Run {
    let mut args = vec!["--registry-endpoint", endpoint];
    args.extend_from_slice(extra);
    push(source, repo, &args)
}

pub fn hoist(args: &[&str], extra: &[(&str, &str)]) -> Run {
    hoist_in(None, args, extra)
}

/// hoist, measured: its run, and its peak resident memory in MiB (VmHWM,
/// read from /proc while it runs). A run still going after `deadline` is
/// killed and the test fails: what is checked is that hoist stops by itself.
pub fn hoist_measured(
    args: &[&str],
    extra: &[(&str, &str)],
    deadline: std::time::Duration,
) -> (Run, u64) {
    let l = local();
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
    cmd.envs(&l.vars);
    for (k, v) in extra {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().expect("hoist runs");
    // Drain the pipes on threads, so a chatty hoist cannot block on them.
    let mut out = child.stdout.take().unwrap();
    let mut err = child.stderr.take().unwrap();
    let out = std::thread::spawn(move || {
        let mut b = Vec::new();
        std::io::Read::read_to_end(&mut out, &mut b).ok();
        b
    });
    let err = std::thread::spawn(move || {
        let mut b = Vec::new();
        std::io::Read::read_to_end(&mut err, &mut b).ok();
        b
    });
    let status_file = format!("/proc/{}/status", child.id());
    let started = std::time::Instant::now();
    let mut peak_kib = 0u64;
    let status = loop {
        if let Ok(text) = std::fs::read_to_string(&status_file)
            && let Some(kib) = text
                .lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        {
            peak_kib = peak_kib.max(kib);
        }
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if started.elapsed() > deadline {
            child.kill().ok();
            child.wait().ok();
            panic!("hoist {args:?} was still running after {deadline:?}: it must stop by itself");
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    };
    let run = Run {
        code: status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.join().unwrap()).into_owned(),
        stderr: String::from_utf8_lossy(&err.join().unwrap()).into_owned(),
    };
    assert_no_secrets(&run, args.contains(&"--export"));
    (run, peak_kib / 1024)
}

pub fn hoist_in(cwd: Option<&Path>, args: &[&str], extra: &[(&str, &str)]) -> Run {
    hoist_env(cwd, args, &[], extra)
}

/// `hoist` without some of the local environment's variables (e.g.
/// `HOIST_REGISTRY_ENDPOINT`, to let hoist choose the registry's host).
pub fn hoist_without(unset: &[&str], args: &[&str], extra: &[(&str, &str)]) -> Run {
    hoist_env(None, args, unset, extra)
}

fn hoist_env(cwd: Option<&Path>, args: &[&str], unset: &[&str], extra: &[(&str, &str)]) -> Run {
    let l = local();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_hoist"));
    cmd.args(args).env_clear().stdin(Stdio::null());
    for k in ["PATH", "HOME", "TMPDIR"] {
        if let Some(v) = std::env::var_os(k) {
            cmd.env(k, v);
        }
    }
    cmd.envs(l.vars.iter().filter(|(k, _)| !unset.contains(&k.as_str())));
    for (k, v) in extra {
        cmd.env(k, v);
    }
    if let Some(d) = cwd {
        cmd.current_dir(d);
    }
    let out: Output = cmd.output().expect("hoist runs");
    let run = Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    };
    assert_no_secrets(&run, args.contains(&"--export"));
    run
}

/// Secrets never reach a log or an error message — in any test. Only
/// GitHub's `::add-mask::` command may carry them, and `--export`'s stdout,
/// which exists to hand credentials over.
pub fn assert_no_secrets(run: &Run, exporting: bool) {
    let l = local();
    let basic = {
        use base64::Engine;
        base64::engine::general_purpose::STANDARD.encode(format!("AWS:{}", l.password))
    };
    let mut secrets = vec![l.password.clone(), basic];
    for k in ["AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"] {
        if let Some(v) = l.vars.get(k)
            && v.len() >= 8
        {
            secrets.push(v.clone());
        }
    }
    let streams: Vec<&String> = if exporting {
        vec![&run.stderr]
    } else {
        vec![&run.stdout, &run.stderr]
    };
    for text in streams {
        for line in text.lines().filter(|l| !l.starts_with("::add-mask::")) {
            for s in &secrets {
                assert!(
                    !line.contains(s.as_str()),
                    "a secret appeared in hoist's output: {line}"
                );
            }
            assert!(
                !looks_like_jwt(line),
                "an OIDC token appeared in hoist's output: {line}"
            );
            assert!(
                !looks_like_sts_key(line),
                "an STS access key id appeared in hoist's output: {line}"
            );
        }
    }
}

/// `eyJ…` (base64 of `{"`) in three dot-separated parts.
fn looks_like_jwt(line: &str) -> bool {
    line.split(|c: char| !(c.is_ascii_alphanumeric() || "-_.".contains(c)))
        .any(|w| w.starts_with("eyJ") && w.split('.').count() == 3 && w.len() > 40)
}

/// Temporary access key ids: ASIA and 16 more capitals or digits.
fn looks_like_sts_key(line: &str) -> bool {
    line.split(|c: char| !c.is_ascii_alphanumeric()).any(|w| {
        w.len() == 20
            && w.starts_with("ASIA")
            && w.chars()
                .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit())
    })
}

/// A directory with skopeo's view of the local CA (it wants `ca.crt`).
fn cert_dir() -> PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let d = std::env::temp_dir().join(format!("hoist-test-certs-{}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        std::fs::copy(
            local()
                .vars
                .get("AWS_CA_BUNDLE")
                .expect("env.sh sets AWS_CA_BUNDLE"),
            d.join("ca.crt"),
        )
        .unwrap();
        d
    })
    .clone()
}

pub fn skopeo(args: &[&str]) -> Output {
    Command::new("skopeo")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("skopeo is installed (localenv up installs it)")
}

/// The manifest bytes the registry holds for `repo@reference`, or None.
pub fn registry_manifest(repo: &str, reference: &str) -> Option<Vec<u8>> {
    let l = local();
    let sep = if reference.starts_with("sha256:") {
        "@"
    } else {
        ":"
    };
    let creds = format!("AWS:{}", l.password);
    let cert = cert_dir();
    let out = skopeo(&[
        "inspect",
        "--raw",
        "--creds",
        &creds,
        "--cert-dir",
        cert.to_str().unwrap(),
        &format!("docker://{}/{repo}{sep}{reference}", l.registry),
    ]);
    out.status.success().then_some(out.stdout)
}

/// The tags the registry lists for `repo` (empty when it has none or no repo).
pub fn registry_tags(repo: &str) -> Vec<String> {
    let l = local();
    let creds = format!("AWS:{}", l.password);
    let cert = cert_dir();
    let out = skopeo(&[
        "list-tags",
        "--creds",
        &creds,
        "--cert-dir",
        cert.to_str().unwrap(),
        &format!("docker://{}/{repo}", l.registry),
    ]);
    if !out.status.success() {
        return vec![];
    }
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    v["Tags"]
        .as_array()
        .map(|a| a.iter().map(|t| t.as_str().unwrap().to_string()).collect())
        .unwrap_or_default()
}

/// Pull `repo@digest` back with skopeo (which checks every blob's digest on
/// the way) into an OCI layout, all platforms; panics if that fails.
pub fn pull_back(repo: &str, digest: &str, dest: &Path) {
    let l = local();
    let creds = format!("AWS:{}", l.password);
    let cert = cert_dir();
    let out = skopeo(&[
        "copy",
        "--all",
        "--src-creds",
        &creds,
        "--src-cert-dir",
        cert.to_str().unwrap(),
        &format!("docker://{}/{repo}@{digest}", l.registry),
        &format!("oci:{}:pulled", dest.display()),
    ]);
    assert!(
        out.status.success(),
        "skopeo could not pull {repo}@{digest} back: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(bytes))
}

/// Drive moto's ECR API directly (for what hoist does not do itself, such as
/// creating a MUTABLE repository).
pub fn ecr<T>(f: impl AsyncFnOnce(aws_sdk_ecr::Client) -> T) -> T {
    let sdk = lambda::sdk();
    lambda::block_on(async { f(aws_sdk_ecr::Client::new(&sdk)).await })
}

/// Whether moto's ECR knows the repository.
pub fn repository_exists(name: &str) -> bool {
    ecr(async |c| {
        c.describe_repositories()
            .repository_names(name)
            .send()
            .await
            .is_ok()
    })
}

pub fn create_repository(name: &str, immutable: bool) {
    use aws_sdk_ecr::types::ImageTagMutability;
    ecr(async |c| {
        c.create_repository()
            .repository_name(name)
            .image_tag_mutability(if immutable {
                ImageTagMutability::Immutable
            } else {
                ImageTagMutability::Mutable
            })
            .send()
            .await
            .expect("moto creates the repository");
    });
}

/// Run `hoist ARGS` on a pseudo-terminal (util-linux's `script`, which
/// keeps every byte written to the terminal — tmux's capture-pane drops
/// control codes such as erase-line) with the local environment and `env`.
pub fn on_a_terminal(args: &[&str], env: &[(&str, &str)]) -> String {
    let l = local();
    let line = std::iter::once(env!("CARGO_BIN_EXE_hoist"))
        .chain(args.iter().copied())
        .map(|a| shlex::try_quote(a).unwrap().into_owned())
        .collect::<Vec<_>>()
        .join(" ");
    let mut cmd = Command::new("script");
    cmd.args(["-qefc", &line, "/dev/null"])
        .env_clear()
        .stdin(Stdio::null());
    for k in ["PATH", "HOME", "TMPDIR"] {
        if let Some(v) = std::env::var_os(k) {
            cmd.env(k, v);
        }
    }
    cmd.envs(&l.vars).env("TERM", "xterm-256color");
    cmd.envs(env.iter().copied());
    let out = cmd.output().expect("script runs");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

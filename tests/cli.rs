//! The edges a user touches first (issue 16): a first run without a region
//! or credentials, colours on a terminal, `--help`, completions, the man
//! page, and the config file.

mod common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};

use common::fixtures::Layout;
use common::server::{full, serve};
use common::{Run, hoist_in, on_a_terminal, unique};

/// hoist with nothing of the test environment: PATH, an empty HOME (no
/// ~/.aws) and `env` only — a new user's first run.
fn bare(args: &[&str], env: &[(&str, &str)]) -> Run {
    let home = tempfile::tempdir().unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_hoist"));
    cmd.args(args)
        .env_clear()
        .env("HOME", home.path())
        .stdin(Stdio::null());
    if let Some(p) = std::env::var_os("PATH") {
        cmd.env("PATH", p);
    }
    cmd.envs(env.iter().copied());
    let out = cmd.output().expect("hoist runs");
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// No line a user has to scroll sideways through, and none of the SDK's
/// `Debug` dumps.
fn assert_readable(stderr: &str) {
    for line in stderr.lines() {
        assert!(
            line.chars().count() <= 300,
            "a line of {} characters:\n{stderr}",
            line.chars().count()
        );
    }
    for dump in [
        "ServiceError {",
        "DispatchFailure(",
        "Response {",
        "ConstructionFailure(",
    ] {
        assert!(!stderr.contains(dump), "a Debug dump ({dump}):\n{stderr}");
    }
}

/// A stand-in for the instance-metadata service that records what it is
/// asked and answers 404 to everything (no instance, no role).
fn fake_imds() -> (common::server::Running, Arc<Mutex<Vec<String>>>) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let record = seen.clone();
    let server = serve(move |req| {
        let record = record.clone();
        async move {
            record
                .lock()
                .unwrap()
                .push(format!("{} {}", req.method(), req.uri().path()));
            Ok(full(404, ""))
        }
    });
    (server, seen)
}

/// A first run on a GitHub-hosted runner with no region: the error and its
/// hint, nothing else — and IMDS was never asked (those runners are no EC2
/// instances).
#[test]
fn no_region_on_a_hosted_runner_fails_at_once_with_the_hint() {
    let (imds, seen) = fake_imds();
    let endpoint = format!("http://{}", imds.addr);
    let run = bare(
        &["rollback", "--function", "app", "--alias", "live"],
        &[
            ("GITHUB_ACTIONS", "true"),
            ("RUNNER_ENVIRONMENT", "github-hosted"),
            ("AWS_EC2_METADATA_SERVICE_ENDPOINT", &endpoint),
        ],
    );
    assert_eq!(run.code, 2, "{}", run.stderr);
    // On GitHub the failure is also an annotation, then the same lines.
    assert_eq!(
        run.stderr,
        "::error title=hoist rollback failed::no AWS region is configured%0Ahint: pass --region (or HOIST_REGION), or set AWS_REGION\n\
         error: no AWS region is configured\nhint: pass --region (or HOIST_REGION), or set AWS_REGION\n"
    );
    assert_eq!(run.stdout, "");
    assert_readable(&run.stderr);
    assert!(
        seen.lock().unwrap().is_empty(),
        "IMDS asked: {:?}",
        seen.lock().unwrap()
    );
}

/// Where an instance role is plausible (a developer's machine, a
/// self-hosted runner) IMDS is asked — a bounded number of times — and the
/// failure reads the same.
#[test]
fn no_region_elsewhere_asks_imds_briefly_then_says_so() {
    let (imds, seen) = fake_imds();
    let endpoint = format!("http://{}", imds.addr);
    for env in [
        vec![],
        vec![
            ("GITHUB_ACTIONS", "true"),
            ("RUNNER_ENVIRONMENT", "self-hosted"),
        ],
    ] {
        seen.lock().unwrap().clear();
        let mut env = env;
        env.push(("AWS_EC2_METADATA_SERVICE_ENDPOINT", &endpoint));
        let run = bare(&["rollback", "--function", "app", "--alias", "live"], &env);
        assert_eq!(run.code, 2, "{}", run.stderr);
        let hint = "pass --region (or HOIST_REGION), or set AWS_REGION (the instance-metadata service gave none either)";
        let lines = format!("error: no AWS region is configured\nhint: {hint}\n");
        let want = if env.iter().any(|(k, _)| *k == "GITHUB_ACTIONS") {
            // On GitHub the failure is also an annotation, then the same lines.
            format!(
                "::error title=hoist rollback failed::no AWS region is configured%0Ahint: {hint}\n{lines}"
            )
        } else {
            lines
        };
        assert_eq!(run.stderr, want);
        assert_readable(&run.stderr);
        let asked = seen.lock().unwrap().clone();
        assert!(!asked.is_empty(), "IMDS was asked for the region");
        assert!(asked.len() <= 4, "a short probe: {asked:?}");
        assert!(asked.iter().all(|r| r.contains(" /latest/")), "{asked:?}");
    }
    // AWS_EC2_METADATA_DISABLED turns it off anywhere.
    seen.lock().unwrap().clear();
    let run = bare(
        &["rollback", "--function", "app", "--alias", "live"],
        &[
            ("AWS_EC2_METADATA_SERVICE_ENDPOINT", &endpoint),
            ("AWS_EC2_METADATA_DISABLED", "true"),
        ],
    );
    assert_eq!(run.code, 2);
    assert!(seen.lock().unwrap().is_empty());
}

/// With a region but no credentials: one error, its cause in a line, the
/// hint, and no dump — before any request leaves (the endpoint records
/// nothing).
#[test]
fn no_credentials_is_one_readable_error() {
    let (aws, seen) = fake_imds();
    let endpoint = format!("http://{}", aws.addr);
    let run = bare(
        &[
            "rollback",
            "--function",
            "app",
            "--alias",
            "live",
            "--region",
            "eu-west-1",
        ],
        &[
            ("GITLAB_CI", "true"),
            ("CI_SERVER_HOST", "gitlab.com"),
            ("CI_RUNNER_TAGS", "[\"saas-linux-small-amd64\"]"),
            ("AWS_ENDPOINT_URL", &endpoint),
            ("AWS_EC2_METADATA_SERVICE_ENDPOINT", &endpoint),
        ],
    );
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert_readable(&run.stderr);
    let lines: Vec<&str> = run.stderr.lines().collect();
    assert!(lines[0].starts_with("error: "), "{}", run.stderr);
    assert!(
        lines
            .last()
            .unwrap()
            .starts_with("hint: no usable AWS credentials were found"),
        "{}",
        run.stderr
    );
    assert!(
        lines[1..lines.len() - 1]
            .iter()
            .all(|l| l.starts_with("caused by: ")),
        "{}",
        run.stderr
    );
    assert!(lines.len() <= 6, "{}", run.stderr);
    assert!(
        seen.lock().unwrap().is_empty(),
        "{:?}",
        seen.lock().unwrap()
    );
}

/// NO_COLOR (and --color never) on a terminal: no escape code at all, in
/// the log or the progress line; without them the same run has some (so
/// the test can see them), and --color always wins over NO_COLOR.
#[test]
fn no_color_on_a_terminal_means_no_escape_codes() {
    let dir = tempfile::tempdir().unwrap();
    let (layout, _) = Layout::simple(dir.path(), 2, 3000);
    let push = |extra: &[&str], env: &[(&str, &str)]| {
        let repo = unique("color");
        let mut args = vec![
            "push",
            layout.dir.to_str().unwrap(),
            "--repository",
            &repo,
            "--create-repository",
        ];
        args.extend_from_slice(extra);
        on_a_terminal(&args, env)
    };
    let plain = push(&[], &[("NO_COLOR", "1")]);
    assert!(plain.contains("sha256:"), "the push ran: {plain:?}");
    assert!(!plain.contains('\x1b'), "NO_COLOR=1: {plain:?}");
    let never = push(&["--color", "never"], &[]);
    assert!(never.contains("sha256:"), "{never:?}");
    assert!(!never.contains('\x1b'), "--color never: {never:?}");
    let coloured = push(&[], &[]);
    assert!(
        coloured.contains("\x1b["),
        "a terminal gets them: {coloured:?}"
    );
    let forced = push(&["--color", "always"], &[("NO_COLOR", "1")]);
    assert!(forced.contains("\x1b["), "--color always: {forced:?}");
}

fn help(args: &[&str]) -> String {
    let run = bare(args, &[]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    run.stdout
}

#[test]
fn help_groups_options_under_headings_with_examples() {
    let ship = help(&["ship", "--help"]);
    for heading in [
        "Image:",
        "Gate:",
        "Deploy:",
        "Output:",
        "Authentication:",
        "Global:",
        "Examples:",
    ] {
        assert!(
            ship.lines().any(|l| l == heading),
            "{heading} in ship --help:\n{ship}"
        );
    }
    // Global flags are no longer interleaved with the stage's own.
    let image = ship.find("\nImage:").unwrap();
    let region = ship.find("--region").unwrap();
    let gate = ship.find("\nGate:").unwrap();
    assert!(region > gate && gate > image, "{ship}");
    for cmd in [
        "auth",
        "doctor",
        "push",
        "gate",
        "deploy",
        "rollback",
        "ship",
        "config",
        "completions",
        "man",
        "schema",
    ] {
        let h = help(&[cmd, "--help"]);
        assert!(h.contains("\nExamples:\n"), "examples in {cmd} --help");
    }
    let deploy = help(&["deploy", "--help"]);
    let usage = deploy.lines().find(|l| l.starts_with("Usage:")).unwrap();
    assert!(
        usage.contains("--function <FUNCTION>") && usage.contains("--alias <ALIAS>"),
        "{usage}"
    );
    let top = help(&["--help"]);
    for code in ["  0 ", "  1 ", "  2 ", "  3 ", "  70 "] {
        assert!(
            top.contains(code),
            "exit code {code} in hoist --help:\n{top}"
        );
    }
    assert!(top.contains("Exit codes:"), "{top}");
}

#[test]
fn completions_for_every_shell() {
    for (shell, marker) in [
        ("bash", "complete -F"),
        ("zsh", "#compdef hoist"),
        ("fish", "complete -c hoist"),
        ("powershell", "Register-ArgumentCompleter"),
    ] {
        let run = bare(&["completions", shell], &[]);
        assert_eq!(run.code, 0, "{shell}: {}", run.stderr);
        assert!(run.stdout.contains(marker), "{shell}:\n{}", run.stdout);
        for sub in ["ship", "deploy", "severity-threshold"] {
            assert!(run.stdout.contains(sub), "{shell} completes {sub}");
        }
    }
    let run = bare(&["completions", "tcsh"], &[]);
    assert_eq!(run.code, 2);
}

#[test]
fn man_page_mentions_every_subcommand() {
    let run = bare(&["man"], &[]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(
        run.stdout.starts_with(".ie") || run.stdout.contains(".TH hoist"),
        "roff: {}",
        &run.stdout[..200.min(run.stdout.len())]
    );
    for sub in [
        "auth",
        "doctor",
        "push",
        "gate",
        "deploy",
        "rollback",
        "ship",
        "config",
        "completions",
        "man",
        "schema",
    ] {
        assert!(
            run.stdout.contains(&format!("hoist\\-{sub}"))
                || run.stdout.contains(&format!("\n{sub}"))
                || run.stdout.contains(&format!("B{sub}")),
            "{sub} in the man page"
        );
    }
    let dir = tempfile::tempdir().unwrap();
    let run = bare(&["man", "--dir", dir.path().to_str().unwrap()], &[]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    for page in ["hoist.1", "hoist-ship.1", "hoist-deploy.1"] {
        let text = std::fs::read_to_string(dir.path().join(page)).unwrap();
        assert!(text.contains(".TH"), "{page}");
    }
    let ship = std::fs::read_to_string(dir.path().join("hoist-ship.1")).unwrap();
    assert!(ship.contains("severity\\-threshold"), "ship's own options");
}

// --- the config file -------------------------------------------------------

fn write(dir: &Path, name: &str, text: &str) -> std::path::PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

/// A committed hoist.toml sets a push's options (repository, tags, a flag);
/// the environment overrides it, and a flag overrides both.
#[test]
fn config_file_sets_options_env_and_flags_override() {
    let dir = tempfile::tempdir().unwrap();
    let (layout, m) = Layout::simple(&dir.path().join("img"), 1, 1000);
    let (from_file, from_env, from_flag) = (unique("cfile"), unique("cenv"), unique("cflag"));
    write(
        dir.path(),
        "hoist.toml",
        &format!(
            "# the team's settings\nrepository = \"{from_file}\"\ntag = [\"one\", \"two\"]\n\n[push]\ncreate-repository = true\njobs = 2\n"
        ),
    );
    let source = layout.dir.to_str().unwrap();
    let run = hoist_in(
        Some(dir.path()),
        &["push", source, "--output", "json", "-q"],
        &[],
    );
    let report = run.ok().json();
    assert_eq!(report["repository"], from_file.as_str());
    assert_eq!(report["digest"], m.digest.as_str());
    assert_eq!(common::registry_tags(&from_file), ["one", "two"]);
    assert_eq!(report["repository_created"], true);

    let run = hoist_in(
        Some(dir.path()),
        &["push", source, "--output", "json", "-q"],
        &[("HOIST_REPOSITORY", &from_env)],
    );
    assert_eq!(run.ok().json()["repository"], from_env.as_str());

    let run = hoist_in(
        Some(dir.path()),
        &[
            "push",
            source,
            "--repository",
            &from_flag,
            "--output",
            "json",
            "-q",
        ],
        &[("HOIST_REPOSITORY", &from_env)],
    );
    assert_eq!(run.ok().json()["repository"], from_flag.as_str());

    // --config names a file elsewhere; the working directory's is not read.
    let other = tempfile::tempdir().unwrap();
    let cfg = write(other.path(), "ci.toml", "[push]\nrepository = \"x\"\n");
    let run = hoist_in(
        Some(dir.path()),
        &[
            "config",
            "push",
            "--config",
            cfg.to_str().unwrap(),
            "--output",
            "json",
        ],
        &[],
    );
    let doc = run.ok().json();
    assert_eq!(doc["file"], cfg.to_str().unwrap());
    let repo = setting(&doc, "--repository");
    assert_eq!(repo["value"], "x");
    assert_eq!(repo["file"], format!("{} [push]", cfg.display()));
}

fn setting<'a>(doc: &'a serde_json::Value, option: &str) -> &'a serde_json::Value {
    doc["settings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["option"] == option)
        .unwrap_or_else(|| panic!("{option} in {doc}"))
}

/// `hoist config` reports each option's value and origin: flag, env,
/// file (and which table), default, unset — and does nothing else.
#[test]
fn hoist_config_reports_origins() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "hoist.toml",
        "repository = \"team/app\"\nseverity-threshold = \"CRITICAL\"\nalarm = [\"a\", \"b\"]\nregion = \"eu-west-1\"\n[deploy]\nfunction = \"app\"\n[ship]\nalias = \"live\"\nscan-timeout = \"3m\"\n",
    );
    let run = hoist_in(
        Some(dir.path()),
        &["config", "ship", "--alias", "canary", "--output", "json"],
        &[("HOIST_SEVERITY_THRESHOLD", "HIGH"), ("AWS_REGION", "")],
    );
    let doc = run.ok().json();
    assert_eq!(doc["schema_version"], 1);
    assert_eq!(doc["command"], "config");
    assert_eq!(doc["explained"], "ship");
    let expect = [
        ("--repository", Some("team/app"), "file", Some("hoist.toml")),
        ("--severity-threshold", Some("HIGH"), "env", None),
        ("--alarm", Some("a,b"), "file", Some("hoist.toml")),
        (
            "--function",
            Some("app"),
            "file",
            Some("hoist.toml [deploy]"),
        ),
        ("--alias", Some("canary"), "flag", None),
        (
            "--scan-timeout",
            Some("3m"),
            "file",
            Some("hoist.toml [ship]"),
        ),
        ("--strategy", Some("all-at-once"), "default", None),
        ("--sarif", None, "unset", None),
        ("--region", Some("eu-west-1"), "file", Some("hoist.toml")),
    ];
    for (option, value, origin, file) in expect {
        let s = setting(&doc, option);
        assert_eq!(s["value"].as_str(), value, "{option}: {s}");
        assert_eq!(s["origin"], origin, "{option}: {s}");
        assert_eq!(s["file"].as_str(), file, "{option}: {s}");
    }
    // The text form says the same, one line per option.
    let run = hoist_in(
        Some(dir.path()),
        &["config", "ship"],
        &[("HOIST_SEVERITY_THRESHOLD", "HIGH")],
    );
    let text = run.ok().stdout.clone();
    assert!(
        text.starts_with("config file: hoist.toml\nhoist ship:\n"),
        "{text}"
    );
    let line = |opt: &str| {
        text.lines()
            .find(|l| l.trim_start().starts_with(&format!("{opt} ")))
            .unwrap_or_else(|| panic!("{opt} in {text}"))
            .split_whitespace()
            .collect::<Vec<_>>()
    };
    assert_eq!(
        line("--function"),
        ["--function", "app", "file", "hoist.toml", "[deploy]"]
    );
    assert_eq!(
        line("--severity-threshold"),
        [
            "--severity-threshold",
            "HIGH",
            "env",
            "HOIST_SEVERITY_THRESHOLD"
        ]
    );
    assert_eq!(line("--strategy"), ["--strategy", "all-at-once", "default"]);
    // A [deploy] table does not reach `hoist push`.
    let run = hoist_in(
        Some(dir.path()),
        &["config", "push", "--output", "json"],
        &[],
    );
    let doc = run.ok().json();
    assert!(
        doc["settings"]
            .as_array()
            .unwrap()
            .iter()
            .all(|s| s["option"] != "--function")
    );
}

#[test]
fn unknown_keys_are_refused_with_the_file_and_the_fix() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "hoist.toml", "repostory = \"team/app\"\n");
    let run = hoist_in(Some(dir.path()), &["push", "x", "--output", "json"], &[]);
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert_eq!(
        run.stderr,
        "error: unknown key 'repostory' in the config file hoist.toml\nhint: did you mean 'repository'? Remove or rename the key; keys are long flag names without the dashes\n"
    );
    let doc: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(doc["schema_version"], 1);
    assert_eq!(doc["exit_code"], 2);

    write(dir.path(), "hoist.toml", "[push]\nfunction = \"app\"\n");
    let run = hoist_in(Some(dir.path()), &["config"], &[]);
    assert_eq!(run.code, 2);
    assert!(
        run.stderr.contains("unknown key '[push] function'")
            && run.stderr.contains("hint: hoist push has no --function: move it to the top level or under [deploy] or [rollback] or [ship]"),
        "{}",
        run.stderr
    );

    write(dir.path(), "hoist.toml", "region = \n");
    let run = hoist_in(Some(dir.path()), &["config"], &[]);
    assert_eq!(run.code, 2);
    assert!(
        run.stderr
            .starts_with("error: the config file hoist.toml is not valid TOML"),
        "{}",
        run.stderr
    );

    // A file named with --config must exist; ./hoist.toml need not.
    let run = hoist_in(Some(dir.path()), &["config", "--config", "nope.toml"], &[]);
    assert_eq!(run.code, 2);
    assert!(run.stderr.contains("nope.toml"), "{}", run.stderr);
    let empty = tempfile::tempdir().unwrap();
    let run = hoist_in(Some(empty.path()), &["config"], &[]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(
        run.stdout.starts_with("config file: none"),
        "{}",
        run.stdout
    );

    // Size-limited: a 1 MiB "config" is a wrong path.
    write(dir.path(), "big.toml", &"# x\n".repeat(300_000));
    let run = hoist_in(Some(dir.path()), &["config", "--config", "big.toml"], &[]);
    assert_eq!(run.code, 2, "{}", run.stderr);
}

/// `-q`: a push that works prints its digest on stdout and nothing on
/// stderr (no narrative, no tag lines, no result lines); one that fails
/// still says why.
#[test]
fn quiet_prints_only_errors() {
    let dir = tempfile::tempdir().unwrap();
    let (layout, m) = Layout::simple(dir.path(), 2, 3000);
    let repo = unique("quiet");
    let source = layout.dir.to_str().unwrap();
    let run = common::hoist(
        &[
            "push",
            source,
            "--repository",
            &repo,
            "--create-repository",
            "--tag",
            "v1",
            "-q",
        ],
        &[],
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(run.stdout, format!("{}\n", m.digest));
    assert_eq!(run.stderr, "", "-q prints nothing on success");

    // The same without -q tells the story.
    let loud = common::hoist(&["push", source, "--repository", &repo, "--tag", "v1"], &[]);
    assert_eq!(loud.code, 0, "{}", loud.stderr);
    assert!(loud.stderr.contains("tag v1: unchanged"), "{}", loud.stderr);

    let failed = common::hoist(
        &["push", "/nonexistent/image", "--repository", &repo, "-q"],
        &[],
    );
    assert_eq!(failed.code, 2, "{}", failed.stderr);
    assert!(failed.stderr.starts_with("error: "), "{}", failed.stderr);
}

/// Outputs a later step cannot read fail the step (the pipeline would go on
/// without the digest), after saying what was done; a region that is no
/// region's name is refused with the places it could come from.
#[test]
fn unwritable_outputs_and_a_bad_region_fail_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let (layout, m) = Layout::simple(dir.path(), 1, 2000);
    let repo = unique("outputs");
    let run = common::hoist(
        &[
            "push",
            layout.dir.to_str().unwrap(),
            "--repository",
            &repo,
            "--create-repository",
        ],
        &[
            ("GITHUB_ACTIONS", "true"),
            ("GITHUB_OUTPUT", "/nonexistent/dir/output"),
        ],
    );
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(
        run.stderr
            .contains("the outputs could not be handed to github"),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr.contains(&m.digest),
        "what was done is said: {}",
        run.stderr
    );
    assert!(run.stderr.contains("re-running is safe"), "{}", run.stderr);

    for region in ["mars-1", "us-east-1\n::error::x"] {
        let run = bare(
            &[
                "rollback",
                "--function",
                "app",
                "--alias",
                "live",
                "--region",
                region,
            ],
            &[],
        );
        assert_eq!(run.code, 2, "{}", run.stderr);
        assert!(
            run.stderr.contains("is not an AWS region name")
                && run.stderr.contains("regions look like eu-west-1"),
            "{}",
            run.stderr
        );
        assert!(!run.stderr.lines().any(|l| l.starts_with("::error::x")));
    }
}

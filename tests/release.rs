//! The release's pins: the GitLab component and the Buildkite plugin default
//! to the image the release published, by digest, in the commit the release
//! is tagged at (scripts/release-pin, the release workflow's `version` and
//! `pin` jobs, the GitLab catalog pipeline in .gitlab-ci.yml).
//!
//! GitHub's runners and GitLab's catalog are not here; what runs here is
//! what they would run: the workflow's own scripts, taken from release.yml
//! and executed with bash on a copy of this checkout, with `gh` played by a
//! stand-in and `origin` by a bare repository; the catalog pipeline's check
//! run by gitlab-ci-local; the component's expanded YAML read back from
//! gitlab-ci-local.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use common::{sha256_hex, tool};
use serde_yaml_ng::Value as Yaml;

const VERSION: &str = env!("CARGO_PKG_VERSION");

/// What scripts/release-pin changes, sorted as `git diff --name-only` lists.
const PINNED: [&str; 4] = [
    "gitlab/hoist.yml",
    "hooks/command",
    "templates/hoist/README.md",
    "templates/hoist/template.yml",
];

fn repo_root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn digest(seed: &str) -> String {
    format!("sha256:{}", sha256_hex(seed.as_bytes()))
}

/// (exit code, stdout and stderr)
fn run(cmd: &mut Command) -> (i32, String) {
    let out = cmd.stdin(Stdio::null()).output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code().unwrap_or(-1), text)
}

/// git in `dir`, with no user or system configuration (no signing, no
/// hooks) and a fixed identity: only what a runner's fresh checkout has.
fn git_cmd(dir: &Path) -> Command {
    let mut cmd = Command::new("git");
    cmd.current_dir(dir)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_AUTHOR_NAME", "test")
        .env("GIT_AUTHOR_EMAIL", "test@example.com")
        .env("GIT_COMMITTER_NAME", "test")
        .env("GIT_COMMITTER_EMAIL", "test@example.com");
    cmd
}

fn git(dir: &Path, args: &[&str]) -> String {
    let (code, text) = run(git_cmd(dir).args(args));
    assert_eq!(code, 0, "git {args:?}: {text}");
    text.trim().to_string()
}

/// A repository holding this checkout's release files, one commit on main:
/// main's commit as the release workflow checks it out.
fn checkout_copy(dir: &Path) -> PathBuf {
    let copy = dir.join("checkout");
    for f in [
        "Cargo.toml",
        "plugin.yml",
        "scripts/release-pin",
        ".gitlab-ci.yml",
        ".github/workflows/release.yml",
    ]
    .iter()
    .chain(PINNED.iter())
    {
        let to = copy.join(f);
        std::fs::create_dir_all(to.parent().unwrap()).unwrap();
        std::fs::copy(repo_root().join(f), &to).unwrap();
    }
    git(&copy, &["init", "-q", "-b", "main"]);
    git(&copy, &["add", "."]);
    git(&copy, &["commit", "-q", "-m", "main"]);
    copy
}

fn release_pin(dir: &Path, args: &[&str]) -> (i32, String) {
    run(Command::new(dir.join("scripts/release-pin")).args(args))
}

/// `git status --porcelain`: empty when nothing changed.
fn changes(dir: &Path) -> String {
    git(dir, &["status", "--porcelain"])
}

/// This checkout is main's (the defaults by tag), not a release's tagged
/// commit (pinned). The tests that pin need main's files.
fn main_is_unpinned() -> bool {
    let hook = std::fs::read_to_string(repo_root().join("hooks/command")).unwrap();
    hook.lines().any(|l| l == "pinned_image=")
}

/// On main, --check refuses (the defaults name the image by tag) and says
/// how a release's commit is made; at a release's tagged commit it passes.
#[test]
fn this_checkout_is_pinned_only_if_it_is_a_release() {
    let (code, text) = release_pin(repo_root(), &["--check", VERSION]);
    if main_is_unpinned() {
        assert_eq!(code, 1, "{text}");
        assert!(
            text.contains(
                "the image input's default is not pinned to a digest of ghcr.io/hoist-dev/hoist:"
            ) && text.contains(
                "hint: a release's tagged commit is made by .github/workflows/release.yml"
            ),
            "{text}"
        );
    } else {
        assert_eq!(code, 0, "a pinned checkout fails its own check: {text}");
    }
}

#[test]
fn release_pin_pins_every_default_and_nothing_else() {
    if !main_is_unpinned() {
        return; // a release's commit is pinned already: nothing to pin
    }
    let work = tempfile::tempdir().unwrap();
    let copy = checkout_copy(work.path());
    let sha = digest("the release's index");
    let (code, text) = release_pin(&copy, &[VERSION, "ghcr.io/hoist-dev/hoist", &sha]);
    assert_eq!(code, 0, "{text}");
    let pinned = format!("ghcr.io/hoist-dev/hoist:{VERSION}@{sha}");
    assert_eq!(text.trim(), format!("pinned: {pinned}"));
    assert_eq!(
        git(&copy, &["diff", "--name-only"])
            .lines()
            .collect::<Vec<_>>(),
        PINNED,
        "only the four files change"
    );
    // One line each, and only that line.
    let numstat = git(&copy, &["diff", "--numstat"]);
    for line in numstat.lines() {
        assert!(line.starts_with("1\t1\t"), "more than one line: {numstat}");
    }
    let read = |f: &str| std::fs::read_to_string(copy.join(f)).unwrap();
    let template = read("templates/hoist/template.yml");
    assert_eq!(
        template,
        read("gitlab/hoist.yml"),
        "the copy stays the same file"
    );
    let (header, _) = template.split_once("\n---\n").unwrap();
    let spec: Yaml = serde_yaml_ng::from_str(header).unwrap();
    assert_eq!(
        spec["spec"]["inputs"]["image"]["default"].as_str(),
        Some(pinned.as_str())
    );
    assert!(read("hooks/command").contains(&format!("\npinned_image={pinned}\n")));
    assert!(
        read("templates/hoist/README.md").contains(&format!("| `image` | string, `{pinned}` |"))
    );
    // The hook is still executable, and still bash.
    let (code, text) = run(Command::new("bash")
        .arg("-n")
        .arg(copy.join("hooks/command")));
    assert_eq!(code, 0, "{text}");
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(copy.join("hooks/command"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o111, 0o111, "hooks/command lost its execute bits");

    let (code, text) = release_pin(&copy, &["--check", VERSION]);
    assert_eq!(
        (code, text.trim()),
        (0, format!("pinned: {pinned}").as_str())
    );
    // Pinned twice: refused, and nothing moves.
    git(&copy, &["commit", "-q", "-am", "pinned"]);
    let (code, text) = release_pin(
        &copy,
        &[VERSION, "ghcr.io/hoist-dev/hoist", &digest("another")],
    );
    assert_eq!(code, 1, "{text}");
    assert!(text.contains("is this commit already pinned"), "{text}");
    assert_eq!(changes(&copy), "");
}

/// The GitLab catalog pipeline runs `--check` in an Alpine image: busybox's
/// sh, sed, grep and awk, not GNU's. Pinning and checking work with those
/// alone (the script's only tools, linked from busybox, nothing else on
/// PATH).
#[test]
fn release_pin_runs_on_busybox_alone() {
    if !main_is_unpinned() {
        return;
    }
    let work = tempfile::tempdir().unwrap();
    let copy = checkout_copy(work.path());
    let bin = work.path().join("busybox-bin");
    std::fs::create_dir_all(&bin).unwrap();
    let busybox = tool("busybox");
    for applet in [
        "sh", "awk", "chmod", "cmp", "cp", "dirname", "grep", "head", "mv", "printf", "sed",
        "stat", "wc",
    ] {
        std::os::unix::fs::symlink(&busybox, bin.join(applet)).unwrap();
    }
    let pin = |args: &[&str]| {
        run(Command::new(bin.join("sh"))
            .arg(copy.join("scripts/release-pin"))
            .args(args)
            .env_clear()
            .env("PATH", &bin))
    };
    let sha = digest("index");
    let (code, text) = pin(&["--check", VERSION]);
    assert_eq!(code, 1, "{text}");
    let (code, text) = pin(&[VERSION, "ghcr.io/hoist-dev/hoist", "sha256:abc"]);
    assert_eq!(code, 2, "{text}");
    assert_eq!(changes(&copy), "");
    let (code, text) = pin(&[VERSION, "ghcr.io/hoist-dev/hoist", &sha]);
    assert_eq!(code, 0, "{text}");
    let (code, text) = pin(&["--check", VERSION]);
    assert_eq!(code, 0, "{text}");
    assert_eq!(
        text.trim(),
        format!("pinned: ghcr.io/hoist-dev/hoist:{VERSION}@{sha}")
    );
    // The same result as with GNU's tools.
    let busybox_diff = git(&copy, &["diff"]);
    git(&copy, &["checkout", "--", "."]);
    let (code, text) = release_pin(&copy, &[VERSION, "ghcr.io/hoist-dev/hoist", &sha]);
    assert_eq!(code, 0, "{text}");
    assert_eq!(git(&copy, &["diff"]), busybox_diff);
    let (code, text) = pin(&["--check", VERSION, "ghcr.io/acme/hoist"]);
    assert_eq!(code, 1, "another image's pin does not pass: {text}");
}

/// Each refusal names what is wrong, exits 2 (bad arguments) or 1 (the
/// checkout cannot be pinned as asked), and writes nothing.
#[test]
fn release_pin_refuses_and_changes_nothing() {
    if !main_is_unpinned() {
        return;
    }
    let work = tempfile::tempdir().unwrap();
    let copy = checkout_copy(work.path());
    let sha = digest("index");
    let image = "ghcr.io/hoist-dev/hoist";
    let other_version = "99.0.0";
    let cases: Vec<(&str, Vec<&str>, i32, String)> = vec![
        (
            "no arguments",
            vec![],
            2,
            "usage: scripts/release-pin".into(),
        ),
        ("two arguments", vec![VERSION, image], 2, "usage:".into()),
        (
            "an unknown option",
            vec!["--force", VERSION],
            2,
            "usage:".into(),
        ),
        (
            "not a version",
            vec!["v1.2", image, &sha],
            2,
            "'v1.2' is not a version".into(),
        ),
        (
            "another version",
            vec![other_version, image, &sha],
            1,
            format!("version {other_version} is not Cargo.toml's ({VERSION})"),
        ),
        (
            "an image with a tag",
            vec![VERSION, "ghcr.io/hoist-dev/hoist:1.0", &sha],
            2,
            "is not an image name".into(),
        ),
        (
            "upper case",
            vec![VERSION, "ghcr.io/Hoist-Dev/hoist", &sha],
            2,
            "is not an image name".into(),
        ),
        (
            "no path",
            vec![VERSION, "ghcr.io", &sha],
            2,
            "is not an image name".into(),
        ),
        (
            "a line break",
            vec![VERSION, "ghcr.io/hoist-dev/hoist\nx", &sha],
            2,
            "is not an image name".into(),
        ),
        (
            "a short digest",
            vec![VERSION, image, "sha256:abc"],
            2,
            "is not a digest".into(),
        ),
        (
            "another algorithm",
            vec![VERSION, image, "sha512:00"],
            2,
            "is not a digest".into(),
        ),
    ];
    for (case, args, want, message) in &cases {
        let (code, text) = release_pin(&copy, args);
        assert_eq!(code, *want, "{case}: {text}");
        assert!(text.contains(message.as_str()), "{case}: {text}");
        assert_eq!(changes(&copy), "", "{case} wrote something");
    }

    // A checkout reworded so one place is missing: refused before any
    // file is written, the others included.
    for (file, from, to) in [
        (
            "hooks/command",
            "\npinned_image=\n",
            "\npinned_image=\"\"\n",
        ),
        (
            "templates/hoist/README.md",
            "| `image` | string,",
            "| `image` | text,",
        ),
    ] {
        let path = copy.join(file);
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.contains(from), "{file}");
        std::fs::write(&path, text.replacen(from, to, 1)).unwrap();
        let (code, out) = release_pin(&copy, &[VERSION, image, &sha]);
        assert_eq!(code, 1, "{file}: {out}");
        assert!(out.contains(&format!("{file}: expected the line")), "{out}");
        assert_eq!(
            changes(&copy),
            format!("M {file}"),
            "only the reworded file differs"
        );
        git(&copy, &["checkout", "--", file]);
    }
    // The template and its copy differ: refused.
    let copy_path = copy.join("gitlab/hoist.yml");
    let text = std::fs::read_to_string(&copy_path).unwrap();
    std::fs::write(&copy_path, format!("{text}# drift\n")).unwrap();
    let (code, out) = release_pin(&copy, &[VERSION, image, &sha]);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("gitlab/hoist.yml is not templates/hoist/template.yml byte for byte"),
        "{out}"
    );
    assert_eq!(changes(&copy), "M gitlab/hoist.yml");
}

/// A project including the component as a pipeline would, expanded by
/// gitlab-ci-local: the hoist job's image.
fn component_image(work: &Path, component_from: &Path) -> String {
    let project = work.join("project");
    let _ = std::fs::remove_dir_all(&project);
    let to = project.join("templates/hoist/template.yml");
    std::fs::create_dir_all(to.parent().unwrap()).unwrap();
    std::fs::copy(component_from.join("templates/hoist/template.yml"), &to).unwrap();
    std::fs::write(
        project.join(".gitlab-ci.yml"),
        "include:\n  - local: templates/hoist/template.yml\n    inputs:\n      source: image\n      repository: team/app\n",
    )
    .unwrap();
    git(&project, &["init", "-q", "-b", "main"]);
    git(&project, &["add", "."]);
    git(&project, &["commit", "-q", "-m", "pipeline"]);
    let pipeline = common::gitlab_preview(work, &project);
    pipeline["hoist"]["image"]["name"]
        .as_str()
        .unwrap_or_else(|| panic!("no hoist job image: {pipeline:?}"))
        .to_string()
}

/// Included without an `image` input, the component runs the release's
/// image: by tag on main, by digest once pinned.
#[test]
fn the_pinned_component_runs_the_image_by_digest() {
    if !main_is_unpinned() {
        return;
    }
    let work = tempfile::tempdir().unwrap();
    let copy = checkout_copy(work.path());
    assert_eq!(
        component_image(work.path(), &copy),
        format!("ghcr.io/hoist-dev/hoist:{VERSION}")
    );
    let sha = digest("index");
    let (code, text) = release_pin(&copy, &[VERSION, "ghcr.io/hoist-dev/hoist", &sha]);
    assert_eq!(code, 0, "{text}");
    assert_eq!(
        component_image(work.path(), &copy),
        format!("ghcr.io/hoist-dev/hoist:{VERSION}@{sha}")
    );
}

/// The GitLab mirror's pipeline (.gitlab-ci.yml): it runs for a catalog
/// version tag only, is valid GitLab CI, and its check refuses a tag on a
/// commit whose component is not pinned — run by gitlab-ci-local, as the
/// mirror's runner would run it.
#[test]
fn the_catalog_pipeline_publishes_only_a_pinned_version() {
    let text = std::fs::read_to_string(repo_root().join(".gitlab-ci.yml")).unwrap();
    let pipeline: Yaml = serde_yaml_ng::from_str(&text).unwrap();
    let rule = pipeline["workflow"]["rules"][0]["if"].as_str().unwrap();
    let re = rule
        .strip_prefix("$CI_COMMIT_TAG =~ /")
        .and_then(|r| r.strip_suffix('/'))
        .unwrap_or_else(|| panic!("the workflow runs on a tag pattern: {rule}"));
    // grep -E reads this pattern as GitLab's RE2 does.
    let matches = |tag: &str| {
        run(Command::new("sh")
            .arg("-c")
            .arg("printf '%s\\n' \"$1\" | LC_ALL=C grep -qE \"$2\"")
            .arg("sh")
            .arg(tag)
            .arg(re))
        .0 == 0
    };
    for tag in ["0.1.0", "1.2.3", "10.20.30", "1.2.3-rc.1"] {
        assert!(matches(tag), "{tag} is a catalog version");
    }
    for tag in ["v1.2.3", "1.2", "main", "1.2.3.4", "x1.2.3", ""] {
        assert!(!matches(tag), "{tag} is not a catalog version");
    }
    assert_eq!(
        pipeline["catalog"]["release"]["tag_name"].as_str(),
        Some("$CI_COMMIT_TAG")
    );
    assert_eq!(pipeline["catalog"]["needs"][0].as_str(), Some("pinned"));

    let dir = tempfile::tempdir().unwrap();
    let (code, out) = run(Command::new(tool("check-jsonschema"))
        .args(["--builtin-schema", "vendor.gitlab-ci"])
        .arg(repo_root().join(".gitlab-ci.yml")));
    assert_eq!(code, 0, "{out}");

    if !main_is_unpinned() {
        return;
    }
    let copy = checkout_copy(dir.path());
    let gitlab_ci_local = |work: &Path| {
        run(Command::new(tool("gitlab-ci-local"))
            .current_dir(&copy)
            .env("HOME", work)
            .arg("--home")
            .arg(work.join("gcl-home"))
            // The job names an image: run its script in this shell.
            .arg("--force-shell-executor")
            .args(["--variable", &format!("CI_COMMIT_TAG={VERSION}")])
            .arg("pinned"))
    };
    let (code, out) = gitlab_ci_local(dir.path());
    assert_ne!(code, 0, "an unpinned tag passed the check: {out}");
    assert!(
        out.contains("the image input's default is not pinned to a digest"),
        "{out}"
    );
    assert!(out.contains("FAIL") && out.contains("pinned"), "{out}");

    let sha = digest("index");
    let (code, out) = release_pin(&copy, &[VERSION, "ghcr.io/hoist-dev/hoist", &sha]);
    assert_eq!(code, 0, "{out}");
    git(&copy, &["commit", "-q", "-am", "pinned"]);
    let (code, out) = gitlab_ci_local(dir.path());
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains(&format!("pinned: ghcr.io/hoist-dev/hoist:{VERSION}@{sha}")),
        "{out}"
    );
}

// --- the release workflow's own scripts -----------------------------------------

fn workflow() -> Yaml {
    let text = std::fs::read_to_string(repo_root().join(".github/workflows/release.yml")).unwrap();
    serde_yaml_ng::from_str(&text).unwrap()
}

/// The `run` script of job `job`'s step with id `step`.
fn step_script(job: &str, step: &str) -> String {
    let wf = workflow();
    let steps = wf["jobs"][job]["steps"].as_sequence().unwrap();
    steps
        .iter()
        .find(|s| s["id"].as_str() == Some(step))
        .and_then(|s| s["run"].as_str())
        .unwrap_or_else(|| panic!("release.yml: job {job} has no step {step} with a script"))
        .to_string()
}

/// `gh`, played for the parts of GitHub's API the workflow's scripts use,
/// with GitHub's refusals:
/// - `api repos/R/git/matching-refs/tags/T --jq JQ` lists the tags of
///   $GH_STAND_IN_TAGS (lines `refs/tags/NAME [SHA]`) starting with
///   refs/tags/T, as `.[].ref` or as `[.ref, .object.sha] | @tsv`;
/// - `api repos/R/git/refs -f ref=REF -f sha=SHA` creates a tag: refused
///   (422) when it exists, when REF is not under refs/, or when SHA is not
///   a commit the repository has (one a tag names);
/// - `release view TAG` succeeds for a release in $GH_STAND_IN_RELEASES;
///   `release create TAG FILE… --verify-tag …` refuses an existing release
///   and, with --verify-tag, a tag that does not exist, and records each
///   file with its digest in $GH_STAND_IN_ASSETS (`TAG NAME sha256:HEX`);
///   $GH_STAND_IN_CREATE_FAILS makes it fail; `release upload TAG FILE…`
///   refuses a name the release has (without --clobber);
/// - `api repos/R/releases/tags/T --jq '.assets[] | [.name, (.digest //
///   "")] | @tsv'` lists a release's assets (404 without the release);
/// - `auth setup-git` does nothing (origin is a local path).
///
/// $GH_STAND_IN_FAIL makes every call fail as an unreachable API does.
/// Every call is logged to $GH_STAND_IN_LOG.
const GH_STAND_IN: &str = r#"#!/usr/bin/env bash
set -euo pipefail
echo "$*" >> "$GH_STAND_IN_LOG"
if [ -n "${GH_STAND_IN_FAIL:-}" ]; then echo "HTTP 502: Bad Gateway" >&2; exit 1; fi
tags=${GH_STAND_IN_TAGS:-/dev/null} releases=${GH_STAND_IN_RELEASES:-/dev/null}
assets=${GH_STAND_IN_ASSETS:-/dev/null}
refuse() { echo "gh: $* (HTTP 422)" >&2; exit 1; }
has_tag() { grep -q "^refs/tags/$1\( \|$\)" "$tags"; }
has_asset() { grep -q "^$1 $2 " "$assets"; }
record() { # tag file
  [ -f "$2" ] || { echo "gh: $2: no such file" >&2; exit 1; }
  echo "$1 $(basename "$2") sha256:$(sha256sum "$2" | cut -d ' ' -f 1)" >> "$assets"
}
case "$1 $2" in
  "auth setup-git") exit 0 ;;
  "api repos/"*/git/matching-refs/tags/*)
    prefix=refs/tags/${2##*/git/matching-refs/tags/}
    [ "$3" = --jq ] || { echo "gh stand-in: matching-refs without --jq" >&2; exit 1; }
    while read -r ref sha; do
      case $ref in
        "$prefix"*)
          case $4 in
            '.[].ref') echo "$ref" ;;
            '.[] | [.ref, .object.sha] | @tsv') printf '%s\t%s\n' "$ref" "$sha" ;;
            *) echo "gh stand-in: unknown --jq $4" >&2; exit 1 ;;
          esac ;;
      esac
    done < "$tags"
    ;;
  "api repos/"*/git/refs)
    [ "$#" = 6 ] && [ "$3 $5" = "-f -f" ] && [ "${4%%=*} ${6%%=*}" = "ref sha" ] ||
      { echo "gh stand-in: unexpected: $*" >&2; exit 1; }
    ref=${4#ref=} sha=${6#sha=}
    case $ref in refs/*/*) ;; *) refuse "Reference name must start with 'refs/' and have at least two slashes" ;; esac
    [[ $sha =~ ^[0-9a-f]{40}$ ]] && grep -q " $sha$" "$tags" || refuse "Object does not exist"
    if grep -q "^$ref\( \|$\)" "$tags"; then refuse "Reference already exists"; fi
    echo "$ref $sha" >> "$tags"
    echo '{"ref":"'"$ref"'"}'
    ;;
  "api repos/"*/releases/tags/*)
    tag=${2##*/releases/tags/}
    grep -qxF "$tag" "$releases" || { echo "gh: Not Found (HTTP 404)" >&2; exit 1; }
    [ "$3 $4" = '--jq .assets[] | [.name, (.digest // "")] | @tsv' ] || { echo "gh stand-in: unknown --jq $4" >&2; exit 1; }
    while read -r t name digest; do
      [ "$t" = "$tag" ] && printf '%s\t%s\n' "$name" "$digest"
    done < "$assets"
    true
    ;;
  "release view") grep -qxF "$3" "$releases" ;;
  "release create")
    tag=$3; shift 3
    if [ -n "${GH_STAND_IN_CREATE_FAILS:-}" ]; then echo "HTTP 500: creating the release" >&2; exit 1; fi
    grep -qxF "$tag" "$releases" && refuse "Release.tag_name already exists"
    files=()
    while [ $# -gt 0 ]; do
      case $1 in
        --verify-tag) has_tag "$tag" || { echo "gh: tag $tag doesn't exist in the repo, aborting due to --verify-tag flag" >&2; exit 1; }; shift ;;
        --title | --notes-file) shift 2 ;;
        --generate-notes | --prerelease) shift ;;
        -*) echo "gh stand-in: unknown flag $1" >&2; exit 1 ;;
        *) files+=("$1"); shift ;;
      esac
    done
    echo "$tag" >> "$releases"
    for f in "${files[@]}"; do record "$tag" "$f"; done
    ;;
  "release upload")
    tag=$3; shift 3
    grep -qxF "$tag" "$releases" || { echo "gh: release not found" >&2; exit 1; }
    for f in "$@"; do
      [ "$f" != --clobber ] || { echo "gh stand-in: --clobber replaces published assets" >&2; exit 1; }
      has_asset "$tag" "$(basename "$f")" && refuse "asset under the same name already exists: $(basename "$f")"
      record "$tag" "$f"
    done
    ;;
  *) echo "gh stand-in: unexpected: $*" >&2; exit 1 ;;
esac
"#;

struct Runner {
    dir: PathBuf,
    bin: PathBuf,
}

impl Runner {
    fn new(work: &Path) -> Runner {
        let bin = work.join("bin");
        std::fs::create_dir_all(&bin).unwrap();
        let gh = bin.join("gh");
        std::fs::write(&gh, GH_STAND_IN).unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&gh, std::fs::Permissions::from_mode(0o755)).unwrap();
        Runner {
            dir: work.to_path_buf(),
            bin,
        }
    }

    /// Runs `script` as a `run:` step does (bash -e), in `checkout`, with
    /// the step's `env`. (exit code, log, $GITHUB_OUTPUT)
    fn step(&self, checkout: &Path, script: &str, env: &[(&str, &str)]) -> (i32, String, String) {
        let output = self.dir.join("github_output");
        std::fs::write(&output, "").unwrap();
        let path = format!(
            "{}:{}",
            self.bin.display(),
            std::env::var("PATH").unwrap_or_default()
        );
        let mut cmd = Command::new("bash");
        cmd.current_dir(checkout)
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("GIT_CONFIG_GLOBAL", "/dev/null")
            .env("PATH", path)
            .env("HOME", &self.dir)
            .env("GITHUB_OUTPUT", &output)
            .env("GITHUB_STEP_SUMMARY", self.dir.join("summary.md"))
            .env("GITHUB_REPOSITORY", "hoist-dev/hoist")
            .env("GITHUB_SHA", git(checkout, &["rev-parse", "HEAD"]))
            .env("GH_STAND_IN_LOG", self.dir.join("gh.log"))
            // As GitHub runs a `run:` step: bash -e.
            .args(["--noprofile", "--norc", "-e", "-c", script]);
        for k in [
            "GIT_AUTHOR_NAME",
            "GIT_AUTHOR_EMAIL",
            "GIT_COMMITTER_NAME",
            "GIT_COMMITTER_EMAIL",
        ] {
            cmd.env_remove(k);
        }
        for (k, v) in env {
            cmd.env(k, v);
        }
        let (code, log) = run(&mut cmd);
        (code, log, std::fs::read_to_string(&output).unwrap())
    }
}

/// The `version` job: a release is main's, of Cargo.toml's version, not
/// yet tagged either way, and pinnable; anything else stops the release
/// before anything is built. The API failing is a failure, never "no tag".
#[test]
fn the_release_starts_only_for_a_new_version_on_main() {
    if !main_is_unpinned() {
        return;
    }
    let work = tempfile::tempdir().unwrap();
    let copy = checkout_copy(work.path());
    let runner = Runner::new(work.path());
    let script = step_script("version", "version");
    let tags = work.path().join("tags");
    let tags_s = tags.to_str().unwrap();
    let main = "refs/heads/main";
    let cases: Vec<(&str, &str, &str, &str, Option<&str>)> = vec![
        // (case, version, ref, existing tags, the error)
        ("a new version", VERSION, main, "refs/tags/v0.0.1\n", None),
        (
            "from a branch",
            VERSION,
            "refs/heads/feature",
            "",
            Some("releases are made from main, not refs/heads/feature"),
        ),
        (
            "another version",
            "9.9.9",
            main,
            "",
            Some("version 9.9.9 is not Cargo.toml's"),
        ),
        (
            "released on GitHub",
            VERSION,
            main,
            "refs/tags/vVERSION\n",
            Some("tag vVERSION exists already"),
        ),
        (
            "released in the catalog",
            VERSION,
            main,
            "refs/tags/VERSION\n",
            Some("tag VERSION exists already"),
        ),
    ];
    for (case, version, git_ref, existing, error) in cases {
        std::fs::write(&tags, existing.replace("VERSION", VERSION)).unwrap();
        let (code, log, output) = runner.step(
            &copy,
            &script,
            &[
                ("VERSION", version),
                ("REF", git_ref),
                ("GH_REPO", "hoist-dev/hoist"),
                ("GH_TOKEN", "t"),
                ("GH_STAND_IN_TAGS", tags_s),
            ],
        );
        match error {
            None => {
                assert_eq!(code, 0, "{case}: {log}");
                assert_eq!(output, format!("version={VERSION}\n"), "{case}");
            }
            Some(error) => {
                assert_ne!(code, 0, "{case}: {log}");
                assert!(
                    log.contains(&format!("::error::{}", error.replace("VERSION", VERSION))),
                    "{case}: {log}"
                );
                assert_eq!(output, "", "{case}");
            }
        }
        assert_eq!(
            changes(&copy),
            "",
            "{case}: the trial pin left files changed"
        );
    }
    // A tag 1.2.3-rc.1 does not make 1.2.3 released (GitHub lists refs by
    // prefix).
    std::fs::write(
        &tags,
        format!("refs/tags/v{VERSION}-rc.1\nrefs/tags/{VERSION}-rc.1\n"),
    )
    .unwrap();
    let env = [
        ("VERSION", VERSION),
        ("REF", main),
        ("GH_REPO", "hoist-dev/hoist"),
        ("GH_TOKEN", "t"),
        ("GH_STAND_IN_TAGS", tags_s),
    ];
    let (code, log, _) = runner.step(&copy, &script, &env);
    assert_eq!(code, 0, "{log}");
    // The API down: the release stops.
    let mut failing = env.to_vec();
    failing.push(("GH_STAND_IN_FAIL", "1"));
    let (code, log, output) = runner.step(&copy, &script, &failing);
    assert_ne!(code, 0, "{log}");
    assert!(log.contains("HTTP 502"), "{log}");
    assert_eq!(output, "");
    // A checkout that cannot be pinned stops it before the build.
    let hook = copy.join("hooks/command");
    let text = std::fs::read_to_string(&hook).unwrap();
    std::fs::write(&hook, text.replacen("\npinned_image=\n", "\n", 1)).unwrap();
    git(&copy, &["commit", "-q", "-am", "reworded"]);
    let (code, log, output) = runner.step(&copy, &script, &env);
    assert_ne!(code, 0, "{log}");
    assert!(
        log.contains("hooks/command: expected the line 'pinned_image=' once"),
        "{log}"
    );
    assert_eq!(output, "");
}

/// The `pin` job (its steps `pin` then `push`), run on a fresh checkout of
/// main's commit with `origin` a bare repository: it tags v<version> at a
/// commit whose parent is the commit built and whose only change is the
/// pins; the catalog's tag is not made here (the release job makes it once
/// the GitHub release exists). Run again (a re-run of the job), it makes
/// the same commit and succeeds; with another digest it cannot move the tag.
#[test]
fn the_pin_job_tags_the_built_commit_plus_the_pins() {
    if !main_is_unpinned() {
        return;
    }
    let work = tempfile::tempdir().unwrap();
    let main = checkout_copy(work.path());
    let origin = work.path().join("origin.git");
    let (main_s, origin_s) = (main.to_str().unwrap(), origin.to_str().unwrap());
    git(work.path(), &["clone", "-q", "--bare", main_s, origin_s]);
    let built = git(&main, &["rev-parse", "HEAD"]);
    let runner = Runner::new(work.path());
    let (pin, push) = (step_script("pin", "pin"), step_script("pin", "push"));
    let sha = digest("the index");
    // (exit code, log, the commit the pin step made)
    let attempt = |n: u32, digest: &str| {
        // Each attempt is a new runner: a fresh clone of the built commit...
        let checkout = work.path().join(format!("attempt-{n}"));
        git(
            work.path(),
            &["clone", "-q", origin_s, checkout.to_str().unwrap()],
        );
        // ...at another time: git would date a commit made now by the
        // clock, which these stand for.
        let now = format!("@{} +0000", 1_800_000_000 + n * 3600);
        let mut env = vec![
            ("VERSION", VERSION),
            ("IMAGE", "ghcr.io/hoist-dev/hoist"),
            ("DIGEST", digest),
            ("GIT_AUTHOR_DATE", now.as_str()),
            ("GIT_COMMITTER_DATE", now.as_str()),
        ];
        let (code, log, output) = runner.step(&checkout, &pin, &env);
        if code != 0 {
            return (code, log, String::new());
        }
        let commit = output
            .strip_prefix("commit=")
            .and_then(|c| c.strip_suffix('\n'))
            .unwrap_or_else(|| panic!("the pin step's output: {output:?}"))
            .to_string();
        env.extend([("COMMIT", commit.as_str()), ("GH_TOKEN", "t")]);
        let (code, more, _) = runner.step(&checkout, &push, &env);
        (code, format!("{log}{more}"), commit)
    };
    let (code, log, commit) = attempt(1, &sha);
    assert_eq!(code, 0, "{log}");
    let tagged = |name: &str| {
        git(
            &origin,
            &["rev-parse", &format!("refs/tags/{name}^{{commit}}")],
        )
    };
    let tag = tagged(&format!("v{VERSION}"));
    assert_eq!(tag, commit);
    assert_eq!(
        git(&origin, &["tag", "--list"]),
        format!("v{VERSION}"),
        "the catalog's tag waits for the GitHub release"
    );
    assert_eq!(
        git(&origin, &["rev-parse", &format!("{tag}^")]),
        built,
        "its parent is the commit built"
    );
    assert_eq!(
        git(&origin, &["diff", "--name-only", &built, &tag])
            .lines()
            .collect::<Vec<_>>(),
        PINNED
    );
    assert_eq!(
        git(&origin, &["rev-parse", "refs/heads/main"]),
        built,
        "main is not moved"
    );
    let template = git(
        &origin,
        &["show", &format!("{tag}:templates/hoist/template.yml")],
    );
    assert!(template.contains(&format!("default: ghcr.io/hoist-dev/hoist:{VERSION}@{sha}")));
    let message = git(&origin, &["log", "-1", "--format=%an <%ae>%n%s", &tag]);
    assert!(
        message.starts_with(
            "github-actions[bot] <41898282+github-actions[bot]@users.noreply.github.com>"
        ),
        "{message}"
    );

    // A re-run: the same commit, pushed again, no error.
    let (code, log, again) = attempt(2, &sha);
    assert_eq!(code, 0, "{log}");
    assert_eq!(again, tag, "the re-run made another commit");

    // Another digest (the image rebuilt): refused, the tag stays.
    let (code, log, _) = attempt(3, &digest("another index"));
    assert_ne!(code, 0, "{log}");
    assert!(
        log.contains("rejected") || log.contains("already exists"),
        "{log}"
    );
    assert_eq!(tagged(&format!("v{VERSION}")), tag);
}

/// The `release` job's script: the GitHub release on v<version>, then —
/// only once that exists — the catalog's tag <version> on the same commit
/// (the GitLab mirror publishes a catalog version when it sees that tag).
/// A failed release leaves no catalog tag; a re-run uploads only what is
/// missing and never replaces a published asset; a catalog tag on another
/// commit stops it.
#[test]
fn the_catalog_tag_follows_a_published_release() {
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    let runner = Runner::new(w);
    let script = step_script("release", "publish");
    // What the job downloads: the binaries and their checksums.
    let checkout = w.join("job");
    let dist = checkout.join("dist");
    std::fs::create_dir_all(&dist).unwrap();
    let write_binary = |bytes: &[u8]| {
        std::fs::write(dist.join("hoist-x86_64-linux"), bytes).unwrap();
        std::fs::write(
            dist.join("hoist-x86_64-linux.sha256"),
            format!("{}  hoist-x86_64-linux\n", sha256_hex(bytes)),
        )
        .unwrap();
    };
    write_binary(b"#!/bin/sh\n");
    git(&checkout, &["init", "-q"]); // Runner::step reads GITHUB_SHA from git
    git(&checkout, &["commit", "-q", "--allow-empty", "-m", "job"]);
    let commit = "c".repeat(40);
    let (tags, releases, assets) = (w.join("tags"), w.join("releases"), w.join("assets"));
    let path_s = |p: &Path| p.to_str().unwrap().to_string();
    let (tags_s, releases_s, assets_s) = (path_s(&tags), path_s(&releases), path_s(&assets));
    let runner_temp = w.join("runner-temp");
    std::fs::create_dir_all(&runner_temp).unwrap();
    let temp_s = path_s(&runner_temp);
    let run = |extra: &[(&str, &str)]| {
        let mut env = vec![
            ("VERSION", VERSION),
            ("COMMIT", commit.as_str()),
            ("IMAGE", "ghcr.io/hoist-dev/hoist"),
            ("DIGEST", "sha256:0000"),
            ("GH_REPO", "hoist-dev/hoist"),
            ("GH_TOKEN", "t"),
            ("GH_STAND_IN_TAGS", tags_s.as_str()),
            ("GH_STAND_IN_RELEASES", releases_s.as_str()),
            ("GH_STAND_IN_ASSETS", assets_s.as_str()),
            ("RUNNER_TEMP", temp_s.as_str()),
        ];
        env.extend_from_slice(extra);
        let _ = std::fs::remove_file(w.join("gh.log"));
        let (code, log, _) = runner.step(&checkout, &script, &env);
        let calls = std::fs::read_to_string(w.join("gh.log")).unwrap_or_default();
        (code, log, calls)
    };
    let vtag = format!("refs/tags/v{VERSION} {commit}\n");
    let catalog_tag = format!("refs/tags/{VERSION} {commit}\n");
    let read = |p: &Path| std::fs::read_to_string(p).unwrap_or_default();

    // The release cannot be created: no catalog tag.
    std::fs::write(&tags, &vtag).unwrap();
    let (code, log, calls) = run(&[("GH_STAND_IN_CREATE_FAILS", "1")]);
    assert_ne!(code, 0, "{log}");
    assert!(
        calls.contains(&format!("release create v{VERSION}")),
        "{calls}"
    );
    assert!(!calls.contains("git/refs "), "{calls}");
    assert_eq!(read(&tags), vtag, "a catalog tag without a GitHub release");

    // Then it can ("re-run failed jobs"): the release, then the tag.
    let (code, log, calls) = run(&[]);
    assert_eq!(code, 0, "{log}");
    let create = calls.find("release create").unwrap();
    let tag_call = calls
        .find("git/refs -f")
        .unwrap_or_else(|| panic!("{calls}"));
    assert!(create < tag_call, "the catalog's tag comes last: {calls}");
    assert_eq!(read(&tags), format!("{vtag}{catalog_tag}"));
    assert_eq!(read(&releases), format!("v{VERSION}\n"));
    assert_eq!(read(&assets).lines().count(), 2, "{}", read(&assets));

    // Run again: everything is there, nothing is uploaded or tagged.
    let (code, log, calls) = run(&[]);
    assert_eq!(code, 0, "{log}");
    assert!(
        !calls.contains("release upload") && !calls.contains("git/refs -f"),
        "{calls}"
    );

    // An asset missing (its upload failed): only it is uploaded.
    let kept: String = read(&assets)
        .lines()
        .filter(|l| !l.contains(".sha256"))
        .map(|l| format!("{l}\n"))
        .collect();
    std::fs::write(&assets, &kept).unwrap();
    let (code, log, calls) = run(&[]);
    assert_eq!(code, 0, "{log}");
    let uploads: Vec<_> = calls
        .lines()
        .filter(|l| l.starts_with("release upload"))
        .collect();
    assert_eq!(
        uploads,
        [format!(
            "release upload v{VERSION} hoist-x86_64-linux.sha256"
        )],
        "{calls}"
    );

    // A rebuilt binary (other bytes): refused, the published one stays.
    let published = read(&assets);
    write_binary(b"#!/bin/sh\necho rebuilt\n");
    let (code, log, calls) = run(&[]);
    assert_ne!(code, 0, "{log}");
    assert!(log.contains("a published asset is never replaced"), "{log}");
    assert!(!calls.contains("release upload"), "{calls}");
    assert_eq!(read(&assets), published);
    write_binary(b"#!/bin/sh\n");

    // A catalog tag on another commit: stopped, with what to do.
    let other = "d".repeat(40);
    std::fs::write(&tags, format!("{vtag}refs/tags/{VERSION} {other}\n")).unwrap();
    let (code, log, _) = run(&[]);
    assert_ne!(code, 0, "{log}");
    assert!(
        log.contains(&format!("::error::tag {VERSION} names {other}")),
        "{log}"
    );

    // The API down while listing: stopped, not read as "no tag".
    std::fs::write(&tags, &vtag).unwrap();
    let (code, log, _) = run(&[("GH_STAND_IN_FAIL", "1")]);
    assert_ne!(code, 0, "{log}");
    assert_eq!(read(&tags), vtag);
}

/// The workflow's shape: started by hand only; the pin needs everything
/// built and attested; only the jobs that run no build may write to the
/// repository; the release is created on the pinned tag.
#[test]
fn the_release_workflow_tags_after_the_build_and_publishes_the_tag() {
    let wf = workflow();
    let on = wf["on"].as_mapping().unwrap();
    assert_eq!(on.len(), 1, "started by hand only: {on:?}");
    assert!(on.contains_key("workflow_dispatch"));
    assert_eq!(
        wf["on"]["workflow_dispatch"]["inputs"]["version"]["required"].as_bool(),
        Some(true)
    );
    let needs = |job: &str| -> Vec<String> {
        match &wf["jobs"][job]["needs"] {
            Yaml::String(s) => vec![s.clone()],
            Yaml::Sequence(v) => v.iter().map(|n| n.as_str().unwrap().to_string()).collect(),
            _ => vec![],
        }
    };
    for need in ["version", "attest", "image-index"] {
        assert!(needs("pin").contains(&need.to_string()), "pin needs {need}");
    }
    assert!(needs("release").contains(&"pin".to_string()));
    let jobs = wf["jobs"].as_mapping().unwrap();
    for (name, job) in jobs {
        let name = name.as_str().unwrap();
        let writes = job["permissions"]["contents"].as_str() == Some("write");
        assert_eq!(
            writes,
            matches!(name, "pin" | "release"),
            "{name}: contents: write"
        );
        if writes {
            let scripts: String = job["steps"]
                .as_sequence()
                .unwrap()
                .iter()
                .filter_map(|s| s["run"].as_str())
                .collect();
            assert!(!scripts.contains("cargo"), "{name} writes and builds");
            assert_eq!(
                job["permissions"].as_mapping().unwrap().len(),
                1,
                "{name}: only contents"
            );
        }
    }
    let pin = step_script("pin", "pin");
    assert!(pin.contains("scripts/release-pin \"$VERSION\" \"$IMAGE\" \"$DIGEST\""));
    assert!(pin.contains("scripts/release-pin --check \"$VERSION\" \"$IMAGE\""));
    assert!(!pin.contains("GH_TOKEN") && !pin.contains("git push"));
    // The token is given to the step that pushes, not to the one that
    // runs the checkout's scripts.
    let steps = wf["jobs"]["pin"]["steps"].as_sequence().unwrap();
    let token_steps: Vec<_> = steps
        .iter()
        .filter(|s| s["env"]["GH_TOKEN"].as_str().is_some())
        .map(|s| s["id"].as_str().unwrap_or("?"))
        .collect();
    assert_eq!(token_steps, ["push"]);
    assert!(step_script("pin", "push").contains("git push origin \"$COMMIT:refs/tags/v$VERSION\""));
    // The jobs that tag run in the `release` environment (main only, a
    // reviewer: configured in the repository's settings).
    for job in ["pin", "release"] {
        assert_eq!(
            wf["jobs"][job]["environment"].as_str(),
            Some("release"),
            "{job}"
        );
    }
    // Once tagged, the image's tags are not moved by a rebuild.
    let index = step_script("image-index", "index");
    let refuse = index.find("is tagged already").unwrap();
    assert!(refuse < index.find("imagetools create").unwrap());
}

/// The tagged commit differs from the commit built only in files that are
/// in neither the binary nor the image: the release's binaries and image,
/// built from main's commit, are what the tagged commit builds.
#[test]
fn the_pins_are_in_neither_the_binary_nor_the_image() {
    // The image's build context: what .dockerignore lets through.
    let ignore = std::fs::read_to_string(repo_root().join(".dockerignore")).unwrap();
    let allowed: Vec<&str> = ignore.lines().filter_map(|l| l.strip_prefix('!')).collect();
    assert!(allowed.contains(&"src/"), "{allowed:?}");
    for file in PINNED {
        for allow in &allowed {
            assert!(
                !(file == allow.trim_end_matches('/') || file.starts_with(allow)),
                "{file} is in the image's build context ({allow})"
            );
        }
    }
    // The binary: no build script, nothing included from outside src/.
    assert!(!repo_root().join("build.rs").exists());
    let mut stack = vec![repo_root().join("src")];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                let text = std::fs::read_to_string(&path).unwrap();
                for name in PINNED {
                    let base = name.rsplit('/').next().unwrap();
                    assert!(
                        !(text.contains("include_str!") || text.contains("include_bytes!"))
                            || !text.contains(base),
                        "{} includes {name}",
                        path.display()
                    );
                }
            }
        }
    }
}
